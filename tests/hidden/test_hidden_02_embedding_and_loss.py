"""Hidden tests, lesson 02: random shapes, edge cases, dtypes."""

import keras
import numpy as np
import pytest

from kcaption.layers import WordEmbedding
from kcaption.losses import temporal_softmax_loss
from kcaption.testing import assert_close


@pytest.mark.step("embedding.forward")
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (4, 3, 2)])
def test_embedding_random_shapes(shape):
    rng = np.random.default_rng(sum(shape))
    V, D = 11, 5
    ids = rng.integers(0, V, size=shape)
    W = rng.normal(size=(V, D)).astype("float32")
    layer = WordEmbedding(V, D)
    layer.build(shape)
    layer.set_weights([W])
    assert_close(layer(ids), W[ids], atol=0, what=f"WordEmbedding on ids of shape {shape}")


@pytest.mark.step("embedding.forward")
def test_embedding_float64_and_mixed_precision():
    ids = np.array([[1, 0, 2]])
    W = np.linspace(-1, 1, 12).reshape(4, 3)
    for dtype, expected_dtype in [("float64", "float64"), ("mixed_float16", "float16")]:
        layer = WordEmbedding(4, 3, dtype=dtype)
        layer.build(ids.shape)
        layer.set_weights([W.astype(layer.variable_dtype)])
        out = layer(ids)
        assert keras.backend.standardize_dtype(out.dtype) == expected_dtype, f"{dtype}: output dtype {out.dtype}"
        assert_close(np.asarray(out, "float64"), W[ids], atol=1e-3, what=f"WordEmbedding under {dtype}")


@pytest.mark.step("embedding.forward")
def test_embedding_save_and_load(tmp_path):
    ids = np.array([[3, 1, 0]])
    model = keras.Sequential([keras.Input((3,), dtype="int32"), WordEmbedding(5, 2, mask_zero=True)])
    path = tmp_path / "m.keras"
    model.save(path)
    assert_close(keras.models.load_model(path)(ids), model(ids), atol=0, what="WordEmbedding after save/load")


def keras_reference(logits, targets):
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0, reduction="sum")
    return float(ce(targets, logits)) / len(targets)


@pytest.mark.step("loss.temporal_softmax")
@pytest.mark.parametrize("N,T,V", [(1, 1, 2), (1, 9, 5), (6, 1, 3), (8, 16, 40)])
def test_loss_random_shapes(N, T, V):
    rng = np.random.default_rng(N * 100 + T)
    logits = rng.normal(scale=3.0, size=(N, T, V)).astype("float32")
    targets = rng.integers(0, V, size=(N, T))
    assert_close(temporal_softmax_loss(logits, targets), keras_reference(logits, targets), atol=1e-4, rtol=1e-5,
                 what=f"loss for N={N}, T={T}, V={V}")


@pytest.mark.step("loss.temporal_softmax")
def test_loss_is_stable_for_huge_logits_and_float16():
    logits = np.zeros((2, 3, 4), "float32")
    logits[..., 1] = 1e4
    targets = np.array([[1, 2, 0], [3, 1, 1]])
    loss = float(temporal_softmax_loss(logits, targets))
    assert np.isfinite(loss), "the loss must be finite for large logits: use log_softmax."
    assert_close(loss, 2 * 1e4 / 2, rtol=1e-4, what="loss with huge logits")  # two targets miss by 1e4
    small = np.linspace(-2, 2, 24).reshape(2, 3, 4)
    assert_close(temporal_softmax_loss(small.astype("float16"), targets), keras_reference(small, targets),
                 atol=1e-2, what="loss on float16 logits")


@pytest.mark.step("loss.temporal_softmax")
def test_loss_other_ignore_index():
    logits = np.linspace(-1, 1, 2 * 3 * 4).reshape(2, 3, 4).astype("float32")
    targets = np.array([[3, 3, 1], [0, 3, 2]])
    # Swap ids 0 and 3 in the logits too, so that "ignore 3" becomes Keras's "ignore 0".
    swapped = logits[..., [3, 1, 2, 0]]
    expected = keras_reference(swapped, np.where(targets == 3, 0, np.where(targets == 0, 3, targets)))
    assert_close(temporal_softmax_loss(logits, targets, ignore_index=3), expected, atol=1e-5,
                 what="loss with ignore_index=3")
