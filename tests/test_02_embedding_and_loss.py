"""Lesson 02: word embeddings and the temporal softmax loss.

A graded test is a scenario (a plain function that runs the student's code on
the arguments it gets and returns plain values) and a judge (the test: inputs,
expected values, verdict); see kcaption/grading/sandbox.py.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcaption import mistakes
from kcaption.layers import WordEmbedding
from kcaption.losses import TemporalSoftmaxLoss, temporal_softmax_loss
from kcaption.testing import (
    assert_close,
    assert_layer_contract,
    layer_contract_report,
    numpy_temporal_softmax_loss,
)

V, D = 7, 3
IDS = np.array([[0, 3, 1, 2], [2, 1, 0, 6]])
W = np.linspace(-1.0, 1.0, V * D).reshape(V, D).astype("float32")


def linspace(shape, low, high, dtype="float32"):
    return np.linspace(low, high, int(np.prod(shape))).reshape(shape).astype(dtype)


# --- WordEmbedding ---------------------------------------------------------------


def embedding_forward(ids, weights, dtype=None):
    """Scenario: a WordEmbedding holding `weights` (V, D) looks up `ids`."""
    layer = WordEmbedding(*weights.shape, dtype=dtype)
    layer.build(ids.shape)
    layer.set_weights([weights.astype(layer.variable_dtype)])
    return layer(ids)


@pytest.mark.step("embedding.forward")
def test_embedding_gathers_rows(student):
    out = student.run(embedding_forward, IDS, W)
    assert_close(out, W[IDS], atol=0, what="WordEmbedding output", mistakes=mistakes.embedding_forward(W, IDS),
                 hint="out[n, t] must be row IDS[n, t] of W_embed.")


@pytest.mark.step("embedding.forward")
def test_embedding_matches_keras_embedding(student):
    reference = keras.layers.Embedding(V, D)
    reference.build(IDS.shape)
    reference.set_weights([W])
    assert_close(student.run(embedding_forward, IDS, W), reference(IDS), atol=0,
                 what="WordEmbedding vs keras.layers.Embedding", mistakes=mistakes.embedding_forward(W, IDS))


@pytest.mark.step("embedding.forward")
def test_embedding_accepts_int64_and_float_ids(student):
    for ids in (IDS.astype("int64"), IDS.astype("float32")):
        assert_close(student.run(embedding_forward, ids, W), W[IDS], atol=0, what=f"WordEmbedding on {ids.dtype} ids",
                     mistakes=mistakes.embedding_forward(W, IDS), hint="the same ids give the same rows, whatever their dtype.")


@pytest.mark.step("embedding.forward")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_output_has_the_layer_dtype(student, dtype):
    weights = linspace((V, D), -1.0, 1.0, dtype)  # in float64, most of these are not float32 numbers
    out = student.run(embedding_forward, IDS, weights, dtype=dtype)
    assert out.dtype == dtype, (
        f"WordEmbedding(dtype={dtype!r}) returned {out.dtype} vectors; expected {dtype}: gather the rows "
        "of W_embed as they are, without casting them."
    )
    assert_close(out, weights[IDS], atol=0, rtol=0, what=f"WordEmbedding output under dtype={dtype!r}",
                 mistakes=mistakes.embedding_forward(weights, IDS), hint="the rows must come out exactly as stored.")


def embedding_contract(ids, weights):
    """Scenario: the layer-contract run of a fresh WordEmbedding, with the given weights."""
    return layer_contract_report(lambda: WordEmbedding(*weights[0].shape), ids, weights=weights)


@pytest.mark.step("embedding.forward")
def test_embedding_layer_contract(student):
    report = student.run(embedding_contract, IDS, [W])
    assert_layer_contract(report, (2, 4, D))
    assert_close(report["output"], W[IDS], atol=0, what="WordEmbedding output", mistakes=mistakes.embedding_forward(W, IDS),
                 hint="out[n, t] must be row IDS[n, t] of W_embed.")


def embedding_then_rnn(ids, weights):
    """Scenario: WordEmbedding(mask_zero=True) feeding a SimpleRNN, with the given weights."""
    inputs = keras.Input((ids.shape[1],), dtype="int32")
    x = WordEmbedding(*weights[0].shape, mask_zero=True)(inputs)
    outputs = keras.layers.SimpleRNN(weights[2].shape[0], return_sequences=True)(x)
    model = keras.Model(inputs, outputs)
    model.set_weights(weights)
    return model(ids)


@pytest.mark.step("embedding.forward")
def test_embedding_mask_zero_reaches_the_next_layer(student):
    weights = [W, linspace((D, 2), -0.6, 0.8), linspace((2, 2), -0.5, 0.4), linspace((2,), -0.1, 0.2)]
    out = student.run(embedding_then_rnn, IDS, weights)
    # A masked step repeats the previous output: row 1's third id is <NULL>.
    assert_close(out[1, 2], out[1, 1], atol=0, what="RNN output at a <NULL> step",
                 hint="with mask_zero=True the RNN must skip <NULL> steps.")
    inputs = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(V, D, mask_zero=True)(inputs)
    reference = keras.Model(inputs, keras.layers.SimpleRNN(2, return_sequences=True)(x))
    reference.set_weights(weights)
    assert_close(out, reference(IDS), atol=1e-6,
                 what="WordEmbedding(mask_zero=True) + SimpleRNN vs keras.layers.Embedding(mask_zero=True) + SimpleRNN")


def embedding_initial_weights(vocab_size, embed_dim):
    """Scenario: the names and values of a freshly built WordEmbedding's weights."""
    layer = WordEmbedding(vocab_size, embed_dim)
    layer.build((None,))
    return [w.name for w in layer.weights], [keras.ops.convert_to_numpy(w) for w in layer.weights]


