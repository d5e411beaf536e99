"""Lesson 06: positional encoding, multi-head attention, the transformer captioner.

References: keras_hub.layers.SinePositionEncoding, keras.layers.MultiHeadAttention
and keras_hub.layers.TransformerDecoder with the same weights copied in.
"""

import itertools

import keras
import keras_hub
import numpy as np
import pytest

from kcaption.layers.multi_head_attention import MultiHeadAttention
from kcaption.layers.positional import PositionalEncoding
from kcaption.layers.transformer import TransformerDecoderLayer, causal_mask
from kcaption.testing import assert_close

N, T, S, E, HEADS = 2, 5, 7, 12, 3


def _values(shape, low=-1.0, high=1.0):
    return np.linspace(low, high, int(np.prod(shape)), dtype="float32").reshape(shape)


def _wavy(shape, scale=1.0):
    return (np.sin(_values(shape, -7.0, 7.0) * 3.1) * scale).astype("float32")


# Positional encoding ---------------------------------------------------------


@pytest.mark.step("transformer.positional_encoding")
def test_positional_encoding_matches_keras_hub():
    x = _wavy((N, 17, 16))
    out = PositionalEncoding(max_len=17, embed_dim=16)(x, training=False)
    expected = x + np.asarray(keras_hub.layers.SinePositionEncoding()(x))
    assert_close(out, expected, atol=1e-5, what="inputs + PE",
                 hint="Even dimensions 2k: sin(t / 10000^(2k/D)); odd dimensions 2k+1: cos of the same angle.")


@pytest.mark.step("transformer.positional_encoding")
def test_positional_encoding_uses_dropout_only_in_training():
    x = np.ones((4, 6, 8), "float32")
    layer = PositionalEncoding(max_len=6, embed_dim=8, dropout=0.5)
    reference = x + np.asarray(keras_hub.layers.SinePositionEncoding()(x))
    assert_close(layer(x, training=False), reference, atol=1e-5, what="output with training=False",
                 hint="No dropout at inference.")
    dropped = np.asarray(layer(x, training=True))
    assert np.mean(dropped == 0) > 0.2, "training=True: expected about half of the values dropped to 0."


def test_positional_encoding_rejects_too_long_sequences():
    with pytest.raises(ValueError, match="max_len=4"):
        PositionalEncoding(max_len=4, embed_dim=8)(np.zeros((1, 5, 8), "float32"))
    with pytest.raises(ValueError, match="Received: embed_dim=7"):
        PositionalEncoding(max_len=4, embed_dim=7)


# Multi-head attention ---------------------------------------------------------


def _mha_pair(dropout=0.0, drop_head=0.0, value_dim=E):
    """Our layer and keras.layers.MultiHeadAttention holding the same weights."""
    ours = MultiHeadAttention(E, HEADS, dropout=dropout, drop_head=drop_head, seed=1)
    ours.build((None, T, E), (None, S, value_dim))
    d = E // HEADS
    weights = [_wavy((value_dim if i in (2, 4) else E, E), 0.4) if i % 2 == 0 else _values((E,), -0.1, 0.1 * i)
               for i in range(8)]
    weights[0] = _wavy((E, E), 0.5)[::-1].copy()
    ours.set_weights(weights)
    keras_mha = keras.layers.MultiHeadAttention(HEADS, d, dropout=dropout)
    keras_mha(np.zeros((1, T, E), "float32"), np.zeros((1, S, value_dim), "float32"))
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = weights
    keras_mha.set_weights([
        Wq.reshape(E, HEADS, d), bq.reshape(HEADS, d), Wk.reshape(value_dim, HEADS, d), bk.reshape(HEADS, d),
        Wv.reshape(value_dim, HEADS, d), bv.reshape(HEADS, d), Wo.reshape(HEADS, d, E), bo,
    ])
    return ours, keras_mha


@pytest.mark.step("transformer.multi_head_attention")
def test_multi_head_attention_matches_keras():
    query, value = _wavy((N, T, E)), _wavy((N, S, 10)) * 2
    ours, keras_mha = _mha_pair(value_dim=10)
    out, weights = ours(query, value, return_attention_scores=True, training=False)
    expected, expected_weights = keras_mha(query, value, return_attention_scores=True, training=False)
    hint = "Split E into h heads of d = E/h, scale the scores by 1/sqrt(d), softmax over the keys."
    assert_close(weights, expected_weights, atol=1e-5, what="attention weights (N, h, T, S)", hint=hint)
    assert_close(out, expected, atol=1e-5, what="output", hint=hint)


@pytest.mark.step("transformer.multi_head_attention")
def test_multi_head_attention_with_causal_and_padding_masks_matches_keras():
    x = _wavy((N, T, E))
    padding = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    mask = np.asarray(causal_mask(T))[None] & padding[:, None, :]  # (N, T, T)
    ours, keras_mha = _mha_pair()
    out, weights = ours(x, x, attention_mask=mask, return_attention_scores=True)
    ours_2d = ours(x, x, attention_mask=np.asarray(causal_mask(T)))
    expected, expected_weights = keras_mha(x, x, attention_mask=mask, return_attention_scores=True)
    hint = "Set scores to -1e9 where the mask is False, before the softmax."
    assert_close(weights, expected_weights, atol=1e-5, what="masked attention weights", hint=hint)
    assert_close(out, expected, atol=1e-5, what="masked output", hint=hint)
    assert_close(ours_2d, keras_mha(x, x, use_causal_mask=True), atol=1e-5,
                 what="output with a (T, T) mask", hint="A (T, T) mask must broadcast over the batch and heads.")


