"""Hidden tests, lesson 06: other shapes, separate keys, masks, gradients, float64.

References: NumPy from the equations (attention, the causal mask, the post-norm
decoder layer), keras.layers.MultiHeadAttention. Each test
is a scenario (runs the student's code, returns plain values) and a judge (the
test); see kcaption/grading/sandbox.py.
"""

import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcaption import mistakes
from kcaption.layers.multi_head_attention import MultiHeadAttention
from kcaption.layers.positional import PositionalEncoding
from kcaption.layers.transformer import TransformerDecoderLayer, causal_mask
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
    assert_close(out, x + pe[None], atol=1e-5, what=f"PE for T={t}, D={d}", mistakes=mistakes.positional_encoding(x))


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
    assert_close(attention, expected_weights, atol=1e-5, what="weights", hint="the keys are projected from `key`, the values from `value`.")
    assert_close(out, expected, atol=1e-5, what="output")


def _numpy_mha(weights, query, value, heads, mask=None):
    """Multi-head attention from the equations, in float64: (output, weights). `mask`: boolean,
    broadcastable to (N, T, S); a query row with no True gets zero weights."""
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = (np.asarray(w, "float64") for w in weights)
    n, t, s, d = query.shape[0], query.shape[1], value.shape[1], Wq.shape[1] // heads
    Q = (query @ Wq + bq).reshape(n, t, heads, d)
    K = (value @ Wk + bk).reshape(n, s, heads, d)
    V = (value @ Wv + bv).reshape(n, s, heads, d)
    scores = np.einsum("nthd,nshd->nhts", Q, K) / np.sqrt(d)
    if mask is not None:
        scores = np.where(mask[:, None], scores, -1e9)
    attention = np.exp(scores - scores.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    if mask is not None:
        attention = np.where(mask[:, None], attention, 0.0)
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
                 hint="float64 inputs: every step is computed in float64.")
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


# The causal mask -------------------------------------------------------------


def causal_masks(lengths, graph_lengths):
    """Scenario: causal_mask(T) for each int T in `lengths`, and for each T in `graph_lengths` given as a
    scalar tensor inside one tf.function (traced once, T unknown while tracing)."""
    masks = [causal_mask(length) for length in lengths]
    in_graph = tf.function(lambda length: causal_mask(length), input_signature=[tf.TensorSpec((), tf.int32)])
    return masks, [in_graph(tf.constant(length)) for length in graph_lengths]


@pytest.mark.step("transformer.causal_mask")
def test_causal_mask_matches_numpy_for_other_lengths(student):
    lengths, graph_lengths = [1, 3, 16, 40], [1, 5, 17]
    masks, in_graph = student.run(causal_masks, lengths, graph_lengths)
    for where, ts, got in (("", lengths, masks), (" (T a scalar tensor, in a tf.function)", graph_lengths, in_graph)):
        for t, mask in zip(ts, got):
            mask, expected = np.asarray(mask), np.tril(np.ones((t, t), bool))
            assert mask.dtype == bool and mask.shape == expected.shape, (
                f"causal_mask({t}){where}: expected a boolean {expected.shape} mask, got {mask.dtype} {mask.shape}. "
                "Use keras.ops (ops.arange, ...) so that T may also be a tensor."
            )
            assert np.array_equal(mask, expected), (
                f"causal_mask({t}){where}: {int((mask != expected).sum())} entries differ from "
                f"np.tril(np.ones(({t}, {t}))), first at {tuple(int(i) for i in np.argwhere(mask != expected)[0])}."
            )


# The decoder layer ------------------------------------------------------------


def decoder_layer(weights, memory, calls, num_heads, feedforward_dim, dropout=0.25):
    """Scenario: a TransformerDecoderLayer holding `weights` (our layout), called on `memory` with each dict
    of call arguments in `calls` (inputs included; training=False unless given)."""
    layer = TransformerDecoderLayer(memory.shape[-1], num_heads, feedforward_dim=feedforward_dim, dropout=dropout)
    layer.build((None, None, memory.shape[-1]), memory.shape)
    _set_weights(layer, weights)
    return [layer(call.pop("inputs"), memory, **{"training": False, **call}) for call in calls]


