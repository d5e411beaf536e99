from keras import ops


def word_embedding_backward(dout, ids, vocab_size):
    D = ops.shape(dout)[-1]
    rows = ops.reshape(dout, (-1, D))  # (N*T, D)
    flat_ids = ops.reshape(ops.cast(ids, "int32"), (-1,))  # (N*T,)
    return ops.segment_sum(rows, flat_ids, num_segments=vocab_size)  # (V, D)
