"""Hidden tests, lesson 06: other shapes, separate keys, masks, gradients.

References: NumPy from the equations, keras.layers.MultiHeadAttention.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcaption.layers.multi_head_attention import MultiHeadAttention
from kcaption.layers.positional import PositionalEncoding
from kcaption.testing import assert_close


def _values(shape, low=-1.0, high=1.0):
    return np.linspace(low, high, int(np.prod(shape)), dtype="float32").reshape(shape)


def _wavy(shape, scale=1.0):
    return (np.cos(_values(shape, -5.0, 5.0) * 2.3) * scale).astype("float32")


@pytest.mark.step("transformer.positional_encoding")
@pytest.mark.parametrize("t, d", [(1, 6), (9, 6), (20, 64)])
def test_positional_encoding_numpy_formula(t, d):
    x = _wavy((2, t, d))
    positions = np.arange(t)[:, None]
    freq = 10000.0 ** (-(2 * (np.arange(d) // 2)) / d)
    angle = positions * freq[None, :]
    pe = np.where(np.arange(d) % 2 == 0, np.sin(angle), np.cos(angle))
    out = PositionalEncoding(max_len=20, embed_dim=d)(x, training=False)
    assert_close(out, x + pe[None], atol=1e-5, what=f"PE for T={t}, D={d}",
                 hint="Frequency 10000^(-2(j//2)/D): dimensions 2k and 2k+1 share one frequency.")


def _mha_pair(heads, embed_dim, kv_dim):
    ours = MultiHeadAttention(embed_dim, heads)
    ours.build((None, None, embed_dim), (None, None, kv_dim))
    weights = [_wavy(w.shape, 0.5) + 0.02 * i for i, w in enumerate(ours.get_weights())]
    ours.set_weights(weights)
    d = embed_dim // heads
    reference = keras.layers.MultiHeadAttention(heads, d)
    reference(np.zeros((1, 2, embed_dim), "float32"), np.zeros((1, 3, kv_dim), "float32"),
              np.zeros((1, 3, kv_dim), "float32"))
    reference.set_weights([w.reshape(r.shape) for w, r in zip(weights, reference.get_weights())])
    return ours, reference


@pytest.mark.step("transformer.multi_head_attention")
@pytest.mark.parametrize("heads, embed_dim", [(1, 8), (4, 8), (2, 6)])
def test_multi_head_attention_with_separate_keys(heads, embed_dim):
    ours, reference = _mha_pair(heads, embed_dim, kv_dim=5)
    query, value, key = _wavy((3, 4, embed_dim)), _wavy((3, 6, 5), 2.0), _values((3, 6, 5), 2.0, -1.0)
    mask = np.tril(np.ones((4, 6), bool), k=1)[None].repeat(3, axis=0)
    out, weights = ours(query, value, key=key, attention_mask=mask, return_attention_scores=True)
    expected, expected_weights = reference(query, value, key=key, attention_mask=mask, return_attention_scores=True)
    assert_close(weights, expected_weights, atol=1e-5, what="weights", hint="Keys come from `key`, values from `value`.")
    assert_close(out, expected, atol=1e-5, what="output")


@pytest.mark.step("transformer.multi_head_attention")
def test_multi_head_attention_gradients_reach_every_weight():
    ours, _ = _mha_pair(2, 8, kv_dim=8)
    x = _wavy((2, 3, 8))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ours(x, x, training=True) ** 2)
    grads = tape.gradient(loss, ours.trainable_weights)
    missing = [w.name for w, g in zip(ours.trainable_weights, grads) if g is None]
    assert not missing, f"no gradient reaches {missing}."


@pytest.mark.step("transformer.multi_head_attention")
def test_multi_head_attention_saves_and_loads(tmp_path):
    query, memory = keras.Input((4, 8)), keras.Input((6, 8))
    model = keras.Model([query, memory], MultiHeadAttention(8, 2, dropout=0.1, drop_head=0.2)(query, memory))
    inputs = [_wavy((2, 4, 8)), _wavy((2, 6, 8), 3.0)]
    model.save(tmp_path / "mha.keras")
    loaded = keras.models.load_model(tmp_path / "mha.keras")
    assert_close(loaded(inputs, training=False), model(inputs, training=False), atol=1e-6, what="after save/load")


@pytest.mark.step("transformer.captioner")
def test_captioner_on_pooled_features_with_one_layer():
    import keras_hub

    from kcaption.models.captioning_transformer import CaptioningTransformer

    vocab, embed, heads = 7, 8, 2
    model = CaptioningTransformer(vocab, embed_dim=embed, num_heads=heads, num_layers=1, feedforward_dim=12,
                                  dropout=0.3, max_length=6)
    features, captions = _wavy((3, 5), 2.0), np.array([[1, 3, 4, 2, 0], [1, 5, 2, 0, 0], [1, 6, 6, 6, 2]])
    model((features, captions))
    model.set_weights([_wavy(w.shape, 0.6) - 0.02 * i for i, w in enumerate(model.get_weights())])
    logits, attention = model((features, captions), training=False, return_attention=True)
    kernel, bias, table = (np.asarray(w) for w in model.get_weights()[:3])
    memory = (features @ kernel + bias)[:, None, :]  # pooled features: a memory of length 1
    x = table[captions]
    x = x + np.asarray(keras_hub.layers.SinePositionEncoding()(x))
    layer = keras_hub.layers.TransformerDecoder(intermediate_dim=12, num_heads=heads)
    layer(x, memory)
    layer.set_weights([w.reshape(t.shape) for w, t in zip(model.get_weights()[3:-2], layer.get_weights())])
    x = np.asarray(layer(x, memory, decoder_padding_mask=captions != 0))
    expected = x @ model.get_weights()[-2] + model.get_weights()[-1]
    assert_close(logits, expected, atol=1e-4, what="logits on pooled features (memory of length 1)",
                 hint="No dropout when training=False: pass `training` to every sub-layer.")
    assert_close(attention, np.ones((3, 5, 1)), atol=1e-6, what="attention over a memory of length 1")
