"""Temporal softmax loss: cross-entropy over every time step of a caption."""

import keras
from keras import ops

from kcaption.steps import graded


@graded("loss.temporal_softmax", lesson="02_embedding_and_loss", points=3)
def temporal_softmax_loss(logits, targets, ignore_index=0):
    """Cross-entropy summed over time, averaged over the batch, padding ignored.

    Math, with p = softmax(logits[n, t, :]) and mask[n, t] = (targets[n, t] != ignore_index):

        loss = (1 / N) * sum_n sum_t  mask[n, t] * ( -log p[targets[n, t]] )

    Shapes: logits (N, T, V) float, targets (N, T) int -> a scalar.

    Dtype: the loss has the logits' dtype, at least float32: float32 logits give a
    float32 loss, float64 logits a float64 loss (computed in float64), float16 or
    bfloat16 logits (mixed precision) a float32 loss.

    Hints:
    - Compute log-probabilities stably with `ops.log_softmax` (never log(softmax)),
      in float32 even if logits are float16 (cast them up), in float64 if they are
      float64 (do not cast them down): `keras.backend.result_type(logits.dtype, "float32")`
      is that dtype. Cast the mask and N to it too.
    - Pick the log-probability of each target: `ops.take_along_axis` on the last axis
      (targets need a trailing axis of size 1), or a one-hot product.
    - Ignored positions must contribute exactly 0 (multiply by the mask; make sure
      the ignored ids, which are valid indices, cannot produce NaN).
    - Divide by N (the batch size), not by the number of unmasked tokens.
      A batch whose every target is ignored gives 0, not NaN.
    """
    raise NotImplementedError(
        "TODO loss.temporal_softmax: implement temporal_softmax_loss in kcaption/losses.py "
        "(lesson 02_embedding_and_loss)"
    )


@keras.saving.register_keras_serializable(package="kcaption")
class TemporalSoftmaxLoss(keras.losses.Loss):
    """`temporal_softmax_loss` as a Keras loss, for `model.compile(loss=...)`.

    Args:
        ignore_index: the target id that contributes nothing (`<NULL>` = 0).
        name: the loss name shown by `fit`.

    Call arguments:
        y_true: int targets (N, T).
        y_pred: logits (N, T, V).

    Returns:
        A scalar: cross-entropy summed over time, averaged over the batch.

    Masking:
        The ignored targets are the mask. A Keras mask carried by `y_pred` is not
        applied again, and the loss is already reduced, so `__call__` calls
        `temporal_softmax_loss` directly.

    Example:
        >>> model.compile(optimizer="adam", loss=TemporalSoftmaxLoss())
    """

    def __init__(self, ignore_index=0, name="temporal_softmax_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_index = ignore_index

    def call(self, y_true, y_pred):
        return temporal_softmax_loss(y_pred, ops.cast(y_true, "int32"), self.ignore_index)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                "TemporalSoftmaxLoss ignores targets equal to `ignore_index` and takes no "
                f"sample weights. Received: sample_weight={sample_weight!r}"
            )
        return self.call(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "ignore_index": self.ignore_index}
