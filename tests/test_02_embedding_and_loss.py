"""Lesson 02: word embeddings and the temporal softmax loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcaption.layers import WordEmbedding
from kcaption.losses import TemporalSoftmaxLoss, temporal_softmax_loss
from kcaption.testing import assert_close, check_layer_contract

V, D = 7, 3
IDS = np.array([[0, 3, 1, 2], [2, 1, 0, 6]])
W = np.linspace(-1.0, 1.0, V * D).reshape(V, D).astype("float32")


def embedding(**kwargs):
    layer = WordEmbedding(V, D, **kwargs)
    layer.build(IDS.shape)
    layer.set_weights([W.astype(layer.variable_dtype)])
    return layer


# --- WordEmbedding ---------------------------------------------------------------


@pytest.mark.step("embedding.forward")
def test_embedding_gathers_rows():
    out = embedding()(IDS)
    assert_close(out, W[IDS], atol=0, what="WordEmbedding output",
                 hint="out[n, t] must be row IDS[n, t] of W_embed.")


@pytest.mark.step("embedding.forward")
def test_embedding_matches_keras_embedding():
    reference = keras.layers.Embedding(V, D)
    reference.build(IDS.shape)
    reference.set_weights([W])
    assert_close(embedding()(IDS), reference(IDS), atol=0, what="WordEmbedding vs keras.layers.Embedding")


@pytest.mark.step("embedding.forward")
def test_embedding_accepts_int64_and_float_ids():
    for ids in (IDS.astype("int64"), IDS.astype("float32")):
        assert_close(embedding()(ids), W[IDS], atol=0, what=f"WordEmbedding on {ids.dtype} ids",
                     hint="cast the ids to int32 before gathering.")


@pytest.mark.step("embedding.forward")
def test_embedding_layer_contract():
    check_layer_contract(lambda: WordEmbedding(V, D), IDS, (2, 4, D))


@pytest.mark.step("embedding.forward")
def test_embedding_mask_zero_reaches_the_next_layer():
    inputs = keras.Input((4,), dtype="int32")
    x = WordEmbedding(V, D, mask_zero=True)(inputs)
    outputs = keras.layers.SimpleRNN(2, return_sequences=True)(x)
    model = keras.Model(inputs, outputs)
    out = np.asarray(model(IDS))
    # A masked step repeats the previous output: row 1's third id is <NULL>.
    assert_close(out[1, 2], out[1, 1], atol=0, what="RNN output at a <NULL> step",
                 hint="with mask_zero=True the RNN must skip <NULL> steps.")


def test_embedding_initialisation_and_weights():
    layer = WordEmbedding(1000, 50)
    layer.build((None,))
    (w,) = layer.weights
    assert w.name == "W_embed" and tuple(w.shape) == (1000, 50)
    std = float(np.std(np.asarray(w)))
    assert abs(std - 1000**-0.5) < 0.1 * 1000**-0.5, f"W_embed should be randn(V, D)/sqrt(V): std {std:.4f}"


def test_embedding_mask():
    mask = WordEmbedding(V, D, mask_zero=True).compute_mask(IDS)
    np.testing.assert_array_equal(np.asarray(mask), IDS != 0)
    assert WordEmbedding(V, D).compute_mask(IDS) is None


def test_embedding_bad_arguments():
    with pytest.raises(ValueError, match="Received: vocab_size=0"):
        WordEmbedding(0, 3)
    with pytest.raises(ValueError, match="Received: embed_dim=-2"):
        WordEmbedding(5, -2)


# --- temporal softmax loss -------------------------------------------------------

N, T, VOCAB = 3, 4, 6
LOGITS = np.linspace(-2.0, 3.0, N * T * VOCAB).reshape(N, T, VOCAB).astype("float32")[:, :, ::-1].copy()
TARGETS = np.array([[1, 4, 2, 0], [3, 5, 0, 0], [2, 0, 0, 0]])


def keras_reference(logits, targets):
    """Keras's sparse cross-entropy, summed over the unignored positions, divided by N."""
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0, reduction="sum")
    return float(ce(targets, logits)) / len(targets)


@pytest.mark.step("loss.temporal_softmax")
def test_loss_matches_keras_sparse_crossentropy():
    loss = temporal_softmax_loss(LOGITS, TARGETS)
    assert_close(loss, keras_reference(LOGITS, TARGETS), atol=1e-5, what="temporal_softmax_loss",
                 hint="sum over time, average over the batch (divide by N), skip targets equal to 0.")


@pytest.mark.step("loss.temporal_softmax")
def test_loss_sanity_ladder_is_log_v():
    """With all-zero logits every word has probability 1/V: each counted step costs log V."""
    for n, t, v in [(1, 1, 2), (10, 5, 10), (100, 15, 1000)]:
        targets = np.ones((n, t), dtype="int32")
        targets[:, t // 2 + 1:] = 0  # the last steps are padding
        counted = (targets != 0).sum() / n
        loss = temporal_softmax_loss(np.zeros((n, t, v), "float32"), targets)
        assert_close(loss, counted * np.log(v), atol=1e-4, what=f"loss for N={n}, T={t}, V={v}",
                     hint="expected (unmasked steps per caption) x log V.")


@pytest.mark.step("loss.temporal_softmax")
def test_loss_all_ignored_is_zero_not_nan():
    loss = float(temporal_softmax_loss(LOGITS, np.zeros_like(TARGETS)))
    assert loss == 0.0, f"a batch whose every target is <NULL> must give 0, got {loss}."


@pytest.mark.step("loss.temporal_softmax")
def test_loss_gradient_is_softmax_minus_onehot():
    logits = tf.constant(LOGITS.astype("float64"))
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = temporal_softmax_loss(logits, TARGETS)
    grad = tape.gradient(loss, logits).numpy()
    z = LOGITS.astype("float64")
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    expected = (probs - np.eye(VOCAB)[TARGETS]) * (TARGETS != 0)[..., None] / N
    assert_close(grad, expected, atol=1e-6, what="d loss / d logits",
                 hint="ignored positions must get zero gradient.")


@pytest.mark.step("loss.temporal_softmax")
def test_loss_as_keras_loss_in_compile():
    inputs = keras.Input((T,), dtype="int32")
    model = keras.Model(inputs, keras.layers.Dense(VOCAB)(keras.layers.Embedding(VOCAB, 4)(inputs)))
    model.compile(optimizer="sgd", loss=TemporalSoftmaxLoss())
    got = model.evaluate(TARGETS, TARGETS, verbose=0)
    expected = keras_reference(model.predict(TARGETS, verbose=0), TARGETS)
    assert_close(got, expected, atol=1e-4, what="TemporalSoftmaxLoss in model.evaluate")


def test_loss_class_config_round_trip():
    loss = TemporalSoftmaxLoss(ignore_index=5)
    assert TemporalSoftmaxLoss.from_config(loss.get_config()).ignore_index == 5
