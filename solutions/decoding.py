from keras import ops


def greedy_search(next_logits, state, start_tokens, max_length, end_token=2, pad_token=0):
    tokens = ops.cast(start_tokens, "int32")  # (N,)
    done = ops.zeros_like(tokens, dtype="bool")  # (N,)
    outputs = []
    for _ in range(max_length):
        logits, state = next_logits(tokens, state)  # (N, V)
        tokens = ops.cast(ops.argmax(logits, axis=-1), "int32")  # (N,)
        tokens = ops.where(done, pad_token, tokens)
        outputs.append(tokens)
        done = ops.logical_or(done, ops.equal(tokens, end_token))
    return ops.stack(outputs, axis=1)  # (N, max_length)
