"""Hidden tests, lesson 02: random shapes, edge cases, dtypes."""

import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest

from kcaption import mistakes
from kcaption.layers import WordEmbedding
from kcaption.losses import TemporalSoftmaxLoss, temporal_softmax_loss
from kcaption.testing import assert_close, numpy_temporal_softmax_loss


def embedding_forward(ids, weights, dtype=None):
    """Scenario: a WordEmbedding holding `weights` (V, D) looks up `ids`."""
    layer = WordEmbedding(*weights.shape, dtype=dtype)
    layer.build(ids.shape)
    layer.set_weights([weights.astype(layer.variable_dtype)])
    return layer(ids)


@pytest.mark.step("embedding.forward")
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (4, 3, 2)])
def test_embedding_random_shapes(student, shape):
    rng = np.random.default_rng(sum(shape))
    V, D = 11, 5
    ids = rng.integers(0, V, size=shape)
    W = rng.normal(size=(V, D)).astype("float32")
    assert_close(student.run(embedding_forward, ids, W), W[ids], atol=0, what=f"WordEmbedding on ids of shape {shape}")


@pytest.mark.step("embedding.forward")
def test_embedding_float64_and_mixed_precision(student):
    ids = np.array([[1, 0, 2]])
    W = np.linspace(-1, 1, 12).reshape(4, 3)
    for dtype, expected_dtype in [("float64", "float64"), ("mixed_float16", "float16")]:
        out = student.run(embedding_forward, ids, W, dtype=dtype)
        assert keras.backend.standardize_dtype(out.dtype) == expected_dtype, f"{dtype}: output dtype {out.dtype}"
        assert_close(np.asarray(out, "float64"), W[ids], atol=1e-3, what=f"WordEmbedding under {dtype}")


@pytest.mark.step("embedding.forward")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(2, 5), (3, 1, 4)])
def test_embedding_keeps_the_layer_dtype_exactly(student, dtype, shape):
    rng = np.random.default_rng(len(shape) * 10 + shape[-1])
    V, D = 9, 6
    ids = rng.integers(0, V, size=shape)
    W = rng.normal(size=(V, D)).astype(dtype)
    out = student.run(embedding_forward, ids, W, dtype=dtype)
    assert out.dtype == dtype, f"WordEmbedding(dtype={dtype!r}): output dtype {out.dtype}, expected {dtype}."
    assert_close(out, W[ids], atol=0, rtol=0, what=f"WordEmbedding under dtype={dtype!r} on ids of shape {shape}",
                 mistakes=mistakes.embedding_forward(W, ids), hint="the rows must come out exactly as stored.")


def embedding_save_load(ids, weights):
    """Scenario: a model of WordEmbedding(mask_zero=True) with `weights`, and the same model after .keras save/load."""
    model = keras.Sequential([keras.Input((ids.shape[1],), dtype="int32"),
                              WordEmbedding(*weights.shape, mask_zero=True)])
    model.set_weights([weights])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
    return loaded(ids), model(ids)


@pytest.mark.step("embedding.forward")
def test_embedding_save_and_load(student):
    ids = np.array([[3, 1, 0]])
    W = np.linspace(-0.9, 0.7, 10).reshape(5, 2).astype("float32")
    reloaded, original = student.run(embedding_save_load, ids, W)
    assert_close(reloaded, original, atol=0, what="WordEmbedding after save/load")
    assert_close(original, W[ids], atol=0, what="WordEmbedding before save/load")


def keras_reference(logits, targets):
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0, reduction="sum")
    return float(ce(targets, logits)) / len(targets)


def loss_value(logits, targets, ignore_index=0):
    """Scenario: temporal_softmax_loss(logits, targets, ignore_index)."""
    return temporal_softmax_loss(logits, targets, ignore_index=ignore_index)


@pytest.mark.step("loss.temporal_softmax")
@pytest.mark.parametrize("N,T,V", [(1, 1, 2), (1, 9, 5), (6, 1, 3), (8, 16, 40)])
def test_loss_random_shapes(student, N, T, V):
    rng = np.random.default_rng(N * 100 + T)
    logits = rng.normal(scale=3.0, size=(N, T, V)).astype("float32")
    targets = rng.integers(0, V, size=(N, T))
    assert_close(student.run(loss_value, logits, targets), keras_reference(logits, targets), atol=1e-4, rtol=1e-5,
                 what=f"loss for N={N}, T={T}, V={V}")