@pytest.mark.step("embedding.forward", kit_code=True)
def test_embedding_initialisation_and_weights(student):
    names, values = student.run(embedding_initial_weights, 1000, 50)
    (name,), (w,) = names, values
    assert name == "W_embed" and tuple(w.shape) == (1000, 50)
    std = float(np.std(w))
    assert abs(std - 1000**-0.5) < 0.1 * 1000**-0.5, f"W_embed should be randn(V, D)/sqrt(V): std {std:.4f}"


def embedding_mask(ids, vocab_size, embed_dim, mask_zero):
    """Scenario: WordEmbedding(..., mask_zero).compute_mask(ids)."""
    return WordEmbedding(vocab_size, embed_dim, mask_zero=mask_zero).compute_mask(ids)


@pytest.mark.step("embedding.forward", kit_code=True)
def test_embedding_mask(student):
    mask = student.run(embedding_mask, IDS, V, D, True)
    np.testing.assert_array_equal(np.asarray(mask), IDS != 0)
    assert student.run(embedding_mask, IDS, V, D, False) is None


def make_embedding(vocab_size, embed_dim):
    """Scenario: WordEmbedding(vocab_size, embed_dim), for its argument checks."""
    WordEmbedding(vocab_size, embed_dim)


@pytest.mark.step("embedding.forward", kit_code=True)
def test_embedding_bad_arguments(student):
    with pytest.raises(ValueError, match="Received: vocab_size=0"):
        student.run(make_embedding, 0, 3)
    with pytest.raises(ValueError, match="Received: embed_dim=-2"):
        student.run(make_embedding, 5, -2)


# --- temporal softmax loss -------------------------------------------------------

N, T, VOCAB = 3, 4, 6
LOGITS = np.linspace(-2.0, 3.0, N * T * VOCAB).reshape(N, T, VOCAB).astype("float32")[:, :, ::-1].copy()
TARGETS = np.array([[1, 4, 2, 0], [3, 5, 0, 0], [2, 0, 0, 0]])


def keras_reference(logits, targets):
    """Keras's sparse cross-entropy, summed over the unignored positions, divided by N."""
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0, reduction="sum")
    return float(ce(targets, logits)) / len(targets)


def loss_value(logits, targets, ignore_index=0):
    """Scenario: temporal_softmax_loss(logits, targets, ignore_index)."""
    return temporal_softmax_loss(logits, targets, ignore_index=ignore_index)


@pytest.mark.step("loss.temporal_softmax")
def test_loss_matches_keras_sparse_crossentropy(student):
    loss = student.run(loss_value, LOGITS, TARGETS)
    assert_close(loss, keras_reference(LOGITS, TARGETS), atol=1e-5, what="temporal_softmax_loss",
                 mistakes=mistakes.temporal_softmax_loss(LOGITS, TARGETS),
                 hint="loss = (1/N) sum over n and t of -log p[n, t, target], targets equal to 0 left out.")


