"""Lesson 03: the vanilla RNN cell, the captioner's forward pass, greedy sampling."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcaption.decoding import greedy_search
from kcaption.layers import RNNCell
from kcaption.models import CaptioningRNN
from kcaption.testing import assert_close, check_layer_contract, overfit_small_data


def linspace(shape, low, high, dtype="float32"):
    return np.linspace(low, high, int(np.prod(shape))).reshape(shape).astype(dtype)


def rnn_weights(D, H):
    return [linspace((D, H), -0.1, 0.9), linspace((H, H), -0.3, 0.7), linspace((H,), -0.2, 0.4)]


# --- RNNCell ---------------------------------------------------------------------


@pytest.mark.step("rnn.cell")
def test_rnn_step_matches_the_cs231n_fixture():
    """The classic check of CS231n's rnn_step_forward (N, D, H = 3, 10, 4)."""
    N, D, H = 3, 10, 4
    cell = RNNCell(H)
    cell.build((N, D))
    cell.set_weights(rnn_weights(D, H))
    h, states = cell(linspace((N, D), -0.4, 0.7), [linspace((N, H), -0.2, 0.5)])
    expected = np.array([
        [-0.58172089, -0.50182032, -0.41232771, -0.31410098],
        [0.66854692, 0.79562378, 0.87755553, 0.92795967],
        [0.97934501, 0.99144213, 0.99646691, 0.99854353],
    ])
    assert_close(h, expected, atol=1e-6, what="RNNCell h", hint="h = tanh(x Wx + h_prev Wh + b).")
    assert_close(states[0], expected, atol=1e-6, what="RNNCell next state", hint="return h, [h].")


@pytest.mark.step("rnn.cell")
def test_rnn_matches_keras_simple_rnn_with_masks():
    N, T, D, H = 3, 5, 4, 6
    x = linspace((N, T, D), -1.0, 1.0)
    mask = np.arange(T)[None, :] < np.array([[5], [3], [1]])
    mine = keras.layers.RNN(RNNCell(H), return_sequences=True)
    reference = keras.layers.RNN(keras.layers.SimpleRNNCell(H), return_sequences=True)
    mine.build((N, T, D))
    reference.build((N, T, D))
    mine.set_weights(rnn_weights(D, H))
    reference.set_weights(rnn_weights(D, H))
    assert_close(mine(x, mask=mask), reference(x, mask=mask), atol=1e-6,
                 what="keras.layers.RNN(RNNCell) vs SimpleRNNCell")


@pytest.mark.step("rnn.cell")
def test_rnn_gradient_check_float64():
    N, D, H = 2, 3, 4
    cell = RNNCell(H, dtype="float64")
    cell.build((N, D))
    cell.set_weights([w.astype("float64") for w in rnn_weights(D, H)])
    x = tf.constant(linspace((N, D), -0.5, 0.5, "float64"))
    h_prev = tf.constant(linspace((N, H), -0.3, 0.3, "float64"))
    theoretical, numerical = tf.test.compute_gradient(lambda x, h: cell(x, [h])[0], [x, h_prev])
    for t, n, name in zip(theoretical, numerical, ["x", "h_prev"]):
        assert_close(t, n, atol=1e-7, what=f"d h / d {name} (float64)")


@pytest.mark.step("rnn.cell")
def test_rnn_cell_layer_contract():
    check_layer_contract(lambda: keras.layers.RNN(RNNCell(5)), linspace((2, 3, 4), -1, 1), (2, 5))


def test_rnn_cell_weights_in_order():
    cell = RNNCell(4)
    cell.build((None, 3))
    assert [(w.name, tuple(w.shape)) for w in cell.weights] == [("Wx", (3, 4)), ("Wh", (4, 4)), ("b", (4,))]


def test_rnn_cell_bad_units():
    with pytest.raises(ValueError, match="Received: units=-3"):
        RNNCell(-3)