@pytest.mark.step("loss.temporal_softmax")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("N,T,V", [(1, 1, 2), (5, 7, 11), (8, 16, 40)])
def test_loss_dtype_and_float64_precision(student, dtype, N, T, V):
    rng = np.random.default_rng(N * 1000 + T * 10 + V)
    logits = rng.normal(scale=4.0, size=(N, T, V)).astype(dtype)
    targets = rng.integers(0, V, size=(N, T))
    ignore_index = int(targets[0, 0] + 1) % V  # some positions ignored, never all
    loss = student.run(loss_value, logits, targets, ignore_index=ignore_index)
    assert np.asarray(loss).dtype == dtype, f"{dtype} logits gave a {np.asarray(loss).dtype} loss; expected {dtype}."
    tolerance = 1e-10 if dtype == "float64" else 1e-5
    assert_close(loss, numpy_temporal_softmax_loss(logits, targets, ignore_index), atol=tolerance, rtol=tolerance,
                 what=f"loss on {dtype} logits, N={N}, T={T}, V={V}, ignore_index={ignore_index}",
                 mistakes=mistakes.temporal_softmax_loss(logits, targets, ignore_index),
                 hint=f"{dtype} logits: the loss is computed in {dtype}.")


@pytest.mark.step("loss.temporal_softmax")
def test_loss_is_stable_for_huge_logits_and_float16(student):
    logits = np.zeros((2, 3, 4), "float32")
    logits[..., 1] = 1e4
    targets = np.array([[1, 2, 0], [3, 1, 1]])
    loss = float(student.run(loss_value, logits, targets))
    assert np.isfinite(loss), "the loss must be finite for large logits: use log_softmax."
    assert_close(loss, 2 * 1e4 / 2, rtol=1e-4, what="loss with huge logits")  # two targets miss by 1e4
    small = np.linspace(-2, 2, 24).reshape(2, 3, 4)
    assert_close(student.run(loss_value, small.astype("float16"), targets), keras_reference(small, targets),
                 atol=1e-2, what="loss on float16 logits")


@pytest.mark.step("loss.temporal_softmax")
def test_loss_other_ignore_index(student):
    logits = np.linspace(-1, 1, 2 * 3 * 4).reshape(2, 3, 4).astype("float32")
    targets = np.array([[3, 3, 1], [0, 3, 2]])
    # Swap ids 0 and 3 in the logits too, so that "ignore 3" becomes Keras's "ignore 0".
    swapped = logits[..., [3, 1, 2, 0]]
    expected = keras_reference(swapped, np.where(targets == 3, 0, np.where(targets == 0, 3, targets)))
    assert_close(student.run(loss_value, logits, targets, ignore_index=3), expected, atol=1e-5,
                 what="loss with ignore_index=3")


def loss_under_mixed_precision(targets, weights):
    """Scenario: TemporalSoftmaxLoss on the float16 logits of Embedding -> Dense under mixed_float16, and in evaluate."""
    inputs = keras.Input((targets.shape[1],), dtype="int32")
    x = keras.layers.Embedding(*weights[0].shape, dtype="mixed_float16")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(weights[1].shape[1], dtype="mixed_float16")(x))
    model.set_weights(weights)
    model.compile(optimizer="sgd", loss=TemporalSoftmaxLoss())
    return TemporalSoftmaxLoss()(targets, model(targets)), model.evaluate(targets, targets, verbose=0)


@pytest.mark.step("loss.temporal_softmax")
def test_loss_under_mixed_precision_in_compile(student):
    targets = np.array([[1, 4, 2, 0], [3, 5, 0, 0], [2, 0, 0, 0]])
    weights = [np.linspace(-1.0, 1.0, 24).reshape(6, 4).astype("float32"),
               np.linspace(-0.8, 1.2, 24).reshape(4, 6).astype("float32"),
               np.linspace(-0.3, 0.3, 6).astype("float32")]
    loss, evaluated = student.run(loss_under_mixed_precision, targets, weights)
    assert np.asarray(loss).dtype == "float32", (
        f"float16 logits gave a {np.asarray(loss).dtype} loss; expected float32 (cast float16 logits up)."
    )
    expected = keras_reference(weights[0][targets] @ weights[1] + weights[2], targets)
    assert_close(loss, expected, atol=1e-2, what="TemporalSoftmaxLoss on float16 logits")
    assert_close(evaluated, expected, atol=1e-2, what="TemporalSoftmaxLoss in model.evaluate under mixed_float16")
