"""Hidden tests, lesson 06: other shapes, separate keys, masks, gradients, float64.

References: NumPy from the equations, keras.layers.MultiHeadAttention. Each test
is a scenario (runs the student's code, returns plain values) and a judge (the
test); see kcaption/grading/sandbox.py.
"""

import tempfile
from pathlib import Path

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


def _set_weights(layer, weights):
    """`layer.set_weights(weights)`, each reshaped to the layer's own shape (same numbers, same order)."""
    layer.set_weights([np.reshape(w, tuple(v.shape)) for w, v in zip(weights, layer.weights)])


def positional_encoding(x, max_len):
    """Scenario: PositionalEncoding(max_len, D) on `x` (N, T, D), training=False."""
    return PositionalEncoding(max_len=max_len, embed_dim=x.shape[-1])(x, training=False)


@pytest.mark.step("transformer.positional_encoding")
@pytest.mark.parametrize("t, d", [(1, 6), (9, 6), (20, 64)])
def test_positional_encoding_numpy_formula(student, t, d):
    x = _wavy((2, t, d))
    positions = np.arange(t)[:, None]
    freq = 10000.0 ** (-(2 * (np.arange(d) // 2)) / d)
    angle = positions * freq[None, :]
    pe = np.where(np.arange(d) % 2 == 0, np.sin(angle), np.cos(angle))
    out = student.run(positional_encoding, x, 20)
    assert_close(out, x + pe[None], atol=1e-5, what=f"PE for T={t}, D={d}",
                 hint="Frequency 10000^(-2(j//2)/D): dimensions 2k and 2k+1 share one frequency.")


def multi_head_attention(weights, calls, num_heads, dtype=None):
    """Scenario: one MultiHeadAttention holding `weights` [Wq, bq, Wk, bk, Wv, bv, Wo, bo],
    called with each dict of call arguments in `calls` (query and value included)."""
    Wq, _, Wk, _, Wv, *_ = weights
    layer = MultiHeadAttention(Wq.shape[1], num_heads, dtype=dtype)
    layer.build((None, None, Wq.shape[0]), (None, None, Wv.shape[0]), (None, None, Wk.shape[0]))
    _set_weights(layer, weights)
    return [layer(call.pop("query"), call.pop("value"), **call) for call in calls]


def _mha_weights(embed_dim, kv_dim):
    """Fixed weights for our layer: Wq (E, E), bq, Wk (E_kv, E), bk, Wv (E_kv, E), bv, Wo (E, E), bo."""
    shapes = [(embed_dim, embed_dim), (embed_dim,), (kv_dim, embed_dim), (embed_dim,),
              (kv_dim, embed_dim), (embed_dim,), (embed_dim, embed_dim), (embed_dim,)]
    return [_wavy(shape, 0.5) + 0.02 * i for i, shape in enumerate(shapes)]


def _keras_mha(weights, heads):
    """keras.layers.MultiHeadAttention holding `weights` (ours, the kernels split per head)."""
    embed_dim, kv_dim = weights[0].shape[0], weights[2].shape[0]
    reference = keras.layers.MultiHeadAttention(heads, embed_dim // heads)
    reference(np.zeros((1, 2, embed_dim), "float32"), np.zeros((1, 3, kv_dim), "float32"),
              np.zeros((1, 3, kv_dim), "float32"))
    reference.set_weights([w.reshape(r.shape) for w, r in zip(weights, reference.get_weights())])
    return reference


@pytest.mark.step("transformer.multi_head_attention")
@pytest.mark.parametrize("heads, embed_dim", [(1, 8), (4, 8), (2, 6)])
def test_multi_head_attention_with_separate_keys(student, heads, embed_dim):
    weights = _mha_weights(embed_dim, kv_dim=5)
    query, value, key = _wavy((3, 4, embed_dim)), _wavy((3, 6, 5), 2.0), _values((3, 6, 5), 2.0, -1.0)
    mask = np.tril(np.ones((4, 6), bool), k=1)[None].repeat(3, axis=0)
    ((out, attention),) = student.run(multi_head_attention, weights, [
        dict(query=query, value=value, key=key, attention_mask=mask, return_attention_scores=True)], heads)
    expected, expected_weights = _keras_mha(weights, heads)(
        query, value, key=key, attention_mask=mask, return_attention_scores=True)
    assert_close(attention, expected_weights, atol=1e-5, what="weights", hint="Keys come from `key`, values from `value`.")
    assert_close(out, expected, atol=1e-5, what="output")


def _numpy_mha(weights, query, value, heads):
    """Multi-head attention from the equations, in float64: (output, weights)."""
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = (np.asarray(w, "float64") for w in weights)
    n, t, s, d = query.shape[0], query.shape[1], value.shape[1], Wq.shape[1] // heads
    Q = (query @ Wq + bq).reshape(n, t, heads, d)
    K = (value @ Wk + bk).reshape(n, s, heads, d)
    V = (value @ Wv + bv).reshape(n, s, heads, d)
    scores = np.einsum("nthd,nshd->nhts", Q, K) / np.sqrt(d)
    attention = np.exp(scores - scores.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    heads_out = np.einsum("nhts,nshd->nthd", attention, V).reshape(n, t, heads * d)
    return heads_out @ Wo + bo, attention


@pytest.mark.step("transformer.multi_head_attention")
def test_multi_head_attention_keeps_float64(student):
    weights = [w.astype("float64") for w in _mha_weights(6, kv_dim=5)]
    query, value = _wavy((2, 4, 6)).astype("float64"), _wavy((2, 3, 5), 2.0).astype("float64")
    ((out, attention),) = student.run(multi_head_attention, weights, [
        dict(query=query, value=value, return_attention_scores=True)], 2, dtype="float64")
    for name, value_out in (("output", out), ("weights", attention)):
        assert np.asarray(value_out).dtype == np.float64, (
            f"{name}: a float64 layer on float64 inputs gave {np.asarray(value_out).dtype}. "
            "Compute in the inputs' dtype: cast constants with ops.cast(..., Q.dtype), not to float32."
        )
    expected, expected_weights = _numpy_mha(weights, query, value, 2)
    assert_close(attention, expected_weights, atol=1e-12, rtol=1e-12, what="float64 weights",
                 hint="Scale by 1/sqrt(d) in the inputs' dtype: a float32 sqrt(d) loses precision.")
    # Not tighter: the kit's dropout layer (at rate 0) computes in float32.
    assert_close(out, expected, atol=1e-6, what="float64 output")


def multi_head_attention_gradients(weights, x, num_heads):
    """Scenario: the gradients of sum(output**2) for self-attention over `x` (training=True)
    with respect to each weight (None where no gradient reaches)."""
    layer = MultiHeadAttention(weights[0].shape[1], num_heads)
    layer.build(x.shape, x.shape)
    _set_weights(layer, weights)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, x, training=True) ** 2)
    return [None if g is None else tf.convert_to_tensor(g) for g in tape.gradient(loss, layer.trainable_weights)]


@pytest.mark.step("transformer.multi_head_attention")
def test_multi_head_attention_gradients_reach_every_weight(student):
    grads = student.run(multi_head_attention_gradients, _mha_weights(8, kv_dim=8), _wavy((2, 3, 8)), 2)
    names = ["Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo"]
    assert len(grads) == len(names), f"expected gradients for {names}, got {len(grads)} trainable weights."
    missing = [name for name, g in zip(names, grads) if g is None]
    assert not missing, f"no gradient reaches {missing}."


def multi_head_attention_save_and_load(weights, query, memory):
    """Scenario: a model around MultiHeadAttention(dropout=0.1, drop_head=0.2) holding `weights`,
    then its .keras save/load copy, both with training=False."""
    query_in, memory_in = keras.Input(query.shape[1:]), keras.Input(memory.shape[1:])
    layer = MultiHeadAttention(weights[0].shape[1], 2, dropout=0.1, drop_head=0.2)
    model = keras.Model([query_in, memory_in], layer(query_in, memory_in))
    _set_weights(model, weights)
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder) / "mha.keras")
        loaded = keras.models.load_model(Path(folder) / "mha.keras")
    return loaded([query, memory], training=False), model([query, memory], training=False)


@pytest.mark.step("transformer.multi_head_attention")
def test_multi_head_attention_saves_and_loads(student):
    weights, query, memory = _mha_weights(8, kv_dim=8), _wavy((2, 4, 8)), _wavy((2, 6, 8), 3.0)
    reloaded, original = student.run(multi_head_attention_save_and_load, weights, query, memory)
    assert_close(reloaded, original, atol=1e-6, what="after save/load")
    assert_close(original, _keras_mha(weights, 2)(query, memory), atol=1e-5, what="output before saving")


def captioner_calls(weights, calls, config):
    """Scenario: a CaptioningTransformer(**config) built on the first call's inputs, holding `weights`
    (reshaped to its own), called with each dict in `calls` (inputs included)."""
    from kcaption.models.captioning_transformer import CaptioningTransformer

    model = CaptioningTransformer(**config)
    model(calls[0]["inputs"])
    _set_weights(model, weights)
    return [model(call.pop("inputs"), **call) for call in calls]


@pytest.mark.step("transformer.captioner")
def test_captioner_on_pooled_features_with_one_layer(student):
    import keras_hub

    vocab, embed, heads = 7, 8, 2
    config = dict(vocab_size=vocab, embed_dim=embed, num_heads=heads, num_layers=1, feedforward_dim=12,
                  dropout=0.3, max_length=6)
    layer = keras_hub.layers.TransformerDecoder(intermediate_dim=12, num_heads=heads)
    layer(np.zeros((1, 2, embed), "float32"), np.zeros((1, 1, embed), "float32"))
    # Our weights hold the same numbers as keras_hub's, whose attention kernels are split per head.
    shapes = [(5, embed), (embed,), (vocab, embed), *(w.shape for w in layer.get_weights()), (embed, vocab), (vocab,)]
    weights = [_wavy(shape, 0.6) - 0.02 * i for i, shape in enumerate(shapes)]
    features, captions = _wavy((3, 5), 2.0), np.array([[1, 3, 4, 2, 0], [1, 5, 2, 0, 0], [1, 6, 6, 6, 2]])
    ((logits, attention),) = student.run(captioner_calls, weights, [
        dict(inputs=(features, captions), training=False, return_attention=True)], config)
    kernel, bias, table = weights[:3]
    memory = (features @ kernel + bias)[:, None, :]  # pooled features: a memory of length 1
    x = table[captions]
    x = x + np.asarray(keras_hub.layers.SinePositionEncoding()(x))
    layer.set_weights(weights[3:-2])
    x = np.asarray(layer(x, memory, decoder_padding_mask=captions != 0))
    expected = x @ weights[-2] + weights[-1]
    assert_close(logits, expected, atol=1e-4, what="logits on pooled features (memory of length 1)",
                 hint="No dropout when training=False: pass `training` to every sub-layer.")
    assert_close(attention, np.ones((3, 5, 1)), atol=1e-6, what="attention over a memory of length 1")
