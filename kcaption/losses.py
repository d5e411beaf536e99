"""Temporal softmax loss: cross-entropy over every time step of a caption."""

import keras
from keras import ops

from kcaption.backprop import wiring
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
    - Tools: `ops.log_softmax(x, axis=...)` (stable; log(softmax) is not),
      `ops.take_along_axis` (one entry per position along an axis; its indices
      have the rank of the tensor) or `ops.one_hot`, `ops.not_equal`, `ops.sum`,
      `ops.shape`, `ops.cast`; `keras.backend.result_type(a, b)` names the dtype
      two dtypes promote to.
    - Which axis does the softmax run over? p is a distribution over the V words.
    - Every float in the computation (the mask and N too) shares the loss's dtype.
    - An ignored position adds exactly 0 (its id is still a valid index, so no
      NaN can come from it); a batch whose every target is ignored gives 0, not NaN.
    - The sum is divided by N, as in the math; not by a count of tokens.

    References:
        CS231n assignment 3, `temporal_softmax_loss`;
        `keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)`.
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
        manual_backward: if True, the gradient w.r.t. the logits is your lesson-08
            `temporal_softmax_loss_backward` (kcaption/backprop) instead of autodiff's.
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

    Distribution:
        Under a `tf.distribute` strategy of R replicas, each replica's loss is
        divided by R, as Keras's own losses do: the gradients, summed over the
        replicas, are then those of the mean over the global batch (`fit`
        reports the loss multiplied back by R).

    Example:
        >>> model.compile(optimizer="adam", loss=TemporalSoftmaxLoss())
    """

    def __init__(self, ignore_index=0, manual_backward=False, name="temporal_softmax_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        wiring.check_manual_backward(manual_backward)
        self.ignore_index = ignore_index
        self.manual_backward = manual_backward

    def call(self, y_true, y_pred):
        targets = ops.cast(y_true, "int32")
        loss = temporal_softmax_loss(y_pred, targets, self.ignore_index)
        if self.manual_backward:
            loss = wiring.temporal_softmax_loss(y_pred, targets, loss, self.ignore_index)
        return loss

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                "TemporalSoftmaxLoss ignores targets equal to `ignore_index` and takes no "
                f"sample weights. Received: sample_weight={sample_weight!r}"
            )
        return _scale_for_distribution(self.call(y_true, y_pred))

    def get_config(self):
        return {**super().get_config(), "ignore_index": self.ignore_index, "manual_backward": self.manual_backward}


def _scale_for_distribution(loss):
    """`loss` / R in a replica of a strategy of R replicas (Keras's `scale_loss_for_distribution`)."""
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * ops.cast(1.0 / replicas, loss.dtype)
