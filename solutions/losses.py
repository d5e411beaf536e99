from keras import ops


def temporal_softmax_loss(logits, targets, ignore_index=0):
    logits = ops.cast(logits, "float32")
    targets = ops.cast(targets, "int32")
    log_probs = ops.log_softmax(logits, axis=-1)  # (N, T, V)
    picked = ops.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]  # (N, T)
    mask = ops.cast(ops.not_equal(targets, ignore_index), "float32")  # (N, T)
    batch_size = ops.cast(ops.shape(targets)[0], "float32")
    return -ops.sum(picked * mask) / batch_size