def decoder_layer_in_a_graph(weights, memory, inputs, padding_mask, num_heads, feedforward_dim):
    """Scenario: the layer's call inside one tf.function traced with an unknown batch size (as the compiled
    sampler traces it), run on (inputs, memory, padding_mask); returns (output, cross-attention weights)."""
    layer = TransformerDecoderLayer(memory.shape[-1], num_heads, feedforward_dim=feedforward_dim)
    layer.build((None, None, memory.shape[-1]), memory.shape)
    _set_weights(layer, weights)
    spec = [tf.TensorSpec((None, *inputs.shape[1:])), tf.TensorSpec((None, *memory.shape[1:])),
            tf.TensorSpec((None, inputs.shape[1]), tf.bool)]
    run = tf.function(lambda x, m, p: layer(x, m, padding_mask=p, return_attention_scores=True, training=False),
                      input_signature=spec)
    return run(inputs, memory, padding_mask)


def _decoder_weights(embed_dim, feedforward_dim):
    """Weights in our layout: self-attention (8), self_norm (gamma, beta), cross-attention (8), cross_norm,
    feed-forward hidden (kernel, bias), output (kernel, bias), ffn_norm."""
    E, F = embed_dim, feedforward_dim
    attention = [(E, E), (E,)] * 4
    shapes = [*attention, (E,), (E,), *attention, (E,), (E,), (E, F), (F,), (F, E), (E,), (E,), (E,)]
    weights = [_wavy(shape, 0.5) - 0.03 * i for i, shape in enumerate(shapes)]
    for i in (8, 18, 24):
        weights[i] = 1.0 + 0.2 * _wavy(shapes[i])  # gamma
    return weights


def _layer_norm(z, gamma, beta):
    return (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5) * gamma + beta


def _numpy_decoder(weights, x, memory, heads, padding=None):
    """The post-norm decoder layer from the equations, in float64: (output, cross-attention weights)."""
    w = [np.asarray(v, "float64") for v in weights]
    x, memory = np.asarray(x, "float64"), np.asarray(memory, "float64")
    t = x.shape[1]
    mask = np.tril(np.ones((t, t), bool))[None].repeat(x.shape[0], 0)
    if padding is not None:
        mask &= np.asarray(padding, bool)[:, None, :]
    attended, _ = _numpy_mha(w[0:8], x, x, heads, mask)
    x = _layer_norm(x + attended, *w[8:10])
    attended, cross_weights = _numpy_mha(w[10:18], x, memory, heads)
    x = _layer_norm(x + attended, *w[18:20])
    hidden = np.maximum(x @ w[20] + w[21], 0.0) @ w[22] + w[23]
    return _layer_norm(x + hidden, *w[24:26]), cross_weights


def _padding(n, t):
    """A padding mask (n, t): caption k has t - k % t real tokens, then padding (the first is always real)."""
    lengths = t - np.arange(n) % t
    return np.arange(t)[None, :] < lengths[:, None]


DECODER_HINT = ("x = norm(x + dropout(sublayer(x))) three times: causal self-attention with the padding mask, "
                "cross-attention from x to memory, feed-forward.")


@pytest.mark.step("transformer.decoder_layer")
@pytest.mark.parametrize("n, t, s, e, heads, ff", [
    (1, 1, 1, 4, 1, 8),     # one caption of one token, one memory vector
    (1, 1, 6, 8, 2, 16),
    (3, 6, 2, 8, 4, 5),
    (2, 9, 9, 6, 3, 12),
    (4, 3, 5, 10, 5, 7),
])
def test_decoder_layer_matches_numpy_on_other_shapes(student, n, t, s, e, heads, ff):
    weights, x, memory = _decoder_weights(e, ff), _wavy((n, t, e), 1.4), _values((n, s, e), 2.0, -1.5)
    padding = _padding(n, t)
    plain, (out, attention) = student.run(decoder_layer, weights, memory, [
        dict(inputs=x), dict(inputs=x, padding_mask=padding, return_attention_scores=True)], heads, ff)
    expected, expected_attention = _numpy_decoder(weights, x, memory, heads, padding)
    shape = f"N={n}, T={t}, L={s}, E={e}, heads={heads}"
    assert_close(plain, _numpy_decoder(weights, x, memory, heads)[0], atol=1e-4,
                 what=f"decoder layer output ({shape})", hint=DECODER_HINT)
    assert_close(out, expected, atol=1e-4, what=f"decoder layer output with padding ({shape})",
                 hint="a padded token is hidden as a key from every query, as the causal mask hides later ones.")
    assert_close(attention, expected_attention, atol=1e-5, what=f"cross-attention weights (N, h, T, L) ({shape})",
                 hint="the weights returned are the cross-attention's.")


