import keras
import numpy as np
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


def beam_search(next_logits, state, start_tokens, beam_width, max_length, length_penalty=0.0,
                end_token=2, pad_token=0, return_all=False):
    k = beam_width
    start_tokens = ops.cast(start_tokens, "int32")
    n = ops.shape(start_tokens)[0]
    tokens = ops.repeat(start_tokens, k, axis=0)  # (M,), M = n*k, image-major
    state = keras.tree.map_structure(lambda s: ops.repeat(s, k, axis=0), state)
    scores = ops.zeros((n, 1)) + ops.array([0.0] + [-np.inf] * (k - 1))  # (n, k): only beam 0 grows at step 0
    done = ops.zeros((n * k,), "bool")  # (M,)
    lengths = ops.zeros((n * k,), "int32")  # (M,) words up to and including end_token
    words = ops.zeros((n * k, 0), "int32")  # (M, t)
    offsets = ops.arange(n)[:, None] * k  # (n, 1): each image's first row
    for _ in range(max_length):
        logits_now, state = next_logits(tokens, state)  # (M, V)
        log_probs = ops.log_softmax(ops.cast(logits_now, "float32"), axis=-1)
        vocab_size = ops.shape(log_probs)[-1]
        only_pad = ops.where(ops.arange(vocab_size) == pad_token, 0.0, -np.inf)  # (V,)
        log_probs = ops.where(done[:, None], only_pad[None, :], log_probs)
        candidates = ops.reshape(scores, (-1, k, 1)) + ops.reshape(log_probs, (-1, k, vocab_size))
        scores, index = ops.top_k(ops.reshape(candidates, (-1, k * vocab_size)), k)  # (n, k)
        beam, word = index // vocab_size, index % vocab_size
        rows = ops.reshape(beam + offsets, (-1,))  # (M,) the parent row of each new beam
        state = keras.tree.map_structure(lambda s, rows=rows: ops.take(s, rows, axis=0), state)
        done, lengths, words = (ops.take(x, rows, axis=0) for x in (done, lengths, words))
        tokens = ops.cast(ops.reshape(word, (-1,)), "int32")
        lengths = lengths + ops.cast(ops.logical_not(done), "int32")
        done = ops.logical_or(done, ops.equal(tokens, end_token))
        words = ops.concatenate([words, tokens[:, None]], axis=1)
    penalty = ((5.0 + ops.cast(ops.reshape(lengths, (-1, k)), "float32")) / 6.0) ** length_penalty
    scores, order = ops.top_k(scores / penalty, k)  # (n, k), best first
    ranked = ops.take_along_axis(ops.reshape(words, (-1, k, max_length)), order[:, :, None], axis=1)
    return (ranked, scores) if return_all else ranked[:, 0]
