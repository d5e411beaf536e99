"""Lesson 04: the LSTM cell, alone, stacked, masked, and inside the captioner.

Each graded test comes in two halves (kcaption/grading/sandbox.py): a scenario,
the plain function right above it, runs your code and returns plain values; the
test makes the inputs, computes the reference and judges.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcaption import mistakes
from kcaption.layers import LSTMCell
from kcaption.models import CaptioningRNN
from kcaption.testing import (
    assert_close,
    assert_layer_contract,
    captioner_with_weights,
    layer_contract_report,
    overfit_small_data,
)


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


def lstm_step(x, h_prev, c_prev, weights):
    """Scenario: one float64 LSTMCell step with the given weights: h and the next states."""
    cell = LSTMCell(h_prev.shape[1], dtype="float64")
    cell.build(x.shape)
    cell.set_weights(weights)
    return cell(x, [h_prev, c_prev])


@pytest.mark.step("lstm.cell")
def test_lstm_step_matches_numpy_fixture(student):
    N, D, H = 3, 4, 5
    x, h_prev, c_prev = linspace((N, D), -0.4, 1.2), linspace((N, H), -0.3, 0.7), linspace((N, H), -0.4, 0.9)
    weights = lstm_weights(D, H, "float64")
    h, (next_h, c) = student.run(lstm_step, x.astype("float64"), h_prev.astype("float64"), c_prev.astype("float64"),
                                 weights)
    expected_h, expected_c = numpy_lstm_step(x.astype("float64"), h_prev, c_prev, *weights)
    assert_close(h, expected_h, atol=1e-10, what="LSTMCell h",
                 mistakes=mistakes.lstm_cell(x, h_prev, c_prev, *weights, output="h"))
    assert_close(c, expected_c, atol=1e-10, what="LSTMCell c",
                 mistakes=mistakes.lstm_cell(x, h_prev, c_prev, *weights, output="c"))
    assert_close(next_h, expected_h, atol=1e-10, what="LSTMCell next state h", hint="the first state is the new h.")


def lstm_sequence(x, mask, weights):
    """Scenario: keras.layers.RNN over the student's LSTMCell, with a mask: outputs, last h, last c."""
    mine = keras.layers.RNN(LSTMCell(weights[1].shape[0]), return_sequences=True, return_state=True)
    mine.build(x.shape)
    mine.set_weights(weights)
    return mine(x, mask=mask)


@pytest.mark.step("lstm.cell")
def test_lstm_matches_keras_lstm_cell_with_masks(student):
    N, T, D, H = 3, 6, 4, 5
    x = linspace((N, T, D), -1.0, 1.0)
    mask = np.arange(T)[None, :] < np.array([[6], [4], [1]])
    reference = keras.layers.RNN(keras.layers.LSTMCell(H), return_sequences=True, return_state=True)
    reference.build((N, T, D))
    reference.set_weights(lstm_weights(D, H))
    mine = student.run(lstm_sequence, x, mask, lstm_weights(D, H))
    for got, want, name in zip(mine, reference(x, mask=mask), ["outputs", "last h", "last c"]):
        assert_close(got, want, atol=1e-5, what=f"RNN(LSTMCell) {name} vs keras.layers.LSTMCell")


def lstm_with_weights(x, weights):
    """Scenario: keras.layers.RNN(LSTMCell) set with `weights`: its outputs, and its weights read back."""
    mine = keras.layers.RNN(LSTMCell(weights[1].shape[0]), return_sequences=True)
    mine.build(x.shape)
    mine.set_weights(weights)
    return mine(x), mine.get_weights()


@pytest.mark.step("lstm.cell")
def test_keras_lstm_weights_load_into_the_cell_and_back(student):
    N, T, D, H = 2, 4, 3, 4
    x = linspace((N, T, D), -1.0, 1.0)
    keras_lstm = keras.layers.LSTM(H, return_sequences=True)
    expected = keras_lstm(x)  # Keras's own random initialisation
    got, weights_back = student.run(lstm_with_weights, x, keras_lstm.get_weights())
    assert_close(got, expected, atol=1e-5, what="LSTMCell with keras.layers.LSTM's weights")
    back = keras.layers.LSTM(H, return_sequences=True)
    back.build((N, T, D))
    back.set_weights(weights_back)
    assert_close(back(x), expected, atol=1e-5, what="keras.layers.LSTM with LSTMCell's weights")


def stacked_lstm(x, weights):
    """Scenario: keras.layers.RNN over two stacked LSTMCells with the given weights (first cell's, then second's)."""
    H = weights[1].shape[0]
    stacked = keras.layers.RNN([LSTMCell(H), LSTMCell(H)], return_sequences=True)
    stacked.build(x.shape)
    stacked.set_weights(weights)
    return stacked(x)


