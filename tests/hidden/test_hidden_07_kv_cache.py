"""Hidden tests, lesson 07: the key/value cache on other shapes, heads and layers, compiled with unknown sizes.

References: the post-norm decoder layer from its equations in NumPy (float64); keras_hub's
TransformerDecoder stack for a whole captioner; the kit's uncached decoder. Each test is a scenario
(runs the student's code, returns plain values) and a judge (the test); see kcaption/grading/sandbox.py.
"""

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kcaption.decoding import greedy_search
from kcaption.layers.transformer import TransformerDecoderLayer
from kcaption.testing import assert_close

pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")

STEP_HINT = ("decode_step at position t is the layer at its last position over the grown cache (the new position "
             "included), then the post-norm residual blocks as in `call`.")


def _wavy(shape, i=0, base=2.7):
    angles = np.linspace(-6.0, 6.0, int(np.prod(shape))) * (base + 0.41 * i) + 0.3 * i
    return np.cos(angles).reshape(shape)


def _set_weights(layer, weights):
    """`layer.set_weights(weights)`, each reshaped to the layer's own shape (same numbers, same order)."""
    layer.set_weights([np.reshape(w, tuple(v.shape)) for w, v in zip(weights, layer.weights)])


def layer_weights(E, F, dtype="float64", offset=0):
    """One decoder layer's 26 weights in its order: self-attention (Wq, bq, ... bo), norm, cross-attention,
    norm, ffn hidden and output, norm. Norms near the identity, small biases, the memory's values counted."""
    shapes = [*[(E, E), (E,)] * 4, (E,), (E,), *[(E, E), (E,)] * 4, (E,), (E,), (E, F), (F,), (F, E), (E,), (E,), (E,)]
    weights = [0.5 * _wavy(shape, offset + i) for i, shape in enumerate(shapes)]
    for i in (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25):  # biases and betas
        weights[i] = 0.2 * weights[i]
    for i in (8, 18, 24):  # gammas
        weights[i] = 1.0 + 0.4 * weights[i]
    weights[14] = 3.0 * weights[14]  # cross-attention Wv
    return [w.astype(dtype) for w in weights]


def _layer_norm(z, gamma, beta):
    return (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5) * gamma + beta