# --- CaptioningRNN.call ----------------------------------------------------------

V, C, D, H = 9, 5, 4, 6
FEATURES = linspace((3, C), -1.0, 1.0)
CAPTIONS_IN = np.array([[1, 4, 5, 6, 2], [1, 7, 2, 0, 0], [1, 2, 0, 0, 0]])


def set_captioner_weights(model, cell_weights):
    model.feature_projection.set_weights([linspace((C, H), -0.5, 0.5), linspace((H,), -0.1, 0.1)])
    model.embedding.set_weights([linspace((V, D), -1.0, 1.0)])
    model.rnn.cell.set_weights(cell_weights)
    model.output_projection.set_weights([linspace((H, V), -0.7, 0.7), linspace((V,), -0.2, 0.2)])


def captioner(cell_type="rnn", **kwargs):
    model = CaptioningRNN(V, cell_type=cell_type, embed_dim=D, hidden_dim=H, **kwargs)
    model((FEATURES, CAPTIONS_IN))
    h4 = 4 if cell_type == "lstm" else 1
    set_captioner_weights(model, [linspace((D, h4 * H), -0.4, 0.6), linspace((H, h4 * H), -0.3, 0.3),
                                  linspace((h4 * H,), -0.1, 0.2)])
    return model


def keras_reference(model):
    """The same network from Keras built-ins, with the model's weights."""
    features = keras.Input((C,))
    captions = keras.Input((None,), dtype="int32")
    projection, embedding, output = keras.layers.Dense(H), keras.layers.Embedding(V, D, mask_zero=True), keras.layers.Dense(V)
    h0 = projection(features)
    x = embedding(captions)
    if model.cell_type == "lstm":
        recurrent = keras.layers.LSTM(H, return_sequences=True)
        c0 = h0 if model.initial_cell == "h0" else keras.ops.zeros_like(h0)
        h = recurrent(x, initial_state=[h0, c0])
    else:
        recurrent = keras.layers.SimpleRNN(H, return_sequences=True)
        h = recurrent(x, initial_state=[h0])
    reference = keras.Model([features, captions], output(h))
    projection.set_weights(model.feature_projection.get_weights())
    embedding.set_weights(model.embedding.get_weights())
    recurrent.set_weights(model.rnn.cell.get_weights())
    output.set_weights(model.output_projection.get_weights())
    return reference


@pytest.mark.step("captioner.forward")
def test_captioner_forward_matches_keras_built_ins():
    model = captioner("rnn")
    logits = model((FEATURES, CAPTIONS_IN), training=False)
    expected = keras_reference(model)([FEATURES, CAPTIONS_IN])
    valid = CAPTIONS_IN != 0
    assert_close(np.asarray(logits)[valid], np.asarray(expected)[valid], atol=1e-5, what="CaptioningRNN logits",
                 hint="h0 = feature_projection(features); embed; rnn(x, initial_state=[h0], mask); output_projection.")


@pytest.mark.step("captioner.forward")
def test_captioner_loss_at_init_is_about_log_v():
    from kcaption.losses import temporal_softmax_loss

    model = CaptioningRNN(1000, cell_type="rnn", embed_dim=8, hidden_dim=16)
    captions = np.tile(np.arange(1, 11), (4, 1))
    logits = model((linspace((4, C), -1, 1), captions[:, :-1]))
    loss = float(temporal_softmax_loss(logits, captions[:, 1:])) / 9
    assert abs(loss - np.log(1000)) < 0.5, f"per-word loss at init should be about log V = 6.9, got {loss:.2f}"


@pytest.mark.step("captioner.forward")
def test_captioner_gradients_reach_every_weight():
    from kcaption.losses import temporal_softmax_loss
    from kcaption.models import build_captioner

    model = build_captioner("rnn", V, embed_dim=D, hidden_dim=H, image_size=32)
    images = linspace((2, 32, 32, 3), 0.0, 1.0)
    with tf.GradientTape() as tape:
        loss = temporal_softmax_loss(model((images, CAPTIONS_IN[:2, :-1])), CAPTIONS_IN[:2, 1:])
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads) if g is None]
    assert not missing, f"no gradient reaches {missing}: is every sub-layer used in call()?"


