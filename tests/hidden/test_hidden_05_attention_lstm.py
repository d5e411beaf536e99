"""Hidden tests, lesson 05: other shapes, edge cases, gradients.

The reference here is plain NumPy, written from the equations, so it shares
no code with the step under test.
"""

import numpy as np
import pytest
import tensorflow as tf

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


@pytest.mark.step("attention.dot_product")
@pytest.mark.parametrize("n, positions, h", [(1, 9, 3), (2, 16, 8), (4, 2, 5)])
def test_dot_product_attention_other_shapes(n, positions, h):
    A = np.cos(_values((n, positions, h), -5, 5) * 2).astype("float32")
    h_prev = _values((n, h), 2.0, -1.0)
    context, weights = dot_product_attention(h_prev, A)
    expected_context, expected_weights = _numpy_attention(h_prev, A)
    assert_close(weights, expected_weights, atol=1e-5, what="weights", hint="Divide by sqrt(H), H = A.shape[-1].")
    assert_close(context, expected_context, atol=1e-5, what="context")


@pytest.mark.step("attention.dot_product")
def test_dot_product_attention_is_stable_for_large_scores():
    A = _values((2, 5, 4), -100, 100)
    context, weights = dot_product_attention(_values((2, 4), 50, -50), A)
    assert np.all(np.isfinite(np.asarray(weights))), "weights overflow: use ops.softmax (it subtracts the max)."
    expected_context, expected_weights = _numpy_attention(_values((2, 4), 50, -50), A)
    assert_close(weights, expected_weights, atol=1e-5, what="weights")
    assert_close(context, expected_context, atol=1e-3, rtol=1e-4, what="context")


@pytest.mark.step("attention.lstm_cell")
@pytest.mark.parametrize("n, positions, h, d", [(1, 9, 3, 2), (2, 4, 8, 8)])
def test_attention_lstm_cell_other_shapes(n, positions, h, d):
    weights = [_values((d, 4 * h), -0.7, 0.6), _values((h, 4 * h), 0.5, -0.5),
               np.sin(_values((h, 4 * h), -4, 4)).astype("float32"), _values((4 * h,), -0.3, 0.2)]
    x, A = _values((n, d), -2, 1), np.cos(_values((n, positions, h), -6, 6)).astype("float32")
    h_prev, c_prev = _values((n, h), -0.8, 0.8), _values((n, h), 1.0, -1.0)
    cell = AttentionLSTMCell(h)
    cell.build((None, d))
    cell.set_weights(weights)
    h_new, (_, c_new, _) = cell(x, [h_prev, c_prev, A])
    expected_h, expected_c, _ = _numpy_step(x, h_prev, c_prev, A, *weights)
    assert_close(c_new, expected_c, atol=1e-5, what="next c", hint="Gate order i, f, g, o.")
    assert_close(h_new, expected_h, atol=1e-5, what="next h")


@pytest.mark.step("attention.lstm_cell")
def test_attention_lstm_with_initial_state_and_gradients():
    n, t, positions, h, d = 2, 4, 3, 4, 3
    x, A = _values((n, t, d)), np.sin(_values((n, positions, h), -3, 3)).astype("float32")
    h0, c0 = _values((n, h), 0.2, -0.2), _values((n, h), -0.1, 0.1)
    lstm = AttentionLSTM(h)
    lstm.build((None, t, d))
    cell_weights = [_values((d, 4 * h), -0.5, 0.5), _values((h, 4 * h), 0.3, -0.3),
                    _values((h, 4 * h), -0.2, 0.6), _values((4 * h,), 0.1, -0.1)]
    lstm.set_weights(cell_weights)
    A_var = tf.Variable(A)
    with tf.GradientTape() as tape:
        out = lstm(x, [h0, c0, A_var])
        loss = tf.reduce_sum(out**2)
    hs, hh, cc = [], h0, c0
    for step in range(t):
        hh, cc, _ = _numpy_step(x[:, step], hh, cc, A, *cell_weights)
        hs.append(hh)
    assert_close(out, np.stack(hs, axis=1), atol=1e-5, what="hidden states with a given initial state")
    grads = tape.gradient(loss, [*lstm.trainable_weights, A_var])
    missing = [name for name, g in zip(["Wx", "Wh", "Wattn", "b", "features"], grads) if g is None]
    assert not missing, f"no gradient reaches {missing}: is every weight (and the attention) used?"
