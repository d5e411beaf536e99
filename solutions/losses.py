import keras
from keras import ops


def temporal_softmax_loss(logits, targets, ignore_index=0):
    logits = ops.convert_to_tensor(logits)
    dtype = keras.backend.result_type(logits.dtype, "float32")  # float16 -> float32; float32, float64 kept
    logits = ops.cast(logits, dtype)
    targets = ops.cast(targets, "int32")
    log_probs = ops.log_softmax(logits, axis=-1)  # (N, T, V)
    picked = ops.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]  # (N, T)
    mask = ops.cast(ops.not_equal(targets, ignore_index), dtype)  # (N, T)
    batch_size = ops.cast(ops.shape(targets)[0], dtype)
    return -ops.sum(picked * mask) / batch_size
