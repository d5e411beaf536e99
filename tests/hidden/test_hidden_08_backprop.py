"""Hidden tests, lesson 08: the backward passes on random shapes, edge cases and dtypes.

Each case draws its inputs from its own `np.random.default_rng(seed)`. References: float64 NumPy backward
passes written here, and `tf.GradientTape` over Keras's own layers (`SimpleRNNCell`, `RNN`, `LSTMCell`,
`Embedding`, `sparse_categorical_crossentropy`) holding the same weights.
Scenarios (run the student's code, return plain values) sit right above their tests (the judges).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcaption.backprop import (
    lstm_step_backward,
    rnn_backward,
    rnn_step_backward,
    temporal_softmax_loss_backward,
    word_embedding_backward,
)
from kcaption.testing import assert_close, numeric_gradient, numpy_temporal_softmax_loss, rel_error


def sigmoid(z):
    return 0.5 * (1 + np.tanh(z / 2))  # no overflow for large |z|


def assert_gradients(got, expected, names, *, atol=1e-10, rtol=1e-8, dtype="float64", case=""):
    """Each gradient of `got` against `expected`: count, dtype, shape, values."""
    assert len(got) == len(expected), f"{case}: expected {len(expected)} gradients {names}, got {len(got)}"
    for name, actual, want in zip(names, got, expected):
        actual = np.asarray(actual)
        assert actual.dtype == dtype, f"{case}: {name} has dtype {actual.dtype}, expected {dtype}"
        assert_close(actual, np.asarray(want, np.float64), atol=atol, rtol=rtol, what=f"{name} ({case})")


# --- rnn_step_backward ----------------------------------------------------------------------------------------

RNN_STEP_NAMES = ("dx", "dprev_h", "dWx", "dWh", "db")


def numpy_rnn_step_backward(dnext_h, x, prev_h, next_h, Wx, Wh):
    dz = dnext_h * (1 - next_h**2)
    return dz @ Wx.T, dz @ Wh.T, x.T @ dz, prev_h.T @ dz, dz.sum(axis=0)


def keras_rnn_step_gradients(dnext_h, x, prev_h, Wx, Wh, b):
    """The step's gradients by GradientTape through keras.layers.SimpleRNNCell (float64)."""
    cell = keras.layers.SimpleRNNCell(Wh.shape[0], dtype="float64")
    cell.build(x.shape)
    cell.set_weights([Wx, Wh, b])
    x, prev_h = tf.constant(x), tf.constant(prev_h)
    with tf.GradientTape() as tape:
        tape.watch([x, prev_h])
        next_h, _ = cell(x, [prev_h])
    sources = [x, prev_h, cell.kernel, cell.recurrent_kernel, cell.bias]
    return [g.numpy() for g in tape.gradient(next_h, sources, output_gradients=tf.constant(dnext_h))]


def rnn_step_case(seed, N, D, H, scale=1.0, dtype="float64"):
    rng = np.random.default_rng(seed)
    x, prev_h = rng.normal(size=(N, D)) * scale, np.tanh(rng.normal(size=(N, H)) * scale)
    Wx, Wh, b = rng.normal(size=(D, H)), rng.normal(size=(H, H)), rng.normal(size=H)
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    dnext_h = rng.normal(size=(N, H))
    arrays = [a.astype(dtype) for a in (dnext_h, x, prev_h, next_h, Wx, Wh)]
    return arrays, b.astype(dtype)


def run_rnn_step_backward(dnext_h, x, prev_h, next_h, Wx, Wh):
    """Scenario: the student's rnn_step_backward."""
    return rnn_step_backward(dnext_h, x, prev_h, next_h, Wx, Wh)


@pytest.mark.step("backprop.rnn_step")
@pytest.mark.parametrize("N,D,H", [(1, 2, 3), (1, 1, 1), (5, 3, 3), (4, 6, 2), (3, 4, 4)])
def test_hidden_rnn_step_backward_random_shapes_against_keras(student, N, D, H):
    """Square cases (D == H) included: a transposed product there has the right shape and the wrong values."""
    arrays, b = rnn_step_case(100 + 10 * N + D + H, N, D, H)
    got = student.run(run_rnn_step_backward, *arrays)
    dnext_h, x, prev_h, next_h, Wx, Wh = arrays
    case = f"N={N}, D={D}, H={H}"
    assert_gradients(got, keras_rnn_step_gradients(dnext_h, x, prev_h, Wx, Wh, b), RNN_STEP_NAMES, case=case)
    assert_gradients(got, numpy_rnn_step_backward(*arrays), RNN_STEP_NAMES, case=case)