@pytest.mark.step("transformer.multi_head_attention")
def test_fully_masked_rows_give_zeros_not_nan():
    x = _wavy((N, T, E))
    mask = np.zeros((N, T, T), bool)
    mask[1] = True
    ours, keras_mha = _mha_pair()
    out, weights = ours(x, x, attention_mask=mask, return_attention_scores=True)
    assert np.all(np.isfinite(np.asarray(out))), "A fully masked row gave NaN: use -1e9, not -inf, in the scores."
    assert_close(np.asarray(weights)[0], np.zeros((HEADS, T, T)), what="weights of a fully masked row",
                 hint="Zero the weights where the mask is False after the softmax (as Keras does).")
    # Keras zeroes such rows on its return_attention_scores path (its fused path does not).
    expected, _ = keras_mha(x, x, attention_mask=mask, return_attention_scores=True)
    assert_close(out, expected, atol=1e-5, what="output")


@pytest.mark.step("transformer.multi_head_attention")
def test_attention_dropout_only_in_training():
    query, value = _wavy((N, T, E)), _wavy((N, S, E))
    ours, keras_mha = _mha_pair(dropout=0.5)
    assert_close(ours(query, value, training=False), keras_mha(query, value, training=False), atol=1e-5,
                 what="output with training=False", hint="Dropout on the weights must be off at inference.")
    _, weights = ours(query, value, return_attention_scores=True, training=True)
    assert_close(np.asarray(weights).sum(-1), np.ones((N, HEADS, T)), atol=1e-5,
                 what="returned weights summed over keys", hint="Return the weights before dropout.")
    trained = np.asarray(ours(query, value, training=True))
    assert not np.allclose(trained, np.asarray(ours(query, value, training=False))), (
        "training=True gave the same output as training=False: apply self.dropout_layer to the weights."
    )


@pytest.mark.step("transformer.multi_head_attention")
def test_drop_head_drops_whole_heads_and_rescales():
    query, value = _wavy((N, T, E)), _wavy((N, S, E))
    ours, keras_mha = _mha_pair(drop_head=0.5)
    kernel, bias = keras_mha.get_weights()[-2:]
    per_head = []  # what each head adds to the output, via Keras with the other heads' output rows zeroed
    for head in range(HEADS):
        only = np.zeros_like(kernel)
        only[head] = kernel[head]
        keras_mha.set_weights([*keras_mha.get_weights()[:-2], only, np.zeros_like(bias)])
        per_head.append(np.asarray(keras_mha(query, value)))
    keras_mha.set_weights([*keras_mha.get_weights()[:-2], kernel, bias])
    out = np.asarray(ours(query, value, training=True)) - bias
    assert_close(ours(query, value, training=False), keras_mha(query, value), atol=1e-5,
                 what="output with training=False", hint="DropHead is off at inference.")
    for n in range(N):
        combos = [sum(k * h[n] for k, h in zip(keep, per_head)) for keep in itertools.product([0.0, 2.0], repeat=HEADS)]
        errors = [np.abs(out[n] - c).max() for c in combos]
        assert min(errors) < 1e-4, (
            f"example {n}: with drop_head=0.5 every head must be either dropped or scaled by 1/(1-0.5)=2 "
            f"(closest combination off by {min(errors):.3g})."
        )


def test_multi_head_attention_rejects_bad_heads():
    with pytest.raises(ValueError, match="Received: num_heads=5"):
        MultiHeadAttention(12, 5)


def test_causal_mask_is_lower_triangular():
    expected = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], bool)
    assert np.array_equal(np.asarray(causal_mask(4)), expected)


# Transformer decoder layer ----------------------------------------------------


def _decoder_pair():
    ours = TransformerDecoderLayer(E, HEADS, feedforward_dim=24)
    memory = _wavy((N, S, E), 0.7)
    ours(_wavy((N, T, E)), memory)
    weights = [_wavy(w.shape, 0.3) + 0.01 * i for i, w in enumerate(ours.get_weights())]
    ours.set_weights(weights)
    reference = keras_hub.layers.TransformerDecoder(intermediate_dim=24, num_heads=HEADS)
    reference(_wavy((N, T, E)), memory)
    # Same order; keras_hub keeps attention kernels per head: (E, h, d), (h, d), (h, d, E).
    reference.set_weights([w.reshape(t.shape) for w, t in zip(weights, reference.get_weights())])
    return ours, reference, memory


@pytest.mark.step("transformer.multi_head_attention")
def test_decoder_layer_matches_keras_hub_transformer_decoder():
    ours, reference, memory = _decoder_pair()
    x = _wavy((N, T, E), 1.3)
    padding = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    assert_close(ours(x, memory), reference(x, memory), atol=1e-4, what="decoder layer output")
    assert_close(ours(x, memory, padding_mask=padding), reference(x, memory, decoder_padding_mask=padding),
                 atol=1e-4, what="decoder layer output with padding")


@pytest.mark.step("transformer.multi_head_attention")
def test_future_tokens_do_not_change_past_outputs():
    ours, _, memory = _decoder_pair()
    x = _wavy((N, T, E))
    changed = x.copy()
    changed[:, 3:] = 5.0
    assert_close(ours(changed, memory)[:, :3], ours(x, memory)[:, :3], atol=1e-5,
                 what="outputs at positions 0..2 after changing positions 3..4",
                 hint="The self-attention must use the causal mask.")


@pytest.mark.step("transformer.multi_head_attention")
def test_fully_padded_rows_give_no_nan():
    ours, _, memory = _decoder_pair()
    out = ours(_wavy((N, T, E)), memory, padding_mask=np.zeros((N, T), bool))
    assert np.all(np.isfinite(np.asarray(out))), "A caption that is all padding gave NaN."