@pytest.mark.step("lstm.cell")
def test_stacked_lstm_cells_match_two_keras_lstms(student):
    N, T, D, H = 2, 5, 3, 4
    x = linspace((N, T, D), -1.0, 1.0)
    first, second = keras.layers.LSTM(H, return_sequences=True), keras.layers.LSTM(H, return_sequences=True)
    first.build((N, T, D))
    second.build((N, T, H))
    first.set_weights(lstm_weights(D, H))
    second.set_weights(lstm_weights(H, H))
    stacked = student.run(stacked_lstm, x, lstm_weights(D, H) + lstm_weights(H, H))
    assert_close(stacked, second(first(x)), atol=1e-5, what="two stacked LSTMCells")


def lstm_cell_jacobians(x, h_prev, c_prev, weights, points):
    """Scenario: a float64 LSTMCell's Jacobians of c at (x, h_prev, c_prev) by autodiff, and c at each probe point."""
    cell = LSTMCell(h_prev.shape[1], dtype="float64")
    cell.build(x.shape)
    cell.set_weights(weights)
    inputs = [tf.constant(v) for v in (x, h_prev, c_prev)]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        c = cell(inputs[0], inputs[1:])[1][1]
    jacobians = [tape.jacobian(c, v) for v in inputs]
    return jacobians, [cell(x_point, [h_point, c_point])[1][1] for x_point, h_point, c_point in points]


@pytest.mark.step("lstm.cell")
def test_lstm_gradient_check_float64(student):
    from test_03_rnn import as_rows, numerical_jacobians, probe_points

    N, D, H = 2, 3, 2
    weights = [0.3 * w for w in lstm_weights(D, H, "float64")]
    inputs = [linspace(s, -0.5, 0.5, "float64") for s in [(N, D), (N, H), (N, H)]]
    points = probe_points(inputs)
    jacobians, values = student.run(lstm_cell_jacobians, *inputs, weights, points)
    theoretical = [as_rows(j, x.size) for j, x in zip(jacobians, inputs)]
    for t, n, name in zip(theoretical, numerical_jacobians(inputs, values), ["x", "h_prev", "c_prev"]):
        assert_close(t, n, atol=1e-7, what=f"d c / d {name} (float64)")
    reference = numerical_jacobians(inputs, [numpy_lstm_step(*point, *weights)[1] for point in points])
    for t, n, name in zip(theoretical, reference, ["x", "h_prev", "c_prev"]):
        assert_close(t, n, atol=1e-7, what=f"d c / d {name} (float64) vs the NumPy step's",
                     hint="c = f * c_prev + i * g; the other tests compare h and c themselves.")


def lstm_layer_contract(inputs, weights):
    """Scenario: the Keras layer contract of keras.layers.RNN(LSTMCell(5)), as a report of plain values."""
    return layer_contract_report(lambda: keras.layers.RNN(LSTMCell(5)), inputs, weights=weights)


@pytest.mark.step("lstm.cell")
def test_lstm_cell_layer_contract(student):
    x = linspace((2, 3, 4), -1, 1)
    report = student.run(lstm_layer_contract, x, lstm_weights(4, 5))
    assert_layer_contract(report, (2, 5))
    reference = keras.layers.RNN(keras.layers.LSTMCell(5))
    reference.build((2, 3, 4))
    reference.set_weights(lstm_weights(4, 5))
    assert_close(report["output"], reference(x), atol=1e-5, what="keras.layers.RNN(LSTMCell) last h vs keras.layers.LSTMCell")


def lstm_captioner_logits(weights, initial_cell, features, captions):
    """Scenario: CaptioningRNN(cell_type="lstm")'s teacher-forced logits, with the given weights."""
    return captioner_with_weights(weights, "lstm", initial_cell)((features, captions), training=False)


def lstm_captioner_case(initial_cell):
    """The LSTM captioner's scenario arguments, the judge's reference logits (keras.layers.LSTM with the same
    weights and initial state) and the positions that count (not <NULL>)."""
    from test_03_rnn import CAPTIONS_IN, FEATURES, captioner_weights, keras_reference

    weights = captioner_weights("lstm")
    expected = np.asarray(keras_reference(weights, "lstm", initial_cell)([FEATURES, CAPTIONS_IN]))
    return (weights, initial_cell, FEATURES, CAPTIONS_IN), expected, CAPTIONS_IN != 0


@pytest.mark.step("lstm.cell")
@pytest.mark.parametrize("initial_cell", ["zeros", "h0"])
def test_lstm_captioner_matches_keras_lstm(student, initial_cell):
    arguments, expected, valid = lstm_captioner_case(initial_cell)
    logits = np.asarray(student.run(lstm_captioner_logits, *arguments))[valid]
    assert_close(logits, expected[valid], atol=1e-5,
                 what=f"CaptioningRNN(cell_type='lstm', initial_cell={initial_cell!r}) vs keras.layers.LSTM")