@pytest.mark.step("backprop.rnn_step")
def test_hidden_rnn_step_backward_saturated_tanh(student):
    """|z| large: tanh' is ~0 where next_h is ~+1 *and* where it is ~-1."""
    arrays, b = rnn_step_case(7, 4, 3, 5, scale=4.0)
    assert np.mean(np.abs(arrays[3]) > 0.99) > 0.3, "the fixture should saturate tanh"
    got = student.run(run_rnn_step_backward, *arrays)
    expected = keras_rnn_step_gradients(arrays[0], arrays[1], arrays[2], arrays[4], arrays[5], b)
    assert_gradients(got, expected, RNN_STEP_NAMES, case="saturated tanh")


@pytest.mark.step("backprop.rnn_step")
def test_hidden_rnn_step_backward_keeps_float32(student):
    arrays, _ = rnn_step_case(8, 3, 2, 4, dtype="float32")
    got = student.run(run_rnn_step_backward, *arrays)
    expected = numpy_rnn_step_backward(*[a.astype("float64") for a in arrays])
    assert_gradients(got, expected, RNN_STEP_NAMES, atol=1e-5, rtol=1e-5, dtype="float32", case="float32 inputs")


# --- rnn_backward ---------------------------------------------------------------------------------------------

RNN_NAMES = ("dx", "dh0", "dWx", "dWh", "db")


def numpy_rnn_backward(dh, x, h0, h, Wx, Wh):
    N, T, D = x.shape
    dx, dWx, dWh, db = np.zeros((N, T, D)), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0])
    carried = np.zeros_like(h0)
    for t in range(T - 1, -1, -1):
        prev_h = h[:, t - 1] if t > 0 else h0
        dz = (dh[:, t] + carried) * (1 - h[:, t] ** 2)
        dx[:, t], carried = dz @ Wx.T, dz @ Wh.T
        dWx, dWh, db = dWx + x[:, t].T @ dz, dWh + prev_h.T @ dz, db + dz.sum(axis=0)
    return dx, carried, dWx, dWh, db


def numpy_rnn_forward(x, h0, Wx, Wh, b):
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ Wx + h @ Wh + b)
        hs.append(h)
    return np.stack(hs, axis=1)


def keras_rnn_gradients(dh, x, h0, Wx, Wh, b):
    """BPTT by GradientTape through keras.layers.RNN(SimpleRNNCell) (float64): (h, gradients)."""
    layer = keras.layers.RNN(keras.layers.SimpleRNNCell(Wh.shape[0], dtype="float64"), return_sequences=True,
                             dtype="float64")
    layer.build(x.shape)
    layer.set_weights([Wx, Wh, b])
    x, h0 = tf.constant(x), tf.constant(h0)
    with tf.GradientTape() as tape:
        tape.watch([x, h0])
        h = layer(x, initial_state=[h0])
    cell = layer.cell
    sources = [x, h0, cell.kernel, cell.recurrent_kernel, cell.bias]
    return h.numpy(), [g.numpy() for g in tape.gradient(h, sources, output_gradients=tf.constant(dh))]


def rnn_case(seed, N, T, D, H, scale=0.5):
    rng = np.random.default_rng(seed)
    x, h0 = rng.normal(size=(N, T, D)), rng.normal(size=(N, H))
    Wx, Wh, b = rng.normal(scale=scale, size=(D, H)), rng.normal(scale=scale, size=(H, H)), rng.normal(size=H)
    dh = rng.normal(size=(N, T, H))
    return dh, x, h0, Wx, Wh, b


def run_rnn_backward(dh, x, h0, h, Wx, Wh):
    """Scenario: the student's rnn_backward."""
    return rnn_backward(dh, x, h0, h, Wx, Wh)


