"""Hidden tests, lesson 04: LSTM cell edge cases, dtypes, masks, serialization.

Scenarios (run the student's code, return plain values) sit right above their tests (the judges).
"""

import tempfile

import keras
import numpy as np
import pytest

from kcaption.layers import LSTMCell
from kcaption.testing import assert_close


def numpy_lstm(x, mask, h0, c0, Wx, Wh, b):
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    H = h0.shape[1]
    h, c, outputs = h0, c0, []
    for t in range(x.shape[1]):
        z = x[:, t] @ Wx + h @ Wh + b
        i, f, g, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sig(z[:, 3 * H:])
        new_c = f * c + i * g
        new_h = o * np.tanh(new_c)
        keep = mask[:, t:t + 1]
        h, c = np.where(keep, new_h, h), np.where(keep, new_c, c)
        outputs.append(h)
    return np.stack(outputs, axis=1), c


def lstm_sequence_from(x, mask, h0, c0, weights):
    """Scenario: a float64 keras.layers.RNN(LSTMCell) with the given weights, initial states and mask:
    outputs and the last c."""
    layer = keras.layers.RNN(LSTMCell(h0.shape[1], dtype="float64"), return_sequences=True, return_state=True,
                             dtype="float64")
    layer.build(x.shape)
    layer.set_weights(weights)
    outputs, _, last_c = layer(x, initial_state=[h0, c0], mask=mask)
    return outputs, last_c


@pytest.mark.step("lstm.cell")
@pytest.mark.parametrize("N,T,D,H", [(1, 1, 2, 3), (1, 6, 4, 2), (5, 1, 3, 3), (4, 7, 5, 8)])
def test_lstm_random_shapes_masks_and_initial_state(student, N, T, D, H):
    rng = np.random.default_rng(N + 10 * T)
    x = rng.normal(size=(N, T, D))
    h0, c0 = rng.normal(size=(N, H)), rng.normal(size=(N, H))
    mask = np.arange(T)[None, :] < rng.integers(1, T + 1, size=N)[:, None]
    weights = [rng.normal(scale=0.5, size=s) for s in [(D, 4 * H), (H, 4 * H), (4 * H,)]]
    outputs, last_c = student.run(lstm_sequence_from, x, mask, h0, c0, weights)
    expected, expected_c = numpy_lstm(x, mask, h0, c0, *weights)
    assert_close(outputs, expected, atol=1e-10, what=f"masked LSTM outputs, N={N}, T={T}")
    assert_close(last_c, expected_c, atol=1e-10, what="last cell state")


def lstm_mixed_precision(x, weights):
    """Scenario: keras.layers.RNN(LSTMCell) under the mixed_float16 policy, fed float16."""
    layer = keras.layers.RNN(LSTMCell(weights[1].shape[0], dtype="mixed_float16"), return_sequences=True,
                             dtype="mixed_float16")
    layer.build(x.shape)
    layer.set_weights(weights)
    return layer(x)


@pytest.mark.step("lstm.cell")
def test_lstm_mixed_precision_float16_inputs(student):
    x = np.linspace(-1, 1, 2 * 3 * 4).reshape(2, 3, 4)
    weights = [np.linspace(-0.5, 0.5, s[0] * s[1] if len(s) == 2 else s[0]).reshape(s) for s in [(4, 8), (2, 8), (8,)]]
    out = student.run(lstm_mixed_precision, x.astype("float16"), [w.astype("float32") for w in weights])
    assert keras.backend.standardize_dtype(out.dtype) == "float16", f"output dtype {out.dtype}, expected float16"
    expected, _ = numpy_lstm(x, np.ones((2, 3), bool), np.zeros((2, 2)), np.zeros((2, 2)), *weights)
    assert_close(np.asarray(out, "float64"), expected, atol=5e-3, what="LSTM under mixed_float16")


def lstm_save_load_and_config(x, weights, units):
    """Scenario: a model holding keras.layers.RNN(LSTMCell) saved to .keras and loaded: (loaded(x), model(x));
    and the units of LSTMCell.from_config(LSTMCell(units).get_config())."""
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.RNN(LSTMCell(weights[1].shape[0]),
                                                                          return_sequences=True)])
    model.set_weights(weights)
    with tempfile.TemporaryDirectory() as folder:
        model.save(f"{folder}/lstm.keras")
        loaded = keras.models.load_model(f"{folder}/lstm.keras")
    return loaded(x), model(x), LSTMCell.from_config(LSTMCell(units, name="c").get_config()).units


@pytest.mark.step("lstm.cell")
def test_lstm_save_load_and_config(student):
    x = np.linspace(-1, 1, 12).reshape(2, 3, 2).astype("float32")
    weights = [np.linspace(-0.6, 0.6, 32).reshape(2, 16), np.linspace(-0.4, 0.5, 64).reshape(4, 16),
               np.linspace(-0.1, 0.2, 16)]
    weights = [w.astype("float32") for w in weights]
    loaded, original, units = student.run(lstm_save_load_and_config, x, weights, 7)
    assert_close(loaded, original, atol=1e-6, what="LSTM after save/load")
    assert units == 7
    expected, _ = numpy_lstm(x, np.ones((2, 3), bool), np.zeros((2, 4)), np.zeros((2, 4)), *weights)
    assert_close(original, expected, atol=1e-5, what="RNN(LSTMCell) in the model before saving")


def lstm_cell_path(weights, c0, steps):
    """Scenario: a float64 LSTMCell run `steps` steps on zero inputs from h = 0, c = c0: c_T and d c_T / d c0."""
    import tensorflow as tf

    H = c0.shape[1]
    cell = LSTMCell(H, dtype="float64")
    cell.build((1, 1))
    cell.set_weights(weights)
    c0 = tf.constant(c0)
    with tf.GradientTape() as tape:
        tape.watch(c0)
        state = [tf.zeros((1, H), "float64"), c0]
        for _ in range(steps):
            _, state = cell(tf.zeros((1, 1), "float64"), state)
    return state[1], tape.gradient(state[1], c0)


@pytest.mark.step("lstm.cell")
def test_lstm_gradients_flow_through_the_cell_path(student):
    """With f = 1, i = 0 (saturated), c passes through time unchanged."""
    H = 2
    big = 30.0
    weights = [np.zeros((1, 4 * H)), np.zeros((H, 4 * H)), np.array([-big] * H + [big] * H + [0.0] * 2 * H)]
    c0 = np.array([[0.3, -0.7]], "float64")
    c_last, grad = student.run(lstm_cell_path, weights, c0, 20)
    assert_close(c_last, c0, atol=1e-9, what="c after 20 steps with f=1, i=0")
    assert_close(grad, np.ones((1, H)), atol=1e-9, what="d c_T / d c_0 with f=1")
