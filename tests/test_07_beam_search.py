"""Lesson 07: beam search over the "next logits" contract.

The fakes are tiny models whose next-word logits are known (a vocabulary of 5
ids: 0 <NULL>, 1 <START>, 2 <END>, 3 and 4 two words). The judge holds the
same model in NumPy, as a function of the words fed so far, and two references
that share no code with the step: a brute-force search over every caption, and
a beam search written over Python lists (`numpy_beam_search`).
"""

import itertools

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kcaption import mistakes
from kcaption.decoding import beam_search
from kcaption.testing import assert_close

NULL, START, END = 0, 1, 2
V = 5


# --- the fake models: the scenario's side (keras.ops) ------------------------------


def history_fake(A, B, C):
    """logits = A[word fed] + B[word fed one step before] + C[step]. The state is every word fed so far, (N, t+1)
    and one longer at each step (as the Transformer's KV cache), and the word before is known only from it: a
    search that does not reorder the state by the chosen beams scores the wrong captions."""
    A, B, C = (ops.convert_to_tensor(x, "float32") for x in (A, B, C))

    def next_logits(tokens, history):
        t = ops.shape(history)[1] - 1
        logits = ops.take(A, tokens, axis=0) + ops.take(B, history[:, -1], axis=0) + ops.take(C, t, axis=0)
        return logits, ops.concatenate([history, ops.expand_dims(tokens, 1)], axis=1)

    return next_logits


def recurrent_fake(A, W):
    """A fixed-size list state [h] (as the RNN captioners'): h = 0.5 h + one_hot(word fed); logits = A[word] + h W."""
    A, W = ops.convert_to_tensor(A, "float32"), ops.convert_to_tensor(W, "float32")

    def next_logits(tokens, state):
        (h,) = state
        h = 0.5 * h + ops.one_hot(tokens, V)
        return ops.take(A, tokens, axis=0) + ops.matmul(h, W), [h]

    return next_logits


def fake_and_state(model, start_tokens):
    kind, *tables = model
    if kind == "history":
        return history_fake(*tables), ops.zeros((ops.shape(start_tokens)[0], 1), "int32")
    return recurrent_fake(*tables), [ops.zeros((ops.shape(start_tokens)[0], V))]


def beam(model, start_tokens, beam_width, max_length, length_penalty=0.0, return_all=False):
    """Scenario: beam_search over a fake model (eager)."""
    next_logits, state = fake_and_state(model, start_tokens)
    return beam_search(next_logits, state, start_tokens, beam_width, max_length, length_penalty,
                       return_all=return_all)


def beam_compiled(model, batches, beam_width, max_length, length_penalty):
    """Scenario: beam_search inside one tf.function(reduce_retracing=True), as Captioner.sample compiles greedy
    search: the second batch size retraces with the batch size unknown. Returns (tokens, scores) per batch."""

    @tf.function(reduce_retracing=True)
    def search(start_tokens):
        next_logits, state = fake_and_state(model, start_tokens)
        return beam_search(next_logits, state, start_tokens, beam_width, max_length, length_penalty,
                           return_all=True)

    return [search(tf.constant(start)) for start in batches]


# --- the judge's side: the same models in NumPy, and the references ----------------


def log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def numpy_logits(model, fed):
    """The fake's logits (V,) after the words `fed` so far ([start, y_0, ..., y_t-1])."""
    kind, *tables = model
    if kind == "history":
        A, B, C = tables
        return A[fed[-1]] + B[fed[-2] if len(fed) > 1 else NULL] + C[len(fed) - 1]
    A, W = tables
    h = np.zeros(V)
    for word in fed:
        h = 0.5 * h + np.eye(V)[word]
    return A[fed[-1]] + h @ W


def caption_length(words):
    """|Y|: the words up to and including the first <END> (all of them if none)."""
    return words.index(END) + 1 if END in words else len(words)


def penalty(words, alpha):
    return ((5 + caption_length(list(words))) / 6) ** alpha


def brute_force(model, start, max_length, alpha=0.0):
    """Every caption (<NULL> after the first <END>, anything before it), best first: [(score, words)]."""
    found = []
    for words in itertools.product(range(V), repeat=max_length):
        length = caption_length(list(words))
        if any(w != NULL for w in words[length:]):
            continue
        log_p = sum(log_softmax(numpy_logits(model, [start, *words[:t]]))[words[t]] for t in range(length))
        found.append((log_p / penalty(words, alpha), words))
    return sorted(found, key=lambda c: -c[0])


