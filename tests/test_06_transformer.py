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
from kcaption.testing import assert_close, overfit_small_data

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


# The captioning transformer ---------------------------------------------------

V, L, C, MAXLEN = 11, 6, 5, 9


def _captioner():
    """A small captioner on features (N, L, C), every weight set explicitly."""
    from kcaption.models import CaptioningTransformer

    model = CaptioningTransformer(V, embed_dim=E, num_heads=HEADS, num_layers=2, feedforward_dim=16, max_length=MAXLEN)
    model((_wavy((N, L, C)), np.ones((N, 3), "int32")))
    model.set_weights([_wavy(w.shape, 0.5) + 0.01 * i for i, w in enumerate(model.get_weights())])
    return model


def _captions():
    return np.array([[1, 4, 7, 5, 2, 0, 0, 0], [1, 9, 3, 6, 8, 10, 4, 2]], "int32")


@pytest.mark.step("transformer.captioner")
def test_captioner_matches_keras_hub_decoder_stack():
    model = _captioner()
    features, captions = _wavy((N, L, C), 2.0), _captions()
    logits, attention = model((features, captions), return_attention=True)
    # The reference: the same weights in keras / keras_hub layers.
    proj_kernel, proj_bias, embed = (np.asarray(w) for w in model.get_weights()[:3])
    memory = features @ proj_kernel + proj_bias
    x = embed[captions]
    x = x + np.asarray(keras_hub.layers.SinePositionEncoding()(x))
    weights = model.get_weights()[3:-2]
    per_layer = len(weights) // 2
    for i in range(2):
        layer = keras_hub.layers.TransformerDecoder(intermediate_dim=16, num_heads=HEADS)
        layer(x, memory)
        layer.set_weights([w.reshape(t.shape) for w, t in zip(weights[i * per_layer:(i + 1) * per_layer], layer.get_weights())])
        x = layer(x, memory, decoder_padding_mask=captions != 0)
    expected = np.asarray(x) @ model.get_weights()[-2] + model.get_weights()[-1]
    hint = "memory = feature_projection(features); x = positional_encoding(embedding(captions)); the layers; output_projection."
    assert_close(logits, expected, atol=1e-4, what="logits", hint=hint)
    assert tuple(attention.shape) == (N, captions.shape[1], L)
    assert_close(np.asarray(attention).sum(-1), np.ones((N, captions.shape[1])), atol=1e-5,
                 what="attention summed over the memory", hint="Average the last layer's weights over the heads (axis 1).")


@pytest.mark.step("transformer.captioner")
def test_captioner_future_tokens_do_not_change_past_logits():
    model = _captioner()
    features, captions = _wavy((N, L, C)), _captions()
    changed = captions.copy()
    changed[:, 4:] = 3
    assert_close(model((features, changed))[:, :4], model((features, captions))[:, :4], atol=1e-5,
                 what="logits at positions 0..3 after changing tokens 4..", hint="Pass the padding mask; the layers apply the causal mask.")


@pytest.mark.step("transformer.captioner")
def test_captioner_fully_padded_rows_give_no_nan():
    model = _captioner()
    logits = model((_wavy((N, L, C)), np.zeros((N, 5), "int32")))
    assert np.all(np.isfinite(np.asarray(logits))), "An all-<NULL> caption gave NaN logits."


@pytest.mark.step("transformer.captioner")
def test_step_by_step_decode_equals_teacher_forced_pass():
    model = _captioner()
    features = _wavy((N, L, C), 3.0)
    ids = np.asarray(model.sample(features, max_length=6, compiled=False))
    captions_in = np.concatenate([np.ones((N, 1), "int32"), ids[:, :-1]], axis=1)  # what each step was fed
    teacher_forced = np.asarray(model((features, captions_in)))
    for t in range(6):
        step = np.asarray(model((features, captions_in[:, : t + 1])))[:, -1]
        assert_close(step, teacher_forced[:, t], atol=1e-5, what=f"logits of decoding step {t}")
    ended = np.cumsum(ids == 2, axis=1) - (ids == 2) > 0  # after <END>: padding
    assert np.array_equal(np.where(ended, 0, teacher_forced.argmax(-1)), ids), "greedy ids differ from the argmax"


@pytest.mark.step("transformer.captioner")
def test_captioner_saves_and_loads(tmp_path):
    import keras

    model = _captioner()
    inputs = (_wavy((N, L, C)), _captions())
    model.save(tmp_path / "transformer.keras")
    loaded = keras.models.load_model(tmp_path / "transformer.keras")
    assert_close(loaded(inputs), model(inputs), atol=1e-6, what="logits after .keras save/load")


def test_sample_rejects_lengths_beyond_the_positional_encoding():
    from kcaption.models import CaptioningTransformer

    with pytest.raises(ValueError, match="max_length=9"):
        CaptioningTransformer(V, max_length=MAXLEN).sample(_wavy((N, L, C)), max_length=9)


@pytest.mark.slow
def test_transformer_captioner_overfits_50_shapes_examples():
    overfit_small_data(
        "transformer", epochs=40, learning_rate=2e-3, threshold=2.0,
        embed_dim=64, hidden_dim=128, num_heads=4, dropout=0.0,
    )
