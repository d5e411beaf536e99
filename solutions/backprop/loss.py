import keras
from keras import ops


def temporal_softmax_loss_backward(logits, targets, ignore_index=0):
    logits = ops.convert_to_tensor(logits)
    dtype = keras.backend.result_type(logits.dtype, "float32")
    logits = ops.cast(logits, dtype)
    targets = ops.cast(targets, "int32")
    probs = ops.softmax(logits, axis=-1)  # (N, T, V)
    onehot = ops.one_hot(targets, ops.shape(logits)[-1], dtype=dtype)
    mask = ops.cast(ops.not_equal(targets, ignore_index), dtype)  # (N, T)
    batch_size = ops.cast(ops.shape(targets)[0], dtype)
    return (probs - onehot) * mask[..., None] / batch_size