def numpy_beam_search(model, start, beam_width, max_length, alpha=0.0):
    """Beam search over Python lists: k beams, finished ones kept as they are; GNMT's penalty on the final ranking
    only. Returns [(score, words)] best first (fewer than k when there are fewer captions)."""
    beams = [((), 0.0)]
    for _ in range(max_length):
        candidates = []
        for words, log_p in beams:
            if END in words:
                candidates.append((words + (NULL,), log_p))
                continue
            step = log_softmax(numpy_logits(model, [start, *words]))
            candidates += [(words + (w,), log_p + step[w]) for w in range(V)]
        beams = sorted(candidates, key=lambda c: -c[1])[:beam_width]
    return sorted(((log_p / penalty(words, alpha), words) for words, log_p in beams), key=lambda c: -c[0])


def numpy_greedy_search(model, start, max_length):
    words = []
    while len(words) < max_length and END not in words:
        words.append(int(np.argmax(numpy_logits(model, [start, *words]))))
    return words + [NULL] * (max_length - len(words))


def random_model(seed, kind="history", end_bias=0.0):
    rng = np.random.default_rng(seed)
    A = rng.normal(scale=1.5, size=(V, V)).astype("float32")
    A[:, [NULL, START]] -= 2.0  # rarely a word
    A[:, END] += end_bias
    if kind == "recurrent":
        return ("recurrent", A, rng.normal(size=(V, V)).astype("float32"))
    return ("history", A, rng.normal(size=(V, V)).astype("float32"), rng.normal(size=(8, V)).astype("float32"))


def assert_beams(tokens, scores, expected, what):
    """The k beams of one image (tokens (k, T), scores (k,)) against a reference's [(score, words)], best first."""
    expected = expected[: len(tokens)]
    got = [tuple(int(w) for w in row) for row in np.asarray(tokens)[: len(expected)]]
    assert got == [words for _, words in expected], f"{what}: the beams, best first:\n{got}\nexpected\n" + str(
        [words for _, words in expected])
    np.testing.assert_allclose(np.asarray(scores)[: len(expected)], [s for s, _ in expected], atol=1e-4,
                               err_msg=f"{what}: the beams' scores (log P(Y) / lp(Y)), best first.")


def assert_best(best, model, start, beam_width, max_length, alpha, expected, what):
    """The best captions (N, T) against the reference's, naming the known mistake that gives what came out."""
    hints = mistakes.beam_search(lambda fed: numpy_logits(model, fed), start, beam_width, max_length, alpha)
    assert_close(np.asarray(best), np.asarray(expected), atol=0, rtol=0, what=f"{what}: the best captions",
                 mistakes=hints)


def two_step_counter_example():
    """Greedy is not optimal: after <START>, word 3 (p = 0.5) beats word 4 (p = 0.4), but after 3 every word is
    about as likely (p <= 0.25) while after 4 <END> has p = 0.9: P(4 <END>) = 0.36 > P(3 x) <= 0.125."""
    A = np.full((V, V), -20.0, "float32")
    A[START, [3, 4, END]] = np.log([0.5, 0.4, 0.1])
    A[3] = np.log([0.1, 0.1, 0.25, 0.3, 0.25])
    A[4, [END, 3]] = np.log([0.9, 0.1])
    A[[END, NULL], NULL] = 0.0
    return ("history", A, np.zeros((V, V), "float32"), np.zeros((8, V), "float32"))


# --- the tests -----------------------------------------------------------------------


@pytest.mark.step("decoding.beam_search")
def test_beam_search_beats_greedy_on_the_two_step_counter_example(student):
    model = two_step_counter_example()
    start = np.array([START], "int32")
    greedy = numpy_greedy_search(model, START, 3)
    assert greedy[0] == 3, "the judge's counter-example: greedy takes word 3 first"
    got = np.asarray(student.run(beam, model, start, 2, 3))
    assert_best(got, model, start, 2, 3, 0.0, [[4, END, NULL]], "the two-step counter-example, k=2")
    assert got.tolist() == [[4, END, NULL]], (
        f"beam_search with k=2 gave {got.tolist()}, expected [[4, 2, 0]]: the most likely caption (p = 0.36), which "
        f"greedy search ({greedy}) misses. Keep the 2 best of all 2*V candidates at each step.")
    assert list(brute_force(model, START, 3)[0][1]) == [4, END, NULL]