def _attention(query, keys, weights, heads, causal=False):
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = weights
    n, t, s, d = query.shape[0], query.shape[1], keys.shape[1], Wq.shape[1] // heads
    Q, K, V = ((x @ W + b).reshape(n, -1, heads, d) for x, W, b in ((query, Wq, bq), (keys, Wk, bk), (keys, Wv, bv)))
    scores = np.einsum("nthd,nshd->nhts", Q, K) / np.sqrt(d)
    if causal:
        scores = np.where(np.tril(np.ones((t, s), bool)), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("nhts,nshd->nthd", weights, V).reshape(n, t, heads * d) @ Wo + bo


def numpy_decoder_layer(x, memory, weights, heads):
    """The post-norm decoder layer on the whole sequence x (N, T, E), causal, in float64."""
    w = [np.asarray(v, "float64") for v in weights]
    x, memory = np.asarray(x, "float64"), np.asarray(memory, "float64")
    x = _layer_norm(x + _attention(x, x, w[0:8], heads, causal=True), *w[8:10])
    x = _layer_norm(x + _attention(x, memory, w[10:18], heads), *w[18:20])
    return _layer_norm(x + np.maximum(x @ w[20] + w[21], 0.0) @ w[22] + w[23], *w[24:26])


def decode_steps(weights, inputs, memory, num_heads, dtype="float64"):
    """Scenario: a TransformerDecoderLayer holding `weights`, fed inputs (N, T, E) one position at a time
    through decode_step, from an empty cache: each step's output (N, 1, E) and the cache it returned."""
    n, steps, embed_dim = inputs.shape
    layer = TransformerDecoderLayer(embed_dim, num_heads, feedforward_dim=weights[20].shape[-1], dtype=dtype)
    layer.build((None, None, embed_dim), memory.shape)
    _set_weights(layer, weights)
    memory = ops.convert_to_tensor(memory, dtype)
    cache = (ops.zeros((n, 0, embed_dim), dtype), ops.zeros((n, 0, embed_dim), dtype))
    outputs, caches = [], []
    for t in range(steps):
        x, cache = layer.decode_step(ops.convert_to_tensor(inputs[:, t : t + 1], dtype), memory, cache)
        outputs.append(x)
        caches.append(tuple(cache))
    return outputs, caches


@pytest.mark.step("transformer.kv_cache")
@pytest.mark.parametrize("n, steps, embed_dim, heads, length, feedforward_dim", [
    (1, 16, 8, 1, 1, 8),  # one image, one head, a pooled memory (L = 1), 16 positions
    (3, 10, 12, 4, 7, 20),
    (2, 1, 6, 2, 3, 5),  # a single step: the empty cache only
])
def test_decode_step_equals_the_whole_layer_on_other_shapes(student, n, steps, embed_dim, heads, length,
                                                            feedforward_dim):
    weights = layer_weights(embed_dim, feedforward_dim, offset=5)
    x, memory = 1.1 * _wavy((n, steps, embed_dim), 6, 1.9), _wavy((n, length, embed_dim), 7, 2.7)
    outputs, caches = student.run(decode_steps, weights, x, memory, heads)
    expected = numpy_decoder_layer(x, memory, weights, heads)
    Wk, bk, Wv, bv = weights[2:6]
    for t, (out, (keys, values)) in enumerate(zip(outputs, caches)):
        assert_close(out, expected[:, t : t + 1], atol=1e-10, rtol=1e-10,
                     what=f"decode_step output at t = {t} ({heads} heads, L = {length})", hint=STEP_HINT)
        assert_close(keys, x[:, : t + 1] @ Wk + bk, atol=1e-10, rtol=1e-10, what=f"cached keys after t = {t}")
        assert_close(values, x[:, : t + 1] @ Wv + bv, atol=1e-10, rtol=1e-10, what=f"cached values after t = {t}")


def decode_steps_compiled(weights, inputs, memory, num_heads):
    """Scenario: decode_step in one tf.function whose batch size and cache length are unknown (None),
    fed inputs (N, T, E) one position at a time (float32): each step's output and cache."""
    n, steps, embed_dim = inputs.shape
    layer = TransformerDecoderLayer(embed_dim, num_heads, feedforward_dim=weights[20].shape[-1])
    layer.build((None, None, embed_dim), memory.shape)
    _set_weights(layer, weights)
    spec = tf.TensorSpec((None, None, embed_dim), tf.float32)
    step = tf.function(lambda x, memory, keys, values: layer.decode_step(x, memory, (keys, values)),
                       input_signature=[tf.TensorSpec((None, 1, embed_dim), tf.float32), spec, spec, spec])
    cache = (np.zeros((n, 0, embed_dim), "float32"),) * 2
    outputs, caches = [], []
    for t in range(steps):
        x, cache = step(inputs[:, t : t + 1].astype("float32"), memory.astype("float32"), *cache)
        outputs.append(x)
        caches.append(tuple(cache))
    return outputs, caches


@pytest.mark.step("transformer.kv_cache")
def test_decode_step_compiles_with_unknown_batch_and_cache_length(student):
    weights = layer_weights(8, 12, "float32", offset=2)
    x, memory = _wavy((3, 4, 8), 8, 2.1), _wavy((3, 2, 8), 9, 1.4)
    outputs, caches = student.run(decode_steps_compiled, weights, x, memory, 2)
    expected = numpy_decoder_layer(x, memory, weights, 2)
    for t, (out, (keys, _)) in enumerate(zip(outputs, caches)):
        assert_close(out, expected[:, t : t + 1], atol=1e-5, what=f"compiled decode_step output at t = {t}",
                     hint="inside a tf.function N and t are unknown (None): read them with ops.shape, "
                          "and reshape with -1 where a size is unknown.")
        assert np.asarray(keys).shape == (3, t + 1, 8), np.asarray(keys).shape


DEEP = dict(vocab_size=13, embed_dim=8, num_heads=2, num_layers=3, feedforward_dim=12, max_length=17, dropout=0.0)


def model_weights(config, feature_dim):
    """Every weight of a CaptioningTransformer(**config): feature projection, embedding, the decoder layers,
    output projection (which never picks <NULL> or <START>)."""
    E, V = config["embed_dim"], config["vocab_size"]
    weights = [2.0 * _wavy((feature_dim, E), 0), 0.1 * _wavy((E,), 1), _wavy((V, E), 2)]
    for i in range(config["num_layers"]):
        weights += layer_weights(E, config["feedforward_dim"], offset=3 + 26 * i)
    bias = 0.1 * _wavy((V,), 9)
    bias[:3] = [-3.0, -3.0, 0.0]
    return [w.astype("float32") for w in [*weights, _wavy((E, V), 5), bias]]


def _captioner(weights, features, config):
    from kcaption.models import CaptioningTransformer

    model = CaptioningTransformer(**config)
    model((features, np.ones((features.shape[0], 1), "int32")))
    _set_weights(model, weights)
    return model


def keras_hub_logits(weights, features, captions, config):
    """The captioner's logits (N, T, V) from keras_hub layers holding `weights`, in float64."""
    proj_kernel, proj_bias, embed = (np.asarray(w, "float64") for w in weights[:3])
    features = np.asarray(features, "float64")
    memory = (features if features.ndim == 3 else features[:, None]) @ proj_kernel + proj_bias
    x = embed[captions]
    x = x + np.asarray(keras_hub.layers.SinePositionEncoding()(x))
    for i in range(config["num_layers"]):
        layer = keras_hub.layers.TransformerDecoder(
            intermediate_dim=config["feedforward_dim"], num_heads=config["num_heads"], dtype="float64")
        layer(x, memory)
        layer.set_weights([np.reshape(w, v.shape) for w, v in zip(weights[3 + 26 * i : 3 + 26 * (i + 1)], layer.weights)])
        x = np.asarray(layer(x, memory, decoder_padding_mask=captions != 0))
    return x @ weights[-2] + weights[-1]


def cached_and_uncached(weights, features, captions_in, max_length, config=DEEP):
    """Scenario: a captioner fed pooled features: the cached decoder's logits, fed captions_in one token
    per step; greedy captions with the cache and without it (eager)."""
    model = _captioner(weights, features, config)
    next_logits, state, _ = model.start_decoding(features, use_cache=True)
    logits = []
    for t in range(captions_in.shape[1]):
        step, state = next_logits(ops.convert_to_tensor(captions_in[:, t]), state)
        logits.append(step)
    cached = greedy_search(*model.start_decoding(features, use_cache=True), max_length)
    uncached = greedy_search(*model.start_decoding(features, use_cache=False), max_length)
    return ops.stack(logits, axis=1), cached, uncached


@pytest.mark.step("transformer.kv_cache")
def test_deeper_captioner_on_pooled_features_over_sixteen_words(student):
    features = 1.5 * _wavy((3, 7), 3, 1.3).astype("float32")  # pooled (N, C): a memory of one vector
    weights = model_weights(DEEP, 7)
    captions_in = np.array([[1, *range(3, 13), 3, 4, 5, 6, 7], [1, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 7, 7, 7, 7],
                            [1, 5, 5, 5, 5, 9, 9, 9, 9, 4, 4, 4, 4, 8, 8, 8]], "int32")
    logits, cached, uncached = student.run(cached_and_uncached, weights, features, captions_in, 16)
    assert_close(logits, keras_hub_logits(weights, features, captions_in, DEEP), atol=1e-4,
                 what="cached logits of a 3-layer, 2-head captioner over 16 steps (N, T, V)")
    assert np.array_equal(np.asarray(cached), np.asarray(uncached)), (
        f"greedy captions with the cache\n{np.asarray(cached)}\ndiffer from those that re-run the prefix\n"
        f"{np.asarray(uncached)}")
