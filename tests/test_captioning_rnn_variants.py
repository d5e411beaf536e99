"""CaptioningRNN's variants: stacked layers (`num_layers`) and where the image enters (`inject`).

"init" starts the states from the image (CS231n); "pre" feeds the image as the first input word from
zero states (Show and Tell, the NCTU lab's DecoderRNN). Each graded test comes in two halves
(kcaption/grading/sandbox.py): a scenario, the plain function right above it, runs your code and
returns plain values; the test computes the reference from Keras built-ins with the same weights and judges.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcaption.losses import TemporalSoftmaxLoss
from kcaption.models import CaptioningRNN
from kcaption.testing import assert_close

V, C, D, H = 9, 5, 4, 6
FEATURES = np.linspace(-1, 1, 3 * C).reshape(3, C).astype("float32")
CAPTIONS_IN = np.array([[1, 4, 5, 6, 2], [1, 7, 2, 0, 0], [1, 2, 0, 0, 0]])
EPSILON = 1e-5  # the "pre" projection's BatchNormalization epsilon (PyTorch's BatchNorm1d default)


def linspace(shape, low, high):
    return np.linspace(low, high, int(np.prod(shape))).reshape(shape).astype("float32")


def wave(shape, scale, phase=0.0):
    """Deterministic values that are not monotonic in the token id, so that greedy decoding picks varied words."""
    return (scale * np.sin(1.7 * np.arange(int(np.prod(shape))) + phase)).reshape(shape).astype("float32")


def variant_weights(cell_type, num_layers, inject):
    """Weights layer by layer; each stacked layer gets its own values, so swapping two layers shows.

    The output bias keeps <NULL> from ever being the likeliest word, as in a trained model: greedy
    decoding then never feeds back a <NULL>, which the Keras reference would mask.
    """
    gates = 4 if cell_type == "lstm" else 1
    if inject == "pre":  # Dense (C, D) then BatchNormalization: gamma, beta, moving mean, moving variance
        projection = [wave((C, D), 1.5, 3.0), linspace((D,), -0.1, 0.1), linspace((D,), 0.8, 1.3),
                      linspace((D,), -0.2, 0.3), linspace((D,), -0.1, 0.2), linspace((D,), 0.5, 1.5)]
    else:
        projection = [wave((C, num_layers * H), 1.5, 3.0), linspace((num_layers * H,), -0.1, 0.1)]
    cells = [[wave((D if layer == 0 else H, gates * H), 1.5, layer), wave((H, gates * H), 1.0, 2 + layer),
              linspace((gates * H,), -0.1, 0.2 - 0.1 * layer)] for layer in range(num_layers)]
    return {"feature_projection": projection, "embedding": [wave((V, D), 1.0, 0.5)], "cells": cells,
            "output_projection": [wave((H, V), 4.0), wave((V,), 0.2, 1.0) - 10.0 * (np.arange(V) == 0)]}


def variant_with_weights(weights, cell_type, initial_cell="zeros", inject="init"):
    """A CaptioningRNN whose layers hold `weights`, built layer by layer (without running call())."""
    model = CaptioningRNN(V, cell_type=cell_type, embed_dim=D, hidden_dim=H, initial_cell=initial_cell,
                          num_layers=len(weights["cells"]), inject=inject)
    model.feature_projection.build((None, C))
    model.embedding.build((None, None))
    model.rnn.build((None, None, D))
    model.output_projection.build((None, H))
    model.rnn.cell.set_weights([w for cell in weights["cells"] for w in cell])
    for name in ("feature_projection", "embedding", "output_projection"):
        getattr(model, name).set_weights(weights[name])
    return model


def keras_reference(weights, cell_type, initial_cell, inject, features, captions):
    """The same network from one keras.layers.LSTM (or SimpleRNN) per layer: logits (N, T, V).

    "init": each layer starts from its slice of the projected image. "pre": the layers run over
    [image vector, word vectors] from zero states and the first output is dropped.
    """
    (W_embed,) = weights["embedding"]
    x, mask = W_embed[captions], captions != 0  # (N, T, D), (N, T)
    if inject == "pre":
        W, b, *norm = weights["feature_projection"]
        batch_norm = keras.layers.BatchNormalization(epsilon=EPSILON)
        batch_norm.build((None, D))
        batch_norm.set_weights(norm)
        image = np.asarray(batch_norm(features @ W + b, training=False))  # (N, D)
        x = np.concatenate([image[:, None], x], axis=1)  # (N, 1 + T, D)
        mask = np.concatenate([np.ones_like(mask[:, :1]), mask], axis=1)
        states = [None] * len(weights["cells"])
    else:
        W, b = weights["feature_projection"]
        h0s = np.split(features @ W + b, len(weights["cells"]), axis=-1)  # one (N, H) per layer
        if cell_type == "lstm":
            states = [[h0, h0 if initial_cell == "h0" else np.zeros_like(h0)] for h0 in h0s]
        else:
            states = [[h0] for h0 in h0s]
    for cell_weights, state in zip(weights["cells"], states):
        layer = (keras.layers.LSTM if cell_type == "lstm" else keras.layers.SimpleRNN)(H, return_sequences=True)
        layer.build((None, None, x.shape[-1]))
        layer.set_weights(cell_weights)  # i, f, g, o: the kit's gate order is Keras's
        x = np.asarray(layer(x, initial_state=state, mask=mask))
    if inject == "pre":
        x = x[:, 1:]  # the image step's output scores no word
    W_out, b_out = weights["output_projection"]
    return x @ W_out + b_out


def variant_logits(weights, cell_type, initial_cell, inject, features, captions):
    """Scenario: the teacher-forced logits of a CaptioningRNN variant with the given weights."""
    return variant_with_weights(weights, cell_type, initial_cell, inject)((features, captions), training=False)


VARIANTS = [  # cell_type, num_layers, initial_cell, inject
    ("rnn", 2, "zeros", "init"),
    ("lstm", 2, "h0", "init"),
    ("lstm", 1, "zeros", "pre"),
    ("lstm", 2, "zeros", "pre"),
]


@pytest.mark.step("captioner.forward")
@pytest.mark.parametrize("cell_type, num_layers, initial_cell, inject", VARIANTS)
def test_captioner_variant_matches_keras_layers(student, cell_type, num_layers, initial_cell, inject):
    """CaptioningRNN.call with a stack, or with the image as the first word: the states come from self.initial_state."""
    weights = variant_weights(cell_type, num_layers, inject)
    arguments = (weights, cell_type, initial_cell, inject, FEATURES, CAPTIONS_IN)
    logits = np.asarray(student.run(variant_logits, *arguments))
    expected = keras_reference(*arguments)
    valid = CAPTIONS_IN != 0
    assert_close(logits[valid], expected[valid], atol=1e-5,
                 what=f"CaptioningRNN(cell_type={cell_type!r}, num_layers={num_layers}, inject={inject!r}) "
                      "vs one Keras layer per stacked layer",
                 hint="the recurrent layer must start from self.initial_state(...) of the projected features: "
                      "it builds every layer's state, and for inject='pre' runs the image step.")


def greedy_reference(weights, cell_type, initial_cell, inject, features, max_length):
    """Greedy decoding by re-running the Keras reference over the words so far: (N, max_length) ids."""
    tokens = np.ones((len(features), 1), "int64")  # <START>
    for _ in range(max_length):
        logits = keras_reference(weights, cell_type, initial_cell, inject, features, tokens)
        tokens = np.concatenate([tokens, logits[:, -1].argmax(-1)[:, None]], axis=1)
    return tokens[:, 1:]


def variant_sample(weights, cell_type, initial_cell, inject, features, max_length):
    """Scenario: CaptioningRNN.sample (compiled) of a variant with the given weights."""
    return variant_with_weights(weights, cell_type, initial_cell, inject).sample(features, max_length=max_length)


@pytest.mark.parametrize("cell_type, num_layers, initial_cell, inject", VARIANTS[1::2])
def test_sampling_a_variant_is_step_by_step_argmax(student, cell_type, num_layers, initial_cell, inject):
    weights = variant_weights(cell_type, num_layers, inject)
    ids = np.asarray(student.run(variant_sample, weights, cell_type, initial_cell, inject, FEATURES, 6))
    expected = greedy_reference(weights, cell_type, initial_cell, inject, FEATURES, 6)
    for row, want in zip(ids, expected):
        end = list(want).index(2) + 1 if 2 in want else len(want)  # <END> kept, <NULL> after it
        np.testing.assert_array_equal(row, np.concatenate([want[:end], np.zeros(len(want) - end, row.dtype)]))


@pytest.mark.parametrize("cell_type, num_layers, initial_cell, inject", VARIANTS[1::2])
def test_variant_saves_and_reloads(tmp_path, cell_type, num_layers, initial_cell, inject):
    model = variant_with_weights(variant_weights(cell_type, num_layers, inject), cell_type, initial_cell, inject)
    logits = model((FEATURES, CAPTIONS_IN), training=False)
    model.save(tmp_path / "model.keras")
    clone = keras.models.load_model(tmp_path / "model.keras")
    assert (clone.num_layers, clone.inject, clone.initial_cell) == (num_layers, inject, initial_cell)
    assert_close(clone((FEATURES, CAPTIONS_IN), training=False), logits, atol=1e-6, what="reloaded model's logits")
    np.testing.assert_array_equal(clone.sample(FEATURES, max_length=6), model.sample(FEATURES, max_length=6))


def make_captioner(**kwargs):
    """Scenario: construct a CaptioningRNN (its arguments are checked in __init__)."""
    CaptioningRNN(V, **kwargs)


@pytest.mark.step("captioner.forward", kit_code=True)
def test_variant_arguments_are_checked(student):
    for kwargs, message in [
        (dict(inject="post"), r"Received: inject='post'"),
        (dict(num_layers=0), r"Received: num_layers=0"),
        (dict(cell_type="attn", num_layers=2), r"Received: cell_type='attn', num_layers=2, inject='init'"),
        (dict(cell_type="attn", inject="pre"), r"Received: cell_type='attn', num_layers=1, inject='pre'"),
        (dict(initial_cell="h0", inject="pre"), r"Received: initial_cell='h0', inject='pre'"),
    ]:
        with pytest.raises(ValueError, match=message):
            student.run(make_captioner, **kwargs)


def tiny_dataset(grouped):
    """8 feature vectors, 2 captions each of 6 tokens: one batch of ((features, captions_in), captions_out)."""
    captions = np.array([[1, 3 + (i + j) % 6, 3 + (2 * i + j) % 6, 2, 0, 0] for i in range(8) for j in range(2)])
    features = linspace((8, C), -1, 1) + np.eye(8, C, dtype="float32")
    if grouped:  # (N, G, T): each image encoded once for its G captions (models/captioner.py)
        captions = captions.reshape(8, 2, 6)
    else:
        features = features.repeat(2, axis=0)
    return tf.data.Dataset.from_tensors(((features, captions[..., :-1]), captions[..., 1:]))


@pytest.mark.parametrize("cell_type, num_layers, initial_cell, inject, grouped", [
    ("lstm", 2, "h0", "init", False),
    ("lstm", 2, "zeros", "pre", True),
])
def test_a_few_fit_steps_lower_the_loss(cell_type, num_layers, initial_cell, inject, grouped):
    model = variant_with_weights(variant_weights(cell_type, num_layers, inject), cell_type, initial_cell, inject)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=TemporalSoftmaxLoss(), jit_compile=False)
    history = model.fit(tiny_dataset(grouped).repeat(), epochs=12, steps_per_epoch=1, verbose=0)
    losses = history.history["loss"]  # one step per epoch
    assert np.isfinite(losses).all() and losses[-1] < 0.85 * losses[0], f"loss per step: {np.round(losses, 3)}"
    if inject == "pre":  # fit runs the image's BatchNormalization in training mode: its moving mean moved
        moved = model.feature_projection.layers[-1].moving_mean.numpy() - variant_weights(cell_type, 1, inject)[
            "feature_projection"][4]
        assert np.abs(moved).max() > 1e-3, "the BatchNormalization's moving mean did not change in fit"


def test_build_captioner_takes_an_encoder_and_the_variant():
    """A model trained on an encoder's features captions raw images through that same encoder."""
    from kcaption.models import ImageEncoder, build_captioner

    encoder = ImageEncoder("small_cnn", image_size=16, feature_dim=C)
    model = build_captioner("lstm", V, encoder=encoder, embed_dim=D, hidden_dim=H, num_layers=2, inject="pre")
    assert model.encoder is encoder and (model.num_layers, model.inject) == (2, "pre")
    images = np.linspace(0, 1, 3 * 16 * 16 * 3).reshape(3, 16, 16, 3).astype("float32")
    pooled, _ = encoder(images, training=False)
    assert_close(model((images, CAPTIONS_IN), training=False), model((pooled, CAPTIONS_IN), training=False),
                 atol=1e-6, what="logits from images vs from their features")
