"""The temporal softmax loss's backward pass."""

import keras  # noqa: F401 (keras.backend.result_type, for your code)
from keras import ops  # noqa: F401 (for your code)

from kcaption.steps import graded


@graded("backprop.loss", lesson="08_backprop", points=2)
def temporal_softmax_loss_backward(logits, targets, ignore_index=0):
    """dL/dlogits of lesson 02's temporal softmax loss.

    The loss: L = (1 / N) sum_n sum_t mask[n, t] * (-log softmax(logits[n, t])[targets[n, t]]),
    with mask[n, t] = (targets[n, t] != ignore_index). Its gradient, per position:
        dlogits[n, t, :] = mask[n, t] * (softmax(logits[n, t]) - onehot(targets[n, t])) / N

    Shapes: logits (N, T, V) float; targets (N, T) int -> dlogits (N, T, V).

    Dtype: the loss's (lesson 02): the logits' dtype, at least float32.

    Hints:
    - Tools: `ops.softmax(x, axis=-1)`, `ops.one_hot(ids, V, dtype=...)`,
      `ops.not_equal`, `ops.cast`, `ops.shape`; `mask[..., None]` broadcasts
      a (N, T) mask over V.
    - A position whose target is ignored sends back exactly 0, to every word.
    - Divide by N, the batch size, as the loss does: not by a count of tokens.
    """
    raise NotImplementedError(
        "TODO backprop.loss: implement temporal_softmax_loss_backward in kcaption/backprop/loss.py "
        "(lesson 08_backprop)"
    )