@pytest.mark.step("captioner.forward")
@pytest.mark.parametrize("initial_cell", ["zeros", "h0"])
def test_captioner_forward_with_an_lstm_matches_keras_lstm(student, initial_cell):
    """CaptioningRNN.call with cell_type="lstm": h0 and c0 (0, or h0) from self.initial_state reach the LSTM."""
    arguments, expected, valid = lstm_captioner_case(initial_cell)
    logits = np.asarray(student.run(lstm_captioner_logits, *arguments))[valid]
    assert_close(logits, expected[valid], atol=1e-5,
                 what=f"CaptioningRNN(cell_type='lstm', initial_cell={initial_cell!r}) vs keras.layers.LSTM",
                 hint="the LSTM starts from self.initial_state(h0): c0 = 0, or c0 = h0 with initial_cell='h0'.")


def make_captioner(vocab_size, **kwargs):
    """Scenario: construct a CaptioningRNN (its arguments are checked in __init__)."""
    CaptioningRNN(vocab_size, **kwargs)


@pytest.mark.step("captioner.forward", kit_code=True)
def test_initial_cell_is_checked(student):
    with pytest.raises(ValueError, match="initial_cell='ones'"):
        student.run(make_captioner, 11, cell_type="lstm", initial_cell="ones")
    with pytest.raises(ValueError, match="only cell_type='lstm'.*cell_type='rnn'"):
        student.run(make_captioner, 11, cell_type="rnn", initial_cell="h0")


def captioner_initial_state(cell_type, initial_cell, h0):
    """Scenario: CaptioningRNN.initial_state(h0) (for "attn", h0 is the projected spatial features A)."""
    model = CaptioningRNN(11, cell_type=cell_type, embed_dim=4, hidden_dim=h0.shape[-1], initial_cell=initial_cell)
    return model.initial_state(h0)


@pytest.mark.step("captioner.forward", kit_code=True)
def test_captioner_initial_state(student):
    h0, A = linspace((2, 3), -1, 1), linspace((2, 4, 3), -1, 1)
    for cell_type, initial_cell, first, expected in [
        ("rnn", "zeros", h0, [h0]),
        ("lstm", "zeros", h0, [h0, np.zeros_like(h0)]),
        ("lstm", "h0", h0, [h0, h0]),
        ("attn", "zeros", A, [A.mean(axis=1), A.mean(axis=1), A]),
    ]:
        state = student.run(captioner_initial_state, cell_type, initial_cell, first)
        what = f"initial_state of cell_type={cell_type!r}, initial_cell={initial_cell!r}"
        assert len(state) == len(expected), f"{what}: {len(state)} states, expected {len(expected)}"
        for i, (got, want) in enumerate(zip(state, expected)):
            assert_close(got, want, atol=1e-6, what=f"{what}, state {i}")


def lstm_cell_weights_and_sizes(units, input_dim):
    """Scenario: a built LSTMCell's weights (name, shape), its initial bias, state size and output size."""
    cell = LSTMCell(units)
    cell.build((None, input_dim))
    return [(w.name, tuple(w.shape)) for w in cell.weights], cell.b, list(cell.state_size), cell.output_size


@pytest.mark.step("lstm.cell", kit_code=True)
def test_lstm_cell_weights_in_order_and_forget_bias(student):
    weights, bias, state_size, output_size = student.run(lstm_cell_weights_and_sizes, 3, 2)
    assert weights == [("Wx", (2, 12)), ("Wh", (3, 12)), ("b", (12,))]
    np.testing.assert_array_equal(np.asarray(bias), [0] * 3 + [1] * 3 + [0] * 6)
    assert (state_size, output_size) == ([3, 3], 3), (
        f"state_size, output_size = {state_size}, {output_size}, expected [3, 3], 3")


def make_lstm_cell(units):
    """Scenario: construct an LSTMCell (its arguments are checked in __init__)."""
    LSTMCell(units)


@pytest.mark.step("lstm.cell", kit_code=True)
def test_lstm_cell_bad_units(student):
    with pytest.raises(ValueError, match="Received: units=0"):
        student.run(make_lstm_cell, 0)


@pytest.mark.slow
def test_lstm_captioner_overfits_50_shapes_examples():
    overfit_small_data("lstm")  # the settings of kcaption.testing.OVERFIT, as in lesson 04


def captioner_config_round_trip(vocab_size, **kwargs):
    """Scenario: CaptioningRNN.from_config(get_config()): the clone's arguments."""
    clone = CaptioningRNN.from_config(CaptioningRNN(vocab_size, **kwargs).get_config())
    return clone.vocab_size, clone.cell_type, clone.embed_dim, clone.hidden_dim, clone.initial_cell


@pytest.mark.step("captioner.forward", kit_code=True)
def test_captioner_config_round_trip(student):
    clone = student.run(captioner_config_round_trip, 11, cell_type="lstm", embed_dim=4, hidden_dim=6,
                        initial_cell="h0")
    assert clone == (11, "lstm", 4, 6, "h0")