@pytest.mark.step("backprop.rnn")
@pytest.mark.parametrize("N,T,D,H", [(1, 1, 2, 3), (1, 5, 3, 2), (4, 1, 3, 3), (3, 6, 4, 5), (2, 4, 3, 3)])
def test_hidden_rnn_backward_random_shapes_against_keras_rnn(student, N, T, D, H):
    dh, x, h0, Wx, Wh, b = rnn_case(200 + N + 10 * T + 100 * D + H, N, T, D, H)
    h, expected = keras_rnn_gradients(dh, x, h0, Wx, Wh, b)
    got = student.run(run_rnn_backward, dh, x, h0, h, Wx, Wh)
    case = f"N={N}, T={T}, D={D}, H={H}"
    assert_gradients(got, expected, RNN_NAMES, case=case)
    assert_gradients(got, numpy_rnn_backward(dh, x, h0, h, Wx, Wh), RNN_NAMES, case=case)


@pytest.mark.step("backprop.rnn")
def test_hidden_rnn_backward_loss_on_the_last_step_only(student):
    """dh is zero except at t = T-1: every earlier gradient comes only through the dprev_h chain."""
    dh, x, h0, Wx, Wh, b = rnn_case(31, 2, 5, 3, 4, scale=0.8)
    dh[:, :-1] = 0
    h, expected = keras_rnn_gradients(dh, x, h0, Wx, Wh, b)
    got = student.run(run_rnn_backward, dh, x, h0, h, Wx, Wh)
    assert_gradients(got, expected, RNN_NAMES, case="loss on the last step only")
    assert np.abs(np.asarray(got[0])[:, 0]).max() > 1e-3, "dx at t = 0 should not vanish in this fixture"


@pytest.mark.step("backprop.rnn")
def test_hidden_rnn_backward_saturated_and_numeric(student):
    """Large weights (tanh saturates along the way), checked against centred differences too."""
    dh, x, h0, Wx, Wh, b = rnn_case(32, 2, 4, 3, 2, scale=2.0)
    h, expected = keras_rnn_gradients(dh, x, h0, Wx, Wh, b)
    got = student.run(run_rnn_backward, dh, x, h0, h, Wx, Wh)
    assert_gradients(got, expected, RNN_NAMES, case="saturated")

    numeric = numeric_gradient(lambda Wh_: numpy_rnn_forward(x, h0, Wx, Wh_, b), Wh, df=dh)
    assert rel_error(got[3], numeric) < 1e-7, f"dWh vs centred differences: rel_error {rel_error(got[3], numeric):.2e}"


@pytest.mark.step("backprop.rnn")
def test_hidden_rnn_backward_keeps_float32(student):
    dh, x, h0, Wx, Wh, b = rnn_case(33, 3, 3, 2, 4)
    h = numpy_rnn_forward(x, h0, Wx, Wh, b)
    arrays = [a.astype("float32") for a in (dh, x, h0, h, Wx, Wh)]
    got = student.run(run_rnn_backward, *arrays)
    expected = numpy_rnn_backward(*[a.astype("float64") for a in arrays])
    assert_gradients(got, expected, RNN_NAMES, atol=1e-5, rtol=1e-4, dtype="float32", case="float32 inputs")


# --- word_embedding_backward ----------------------------------------------------------------------------------


def numpy_embedding_backward(dout, ids, vocab_size):
    dW = np.zeros((vocab_size, dout.shape[-1]))
    np.add.at(dW, ids.reshape(-1), dout.reshape(-1, dout.shape[-1]))
    return dW


def keras_embedding_gradient(dout, ids, W):
    """dL/dW by GradientTape through keras.layers.Embedding (its IndexedSlices made dense)."""
    layer = keras.layers.Embedding(W.shape[0], W.shape[1], dtype="float64")
    layer.build(ids.shape)
    layer.set_weights([W])
    with tf.GradientTape() as tape:
        out = layer(ids)
    return tf.convert_to_tensor(tape.gradient(out, layer.embeddings, output_gradients=tf.constant(dout))).numpy()


def run_embedding_backward(dout, ids, vocab_size):
    """Scenario: the student's word_embedding_backward."""
    return word_embedding_backward(dout, ids, vocab_size)


