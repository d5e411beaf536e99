"""Lesson 06: positional encoding, multi-head attention, the causal mask, the decoder layer, the captioner.

References: keras_hub.layers.SinePositionEncoding, keras.layers.MultiHeadAttention,
NumPy's tril and keras_hub.layers.TransformerDecoder with the same weights copied in.

A graded test is a scenario (a plain function that runs the student's code on
the arguments it gets and returns plain values) and a judge (the test: inputs,
expected values, verdict); see kcaption/grading/sandbox.py.
"""

import itertools
import tempfile
from pathlib import Path

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from kcaption import mistakes
from kcaption.layers.multi_head_attention import MultiHeadAttention
from kcaption.layers.positional import PositionalEncoding
from kcaption.layers.transformer import TransformerDecoderLayer, causal_mask
from kcaption.testing import assert_close, overfit_small_data

N, T, S, E, HEADS = 2, 5, 7, 12, 3


def _values(shape, low=-1.0, high=1.0):
    return np.linspace(low, high, int(np.prod(shape)), dtype="float32").reshape(shape)


def _wavy(shape, scale=1.0):
    return (np.sin(_values(shape, -7.0, 7.0) * 3.1) * scale).astype("float32")


def _set_weights(layer, weights):
    """`layer.set_weights(weights)`, each reshaped to the layer's own shape (same numbers, same order)."""
    layer.set_weights([np.reshape(w, tuple(v.shape)) for w, v in zip(weights, layer.weights)])


# Positional encoding ---------------------------------------------------------


def positional_encoding(x, max_len, dropout=0.0, trainings=(False,)):
    """Scenario: one PositionalEncoding(max_len, D) layer on `x` (N, T, D), called once per flag in `trainings`."""
    layer = PositionalEncoding(max_len=max_len, embed_dim=x.shape[-1], dropout=dropout)
    return [layer(x, training=training) for training in trainings]


@pytest.mark.step("transformer.positional_encoding")
def test_positional_encoding_matches_keras_hub(student):
    x = _wavy((N, 17, 16))
    (out,) = student.run(positional_encoding, x, 17)
    expected = x + np.asarray(keras_hub.layers.SinePositionEncoding()(x))
    assert_close(out, expected, atol=1e-5, what="inputs + PE", mistakes=mistakes.positional_encoding(x))


@pytest.mark.step("transformer.positional_encoding")
def test_positional_encoding_uses_dropout_only_in_training(student):
    x = np.ones((4, 6, 8), "float32")
    inference, dropped = student.run(positional_encoding, x, 6, dropout=0.5, trainings=(False, True))
    reference = x + np.asarray(keras_hub.layers.SinePositionEncoding()(x))
    assert_close(inference, reference, atol=1e-5, what="output with training=False",
                 mistakes=mistakes.positional_encoding(x), hint="No dropout at inference.")
    dropped = np.asarray(dropped)
    assert np.mean(dropped == 0) > 0.2, "training=True: expected about half of the values dropped to 0."
    # Exactly what dropout did: every value is either dropped to 0 or kept and scaled by 1 / (1 - 0.5) = 2.
    kept = dropped != 0
    assert np.mean(kept) > 0.2, f"training=True: expected about half of the values kept, got {np.mean(kept):.0%}."
    assert_close(dropped[kept], 2 * reference[kept], atol=1e-5, what="values kept by dropout (training=True)",
                 hint="dropout(inputs + PE) keeps a value scaled by 1/(1-rate) = 2, or sets it to 0.")
    (no_dropout,) = student.run(positional_encoding, x, 6, dropout=0.0, trainings=(True,))
    assert_close(no_dropout, reference, atol=1e-5, what="output with dropout=0 and training=True",
                 hint="With dropout=0, training=True must give the inference output.")


@pytest.mark.step("transformer.positional_encoding", kit_code=True)
def test_positional_encoding_rejects_too_long_sequences(student):
    with pytest.raises(ValueError, match="max_len=4"):
        student.run(positional_encoding, np.zeros((1, 5, 8), "float32"), 4)
    with pytest.raises(ValueError, match="Received: embed_dim=7"):
        student.run(positional_encoding, np.zeros((1, 4, 7), "float32"), 4)


# Multi-head attention ---------------------------------------------------------


def multi_head_attention(weights, calls, num_heads=HEADS, dropout=0.0, drop_head=0.0, seed=1, dtype=None):
    """Scenario: one MultiHeadAttention holding `weights` [Wq, bq, Wk, bk, Wv, bv, Wo, bo],
    called with each dict of call arguments in `calls` (query and value included)."""
    Wq, _, Wk, _, Wv, *_ = weights
    layer = MultiHeadAttention(Wq.shape[1], num_heads, dropout=dropout, drop_head=drop_head, seed=seed, dtype=dtype)
    layer.build((None, None, Wq.shape[0]), (None, None, Wv.shape[0]), (None, None, Wk.shape[0]))
    _set_weights(layer, weights)
    return [layer(call.pop("query"), call.pop("value"), **call) for call in calls]


def _mha_weights(value_dim=E):
    """Fixed weights for our layer: W (E_in, E), b (E,), in the order Wq, bq, Wk, bk, Wv, bv, Wo, bo."""
    weights = [_wavy((value_dim if i in (2, 4) else E, E), 0.4) if i % 2 == 0 else _values((E,), -0.1, 0.1 * i)
               for i in range(8)]
    weights[0] = _wavy((E, E), 0.5)[::-1].copy()
    return weights