@pytest.mark.step("decoding.beam_search")
def test_beam_width_1_is_greedy_search(student):
    start = np.array([START, 3, 4], "int32")
    for seed, kind in [(0, "history"), (1, "recurrent")]:
        model = random_model(seed, kind, end_bias=0.5)
        got = np.asarray(student.run(beam, model, start, 1, 5))
        expected = [numpy_greedy_search(model, int(s), 5) for s in start]
        assert_best(got, model, start, 1, 5, 0.0, expected, f"beam_width=1 ({kind} fake)")
        np.testing.assert_array_equal(got, expected, err_msg=f"beam_search with beam_width=1 vs greedy ({kind} fake).")


@pytest.mark.step("decoding.beam_search")
@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_beam_search_matches_a_reference_beam_search(student, alpha):
    """k = 3 of 5 words, 4 steps, a state that must be reordered: the k beams and scores of a list-based search."""
    model, start = random_model(3, end_bias=0.8), np.array([START, 3], "int32")
    tokens, scores = student.run(beam, model, start, 3, 4, alpha, True)
    expected = [numpy_beam_search(model, int(s), 3, 4, alpha)[0][1] for s in start]
    assert_best(np.asarray(tokens)[:, 0], model, start, 3, 4, alpha, expected, f"k=3, length_penalty={alpha}")
    for n in range(2):
        expected = numpy_beam_search(model, int(start[n]), 3, 4, alpha)
        assert_beams(tokens[n], scores[n], expected, f"image {n}, length_penalty={alpha}")
    best = np.asarray(student.run(beam, model, start, 3, 4, alpha))
    np.testing.assert_array_equal(best, np.asarray(tokens)[:, 0], err_msg="the best caption is return_all's first.")


@pytest.mark.step("decoding.beam_search")
def test_length_penalty_picks_the_longer_caption(student):
    """<END> at once (p = 0.5) vs 3 4 <END> (p = 0.45 * 0.99 * 0.99): log P prefers the first, log P / lp with
    alpha = 1 the second (-0.693 / 1 < -0.819 / 1.333)."""
    A = np.full((V, V), -20.0, "float32")
    A[START, [END, 3, 4]] = np.log([0.5, 0.45, 0.05])
    A[3, 4] = A[4, END] = 0.0  # then almost certain (p = 0.99)
    A[3, END] = A[4, 3] = np.log(0.01)
    A[[END, NULL], NULL] = 0.0
    model = ("history", A, np.zeros((V, V), "float32"), np.zeros((8, V), "float32"))
    start = np.array([START], "int32")
    short = np.asarray(student.run(beam, model, start, 2, 4, 0.0))
    long = np.asarray(student.run(beam, model, start, 2, 4, 1.0))
    assert_best(short, model, start, 2, 4, 0.0, [[END, NULL, NULL, NULL]], "length_penalty=0")
    assert_best(long, model, start, 2, 4, 1.0, [[3, 4, END, NULL]], "length_penalty=1")
    assert short.tolist() == [[END, NULL, NULL, NULL]], f"length_penalty=0 ranks by log P: got {short.tolist()}"
    assert long.tolist() == [[3, 4, END, NULL]], (
        f"length_penalty=1 ranks by log P / ((5 + |Y|) / 6), |Y| counting <END>: got {long.tolist()}")
    for alpha in (0.0, 1.0):
        assert list(brute_force(model, START, 4, alpha)[0][1]) == ([END, 0, 0, 0] if alpha == 0 else [3, 4, END, 0])


@pytest.mark.step("decoding.beam_search")
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_an_exhaustive_beam_is_brute_force(student, alpha):
    """k = 85 keeps every caption of 3 words over 5 ids (4**3 without <END>, 1 + 4 + 16 with it): all 85, their
    scores and their order are the brute force's. A finished beam is never extended (its score stays)."""
    model, start = random_model(2, end_bias=1.0), np.array([START, 4], "int32")
    tokens, scores = student.run(beam, model, start, 85, 3, alpha, True)
    assert np.asarray(tokens).shape == (2, 85, 3) and np.asarray(scores).shape == (2, 85)
    for n in range(2):
        expected = brute_force(model, int(start[n]), 3, alpha)
        assert len(expected) == 85
        assert_beams(tokens[n], scores[n], expected, f"image {n}, length_penalty={alpha}")


