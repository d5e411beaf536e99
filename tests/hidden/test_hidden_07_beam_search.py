"""Hidden tests, lesson 07: beam search on random models, one image, k > V, one step, any logits dtype.

Scenarios (run the student's code, return plain values) sit right above their tests (the judges). The fake is a
second-order Markov model whose state is the words fed so far (it grows each step, as a KV cache); the judge's
references are a beam search over Python lists and a brute force over every caption.
"""

import itertools

import numpy as np
import pytest
from keras import ops

from kcaption.decoding import beam_search

NULL, START, END = 0, 1, 2


def history_fake(A, B, C, dtype):
    """logits = A[word fed] + B[word fed before it] + C[step], in `dtype`; the state is the words fed so far."""
    A, B, C = (ops.convert_to_tensor(x, "float32") for x in (A, B, C))

    def next_logits(tokens, history):
        t = ops.shape(history)[1] - 1
        logits = ops.take(A, tokens, axis=0) + ops.take(B, history[:, -1], axis=0) + ops.take(C, t, axis=0)
        return ops.cast(logits, dtype), ops.concatenate([history, ops.expand_dims(ops.cast(tokens, "int32"), 1)], 1)

    return next_logits


def beam(model, start_tokens, beam_width, max_length, length_penalty, dtype="float32"):
    """Scenario: beam_search (return_all, then the best only) over the fake, eager."""
    next_logits = history_fake(*model, dtype)
    history = ops.zeros((len(start_tokens), 1), "int32")
    tokens, scores = beam_search(next_logits, history, start_tokens, beam_width, max_length, length_penalty,
                                 return_all=True)
    best = beam_search(next_logits, history, start_tokens, beam_width, max_length, length_penalty)
    return tokens, scores, best


def log_softmax(z):
    z = np.asarray(z, np.float64) - np.max(z)
    return z - np.log(np.exp(z).sum())


def numpy_logits(model, fed):
    A, B, C = model
    return A[fed[-1]] + B[fed[-2] if len(fed) > 1 else NULL] + C[len(fed) - 1]


def final_score(words, log_p, alpha):
    length = words.index(END) + 1 if END in words else len(words)
    return log_p / ((5 + length) / 6) ** alpha


def numpy_beam_search(model, start, k, max_length, alpha):
    """Beam search over Python lists, finished beams kept; [(score, words)] best first."""
    V = model[0].shape[0]
    beams = [((), 0.0)]
    for _ in range(max_length):
        candidates = []
        for words, log_p in beams:
            if END in words:
                candidates.append((words + (NULL,), log_p))
                continue
            step = log_softmax(numpy_logits(model, [start, *words]))
            candidates += [(words + (w,), log_p + step[w]) for w in range(V)]
        beams = sorted(candidates, key=lambda c: -c[1])[:k]
    return sorted(((final_score(list(w), s, alpha), w) for w, s in beams), key=lambda c: -c[0])


def brute_force(model, start, max_length, alpha):
    V, found = model[0].shape[0], []
    for words in itertools.product(range(V), repeat=max_length):
        length = words.index(END) + 1 if END in words else max_length
        if any(w != NULL for w in words[length:]):
            continue
        log_p = sum(log_softmax(numpy_logits(model, [start, *words[:t]]))[words[t]] for t in range(length))
        found.append((final_score(list(words), log_p, alpha), words))
    return sorted(found, key=lambda c: -c[0])


def random_model(seed, V, max_length, end_bias=0.8):
    rng = np.random.default_rng(seed)
    A = rng.normal(scale=1.5, size=(V, V)).astype("float32")
    A[:, [NULL, START]] -= 2.0
    A[:, END] += end_bias
    return A, rng.normal(size=(V, V)).astype("float32"), rng.normal(size=(max_length, V)).astype("float32")


def check_beams(tokens, scores, best, expected, what):
    """One image's (k, T) beams, (k,) scores and best caption vs [(score, words)]; beams past the reference's are
    impossible ones (score -inf or below -1e8)."""
    tokens, scores = np.asarray(tokens), np.asarray(scores)
    count = min(len(expected), len(tokens))
    got = [tuple(int(w) for w in row) for row in tokens[:count]]
    assert got == [w for _, w in expected[:count]], f"{what}: beams {got}, expected {[w for _, w in expected[:count]]}"
    np.testing.assert_allclose(scores[:count], [s for s, _ in expected[:count]], atol=1e-4,
                               err_msg=f"{what}: the beams' scores, best first.")
    assert np.all(scores[count:] < -1e8), f"{what}: the beams past every possible caption must score -inf."
    assert list(np.asarray(best)) == list(expected[0][1]), f"{what}: the best caption."
    assert np.all(np.diff(scores[:count]) <= 1e-6), f"{what}: return_all's scores must come best first."


