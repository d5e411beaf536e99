"""Lesson 04: the LSTM cell, alone, stacked, masked, and inside the captioner."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcaption.layers import LSTMCell
from kcaption.models import CaptioningRNN
from kcaption.testing import assert_close, check_layer_contract, overfit_small_data


def linspace(shape, low, high, dtype="float32"):
    return np.linspace(low, high, int(np.prod(shape))).reshape(shape).astype(dtype)


def lstm_weights(D, H, dtype="float32"):
    return [linspace((D, 4 * H), -2.1, 1.3, dtype), linspace((H, 4 * H), -0.7, 2.2, dtype),
            linspace((4 * H,), 0.3, 0.7, dtype)]


def numpy_lstm_step(x, h_prev, c_prev, Wx, Wh, b):
    """A plain NumPy LSTM step, gates i, f, g, o."""
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    z = x @ Wx + h_prev @ Wh + b
    H = h_prev.shape[1]
    i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
    c = f * c_prev + i * g
    return o * np.tanh(c), c


@pytest.mark.step("lstm.cell")
def test_lstm_step_matches_numpy_fixture():
    N, D, H = 3, 4, 5
    x, h_prev, c_prev = linspace((N, D), -0.4, 1.2), linspace((N, H), -0.3, 0.7), linspace((N, H), -0.4, 0.9)
    cell = LSTMCell(H, dtype="float64")
    cell.build((N, D))
    weights = lstm_weights(D, H, "float64")
    cell.set_weights(weights)
    h, (next_h, c) = cell(x.astype("float64"), [h_prev.astype("float64"), c_prev.astype("float64")])
    expected_h, expected_c = numpy_lstm_step(x.astype("float64"), h_prev, c_prev, *weights)
    hint = "gates in the order i, f, g, o; c = f * c_prev + i * g; h = o * tanh(c)."
    assert_close(h, expected_h, atol=1e-10, what="LSTMCell h", hint=hint)
    assert_close(c, expected_c, atol=1e-10, what="LSTMCell c", hint=hint)
    assert_close(next_h, expected_h, atol=1e-10, what="LSTMCell next state h", hint="return h, [h, c].")


@pytest.mark.step("lstm.cell")
def test_lstm_matches_keras_lstm_cell_with_masks():
    N, T, D, H = 3, 6, 4, 5
    x = linspace((N, T, D), -1.0, 1.0)
    mask = np.arange(T)[None, :] < np.array([[6], [4], [1]])
    mine = keras.layers.RNN(LSTMCell(H), return_sequences=True, return_state=True)
    reference = keras.layers.RNN(keras.layers.LSTMCell(H), return_sequences=True, return_state=True)
    for layer in (mine, reference):
        layer.build((N, T, D))
        layer.set_weights(lstm_weights(D, H))
    for got, want, name in zip(mine(x, mask=mask), reference(x, mask=mask), ["outputs", "last h", "last c"]):
        assert_close(got, want, atol=1e-5, what=f"RNN(LSTMCell) {name} vs keras.layers.LSTMCell")


@pytest.mark.step("lstm.cell")
def test_keras_lstm_weights_load_into_the_cell_and_back():
    N, T, D, H = 2, 4, 3, 4
    x = linspace((N, T, D), -1.0, 1.0)
    keras_lstm = keras.layers.LSTM(H, return_sequences=True)
    expected = keras_lstm(x)  # Keras's own random initialisation
    mine = keras.layers.RNN(LSTMCell(H), return_sequences=True)
    mine.build((N, T, D))
    mine.set_weights(keras_lstm.get_weights())
    assert_close(mine(x), expected, atol=1e-5, what="LSTMCell with keras.layers.LSTM's weights")
    back = keras.layers.LSTM(H, return_sequences=True)
    back.build((N, T, D))
    back.set_weights(mine.get_weights())
    assert_close(back(x), expected, atol=1e-5, what="keras.layers.LSTM with LSTMCell's weights")


@pytest.mark.step("lstm.cell")
def test_stacked_lstm_cells_match_two_keras_lstms():
    N, T, D, H = 2, 5, 3, 4
    x = linspace((N, T, D), -1.0, 1.0)
    stacked = keras.layers.RNN([LSTMCell(H), LSTMCell(H)], return_sequences=True)
    stacked.build((N, T, D))
    first, second = keras.layers.LSTM(H, return_sequences=True), keras.layers.LSTM(H, return_sequences=True)
    first.build((N, T, D))
    second.build((N, T, H))
    first.set_weights(lstm_weights(D, H))
    second.set_weights(lstm_weights(H, H))
    stacked.set_weights(lstm_weights(D, H) + lstm_weights(H, H))
    assert_close(stacked(x), second(first(x)), atol=1e-5, what="two stacked LSTMCells")


@pytest.mark.step("lstm.cell")
def test_lstm_gradient_check_float64():
    N, D, H = 2, 3, 2
    cell = LSTMCell(H, dtype="float64")
    cell.build((N, D))
    cell.set_weights([0.3 * w for w in lstm_weights(D, H, "float64")])
    inputs = [tf.constant(linspace(s, -0.5, 0.5, "float64")) for s in [(N, D), (N, H), (N, H)]]
    theoretical, numerical = tf.test.compute_gradient(lambda x, h, c: cell(x, [h, c])[1][1], inputs)
    for t, n, name in zip(theoretical, numerical, ["x", "h_prev", "c_prev"]):
        assert_close(t, n, atol=1e-7, what=f"d c / d {name} (float64)")


@pytest.mark.step("lstm.cell")
def test_lstm_cell_layer_contract():
    check_layer_contract(lambda: keras.layers.RNN(LSTMCell(5)), linspace((2, 3, 4), -1, 1), (2, 5))


@pytest.mark.step("lstm.cell")
@pytest.mark.parametrize("initial_cell", ["zeros", "h0"])
def test_lstm_captioner_matches_keras_lstm(initial_cell):
    from test_03_rnn import CAPTIONS_IN, FEATURES, captioner, keras_reference

    model = captioner("lstm", initial_cell=initial_cell)
    valid = CAPTIONS_IN != 0
    logits = np.asarray(model((FEATURES, CAPTIONS_IN)))[valid]
    expected = np.asarray(keras_reference(model)([FEATURES, CAPTIONS_IN]))[valid]
    assert_close(logits, expected, atol=1e-5,
                 what=f"CaptioningRNN(cell_type='lstm', initial_cell={initial_cell!r}) vs keras.layers.LSTM")


def test_initial_cell_is_checked():
    with pytest.raises(ValueError, match="initial_cell='ones'"):
        CaptioningRNN(11, cell_type="lstm", initial_cell="ones")
    with pytest.raises(ValueError, match="only cell_type='lstm'.*cell_type='rnn'"):
        CaptioningRNN(11, cell_type="rnn", initial_cell="h0")


def test_lstm_cell_weights_in_order_and_forget_bias():
    cell = LSTMCell(3)
    cell.build((None, 2))
    assert [(w.name, tuple(w.shape)) for w in cell.weights] == [("Wx", (2, 12)), ("Wh", (3, 12)), ("b", (12,))]
    np.testing.assert_array_equal(np.asarray(cell.b), [0] * 3 + [1] * 3 + [0] * 6)


def test_lstm_cell_bad_units():
    with pytest.raises(ValueError, match="Received: units=0"):
        LSTMCell(0)


@pytest.mark.slow
def test_lstm_captioner_overfits_50_shapes_examples():
    overfit_small_data("lstm", epochs=40, learning_rate=5e-3, threshold=2.0, embed_dim=32, hidden_dim=128)


def test_captioner_config_round_trip():
    model = CaptioningRNN(11, cell_type="lstm", embed_dim=4, hidden_dim=6, initial_cell="h0")
    clone = CaptioningRNN.from_config(model.get_config())
    assert (clone.vocab_size, clone.cell_type, clone.embed_dim, clone.hidden_dim, clone.initial_cell) == (
        11, "lstm", 4, 6, "h0")
