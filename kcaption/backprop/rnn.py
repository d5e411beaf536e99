"""The vanilla RNN's backward passes: one step, then backpropagation through time."""

from keras import ops  # noqa: F401 (for your code)

from kcaption.steps import graded


@graded("backprop.rnn_step", lesson="08_backprop", points=2)
def rnn_step_backward(dnext_h, x, prev_h, next_h, Wx, Wh):
    """The gradients of one RNN step, next_h = tanh(x Wx + prev_h Wh + b).

    Math, with dz the gradient at the pre-activation z = x Wx + prev_h Wh + b:
        dz      = dnext_h * tanh'(z)          tanh'(z) = 1 - tanh(z)^2, and tanh(z) is next_h
        dx      = dz Wx^T
        dprev_h = dz Wh^T
        dWx     = x^T dz
        dWh     = prev_h^T dz
        db      = dz summed over the batch

    Shapes: dnext_h (N, H) = dL/dnext_h; x (N, D); prev_h (N, H); next_h (N, H),
    the step's output; Wx (D, H); Wh (H, H) ->
    (dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,)).
    Every gradient has the shape (and dtype) of what it is the gradient of.

    Hints:
    - Tools: `ops.matmul`, `ops.transpose`, `ops.sum(..., axis=...)`; `*` is elementwise.
    - The forward step's output is given, so there is no forward to recompute.
    - Check each line's shapes: a product that only works one way round is
      the right one, except when D == H (the tests make D, H, N and T differ).
    - b does not appear in any gradient's formula, so it is not an argument.
    """
    raise NotImplementedError(
        "TODO backprop.rnn_step: implement rnn_step_backward in kcaption/backprop/rnn.py (lesson 08_backprop)"
    )


@graded("backprop.rnn", lesson="08_backprop", points=3)
def rnn_backward(dh, x, h0, h, Wx, Wh):
    """Backpropagation through time over a whole sequence of RNN steps.

    The forward ran h[:, t] = tanh(x[:, t] Wx + h[:, t-1] Wh + b), from h[:, -1] = h0.
    Each h[:, t] reaches the loss twice: directly (dh[:, t], e.g. through the
    scores of word t) and through the next step (the dprev_h that step t+1
    hands back). So, for t = T-1 down to 0:
        dx[:, t], dprev, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t] + dprev, x[:, t],
                                                                 h[:, t-1] (h0 at t = 0), h[:, t], Wx, Wh)
    starting from dprev = 0. The weights are shared by every step, so their
    gradients are the sums over t; dh0 is the last dprev.

    Shapes: dh (N, T, H) = dL/dh at every step, upstream; x (N, T, D); h0 (N, H);
    h (N, T, H), the forward's outputs; Wx (D, H); Wh (H, H) ->
    (dx (N, T, D), dh0 (N, H), dWx (D, H), dWh (H, H), db (H,)).

    Hints:
    - Call your `rnn_step_backward`; a Python `for` over `reversed(range(T))`
      is fine (T = x.shape[1] is a plain int here).
    - Tools: `ops.zeros_like`, `ops.stack(..., axis=1)`; slicing `h[:, t]`.
    - A weight gradient that is assigned at every step, rather than added to,
      keeps only step 0's share.
    """
    raise NotImplementedError(
        "TODO backprop.rnn: implement rnn_backward in kcaption/backprop/rnn.py (lesson 08_backprop)"
    )