@pytest.mark.step("backprop.embedding")
@pytest.mark.parametrize("N,T,V,D,used", [(1, 1, 4, 3, 4), (1, 7, 9, 2, 2), (6, 1, 5, 4, 3), (4, 6, 11, 3, 3)])
def test_hidden_embedding_backward_repeats_and_unused_words(student, N, T, V, D, used):
    """Ids drawn from the first `used` words only: many repeats, and the last words (V-1 too) never occur."""
    rng = np.random.default_rng(300 + N + 10 * T + V)
    ids = rng.integers(0, used, size=(N, T))
    dout = rng.normal(size=(N, T, D))
    got = np.asarray(student.run(run_embedding_backward, dout, ids, V))
    case = f"N={N}, T={T}, V={V}, D={D}"
    assert got.dtype == "float64", f"dW ({case}): dtype {got.dtype}, expected float64 (dout's)"
    assert_close(got, keras_embedding_gradient(dout, ids, rng.normal(size=(V, D))), atol=1e-12, what=f"dW ({case})")
    assert_close(got, numpy_embedding_backward(dout, ids, V), atol=1e-12, what=f"dW ({case})")
    unused = np.setdiff1d(np.arange(V), ids)
    assert np.all(got[unused] == 0), f"dW ({case}): rows of words that never occur ({unused}) must be exactly 0"


@pytest.mark.step("backprop.embedding")
def test_hidden_embedding_backward_one_word_everywhere(student):
    """Every position holds word 2: its row is the sum of all of dout; the others are 0."""
    dout = np.random.default_rng(31).normal(size=(3, 5, 4))
    ids = np.full((3, 5), 2, dtype="int32")
    got = student.run(run_embedding_backward, dout, ids, 6)
    expected = np.zeros((6, 4))
    expected[2] = dout.sum(axis=(0, 1))
    assert_close(got, expected, atol=1e-12, what="dW with one word at every position")


@pytest.mark.step("backprop.embedding")
def test_hidden_embedding_backward_keeps_float32(student):
    rng = np.random.default_rng(32)
    ids = rng.integers(0, 4, size=(3, 4))
    dout = rng.normal(size=(3, 4, 2)).astype("float32")
    got = np.asarray(student.run(run_embedding_backward, dout, ids, 7))
    assert got.dtype == "float32", f"dW: dtype {got.dtype}, expected float32 (dout's)"
    assert_close(got, numpy_embedding_backward(dout.astype("float64"), ids, 7), atol=1e-5, what="float32 dW")


# --- temporal_softmax_loss_backward ---------------------------------------------------------------------------


def numpy_loss_backward(logits, targets, ignore_index):
    z = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    probs[np.arange(targets.shape[0])[:, None], np.arange(targets.shape[1]), targets] -= 1
    return probs * (targets != ignore_index)[..., None] / targets.shape[0]


def keras_loss_gradient(logits, targets, ignore_index):
    """dL/dlogits by GradientTape through keras.losses.sparse_categorical_crossentropy, masked, / N."""
    logits = tf.constant(logits, "float64")
    mask = tf.constant(targets != ignore_index, "float64")
    with tf.GradientTape() as tape:
        tape.watch(logits)
        per_token = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        loss = tf.reduce_sum(per_token * mask) / targets.shape[0]
    return tape.gradient(loss, logits).numpy()


def run_loss_backward(logits, targets, ignore_index):
    """Scenario: the student's temporal_softmax_loss_backward."""
    return temporal_softmax_loss_backward(logits, targets, ignore_index=ignore_index)


def loss_case(seed, N, T, V, ignore_index, scale=1.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(N, T, V)) * scale
    targets = rng.integers(0, V, size=(N, T))
    targets[:, -1] = ignore_index  # at least one ignored position per row
    return logits, targets


@pytest.mark.step("backprop.loss")
@pytest.mark.parametrize("N,T,V,ignore_index", [(1, 1, 3, 0), (1, 5, 4, 0), (5, 1, 6, 2), (3, 4, 7, 3)])
def test_hidden_loss_backward_random_shapes_against_keras(student, N, T, V, ignore_index):
    logits, targets = loss_case(400 + N + 10 * T + V, N, T, V, ignore_index)
    got = np.asarray(student.run(run_loss_backward, logits, targets, ignore_index))
    case = f"N={N}, T={T}, V={V}, ignore_index={ignore_index}"
    assert got.dtype == "float64", f"dlogits ({case}): dtype {got.dtype}, expected float64"
    assert_close(got, keras_loss_gradient(logits, targets, ignore_index), atol=1e-12, what=f"dlogits ({case})")
    assert_close(got, numpy_loss_backward(logits, targets, ignore_index), atol=1e-12, what=f"dlogits ({case})")