@pytest.mark.step("decoding.beam_search")
def test_beam_search_agrees_with_keras_hub_beam_sampler(student):
    """keras_hub.samplers.BeamSampler, given the same model through its `next(prompt, cache, index)`.

    Where the conventions differ: BeamSampler fills a fixed-length prompt (here <START> then max_length slots),
    stops only when every row has a stop token and extends finished beams with the model's own next words, has no
    length penalty, and starts beams 1..k-1 at -1e9. So the fake's rows after <END> and <NULL> give <NULL> with
    probability 1 (log 0, as our finished beams): then both search the same captions, and return the same k beams
    and log-probabilities (length_penalty=0)."""
    model = random_model(4, end_bias=0.6)
    A = model[1].copy()
    A[[END, NULL]] = -1e9
    A[[END, NULL], NULL] = 0.0
    model = ("history", A, np.zeros((V, V), "float32"), np.zeros((8, V), "float32"))
    start, k, max_length = np.array([START, 3, 4], "int32"), 3, 5
    tokens, scores = student.run(beam, model, start, k, max_length, 0.0, True)

    table = tf.constant(A)

    def next(prompt, cache, index):
        return tf.gather(table, prompt[:, index - 1]), None, cache

    prompt = np.zeros((3, 1 + max_length), "int32")
    prompt[:, 0] = start
    sampler = keras_hub.samplers.BeamSampler(num_beams=k, return_all_beams=True)
    hub_tokens, hub_scores = sampler(next, tf.constant(prompt), index=1)
    np.testing.assert_array_equal(np.asarray(tokens), np.asarray(hub_tokens)[:, :, 1:],
                                  err_msg="the k beams (best first) vs keras_hub's BeamSampler.")
    np.testing.assert_allclose(scores, hub_scores, atol=1e-4, err_msg="the beams' log-probabilities vs BeamSampler.")


@pytest.mark.step("decoding.beam_search")
def test_every_beam_ends_with_end_then_null_padding(student):
    model, start = random_model(5, end_bias=1.5), np.array([START, 3, 4, START], "int32")
    tokens, _ = student.run(beam, model, start, 4, 6, 0.0, True)
    tokens = np.asarray(tokens)
    assert tokens.dtype == np.int32 and tokens.shape == (4, 4, 6)
    assert any(END in row for row in tokens.reshape(-1, 6).tolist())
    for row in tokens.reshape(-1, 6).tolist():
        if END in row:
            assert row[row.index(END) + 1:] == [NULL] * (5 - row.index(END)), (
                f"a beam after <END> must be <NULL> padding: got {row}")


@pytest.mark.step("decoding.beam_search")
@pytest.mark.parametrize("kind", ["history", "recurrent"])
def test_beam_search_compiled_with_every_kind_of_state(student, kind):
    """A state that grows each step (a KV cache) and a fixed-size list state, in one tf.function for two batch
    sizes (the second traced with its batch size unknown)."""
    model = random_model(6, kind, end_bias=0.8)
    batches = [np.array([START, 3, 4], "int32"), np.array([4, START], "int32")]
    try:
        results = student.run(beam_compiled, model, batches, 3, 4, 0.5)
    except Exception as error:
        raise AssertionError(
            "beam_search failed inside tf.function(reduce_retracing=True); the second batch is traced with its batch "
            "size unknown (None). Use a Python for loop, ops.shape() and keras.ops, not .shape[0] or len(). "
            f"The error: {error}") from error
    for start, (tokens, scores) in zip(batches, results):
        for n, s in enumerate(start):
            assert_beams(tokens[n], scores[n], numpy_beam_search(model, int(s), 3, 4, 0.5),
                         f"compiled, {kind} state, batch of {len(start)}, image {n}")


def beam_bad_arguments(beam_width, max_length):
    """Scenario: beam_search with bad arguments (the kit checks them before the search runs)."""
    beam_search(lambda tokens, state: (ops.one_hot(tokens, V), state), [], np.ones(2, "int32"), beam_width, max_length)


@pytest.mark.step("decoding.beam_search", kit_code=True)
@pytest.mark.parametrize("beam_width, max_length, bad", [(0, 3, "beam_width=0"), (2.0, 3, "beam_width=2.0"),
                                                          (2, 0, "max_length=0")])
def test_bad_arguments_are_named(student, beam_width, max_length, bad):
    with pytest.raises(ValueError, match=f"Received: {bad}"):
        student.run(beam_bad_arguments, beam_width, max_length)