@pytest.mark.step("decoding.beam_search")
@pytest.mark.parametrize("seed, V, N, k, max_length, alpha", [
    (10, 5, 1, 2, 5, 0.0), (11, 6, 3, 4, 4, 0.6), (12, 7, 2, 3, 5, 1.5), (13, 4, 4, 2, 6, 1.0), (14, 6, 1, 5, 3, 0.3),
])
def test_random_models_match_a_reference_beam_search(student, seed, V, N, k, max_length, alpha):
    model = random_model(seed, V, max_length)
    start = np.random.default_rng(seed).integers(3, V, size=N).astype("int32")
    start[0] = START
    tokens, scores, best = student.run(beam, model, start, k, max_length, alpha)
    assert np.asarray(tokens).shape == (N, k, max_length) and np.asarray(tokens).dtype == np.int32
    assert np.asarray(best).shape == (N, max_length) and np.asarray(best).dtype == np.int32
    for n in range(N):
        expected = numpy_beam_search(model, int(start[n]), k, max_length, alpha)
        check_beams(tokens[n], scores[n], best[n], expected, f"V={V}, k={k}, T={max_length}, alpha={alpha}, image {n}")


@pytest.mark.step("decoding.beam_search")
def test_one_step_is_the_k_most_likely_first_words(student):
    model = random_model(20, 6, 1)
    tokens, scores, best = student.run(beam, model, np.array([START], "int32"), 3, 1, 0.7)
    log_p = log_softmax(numpy_logits(model, [START]))
    order = np.argsort(-log_p)[:3]
    expected = [(final_score([int(w)], log_p[w], 0.7), (int(w),)) for w in order]
    check_beams(tokens[0], scores[0], best[0], expected, "max_length=1")


@pytest.mark.step("decoding.beam_search")
@pytest.mark.parametrize("max_length", [1, 3])
def test_more_beams_than_words(student, max_length):
    """k = 6 > V = 4: step 0 has only 4 captions (the other beams are impossible, -inf); then the beams fill up."""
    model = random_model(21, 4, max_length)
    tokens, scores, best = student.run(beam, model, np.array([START, 3], "int32"), 6, max_length, 0.5)
    for n, s in enumerate([START, 3]):
        check_beams(tokens[n], scores[n], best[n], numpy_beam_search(model, s, 6, max_length, 0.5),
                    f"k=6 > V=4, max_length={max_length}, image {n}")


@pytest.mark.step("decoding.beam_search")
@pytest.mark.parametrize("alpha", [-0.5, 2.0])
def test_exhaustive_search_with_any_length_penalty(student, alpha):
    """k covers every caption of 4 words over 4 ids (3**4 + 1 + 3 + 9 + 27 = 121): the brute force's ranking."""
    model = random_model(22, 4, 4, end_bias=1.0)
    tokens, scores, best = student.run(beam, model, np.array([START], "int32"), 121, 4, alpha)
    check_beams(tokens[0], scores[0], best[0], brute_force(model, START, 4, alpha), f"exhaustive, alpha={alpha}")


@pytest.mark.step("decoding.beam_search")
@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_any_logits_dtype_and_int64_start_tokens(student, dtype):
    """float16 logits (mixed precision) and float64 ones: the same search, int32 captions, float32 scores."""
    model = random_model(23, 5, 4)
    model = tuple(np.round(x * 8) / 8 for x in model)  # exact in float16
    start = np.array([START, 4], "int64")
    tokens, scores, best = student.run(beam, model, start, 3, 4, 0.4, dtype)
    assert np.asarray(scores).dtype == np.float32, f"scores are float32, got {np.asarray(scores).dtype}"
    for n in range(2):
        check_beams(tokens[n], scores[n], best[n], numpy_beam_search(model, int(start[n]), 3, 4, 0.4),
                    f"{dtype} logits, image {n}")


def beam_bad_arguments(beam_width, max_length):
    """Scenario: beam_search with bad arguments."""
    beam_search(lambda tokens, state: (ops.one_hot(tokens, 4), state), [], np.ones(1, "int32"), beam_width, max_length)


@pytest.mark.step("decoding.beam_search", kit_code=True)
@pytest.mark.parametrize("beam_width, max_length, bad", [(-1, 3, "beam_width=-1"), ("3", 3, "beam_width='3'"),
                                                          (2, -2, "max_length=-2"), (2, 1.5, "max_length=1.5")])
def test_other_bad_arguments_are_named_too(student, beam_width, max_length, bad):
    with pytest.raises(ValueError, match=f"Received: {bad}"):
        student.run(beam_bad_arguments, beam_width, max_length)
