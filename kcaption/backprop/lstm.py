"""The LSTM step's backward pass."""

from keras import ops  # noqa: F401 (for your code)

from kcaption.steps import graded


@graded("backprop.lstm_step", lesson="08_backprop", points=4)
def lstm_step_backward(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b):
    """The gradients of one LSTM step (lesson 04's `LSTMCell.call`, gates i, f, g, o).

    Forward, to recompute first (the backward needs its gates):
        z = x Wx + prev_h Wh + b;  z_i, z_f, z_g, z_o = the four H-wide blocks of z
        i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
        next_c = f * prev_c + i * g;  next_h = o * tanh(next_c)

    Backward: next_c reaches the loss directly (dnext_c, through the next step)
    and through next_h; sum both paths into one dc, then go back gate by gate:
        do = dnext_h * tanh(next_c)
        dc = dnext_c + dnext_h * o * tanh'(next_c)
        di = dc * g,  df = dc * prev_c,  dg = dc * i,  dprev_c = dc * f
        dz_i = di * sigmoid'(z_i), ...; sigmoid'(z) = s (1 - s) with s = sigmoid(z); tanh'(z) = 1 - tanh(z)^2
        dz = the four blocks, in the order i, f, g, o   (N, 4H)
        then dx, dprev_h, dWx, dWh, db from dz as in the RNN step.

    Shapes: dnext_h, dnext_c, prev_h, prev_c (N, H); x (N, D); Wx (D, 4H);
    Wh (H, 4H); b (4H,) -> (dx (N, D), dprev_h (N, H), dprev_c (N, H),
    dWx (D, 4H), dWh (H, 4H), db (4H,)).

    Hints:
    - Tools: `ops.matmul`, `ops.split`, `ops.concatenate(..., axis=-1)`,
      `ops.sigmoid`, `ops.tanh`, `ops.transpose`, `ops.sum`.
    - Write each derivative in terms of the activation you already have
      (i, f, o, g, tanh(next_c)), not of z.
    - The blocks of dz must line up with the blocks of z, or the gradient of
      one gate's weights lands on another's.
    """
    raise NotImplementedError(
        "TODO backprop.lstm_step: implement lstm_step_backward in kcaption/backprop/lstm.py (lesson 08_backprop)"
    )
