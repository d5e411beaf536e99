"""Hidden tests, lesson 05: other shapes, edge cases, gradients, float64.

The reference here is plain NumPy, written from the equations, so it shares
no code with the step under test. Each test is a scenario (runs the student's
code, returns plain values) and a judge (the test); see kcaption/grading/sandbox.py.
"""

import numpy as np
import pytest
import tensorflow as tf

from kcaption import mistakes
from kcaption.layers.attention import AttentionLSTM, AttentionLSTMCell, dot_product_attention
from kcaption.testing import assert_close


def _values(shape, low=-1.0, high=1.0):
    return np.linspace(low, high, int(np.prod(shape)), dtype="float32").reshape(shape)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_attention(h_prev, A):
    scores = np.einsum("nlh,nh->nl", A.astype("float64"), h_prev) / np.sqrt(A.shape[-1])
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("nl,nlh->nh", weights, A), weights


def _numpy_step(x, h_prev, c_prev, A, Wx, Wh, Wattn, b):
    context, weights = _numpy_attention(h_prev, A)
    z = x @ Wx + h_prev @ Wh + context @ Wattn + b
    z_i, z_f, z_g, z_o = np.split(z, 4, axis=1)
    c = _sigmoid(z_f) * c_prev + _sigmoid(z_i) * np.tanh(z_g)
    return _sigmoid(z_o) * np.tanh(c), c, weights


def attend(h_prev, A):
    """Scenario: the student's dot_product_attention."""
    return dot_product_attention(h_prev, A)


@pytest.mark.step("attention.dot_product")
@pytest.mark.parametrize("n, positions, h", [(1, 9, 3), (2, 16, 8), (4, 2, 5)])
def test_dot_product_attention_other_shapes(student, n, positions, h):
    A = np.cos(_values((n, positions, h), -5, 5) * 2).astype("float32")
    h_prev = _values((n, h), 2.0, -1.0)
    context, weights = student.run(attend, h_prev, A)
    expected_context, expected_weights = _numpy_attention(h_prev, A)
    assert_close(weights, expected_weights, atol=1e-5, what="weights",
                 mistakes=mistakes.dot_product_attention(h_prev, A, output="weights"))
    assert_close(context, expected_context, atol=1e-5, what="context",
                 mistakes=mistakes.dot_product_attention(h_prev, A, output="context"))


@pytest.mark.step("attention.dot_product")
def test_dot_product_attention_is_stable_for_large_scores(student):
    A = _values((2, 5, 4), -100, 100)
    context, weights = student.run(attend, _values((2, 4), 50, -50), A)
    assert np.all(np.isfinite(np.asarray(weights))), "weights overflow: use ops.softmax (it subtracts the max)."
    expected_context, expected_weights = _numpy_attention(_values((2, 4), 50, -50), A)
    assert_close(weights, expected_weights, atol=1e-5, what="weights")
    assert_close(context, expected_context, atol=1e-3, rtol=1e-4, what="context")


@pytest.mark.step("attention.dot_product")
def test_dot_product_attention_keeps_float64(student):
    A = np.cos(_values((2, 7, 6), -5, 5) * 2).astype("float64")
    h_prev = _values((2, 6), 2.0, -1.0).astype("float64")
    context, weights = student.run(attend, h_prev, A)
    for name, value in (("context", context), ("weights", weights)):
        assert np.asarray(value).dtype == np.float64, (
            f"{name}: float64 inputs gave {np.asarray(value).dtype}. Compute in A's dtype: "
            "cast H with ops.cast(..., A.dtype), not to float32."
        )
    expected_context, expected_weights = _numpy_attention(h_prev, A)
    assert_close(weights, expected_weights, atol=1e-12, rtol=1e-12, what="float64 weights",
                 hint="float64 inputs: every step is computed in float64.")
    assert_close(context, expected_context, atol=1e-12, rtol=1e-12, what="float64 context")


def attention_cell_step(x, h_prev, c_prev, A, weights, dtype=None):
    """Scenario: one AttentionLSTMCell step holding `weights` [Wx, Wh, Wattn, b]."""
    cell = AttentionLSTMCell(h_prev.shape[1], dtype=dtype)
    cell.build((None, x.shape[1]))
    cell.set_weights(weights)
    h, (_, c, _) = cell(x, [h_prev, c_prev, A])
    return h, c