def _keras_mha(weights, dropout=0.0):
    """keras.layers.MultiHeadAttention holding `weights` (ours, the kernels split per head)."""
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = weights
    d = E // HEADS
    keras_mha = keras.layers.MultiHeadAttention(HEADS, d, dropout=dropout)
    keras_mha(np.zeros((1, T, E), "float32"), np.zeros((1, S, Wv.shape[0]), "float32"),
              np.zeros((1, S, Wk.shape[0]), "float32"))
    keras_mha.set_weights([
        Wq.reshape(E, HEADS, d), bq.reshape(HEADS, d), Wk.reshape(-1, HEADS, d), bk.reshape(HEADS, d),
        Wv.reshape(-1, HEADS, d), bv.reshape(HEADS, d), Wo.reshape(HEADS, d, E), bo,
    ])
    return keras_mha


KEYS = 3  # keys of the "readable" layer below (fewer than d = E / HEADS = 4)


def _readable_weights():
    """Weights that make the output show each head's attention weights, as dropout left them.

    The values are one-hot (`_one_hot_values`); Wv copies value s into every head as [e_s, 1], so head i
    outputs [w_0, w_1, w_2, w_0 + w_1 + w_2] (its weights over the 3 keys and their sum), and Wo = I.
    """
    per_head = np.concatenate([np.eye(KEYS), np.ones((KEYS, E // HEADS - KEYS))], axis=1)  # (KEYS, d)
    Wv = np.tile(per_head, (1, HEADS)).astype("float32")  # (KEYS, E)
    zeros = np.zeros(E, "float32")
    return [_wavy((E, E), 0.5), _values((E,), -0.1, 0.1), _wavy((KEYS, E), 0.8), _values((E,), -0.3, 0.2),
            Wv, zeros, np.eye(E, dtype="float32"), zeros]


def _one_hot_values(n):
    return np.tile(np.eye(KEYS, dtype="float32"), (n, 1, 1))  # (n, KEYS, KEYS)


def _per_head(output):
    """A readable layer's output (n, T, E) as (n, h, T, d): [weights over the keys..., their sum] per head."""
    n, t, _ = output.shape
    return np.asarray(output).reshape(n, t, HEADS, E // HEADS).transpose(0, 2, 1, 3)


@pytest.mark.step("transformer.multi_head_attention")
def test_multi_head_attention_matches_keras(student):
    query, value = _wavy((N, T, E)), _wavy((N, S, 10)) * 2
    weights = _mha_weights(value_dim=10)
    ((out, attention),) = student.run(multi_head_attention, weights, [
        dict(query=query, value=value, return_attention_scores=True, training=False)])
    expected, expected_weights = _keras_mha(weights)(query, value, return_attention_scores=True, training=False)
    assert_close(attention, expected_weights, atol=1e-5, what="attention weights (N, h, T, S)",
                 mistakes=mistakes.multi_head_attention(query, value, weights, HEADS, output="weights"))
    assert_close(out, expected, atol=1e-5, what="output",
                 mistakes=mistakes.multi_head_attention(query, value, weights, HEADS, output="output"))


@pytest.mark.step("transformer.multi_head_attention")
def test_multi_head_attention_with_causal_and_padding_masks_matches_keras(student):
    x = _wavy((N, T, E))
    padding = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    causal = np.tril(np.ones((T, T), bool))
    mask = causal[None] & padding[:, None, :]  # (N, T, T)
    (out, weights), ours_2d = student.run(multi_head_attention, _mha_weights(), [
        dict(query=x, value=x, attention_mask=mask, return_attention_scores=True),
        dict(query=x, value=x, attention_mask=causal),
    ])
    keras_mha = _keras_mha(_mha_weights())
    expected, expected_weights = keras_mha(x, x, attention_mask=mask, return_attention_scores=True)
    wrong = {output: mistakes.multi_head_attention(x, x, _mha_weights(), HEADS, attention_mask=mask, output=output)
             for output in ("weights", "output")}
    assert_close(weights, expected_weights, atol=1e-5, what="masked attention weights", mistakes=wrong["weights"],
                 masked=~mask[:, None], hint="a query attends only to the keys its mask row allows.")
    assert_close(out, expected, atol=1e-5, what="masked output", mistakes=wrong["output"])
    assert_close(ours_2d, keras_mha(x, x, use_causal_mask=True), atol=1e-5,
                 what="output with a (T, T) mask", hint="A (T, T) mask must broadcast over the batch and heads.")


@pytest.mark.step("transformer.multi_head_attention")
def test_fully_masked_rows_give_zeros_not_nan(student):
    x = _wavy((N, T, E))
    mask = np.zeros((N, T, T), bool)
    mask[1] = True
    ((out, weights),) = student.run(multi_head_attention, _mha_weights(), [
        dict(query=x, value=x, attention_mask=mask, return_attention_scores=True)])
    assert np.all(np.isfinite(np.asarray(out))), (
        "A fully masked row gave NaN: a softmax over scores that are all -inf has no value; is -inf used?")
    assert_close(np.asarray(weights)[0], np.zeros((HEADS, T, T)), what="weights of a fully masked row",
                 hint="a query with no key left gets weights 0, as in Keras.")
    # Keras zeroes such rows on its return_attention_scores path (its fused path does not).
    expected, _ = _keras_mha(_mha_weights())(x, x, attention_mask=mask, return_attention_scores=True)
    assert_close(out, expected, atol=1e-5, what="output")


@pytest.mark.step("transformer.multi_head_attention")
def test_attention_dropout_only_in_training(student):
    query, value = _wavy((N, T, E)), _wavy((N, S, E))
    inference, (_, weights), trained, inference_again = student.run(multi_head_attention, _mha_weights(), [
        dict(query=query, value=value, training=False),
        dict(query=query, value=value, return_attention_scores=True, training=True),
        dict(query=query, value=value, training=True),
        dict(query=query, value=value, training=False),
    ], dropout=0.5)
    keras_mha = _keras_mha(_mha_weights(), dropout=0.5)
    assert_close(inference, keras_mha(query, value, training=False), atol=1e-5,
                 what="output with training=False", hint="Dropout on the weights must be off at inference.")
    assert_close(np.asarray(weights).sum(-1), np.ones((N, HEADS, T)), atol=1e-5,
                 what="returned weights summed over keys", hint="Return the weights before dropout.")
    assert not np.allclose(np.asarray(trained), np.asarray(inference_again)), (
        "training=True with dropout=0.5 gave the same output as training=False: no dropout happened."
    )
    (no_dropout,) = student.run(multi_head_attention, _mha_weights(), [
        dict(query=query, value=value, training=True)], dropout=0.0)
    assert_close(no_dropout, keras_mha(query, value, training=False), atol=1e-5,
                 what="output with dropout=0 and training=True", hint="With dropout=0, training must change nothing.")

    # Exactly what dropout did, read off a layer whose heads output their (dropped) weights and their sum.
    value = _one_hot_values(N)
    (trained,) = student.run(multi_head_attention, _readable_weights(), [
        dict(query=query, value=value, training=True)], dropout=0.5)
    expected = np.asarray(_keras_mha(_readable_weights())(query, value, return_attention_scores=True)[1])
    heads = _per_head(trained)
    seen, total = heads[..., :KEYS], heads[..., KEYS]
    kept = seen != 0
    assert 0.2 < np.mean(kept) < 0.8, (
        f"training=True with dropout=0.5: expected about half of the attention weights dropped, "
        f"{1 - np.mean(kept):.0%} were."
    )
    assert_close(seen[kept], 2 * expected[kept], atol=1e-5, what="attention weights kept by dropout",
                 hint="dropout keeps an attention weight scaled by 1/(1-0.5) = 2, or sets it to 0.")
    assert_close(total, seen.sum(-1), atol=1e-5, what="each head's output vs its dropped weights",
                 hint="each head's output is the values weighted by its dropped-out weights.")


@pytest.mark.step("transformer.multi_head_attention")
def test_drop_head_drops_whole_heads_and_rescales(student):
    query, value = _wavy((N, T, E)), _wavy((N, S, E))
    keras_mha = _keras_mha(_mha_weights())
    kernel, bias = keras_mha.get_weights()[-2:]
    per_head = []  # what each head adds to the output, via Keras with the other heads' output rows zeroed
    for head in range(HEADS):
        only = np.zeros_like(kernel)
        only[head] = kernel[head]
        keras_mha.set_weights([*keras_mha.get_weights()[:-2], only, np.zeros_like(bias)])
        per_head.append(np.asarray(keras_mha(query, value)))
    keras_mha.set_weights([*keras_mha.get_weights()[:-2], kernel, bias])
    trained, inference = student.run(multi_head_attention, _mha_weights(), [
        dict(query=query, value=value, training=True), dict(query=query, value=value, training=False),
    ], drop_head=0.5)
    out = np.asarray(trained) - bias
    assert_close(inference, keras_mha(query, value), atol=1e-5,
                 what="output with training=False", hint="DropHead is off at inference.")
    for n in range(N):
        combos = [sum(k * h[n] for k, h in zip(keep, per_head)) for keep in itertools.product([0.0, 2.0], repeat=HEADS)]
        errors = [np.abs(out[n] - c).max() for c in combos]
        assert min(errors) < 1e-4, (
            f"example {n}: with drop_head=0.5 every head must be either dropped or scaled by 1/(1-0.5)=2 "
            f"(closest combination off by {min(errors):.3g})."
        )

    # Which heads were dropped, read off a layer whose heads output their weights: per example, not per batch.
    many = 8
    query, value = _wavy((many, T, E)), _one_hot_values(many)
    (trained,) = student.run(multi_head_attention, _readable_weights(), [
        dict(query=query, value=value, training=True)], drop_head=0.5)
    expected = np.asarray(_keras_mha(_readable_weights())(query, value, return_attention_scores=True)[1])
    expected = np.concatenate([expected, expected.sum(-1, keepdims=True)], axis=-1)  # (many, h, T, d)
    heads = _per_head(trained)
    kept = np.abs(heads).max(axis=(2, 3)) > 0  # (many, h)
    assert_close(heads[kept], 2 * expected[kept], atol=1e-5, what="heads kept by DropHead",
                 hint="A kept head is scaled by 1/(1-0.5) = 2, all of it; a dropped one is all zeros.")
    assert 0.2 < np.mean(kept) < 0.8, f"drop_head=0.5 dropped {1 - np.mean(kept):.0%} of the heads, not about half."
    assert len({tuple(row) for row in kept}) > 1, (
        f"DropHead dropped the same heads in all {many} examples: each example draws its own heads to drop."
    )


def make_multi_head_attention(embed_dim, num_heads):
    """Scenario: construct MultiHeadAttention(embed_dim, num_heads)."""
    MultiHeadAttention(embed_dim, num_heads)


def mha_weight_layout(embed_dim, num_heads, query_dim, key_dim, value_dim):
    """Scenario: the names and shapes of the weights MultiHeadAttention.build creates."""
    layer = MultiHeadAttention(embed_dim, num_heads)
    layer.build((None, None, query_dim), (None, None, value_dim), (None, None, key_dim))
    return [w.name for w in layer.weights], [tuple(w.shape) for w in layer.weights]


@pytest.mark.step("transformer.multi_head_attention", kit_code=True)
def test_multi_head_attention_weights_follow_the_documented_layout(student):
    names, shapes = student.run(mha_weight_layout, E, HEADS, 10, 9, 8)
    assert names == ["Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo"], names
    assert shapes == [(10, E), (E,), (9, E), (E,), (8, E), (E,), (E, E), (E,)], shapes


@pytest.mark.step("transformer.multi_head_attention", kit_code=True)
def test_multi_head_attention_rejects_bad_heads(student):
    with pytest.raises(ValueError, match="Received: num_heads=5"):
        student.run(make_multi_head_attention, 12, 5)


# The causal mask -------------------------------------------------------------


def causal_masks(lengths):
    """Scenario: causal_mask(T) for each T in `lengths`."""
    return [causal_mask(length) for length in lengths]


@pytest.mark.step("transformer.causal_mask")
def test_causal_mask_is_lower_triangular(student):
    lengths = [1, 2, 4, 7]
    masks = student.run(causal_masks, lengths)
    literal = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], bool)
    assert_close(np.asarray(masks[2]).astype(bool), literal, atol=0, what="causal_mask(4)",
                 mistakes=mistakes.causal_mask(4),
                 hint=f"Row t is the query: it may attend to the keys s <= t (itself included). Expected\n"
                      f"{literal.astype(int)}\ngot\n{np.asarray(masks[2]).astype(int)}")
    for length, mask in zip(lengths, masks):
        assert_close(np.asarray(mask).astype(bool), np.tril(np.ones((length, length), bool)), atol=0,
                     what=f"causal_mask({length})", mistakes=mistakes.causal_mask(length))


def causal_masks_in_a_graph(lengths):
    """Scenario: causal_mask(T) inside one tf.function traced with T a scalar tensor, run for each T in `lengths`."""
    in_graph = tf.function(lambda length: causal_mask(length), input_signature=[tf.TensorSpec((), tf.int32)])
    return [in_graph(tf.constant(length)) for length in lengths]


@pytest.mark.step("transformer.causal_mask")
def test_causal_mask_takes_a_tensor_length(student):
    lengths = [2, 5]
    for length, mask in zip(lengths, student.run(causal_masks_in_a_graph, lengths)):
        assert_close(np.asarray(mask).astype(bool), np.tril(np.ones((length, length), bool)), atol=0,
                     what=f"causal_mask(T) with T = {length} a tensor, inside a tf.function",
                     mistakes=mistakes.causal_mask(length))


@pytest.mark.step("transformer.causal_mask")
def test_causal_mask_is_boolean(student):
    for mask in student.run(causal_masks, [1, 3]):
        assert np.asarray(mask).dtype == bool, (
            f"causal_mask gave dtype {np.asarray(mask).dtype}; a mask is boolean (True = may attend): "
            'compare positions, or ops.cast(..., "bool").'
        )


# Transformer decoder layer ----------------------------------------------------


def decoder_layer(weights, memory, calls, feedforward_dim=24, dropout=0.0, num_heads=HEADS):
    """Scenario: a TransformerDecoderLayer (over the student's MultiHeadAttention) holding `weights`,
    called on `memory` with each dict of call arguments in `calls` (inputs included)."""
    layer = TransformerDecoderLayer(memory.shape[-1], num_heads, feedforward_dim=feedforward_dim, dropout=dropout)
    layer.build((None, None, memory.shape[-1]), memory.shape)
    _set_weights(layer, weights)
    return [layer(call.pop("inputs"), memory, **call) for call in calls]


def _decoder_reference(dropout=0.0):
    """keras_hub's TransformerDecoder with fixed weights; the weights (ours are the same numbers, unsplit per head)."""
    memory = _wavy((N, S, E), 0.7)
    reference = keras_hub.layers.TransformerDecoder(intermediate_dim=24, num_heads=HEADS, dropout=dropout)
    reference(_wavy((N, T, E)), memory)
    weights = [_wavy(w.shape, 0.3) + 0.01 * i for i, w in enumerate(reference.get_weights())]
    reference.set_weights(weights)
    return reference, weights, memory


DECODER_HINT = ("Post-norm blocks: x = norm(x + dropout(sublayer(x))): causal self-attention (with the padding "
                "mask), then cross-attention from x to memory, then the feed-forward block.")


@pytest.mark.step("transformer.decoder_layer")
def test_decoder_layer_matches_keras_hub_transformer_decoder(student):
    reference, weights, memory = _decoder_reference()
    x = _wavy((N, T, E), 1.3)
    padding = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    out, padded = student.run(decoder_layer, weights, memory, [dict(inputs=x), dict(inputs=x, padding_mask=padding)])
    assert_close(out, reference(x, memory), atol=1e-4, what="decoder layer output", hint=DECODER_HINT)
    assert_close(padded, reference(x, memory, decoder_padding_mask=padding),
                 atol=1e-4, what="decoder layer output with padding", hint=DECODER_HINT)


@pytest.mark.step("transformer.decoder_layer")
def test_future_tokens_do_not_change_past_outputs(student):
    reference, weights, memory = _decoder_reference()
    x = _wavy((N, T, E))
    changed = x.copy()
    changed[:, 3:] = 5.0
    out_changed, out = student.run(decoder_layer, weights, memory, [dict(inputs=changed), dict(inputs=x)])
    assert_close(out_changed[:, :3], out[:, :3], atol=1e-5,
                 what="outputs at positions 0..2 after changing positions 3..4",
                 hint="The self-attention must use the causal mask.")
    assert_close(out, reference(x, memory), atol=1e-4, what="decoder layer output")


@pytest.mark.step("transformer.decoder_layer")
def test_padding_mask_hides_padded_tokens(student):
    reference, weights, memory = _decoder_reference()
    x = _wavy((N, T, E), 0.9)
    padding = np.array([[1, 0, 1, 1, 1], [1, 1, 1, 0, 0]], bool)  # a padded token in the middle, two at the end
    changed = x.copy()
    changed[~padding] = -3.0
    out, out_changed = student.run(decoder_layer, weights, memory, [
        dict(inputs=x, padding_mask=padding), dict(inputs=changed, padding_mask=padding)])
    hint = "a padded token is hidden as a key from every query of the self-attention, as the causal mask hides later ones."
    assert_close(np.asarray(out_changed)[padding], np.asarray(out)[padding], atol=1e-5,
                 what="outputs at real tokens after changing the padded ones", hint=hint)
    assert_close(out, reference(x, memory, decoder_padding_mask=padding), atol=1e-4,
                 what="decoder layer output with padding", hint=hint)


def _keras_cross_attention_weights(weights, x, memory, padding):
    """The cross-attention weights (N, h, T, S) of a post-norm decoder layer, from keras layers holding
    keras_hub's weights: x1 = LayerNorm(x + MHA(x, x, causal & padding mask)); MHA(x1, memory)."""
    causal = np.tril(np.ones((x.shape[1], x.shape[1]), bool))
    self_attention = keras.layers.MultiHeadAttention(HEADS, E // HEADS)
    self_attention(x, x)
    self_attention.set_weights(weights[:8])
    norm = keras.layers.LayerNormalization(epsilon=1e-5)
    norm(x)
    norm.set_weights(weights[8:10])
    x1 = norm(x + self_attention(x, x, attention_mask=causal[None] & padding[:, None, :]))
    cross_attention = keras.layers.MultiHeadAttention(HEADS, E // HEADS)
    cross_attention(x1, memory)
    cross_attention.set_weights(weights[10:18])
    return cross_attention(x1, memory, return_attention_scores=True)[1]


@pytest.mark.step("transformer.decoder_layer")
def test_decoder_layer_returns_the_cross_attention_weights(student):
    reference, weights, memory = _decoder_reference()
    x = _wavy((N, T, E), 1.1)
    padding = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    (out, attention), plain = student.run(decoder_layer, weights, memory, [
        dict(inputs=x, padding_mask=padding, return_attention_scores=True), dict(inputs=x, padding_mask=padding)])
    assert_close(plain, reference(x, memory, decoder_padding_mask=padding), atol=1e-4,
                 what="output without return_attention_scores", hint=DECODER_HINT)
    assert_close(out, plain, atol=1e-6, what="output with return_attention_scores=True",
                 hint="return_attention_scores must not change the output.")
    assert np.asarray(attention).shape == (N, HEADS, T, S), (
        f"attention weights: expected the cross-attention's (N, h, T, L) = {(N, HEADS, T, S)}, "
        f"got {np.asarray(attention).shape}: the weights returned are the cross-attention's (queries: the caption, "
        "keys: the memory)."
    )
    assert_close(attention, _keras_cross_attention_weights(weights, x, memory, padding), atol=1e-5,
                 what="cross-attention weights (N, h, T, L)",
                 hint="the cross-attention's queries are the self-attention block's output.")


# A layer whose every block but one adds nothing, and whose attention outputs are their biases (value weights 0),
# so that dropout inside the attention changes nothing: what the layer's own dropout did can be read off.
E_SMALL, HEADS_SMALL, FF_SMALL = 6, 3, 8
# What dropout(0.5) may multiply one position's sub-layer output by (each entry dropped, or kept and scaled by 2),
# and, last, no dropout at all.
MULTIPLIERS = np.concatenate([2.0 * np.array(list(itertools.product([0.0, 1.0], repeat=E_SMALL))),
                              np.ones((1, E_SMALL))])


def _readable_decoder_weights(block):
    """Decoder weights (keras_hub's shapes) in which only `block` ("self", "cross" or "feed-forward") adds to x."""
    shapes = [w.shape for w in _decoder_shapes_small()]
    weights = [_wavy(shape, 0.4) + 0.03 * i for i, shape in enumerate(shapes)]
    for i in (8, 18, 24):  # layer norms: gamma near 1, beta small
        weights[i], weights[i + 1] = 1.0 + 0.3 * _wavy(shapes[i]), 0.1 * _wavy(shapes[i + 1])
    for start, name in ((0, "self"), (10, "cross")):
        weights[start + 4] = np.zeros(shapes[start + 4], "float32")  # value kernel
        weights[start + 5] = np.zeros(shapes[start + 5], "float32")  # value bias: the heads output 0
        weights[start + 7] = _values(shapes[start + 7], 0.5, 1.5) * (name == block)  # the output: its bias
    if block != "feed-forward":
        weights[22], weights[23] = np.zeros(shapes[22], "float32"), np.zeros(shapes[23], "float32")
    return weights


def _decoder_shapes_small():
    layer = keras_hub.layers.TransformerDecoder(intermediate_dim=FF_SMALL, num_heads=HEADS_SMALL)
    layer(np.zeros((1, 2, E_SMALL), "float32"), np.zeros((1, 1, E_SMALL), "float32"))
    return layer.get_weights()


def _layer_norm(z, gamma, beta):
    z = np.asarray(z, "float64")
    return (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5) * gamma + beta


def _dropout_multipliers(block, weights, x, out):
    """Per position, what `block`'s sub-layer output was multiplied by (a row of MULTIPLIERS) that best explains
    `out` (N, T, E) of a layer holding `_readable_decoder_weights(block)`, and how far off it is."""
    scaled = MULTIPLIERS[:, None, None, :]  # (candidates, 1, 1, E)
    self_norm, cross_norm, ffn_norm = weights[8:10], weights[18:20], weights[24:26]
    if block == "self":
        x2 = _layer_norm(_layer_norm(x + scaled * weights[7], *self_norm), *cross_norm)
        candidates = _layer_norm(x2, *ffn_norm)
    elif block == "cross":
        x2 = _layer_norm(_layer_norm(x, *self_norm) + scaled * weights[17], *cross_norm)
        candidates = _layer_norm(x2, *ffn_norm)
    else:
        x2 = _layer_norm(_layer_norm(x, *self_norm), *cross_norm)
        hidden = np.maximum(x2 @ weights[20] + weights[21], 0.0) @ weights[22] + weights[23]
        candidates = _layer_norm(x2 + scaled * hidden, *ffn_norm)
    errors = np.abs(candidates - np.asarray(out, "float64")).max(-1)  # (candidates, N, T)
    return MULTIPLIERS[errors.argmin(0)], errors.min(0)


@pytest.mark.step("transformer.decoder_layer")
def test_decoder_layer_uses_dropout_only_in_training(student):
    reference, weights, memory = _decoder_reference(dropout=0.5)
    x = _wavy((N, T, E), 1.2)
    padding = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    inference, trained = student.run(decoder_layer, weights, memory, [
        dict(inputs=x, padding_mask=padding, training=False), dict(inputs=x, padding_mask=padding, training=True)],
        dropout=0.5)
    expected = reference(x, memory, decoder_padding_mask=padding, training=False)
    assert_close(inference, expected, atol=1e-4, what="output with dropout=0.5 and training=False",
                 hint="No dropout at inference (training=False).")
    assert not np.allclose(np.asarray(trained), np.asarray(inference), atol=1e-4), (
        "training=True with dropout=0.5 gave the inference output: apply self.dropout_layer(..., training=training).")
    (no_dropout,) = student.run(decoder_layer, weights, memory, [
        dict(inputs=x, padding_mask=padding, training=True)], dropout=0.0)
    assert_close(no_dropout, expected, atol=1e-4, what="output with dropout=0 and training=True",
                 hint="With dropout=0, training=True must give the inference output.")

    # Exactly what dropout did, block by block, read off layers where only that block adds to x.
    x, memory = _wavy((N, T, E_SMALL), 1.5), _wavy((N, S, E_SMALL), 0.8)
    for block in ("self", "cross", "feed-forward"):
        readable = _readable_decoder_weights(block)
        (out,) = student.run(decoder_layer, readable, memory, [dict(inputs=x, training=True)],
                             feedforward_dim=FF_SMALL, dropout=0.5, num_heads=HEADS_SMALL)
        multipliers, error = _dropout_multipliers(block, readable, x, out)
        assert error.max() < 1e-4, (
            f"training=True, {block} block: the output is not norm(x + dropout(sublayer)) for any dropout mask "
            f"(closest off by {error.max():.3g}). Dropout goes on the sub-layer's output, scaled by 1/(1-rate), "
            "before the residual sum and the norm; not on x, nor after the norm."
        )
        undropped = np.all(multipliers == 1.0, axis=-1)
        assert not undropped.any(), (
            f"training=True with dropout=0.5: the {block} block's output was not dropped at {undropped.sum()} of "
            f"{undropped.size} positions. Apply self.dropout_layer(..., training=training) to that sub-layer's output."
        )
        kept = multipliers != 0
        assert 0.2 < np.mean(kept) < 0.8, (
            f"training=True with dropout=0.5: expected about half of the {block} block's output dropped, "
            f"{1 - np.mean(kept):.0%} was. Apply self.dropout_layer(..., training=training) to that "
            "sub-layer's output."
        )


@pytest.mark.step("transformer.decoder_layer")
def test_fully_padded_rows_give_no_nan(student):
    _, weights, memory = _decoder_reference()
    (out,) = student.run(decoder_layer, weights, memory, [
        dict(inputs=_wavy((N, T, E)), padding_mask=np.zeros((N, T), bool))])
    assert np.all(np.isfinite(np.asarray(out))), "A caption that is all padding gave NaN."


def decoder_weight_layout(embed_dim, num_heads, feedforward_dim, memory_dim):
    """Scenario: the paths and shapes of the weights TransformerDecoderLayer.build creates."""
    layer = TransformerDecoderLayer(embed_dim, num_heads, feedforward_dim=feedforward_dim)
    layer.build((None, None, embed_dim), (None, None, memory_dim))
    return [w.path.split("/", 1)[1] for w in layer.weights], [tuple(w.shape) for w in layer.weights]


@pytest.mark.step("transformer.decoder_layer", kit_code=True)
def test_decoder_layer_weights_line_up_with_keras_hub(student):
    paths, shapes = student.run(decoder_weight_layout, E, HEADS, 24, E)
    attention = ["Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo"]
    assert paths == [*(f"self_attention/{w}" for w in attention), "self_norm/gamma", "self_norm/beta",
                     *(f"cross_attention/{w}" for w in attention), "cross_norm/gamma", "cross_norm/beta",
                     "ffn_hidden/kernel", "ffn_hidden/bias", "ffn_output/kernel", "ffn_output/bias",
                     "ffn_norm/gamma", "ffn_norm/beta"], paths
    reference = keras_hub.layers.TransformerDecoder(intermediate_dim=24, num_heads=HEADS)
    reference(np.zeros((1, T, E), "float32"), np.zeros((1, S, E), "float32"))
    expected = [tuple(w.shape) for w in reference.weights]
    assert [int(np.prod(shape)) for shape in shapes] == [int(np.prod(shape)) for shape in expected], (shapes, expected)


def make_decoder_layer(embed_dim, num_heads, feedforward_dim):
    """Scenario: construct TransformerDecoderLayer(embed_dim, num_heads, feedforward_dim)."""
    TransformerDecoderLayer(embed_dim, num_heads, feedforward_dim)


@pytest.mark.step("transformer.decoder_layer", kit_code=True)
def test_decoder_layer_rejects_a_bad_feedforward_dim(student):
    with pytest.raises(ValueError, match="Received: feedforward_dim=0"):
        student.run(make_decoder_layer, 12, 3, 0)


# The captioning transformer ---------------------------------------------------

V, L, C, MAXLEN = 11, 6, 5, 9
CONFIG = dict(vocab_size=V, embed_dim=E, num_heads=HEADS, num_layers=2, feedforward_dim=16, max_length=MAXLEN)


def _captioner(weights, inputs, config):
    """A CaptioningTransformer(**config), built on `inputs`, holding `weights` (reshaped to its own)."""
    from kcaption.models import CaptioningTransformer

    model = CaptioningTransformer(**config)
    if weights is not None:
        model(inputs)
        _set_weights(model, weights)
    return model


def captioner_calls(weights, calls, config=CONFIG):
    """Scenario: one captioner holding `weights`, called with each dict in `calls` (inputs included)."""
    model = _captioner(weights, calls[0]["inputs"], config)
    return [model(call.pop("inputs"), **call) for call in calls]


def captioner_sample(weights, inputs, max_length, config=CONFIG):
    """Scenario: greedy sampling (uncompiled) from the features inputs[0] by one captioner holding `weights`
    (built on `inputs`; None: left unbuilt)."""
    return _captioner(weights, inputs, config).sample(inputs[0], max_length=max_length, compiled=False)


def captioner_save_and_load(weights, inputs, config=CONFIG):
    """Scenario: one captioner holding `weights`, then its .keras save/load copy, both on `inputs`."""
    model = _captioner(weights, inputs, config)
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder) / "transformer.keras")
        loaded = keras.models.load_model(Path(folder) / "transformer.keras")
    return loaded(inputs), model(inputs)


def _decoder_shapes(feedforward_dim):
    layer = keras_hub.layers.TransformerDecoder(intermediate_dim=feedforward_dim, num_heads=HEADS)
    layer(np.zeros((1, 2, E), "float32"), np.zeros((1, 1, E), "float32"))
    return [w.shape for w in layer.get_weights()]


def _captioner_weights():
    """Every weight of the small captioner: feature projection, embedding, 2 decoder layers (keras_hub's
    shapes: attention kernels split per head), output projection."""
    shapes = [(C, E), (E,), (V, E), *_decoder_shapes(16) * 2, (E, V), (V,)]
    return [_wavy(shape, 0.5) + 0.01 * i for i, shape in enumerate(shapes)]


def _reference_logits(weights, features, captions):
    """The captioner's logits from keras / keras_hub layers holding `weights`."""
    proj_kernel, proj_bias, embed = weights[:3]
    memory = features @ proj_kernel + proj_bias
    x = embed[captions]
    x = x + np.asarray(keras_hub.layers.SinePositionEncoding()(x))
    per_layer = (len(weights) - 5) // 2
    for i in range(2):
        layer = keras_hub.layers.TransformerDecoder(intermediate_dim=16, num_heads=HEADS)
        layer(x, memory)
        layer.set_weights(weights[3 + i * per_layer:3 + (i + 1) * per_layer])
        x = layer(x, memory, decoder_padding_mask=captions != 0)
    return np.asarray(x) @ weights[-2] + weights[-1]


def _captions():
    return np.array([[1, 4, 7, 5, 2, 0, 0, 0], [1, 9, 3, 6, 8, 10, 4, 2]], "int32")


@pytest.mark.step("transformer.captioner")
def test_captioner_matches_keras_hub_decoder_stack(student):
    weights, features, captions = _captioner_weights(), _wavy((N, L, C), 2.0), _captions()
    ((logits, attention),) = student.run(captioner_calls, weights, [
        dict(inputs=(features, captions), return_attention=True)])
    # The reference: the same weights in keras / keras_hub layers.
    expected = _reference_logits(weights, features, captions)
    assert_close(logits, expected, atol=1e-4, what="logits")
    assert tuple(attention.shape) == (N, captions.shape[1], L)
    assert_close(np.asarray(attention).sum(-1), np.ones((N, captions.shape[1])), atol=1e-5,
                 what="attention summed over the memory",
                 hint="attention is the last layer's cross-attention weights averaged over the heads.")


@pytest.mark.step("transformer.captioner")
def test_captioner_future_tokens_do_not_change_past_logits(student):
    weights, features, captions = _captioner_weights(), _wavy((N, L, C)), _captions()
    changed = captions.copy()
    changed[:, 4:] = 3
    logits_changed, logits = student.run(captioner_calls, weights, [
        dict(inputs=(features, changed)), dict(inputs=(features, captions))])
    assert_close(logits_changed[:, :4], logits[:, :4], atol=1e-5,
                 what="logits at positions 0..3 after changing tokens 4..",
                 hint="the logits at position t depend only on the tokens 0..t.")
    assert_close(logits, _reference_logits(weights, features, captions), atol=1e-4, what="logits")


@pytest.mark.step("transformer.captioner")
def test_captioner_fully_padded_rows_give_no_nan(student):
    (logits,) = student.run(captioner_calls, _captioner_weights(), [
        dict(inputs=(_wavy((N, L, C)), np.zeros((N, 5), "int32")))])
    assert np.all(np.isfinite(np.asarray(logits))), "An all-<NULL> caption gave NaN logits."


@pytest.mark.step("transformer.captioner")
def test_step_by_step_decode_equals_teacher_forced_pass(student):
    weights, features = _captioner_weights(), _wavy((N, L, C), 3.0)
    ids = np.asarray(student.run(captioner_sample, weights, (features, np.ones((N, 1), "int32")), 6))
    captions_in = np.concatenate([np.ones((N, 1), "int32"), ids[:, :-1]], axis=1)  # what each step was fed
    teacher_forced, *steps = (np.asarray(logits) for logits in student.run(captioner_calls, weights, [
        dict(inputs=(features, captions_in)), *(dict(inputs=(features, captions_in[:, : t + 1])) for t in range(6))]))
    for t in range(6):
        assert_close(steps[t][:, -1], teacher_forced[:, t], atol=1e-5, what=f"logits of decoding step {t}")
    assert_close(teacher_forced, _reference_logits(weights, features, captions_in), atol=1e-4,
                 what="teacher-forced logits")
    ended = np.cumsum(ids == 2, axis=1) - (ids == 2) > 0  # after <END>: padding
    assert np.array_equal(np.where(ended, 0, teacher_forced.argmax(-1)), ids), "greedy ids differ from the argmax"


@pytest.mark.step("transformer.captioner")
def test_captioner_saves_and_loads(student):
    weights, inputs = _captioner_weights(), (_wavy((N, L, C)), _captions())
    reloaded, original = student.run(captioner_save_and_load, weights, inputs)
    assert_close(reloaded, original, atol=1e-6, what="logits after .keras save/load")
    assert_close(original, _reference_logits(weights, *inputs), atol=1e-4, what="logits before saving")


@pytest.mark.step("transformer.captioner", kit_code=True)
def test_sample_rejects_lengths_beyond_the_positional_encoding(student):
    with pytest.raises(ValueError, match="max_length=9"):
        student.run(captioner_sample, None, (_wavy((N, L, C)),), 9, dict(vocab_size=V, max_length=MAXLEN))


def captioner_encode(inputs, config=CONFIG):
    """Scenario: CaptioningTransformer.encode on images or features (no encoder)."""
    return _captioner(None, None, config).encode(inputs)


@pytest.mark.step("transformer.captioner", kit_code=True)
def test_captioner_encode_takes_features_and_refuses_images_without_an_encoder(student):
    spatial, pooled = _wavy((N, L, C)), _wavy((N, C))
    assert_close(student.run(captioner_encode, spatial), spatial, atol=0, what="encode(spatial features)")
    assert_close(student.run(captioner_encode, pooled), pooled[:, None, :], atol=0, what="encode(pooled features)")
    with pytest.raises(ValueError, match="has no encoder"):
        student.run(captioner_encode, _values((N, 8, 8, 3), 0.0, 1.0))


def config_round_trip(name, kwargs):
    """Scenario: get_config() of a layer or model made with `kwargs`, and of its from_config copy (those keys only)."""
    from kcaption.models import CaptioningTransformer

    kinds = {"PositionalEncoding": PositionalEncoding, "MultiHeadAttention": MultiHeadAttention,
             "TransformerDecoderLayer": TransformerDecoderLayer, "CaptioningTransformer": CaptioningTransformer}
    layer = kinds[name](**kwargs)
    config = layer.get_config()
    again = type(layer).from_config(config).get_config()
    return {key: config.get(key) for key in kwargs}, {key: again.get(key) for key in kwargs}


@pytest.mark.parametrize("name, kwargs", [
    pytest.param("PositionalEncoding", dict(max_len=9, embed_dim=6, dropout=0.25),
                 marks=pytest.mark.step("transformer.positional_encoding", kit_code=True)),
    pytest.param("MultiHeadAttention", dict(embed_dim=8, num_heads=2, dropout=0.25, drop_head=0.5, seed=7),
                 marks=pytest.mark.step("transformer.multi_head_attention", kit_code=True)),
    pytest.param("TransformerDecoderLayer", dict(embed_dim=8, num_heads=2, feedforward_dim=10, dropout=0.25),
                 marks=pytest.mark.step("transformer.decoder_layer", kit_code=True)),
    pytest.param("CaptioningTransformer", dict(vocab_size=13, embed_dim=8, num_heads=2, num_layers=3,
                                               feedforward_dim=10, dropout=0.25, max_length=7),
                 marks=pytest.mark.step("transformer.captioner", kit_code=True)),
])
def test_layers_round_trip_their_config(student, name, kwargs):
    config, again = student.run(config_round_trip, name, kwargs)
    assert config == kwargs, f"{name}.get_config(): expected {kwargs}, got {config}."
    assert again == kwargs, f"{name}.from_config(get_config()).get_config(): expected {kwargs}, got {again}."


@pytest.mark.slow
def test_transformer_captioner_overfits_50_shapes_examples():
    overfit_small_data("transformer")  # the settings of kcaption.testing.OVERFIT, as in lesson 06