@pytest.mark.step("captioner.forward")
def test_padding_does_not_change_earlier_logits():
    model = captioner("rnn")
    short = model((FEATURES[1:2], CAPTIONS_IN[1:2, :3]))
    padded = model((FEATURES[1:2], CAPTIONS_IN[1:2]))
    assert_close(np.asarray(padded)[:, :3], short, atol=1e-6, what="logits before the padding")


def test_captioner_bad_arguments():
    with pytest.raises(ValueError, match="Received: cell_type='gru'"):
        CaptioningRNN(V, cell_type="gru")
    with pytest.raises(ValueError, match="Received: hidden_dim=0"):
        CaptioningRNN(V, hidden_dim=0)


# --- greedy sampling -------------------------------------------------------------


def scripted(answers, vocab_size=6):
    """A fake model: at step t it scores answers[:, t] highest, whatever it is fed."""
    answers = tf.constant(answers, dtype="int32")

    def next_logits(tokens, state):
        (t,) = state
        logits = tf.one_hot(answers[:, t], vocab_size) * 5.0
        return logits, [t + 1]

    return next_logits


@pytest.mark.step("captioner.sample")
def test_greedy_search_stops_at_end_and_pads():
    answers = np.array([[3, 4, 2, 5, 5], [2, 3, 3, 2, 4], [5, 5, 5, 5, 5]])
    got = greedy_search(scripted(answers), [tf.constant(0)], np.ones(3, "int32"), 5)
    expected = np.array([[3, 4, 2, 0, 0], [2, 0, 0, 0, 0], [5, 5, 5, 5, 5]])
    np.testing.assert_array_equal(np.asarray(got), expected,
                                  err_msg="keep <END> (2), then <NULL> (0) for the rest of that caption.")


@pytest.mark.step("captioner.sample")
def test_greedy_search_feeds_back_the_argmax():
    seen = []

    def next_logits(tokens, state):
        seen.append(np.asarray(tokens).tolist())
        return tf.one_hot((tokens + 1) % 5 + 3, 9), state  # next word depends on the fed word

    out = greedy_search(next_logits, [], np.array([1, 4], "int32"), 3)
    assert seen[0] == [1, 4], f"the first step must be fed start_tokens, got {seen[0]}"
    np.testing.assert_array_equal(np.asarray(out)[:, :-1], np.asarray(seen[1:]).T,
                                  err_msg="each step must be fed the previous step's argmax.")


@pytest.mark.step("captioner.sample")
def test_sample_compiled_equals_eager_and_teacher_forcing():
    model = captioner("rnn")
    compiled = np.asarray(model.sample(FEATURES, max_length=6))
    eager = np.asarray(model.sample(FEATURES, max_length=6, compiled=False))
    np.testing.assert_array_equal(compiled, eager)
    assert compiled.shape == (3, 6) and compiled.dtype == np.int32
    # Feeding the sampled words back with teacher forcing predicts the same words.
    fed = np.concatenate([np.ones((3, 1), "int32"), compiled[:, :-1]], axis=1)
    predicted = np.argmax(np.asarray(model((FEATURES, fed))), axis=-1)
    for n in range(3):
        length = list(compiled[n]).index(2) + 1 if 2 in compiled[n] else 6
        np.testing.assert_array_equal(predicted[n, :length], compiled[n, :length])


# --- overfitting a little data ---------------------------------------------------


@pytest.mark.slow
def test_rnn_captioner_overfits_50_shapes_examples():
    overfit_small_data("rnn", epochs=40, learning_rate=5e-3, threshold=2.0, embed_dim=32, hidden_dim=128)