@pytest.mark.step("loss.temporal_softmax")
def test_loss_sanity_ladder_is_log_v(student):
    """With all-zero logits every word has probability 1/V: each counted step costs log V."""
    for n, t, v in [(1, 1, 2), (10, 5, 10), (100, 15, 1000)]:
        targets = np.ones((n, t), dtype="int32")
        targets[:, t // 2 + 1:] = 0  # the last steps are padding
        counted = (targets != 0).sum() / n
        logits = np.zeros((n, t, v), "float32")
        loss = student.run(loss_value, logits, targets)
        assert_close(loss, counted * np.log(v), atol=1e-4, what=f"loss for N={n}, T={t}, V={v}",
                     mistakes=mistakes.temporal_softmax_loss(logits, targets),
                     hint="expected (unmasked steps per caption) x log V.")


@pytest.mark.step("loss.temporal_softmax")
def test_loss_all_ignored_is_zero_not_nan(student):
    loss = float(student.run(loss_value, LOGITS, np.zeros_like(TARGETS)))
    assert loss == 0.0, f"a batch whose every target is <NULL> must give 0, got {loss}."


@pytest.mark.step("loss.temporal_softmax")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loss_has_the_logits_dtype(student, dtype):
    loss = student.run(loss_value, LOGITS.astype(dtype), TARGETS)
    assert np.asarray(loss).dtype == dtype, (
        f"{dtype} logits gave a {np.asarray(loss).dtype} loss; expected {dtype}: compute in the logits' "
        "dtype (only float16 logits are cast up, to float32)."
    )
    tolerance = 1e-10 if dtype == "float64" else 1e-5
    assert_close(loss, numpy_temporal_softmax_loss(LOGITS, TARGETS), atol=tolerance, rtol=tolerance,
                 what=f"temporal_softmax_loss on {dtype} logits", mistakes=mistakes.temporal_softmax_loss(LOGITS, TARGETS),
                 hint=f"{dtype} logits: the loss is computed in {dtype}.")


def loss_gradient(logits, targets):
    """Scenario: d temporal_softmax_loss / d logits."""
    logits = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = temporal_softmax_loss(logits, targets)
    return tape.gradient(loss, logits)


@pytest.mark.step("loss.temporal_softmax")
def test_loss_gradient_is_softmax_minus_onehot(student):
    grad = student.run(loss_gradient, LOGITS.astype("float64"), TARGETS)
    z = LOGITS.astype("float64")
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    expected = (probs - np.eye(VOCAB)[TARGETS]) * (TARGETS != 0)[..., None] / N
    assert_close(grad, expected, atol=1e-6, what="d loss / d logits", masked=(TARGETS == 0)[..., None],
                 hint="positions whose target is <NULL> get zero gradient.")


def loss_in_compile(targets, weights):
    """Scenario: model.evaluate of Embedding -> Dense (the given weights), compiled with TemporalSoftmaxLoss."""
    inputs = keras.Input((targets.shape[1],), dtype="int32")
    x = keras.layers.Embedding(*weights[0].shape)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(weights[1].shape[1])(x))
    model.set_weights(weights)
    model.compile(optimizer="sgd", loss=TemporalSoftmaxLoss())
    return model.evaluate(targets, targets, verbose=0)


@pytest.mark.step("loss.temporal_softmax")
def test_loss_as_keras_loss_in_compile(student):
    weights = [linspace((VOCAB, 4), -1.0, 1.0), linspace((4, VOCAB), -0.8, 1.2), linspace((VOCAB,), -0.3, 0.3)]
    got = student.run(loss_in_compile, TARGETS, weights)
    logits = weights[0][TARGETS] @ weights[1] + weights[2]
    expected = keras_reference(logits, TARGETS)
    assert_close(got, expected, atol=1e-4, what="TemporalSoftmaxLoss in model.evaluate")


def loss_config_round_trip(ignore_index):
    """Scenario: TemporalSoftmaxLoss(ignore_index) through get_config / from_config."""
    loss = TemporalSoftmaxLoss(ignore_index=ignore_index)
    return TemporalSoftmaxLoss.from_config(loss.get_config()).ignore_index


@pytest.mark.step("loss.temporal_softmax", kit_code=True)
def test_loss_class_config_round_trip(student):
    assert student.run(loss_config_round_trip, 5) == 5
