"""Lesson 07: temperature, top-k and top-p sampling (kit code over your greedy_search).

`sample_search` is greedy search over logits that are filtered, divided by the temperature and given Gumbel noise,
so the tests that run it grade greedy_search's use as kit code (`kit_code=True`); the test of the filtering alone
runs no graded step. Frequencies are counted over many rows of one seeded batch: deterministic, and within a
stated number of standard deviations of the reference.
"""

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kcaption.decoding import filter_logits, greedy_search, sample_search

NULL, START, END = 0, 1, 2
LOGITS = np.log(np.array([0.04, 0.11, 0.3, 0.26, 0.19, 0.1], "float32"))  # one step's next-word logits, V = 6
DRAWS = 20000


def softmax(z):
    z = np.exp(np.asarray(z, np.float64) - np.max(z))
    return z / z.sum()


def close_frequencies(counts, probs, what, sigmas=5.0):
    """Counted frequencies vs probabilities: every word within `sigmas` binomial standard deviations."""
    frequencies = counts / counts.sum()
    tolerance = sigmas * np.sqrt(probs * (1 - probs) / counts.sum()) + 1e-12
    assert np.all(np.abs(frequencies - probs) <= tolerance), (
        f"{what}: frequencies {np.round(frequencies, 4)} vs {np.round(probs, 4)} (within {sigmas} sigmas)")


def markov_fake(table):
    """The next word's logits depend on the word fed: table[word] (V, V); no state."""
    table = ops.convert_to_tensor(table, "float32")
    return lambda tokens, state: (ops.take(table, tokens, axis=0), state)


def first_words(logits, draws, temperature, top_k, top_p, seed):
    """Scenario: the first word of `draws` sampled captions of a one-step model (the same logits for every row)."""
    def next_logits(tokens, state):
        return ops.repeat(ops.convert_to_tensor(logits[None], "float32"), ops.shape(tokens)[0], axis=0), state

    return sample_search(next_logits, [], np.full(draws, START, "int32"), 1, temperature, top_k, top_p, seed)[:, 0]


@pytest.mark.step("captioner.sample", kit_code=True)
@pytest.mark.parametrize("temperature", [1.0, 0.6, 2.0])
def test_frequencies_are_softmax_of_logits_over_temperature(student, temperature):
    words = np.asarray(student.run(first_words, LOGITS, DRAWS, temperature, None, None, 7))
    close_frequencies(np.bincount(words, minlength=6), softmax(LOGITS / temperature),
                      f"sampled first words at temperature {temperature}")


def keras_hub_frequencies(sampler, logits, draws):
    """What a keras_hub sampler draws from softmax(logits), counted over `draws` rows."""
    probs = tf.repeat(tf.nn.softmax(tf.constant(logits[None], "float32")), draws, axis=0)
    return np.bincount(np.asarray(sampler.get_next_token(probs)), minlength=len(logits))


@pytest.mark.parametrize("top_k, top_p", [(3, None), (1, None), (None, 0.7), (None, 0.3), (None, 1.0)])
def test_filtering_keeps_what_keras_hub_samplers_keep(top_k, top_p):
    """filter_logits' distribution vs the frequencies of keras_hub's TopKSampler / TopPSampler (same logits)."""
    sampler = (keras_hub.samplers.TopKSampler(k=top_k, seed=3) if top_k
               else keras_hub.samplers.TopPSampler(p=top_p, seed=3))
    counts = keras_hub_frequencies(sampler, LOGITS, DRAWS)
    filtered = np.asarray(filter_logits(tf.constant(LOGITS[None]), top_k, top_p))[0]
    kept = np.isfinite(filtered)
    np.testing.assert_array_equal(kept, counts > 0, err_msg=f"the words kept (top_k={top_k}, top_p={top_p}).")
    probs = np.zeros(len(LOGITS))
    probs[kept] = softmax(filtered[kept])
    close_frequencies(counts, probs, f"keras_hub's frequencies vs softmax(filter_logits) (top_k={top_k}, top_p={top_p})")


@pytest.mark.step("captioner.sample", kit_code=True)
@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 3, None), (0.8, None, 0.7), (1.5, None, 0.9)])
def test_sampled_frequencies_match_keras_hub_samplers(student, temperature, top_k, top_p):
    """keras_hub applies the temperature first, then top-k or top-p: as sample_search. (With both, TopPSampler's
    nucleus sums the top k's probabilities as they were, sample_search renormalises them first, as Hugging Face's
    TopK then TopP warpers: see the next test.)"""
    words = np.asarray(student.run(first_words, LOGITS, DRAWS, temperature, top_k, top_p, 11))
    sampler = (keras_hub.samplers.TopPSampler(p=top_p, k=top_k, seed=5) if top_p
               else keras_hub.samplers.TopKSampler(k=top_k, seed=5))
    hub = keras_hub_frequencies(sampler, LOGITS / temperature, DRAWS)
    ours = np.bincount(words, minlength=6)
    assert np.array_equal(ours > 0, hub > 0), f"the words drawn: {ours} vs keras_hub's {hub}"
    pooled = (ours + hub) / (2 * DRAWS)
    gap = np.abs(ours - hub) / DRAWS
    assert np.all(gap <= 5 * np.sqrt(2 * pooled * (1 - pooled) / DRAWS) + 1e-12), (
        f"frequencies {ours / DRAWS} vs keras_hub's {hub / DRAWS} (temperature={temperature}, top_k={top_k}, "
        f"top_p={top_p})")