@pytest.mark.step("backprop.loss")
def test_hidden_loss_backward_ignore_index_is_not_zero(student):
    """ignore_index=3: target 0 is a real word (it counts), target 3 is ignored."""
    logits, targets = loss_case(41, 3, 4, 5, 3)
    targets[0, 0], targets[1, 1] = 0, 0
    got = student.run(run_loss_backward, logits, targets, 3)
    assert_close(got, numpy_loss_backward(logits, targets, 3), atol=1e-12, what="dlogits with ignore_index=3",
                 masked=np.broadcast_to((targets == 3)[..., None], logits.shape))


@pytest.mark.step("backprop.loss")
def test_hidden_loss_backward_masked_rows_and_fully_masked_batch(student):
    """A row with every target ignored sends back exactly 0; so does a batch of such rows (and no NaN)."""
    logits, targets = loss_case(42, 4, 5, 6, 0)
    targets[1] = 0
    got = np.asarray(student.run(run_loss_backward, logits, targets, 0))
    assert_close(got, numpy_loss_backward(logits, targets, 0), atol=1e-12, what="dlogits with an all-masked row")
    assert np.all(got[1] == 0), "dlogits: the row whose targets are all ignored must be exactly 0"
    everything_masked = np.asarray(student.run(run_loss_backward, logits, np.zeros_like(targets), 0))
    assert_close(everything_masked, np.zeros_like(logits), atol=0, what="dlogits of a fully masked batch")


@pytest.mark.step("backprop.loss")
@pytest.mark.parametrize("dtype,expected_dtype", [("float16", "float32"), ("float32", "float32"), ("float64", "float64")])
def test_hidden_loss_backward_dtype(student, dtype, expected_dtype):
    """As the forward loss: the logits' dtype, at least float32."""
    logits, targets = loss_case(43, 2, 3, 5, 0)
    logits = logits.astype(dtype)
    got = np.asarray(student.run(run_loss_backward, logits, targets, 0))
    assert got.dtype == expected_dtype, f"dlogits from {dtype} logits: dtype {got.dtype}, expected {expected_dtype}"
    atol = 1e-12 if dtype == "float64" else 1e-6
    assert_close(got, numpy_loss_backward(logits.astype("float64"), targets, 0), atol=atol, what=f"{dtype} dlogits")


@pytest.mark.step("backprop.loss")
def test_hidden_loss_backward_large_logits(student):
    """Logits in the hundreds (float32): a softmax taken as exp(x) / sum(exp(x)) overflows."""
    logits, targets = loss_case(44, 2, 3, 6, 0, scale=300.0)
    logits = logits.astype("float32")
    got = student.run(run_loss_backward, logits, targets, 0)
    assert_close(got, numpy_loss_backward(logits.astype("float64"), targets, 0), atol=1e-6, what="dlogits with logits ~300")


@pytest.mark.step("backprop.loss")
def test_hidden_loss_backward_numeric(student):
    logits, targets = loss_case(45, 3, 2, 4, 0)
    got = student.run(run_loss_backward, logits, targets, 0)
    numeric = numeric_gradient(lambda z: numpy_temporal_softmax_loss(z, targets), logits)
    assert rel_error(got, numeric) < 1e-7, f"dlogits vs centred differences: rel_error {rel_error(got, numeric):.2e}"


# --- lstm_step_backward ---------------------------------------------------------------------------------------

LSTM_NAMES = ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db")


def numpy_lstm_step_backward(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    z = x @ Wx + prev_h @ Wh + b
    i, f, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), sigmoid(z[:, 3 * H:])
    g = np.tanh(z[:, 2 * H:3 * H])
    tanh_c = np.tanh(f * prev_c + i * g)
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)
    dz = np.concatenate([dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dc * i * (1 - g**2),
                         dnext_h * tanh_c * o * (1 - o)], axis=1)
    return dz @ Wx.T, dz @ Wh.T, dc * f, x.T @ dz, prev_h.T @ dz, dz.sum(axis=0)


def keras_lstm_step_gradients(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b):
    """The step's gradients by GradientTape through keras.layers.LSTMCell (float64, gates i, f, c, o)."""
    cell = keras.layers.LSTMCell(prev_h.shape[1], dtype="float64")
    cell.build(x.shape)
    cell.set_weights([Wx, Wh, b])
    x, prev_h, prev_c = tf.constant(x), tf.constant(prev_h), tf.constant(prev_c)
    with tf.GradientTape() as tape:
        tape.watch([x, prev_h, prev_c])
        _, (next_h, next_c) = cell(x, [prev_h, prev_c])
    sources = [x, prev_h, prev_c, cell.kernel, cell.recurrent_kernel, cell.bias]
    grads = tape.gradient([next_h, next_c], sources, output_gradients=[tf.constant(dnext_h), tf.constant(dnext_c)])
    return [g.numpy() for g in grads]