@pytest.mark.step("transformer.decoder_layer")
@pytest.mark.parametrize("memory_length", [1, 2, 11])
def test_decoder_layer_with_memory_of_other_lengths(student, memory_length):
    e, heads, ff, t, s = 8, 2, 12, 4, memory_length
    weights, x, memory = _decoder_weights(e, ff), _values((2, t, e), -1.0, 2.0), _wavy((2, s, e), 1.7)
    padding = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    ((out, attention),) = student.run(decoder_layer, weights, memory, [
        dict(inputs=x, padding_mask=padding, return_attention_scores=True)], heads, ff)
    expected, expected_attention = _numpy_decoder(weights, x, memory, heads, padding)
    assert np.asarray(attention).shape == (2, heads, t, s), (
        f"cross-attention weights: expected (N, h, T, L) = {(2, heads, t, s)}, got {np.asarray(attention).shape}. "
        "Queries come from the caption x, keys and values from memory."
    )
    assert_close(out, expected, atol=1e-4, what=f"decoder layer output with a memory of length {s}",
                 hint="the cross-attention's keys and values are the memory.")
    assert_close(attention, expected_attention, atol=1e-5, what="cross-attention weights")


@pytest.mark.step("transformer.decoder_layer")
def test_decoder_layer_padded_rows_give_no_nan(student):
    e, heads, ff = 6, 2, 9
    weights, x, memory = _decoder_weights(e, ff), _wavy((3, 5, e), 1.2), _wavy((3, 4, e), 0.9) + 0.1
    # An all-padding caption, one that starts with padding (its first rows attend nowhere), a normal one.
    padding = np.array([[0, 0, 0, 0, 0], [0, 0, 1, 1, 0], [1, 1, 1, 0, 0]], bool)
    (out,) = student.run(decoder_layer, weights, memory, [dict(inputs=x, padding_mask=padding)], heads, ff)
    assert np.all(np.isfinite(np.asarray(out))), (
        "Rows whose every key is padding gave NaN: combine the masks with ops.logical_and and let the "
        "attention layer handle fully masked rows (it gives them zero weights).")
    assert_close(out, _numpy_decoder(weights, x, memory, heads, padding)[0], atol=1e-4,
                 what="decoder layer output with fully padded rows",
                 hint="Mask padded keys; a row with no key left gets zero self-attention weights (the layer's bias).")


@pytest.mark.step("transformer.decoder_layer")
def test_decoder_layer_runs_in_a_compiled_graph(student):
    e, heads, ff = 8, 4, 6
    weights, x, memory = _decoder_weights(e, ff), _wavy((3, 5, e), 1.1), _values((3, 2, e), 1.0, -2.0)
    padding = _padding(3, 5)
    out, attention = student.run(decoder_layer_in_a_graph, weights, memory, x, padding, heads, ff)
    expected, expected_attention = _numpy_decoder(weights, x, memory, heads, padding)
    hint = "inside a tf.function the shapes are tensors, known only when it runs."
    assert_close(out, expected, atol=1e-4, what="decoder layer output in a tf.function", hint=hint)
    assert_close(attention, expected_attention, atol=1e-5, what="cross-attention weights in a tf.function", hint=hint)


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
                 hint="No dropout when training=False.")
    assert_close(attention, np.ones((3, 5, 1)), atol=1e-6, what="attention over a memory of length 1")