@pytest.mark.step("captioner.sample", kit_code=True)
def test_top_k_then_top_p_of_the_renormalised_top_k(student):
    """T = 1.5, top_k = 4, top_p = 0.8: the 4 best words, renormalised; then the fewest of them reaching 0.8."""
    words = np.asarray(student.run(first_words, LOGITS, DRAWS, 1.5, 4, 0.8, 13))
    probs = softmax(LOGITS / 1.5)
    probs[np.argsort(-probs)[4:]] = 0.0
    probs /= probs.sum()
    ranked = np.argsort(-probs)
    before = np.cumsum(probs[ranked]) - probs[ranked]
    probs[ranked[before >= 0.8]] = 0.0
    close_frequencies(np.bincount(words, minlength=6), probs / probs.sum(), "top_k=4 then top_p=0.8 at T=1.5")


def sampled_and_greedy(table, start_tokens, max_length, temperature, top_k, seed):
    """Scenario: sample_search and greedy_search over a Markov fake."""
    next_logits = markov_fake(table)
    return (sample_search(next_logits, [], start_tokens, max_length, temperature, top_k, seed=seed),
            greedy_search(next_logits, [], start_tokens, max_length))


def markov_table(seed):
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(6, 6)).astype("float32")
    table[:, NULL] -= 3.0
    return table


@pytest.mark.step("captioner.sample", kit_code=True)
@pytest.mark.parametrize("temperature, top_k", [(1.0, 1), (1e-3, None)])
def test_top_1_and_a_cold_temperature_are_greedy(student, temperature, top_k):
    start = np.array([START, 3, 4, 5], "int32")
    sampled, greedy = student.run(sampled_and_greedy, markov_table(1), start, 6, temperature, top_k, 4)
    np.testing.assert_array_equal(sampled, greedy, err_msg=f"temperature={temperature}, top_k={top_k} vs greedy.")


def seeded_samples(table, start_tokens, max_length, seeds):
    """Scenario: sample_search for each seed, eager then in one tf.function taking the seed as a tensor; and how
    many times the compiled function was traced."""
    next_logits = markov_fake(table)
    eager = [sample_search(next_logits, [], start_tokens, max_length, 1.2, seed=s) for s in seeds]
    compiled = tf.function(lambda seed: sample_search(next_logits, [], start_tokens, max_length, 1.2, seed=seed))
    graphs = [compiled(tf.constant(s)) for s in seeds]
    return eager, graphs, compiled.experimental_get_tracing_count()


@pytest.mark.step("captioner.sample", kit_code=True)
def test_the_same_seed_gives_the_same_captions_eager_and_compiled(student):
    start = np.full(8, START, "int32")
    eager, graphs, traces = student.run(seeded_samples, markov_table(2), start, 4, [3, 3, 4])
    np.testing.assert_array_equal(eager[0], eager[1], err_msg="the same seed, eager: the same captions.")
    assert not np.array_equal(eager[0], eager[2]), "different seeds should give different captions"
    for e, g in zip(eager, graphs):
        np.testing.assert_array_equal(e, g, err_msg="the same seed, eager and compiled: the same captions.")
    assert traces == 1, f"a tensor seed should not retrace the compiled sampler: traced {traces} times"
    for row in np.asarray(eager[0]).tolist():
        if END in row:
            assert row[row.index(END) + 1:] == [NULL] * (3 - row.index(END)), f"<NULL> after <END>: {row}"


def unseeded_samples(table, start_tokens, max_length):
    """Scenario: two calls without a seed."""
    next_logits = markov_fake(table)
    return [sample_search(next_logits, [], start_tokens, max_length) for _ in range(2)]


def test_no_seed_draws_a_fresh_one():
    first, second = unseeded_samples(markov_table(3), np.full(8, START, "int32"), 6)
    assert not np.array_equal(first, second), "seed=None should give different captions on each call"


@pytest.mark.parametrize("argument, value, match", [
    ("temperature", 0.0, "temperature=0.0"), ("temperature", -1, "temperature=-1"), ("top_k", 0, "top_k=0"),
    ("top_p", 0.0, "top_p=0.0"), ("top_p", 1.5, "top_p=1.5"), ("max_length", 0, "max_length=0"),
])
def test_bad_arguments_are_named(argument, value, match):
    arguments = {"max_length": 3, argument: value}
    with pytest.raises(ValueError, match=f"Received: {match}"):
        sample_search(markov_fake(markov_table(0)), [], np.ones(2, "int32"), **arguments)