def lstm_case(seed, N, D, H, scale=1.0, dtype="float64"):
    rng = np.random.default_rng(seed)
    x, prev_h, prev_c = rng.normal(size=(N, D)) * scale, rng.normal(size=(N, H)), rng.normal(size=(N, H))
    Wx, Wh, b = rng.normal(size=(D, 4 * H)) * scale, rng.normal(size=(H, 4 * H)) * scale, rng.normal(size=4 * H)
    dnext_h, dnext_c = rng.normal(size=(N, H)), rng.normal(size=(N, H))
    return [a.astype(dtype) for a in (dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b)]


def run_lstm_step_backward(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b):
    """Scenario: the student's lstm_step_backward."""
    return lstm_step_backward(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b)


@pytest.mark.step("backprop.lstm_step")
@pytest.mark.parametrize("N,D,H", [(1, 2, 3), (1, 1, 1), (5, 3, 3), (4, 6, 2), (2, 4, 4)])
def test_hidden_lstm_step_backward_random_shapes_against_keras(student, N, D, H):
    arrays = lstm_case(500 + 10 * N + D + H, N, D, H)
    got = student.run(run_lstm_step_backward, *arrays)
    case = f"N={N}, D={D}, H={H}"
    assert_gradients(got, keras_lstm_step_gradients(*arrays), LSTM_NAMES, case=case)
    assert_gradients(got, numpy_lstm_step_backward(*arrays), LSTM_NAMES, case=case)


@pytest.mark.step("backprop.lstm_step")
@pytest.mark.parametrize("path", ["h", "c"])
def test_hidden_lstm_step_backward_one_path_at_a_time(student, path):
    """Only dnext_h, or only dnext_c, is non-zero: each path to the loss alone."""
    arrays = lstm_case(51, 3, 2, 4)
    arrays[1 if path == "h" else 0] = np.zeros_like(arrays[0])
    got = student.run(run_lstm_step_backward, *arrays)
    assert_gradients(got, keras_lstm_step_gradients(*arrays), LSTM_NAMES, case=f"only dnext_{path}")


@pytest.mark.step("backprop.lstm_step")
@pytest.mark.parametrize("scale", [4.0, 300.0])
def test_hidden_lstm_step_backward_saturated_gates(student, scale):
    """Large pre-activations: sigmoid' and tanh' near 0, and no overflow (write them from the activations)."""
    arrays = lstm_case(52, 3, 3, 2, scale=scale)
    got = student.run(run_lstm_step_backward, *arrays)
    assert_gradients(got, keras_lstm_step_gradients(*arrays), LSTM_NAMES, atol=1e-9, case=f"|z| ~ {scale:g}")


@pytest.mark.step("backprop.lstm_step")
def test_hidden_lstm_step_backward_keeps_float32(student):
    arrays = lstm_case(53, 2, 3, 2, dtype="float32")
    got = student.run(run_lstm_step_backward, *arrays)
    expected = numpy_lstm_step_backward(*[a.astype("float64") for a in arrays])
    assert_gradients(got, expected, LSTM_NAMES, atol=1e-5, rtol=1e-4, dtype="float32", case="float32 inputs")


@pytest.mark.step("backprop.lstm_step")
def test_hidden_lstm_step_backward_numeric(student):
    arrays = lstm_case(54, 2, 3, 2)
    dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b = arrays
    got = student.run(run_lstm_step_backward, *arrays)

    def forward(x_):
        z = x_ @ Wx + prev_h @ Wh + b
        H = prev_h.shape[1]
        c = sigmoid(z[:, H:2 * H]) * prev_c + sigmoid(z[:, :H]) * np.tanh(z[:, 2 * H:3 * H])
        return np.concatenate([sigmoid(z[:, 3 * H:]) * np.tanh(c), c], axis=1)

    numeric = numeric_gradient(forward, x, df=np.concatenate([dnext_h, dnext_c], axis=1))
    assert rel_error(got[0], numeric) < 1e-7, f"dx vs centred differences: rel_error {rel_error(got[0], numeric):.2e}"