def _cell_inputs(n, positions, h, d):
    weights = [_values((d, 4 * h), -0.7, 0.6), _values((h, 4 * h), 0.5, -0.5),
               np.sin(_values((h, 4 * h), -4, 4)).astype("float32"), _values((4 * h,), -0.3, 0.2)]
    x, A = _values((n, d), -2, 1), np.cos(_values((n, positions, h), -6, 6)).astype("float32")
    h_prev, c_prev = _values((n, h), -0.8, 0.8), _values((n, h), 1.0, -1.0)
    return x, h_prev, c_prev, A, weights


@pytest.mark.step("attention.lstm_cell")
@pytest.mark.parametrize("n, positions, h, d", [(1, 9, 3, 2), (2, 4, 8, 8)])
def test_attention_lstm_cell_other_shapes(student, n, positions, h, d):
    x, h_prev, c_prev, A, weights = _cell_inputs(n, positions, h, d)
    h_new, c_new = student.run(attention_cell_step, x, h_prev, c_prev, A, weights)
    expected_h, expected_c, _ = _numpy_step(x, h_prev, c_prev, A, *weights)
    assert_close(c_new, expected_c, atol=1e-5, what="next c",
                 mistakes=mistakes.attention_lstm_cell(x, h_prev, c_prev, A, *weights, output="c"))
    assert_close(h_new, expected_h, atol=1e-5, what="next h",
                 mistakes=mistakes.attention_lstm_cell(x, h_prev, c_prev, A, *weights, output="h"))


@pytest.mark.step("attention.lstm_cell")
def test_attention_lstm_cell_keeps_float64(student):
    x, h_prev, c_prev, A, weights = _cell_inputs(2, 5, 6, 3)
    x, h_prev, c_prev, A = (value.astype("float64") for value in (x, h_prev, c_prev, A))
    weights = [w.astype("float64") for w in weights]
    h_new, c_new = student.run(attention_cell_step, x, h_prev, c_prev, A, weights, dtype="float64")
    for name, value in (("next h", h_new), ("next c", c_new)):
        assert np.asarray(value).dtype == np.float64, (
            f"{name}: a float64 cell on float64 inputs gave {np.asarray(value).dtype}: no cast to float32."
        )
    expected_h, expected_c, _ = _numpy_step(x, h_prev, c_prev, A, *weights)
    assert_close(c_new, expected_c, atol=1e-12, rtol=1e-12, what="float64 next c",
                 hint="float64 inputs: every step is computed in float64.")
    assert_close(h_new, expected_h, atol=1e-12, rtol=1e-12, what="float64 next h")


def attention_lstm_gradients(x, h0, c0, A, weights):
    """Scenario: an AttentionLSTM from [h0, c0, A], its output and the gradients of sum(output**2)
    with respect to its weights and to A (None where no gradient reaches)."""
    lstm = AttentionLSTM(h0.shape[1])
    lstm.build((None, *x.shape[1:]))
    lstm.set_weights(weights)
    A_var = tf.Variable(A)
    with tf.GradientTape() as tape:
        out = lstm(x, [h0, c0, A_var])
        loss = tf.reduce_sum(out**2)
    grads = tape.gradient(loss, [*lstm.trainable_weights, A_var])
    return out, [None if g is None else tf.convert_to_tensor(g) for g in grads]


@pytest.mark.step("attention.lstm_cell")
def test_attention_lstm_with_initial_state_and_gradients(student):
    n, t, positions, h, d = 2, 4, 3, 4, 3
    x, A = _values((n, t, d)), np.sin(_values((n, positions, h), -3, 3)).astype("float32")
    h0, c0 = _values((n, h), 0.2, -0.2), _values((n, h), -0.1, 0.1)
    cell_weights = [_values((d, 4 * h), -0.5, 0.5), _values((h, 4 * h), 0.3, -0.3),
                    _values((h, 4 * h), -0.2, 0.6), _values((4 * h,), 0.1, -0.1)]
    out, grads = student.run(attention_lstm_gradients, x, h0, c0, A, cell_weights)
    hs, hh, cc = [], h0, c0
    for step in range(t):
        hh, cc, _ = _numpy_step(x[:, step], hh, cc, A, *cell_weights)
        hs.append(hh)
    assert_close(out, np.stack(hs, axis=1), atol=1e-5, what="hidden states with a given initial state")
    missing = [name for name, g in zip(["Wx", "Wh", "Wattn", "b", "features"], grads) if g is None]
    assert not missing, f"no gradient reaches {missing}: is every weight (and the attention) used?"
