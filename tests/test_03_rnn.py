"""Lesson 03: the vanilla RNN cell, the captioner's forward pass, greedy sampling.

Each graded test comes in two halves (kcaption/grading/sandbox.py): a scenario,
the plain function right above it, runs your code and returns plain values; the
test makes the inputs, computes the reference and judges.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kcaption import mistakes
from kcaption.decoding import greedy_search
from kcaption.layers import RNNCell
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


def rnn_weights(D, H):
    return [linspace((D, H), -0.1, 0.9), linspace((H, H), -0.3, 0.7), linspace((H,), -0.2, 0.4)]


def numpy_rnn_step(x, h_prev, Wx, Wh, b):
    """A plain NumPy RNN step."""
    return np.tanh(x @ Wx + h_prev @ Wh + b)


# --- gradient checks (the judge's half) --------------------------------------------

DELTA = 1 / 1024  # tf.test.compute_gradient's step, exactly representable in binary


def probe_points(inputs, delta=DELTA):
    """The points of a central difference: each input moved by +delta, then -delta, one element at a time."""
    points = []
    for i, value in enumerate(inputs):
        for j in range(value.size):
            for sign in (1, -1):
                moved = [v.copy() for v in inputs]
                moved[i].flat[j] += sign * delta
                points.append(moved)
    return points


def numerical_jacobians(inputs, values, delta=DELTA):
    """Central-difference Jacobians from f at `probe_points(inputs)`: one (x_size, y_size) matrix per input,
    laid out as tf.test.compute_gradient's."""
    values = iter(values)
    jacobians = []
    for value in inputs:
        rows = []
        for _ in range(value.size):
            plus, minus = np.asarray(next(values)), np.asarray(next(values))
            rows.append((plus - minus).ravel() / (2 * delta))
        jacobians.append(np.stack(rows))
    return jacobians


def as_rows(jacobian, input_size):
    """A `tape.jacobian` (y's shape + x's shape) in tf.test.compute_gradient's layout (x_size, y_size)."""
    return np.asarray(jacobian).reshape(-1, input_size).T


# --- RNNCell ---------------------------------------------------------------------


def rnn_step(x, h_prev, weights):
    """Scenario: one RNNCell step with the given weights."""
    cell = RNNCell(h_prev.shape[1])
    cell.build(x.shape)
    cell.set_weights(weights)
    h, states = cell(x, [h_prev])
    return h, states[0]


@pytest.mark.step("rnn.cell")
def test_rnn_step_matches_the_cs231n_fixture(student):
    """The classic check of CS231n's rnn_step_forward (N, D, H = 3, 10, 4)."""
    N, D, H = 3, 10, 4
    x, h_prev = linspace((N, D), -0.4, 0.7), linspace((N, H), -0.2, 0.5)
    h, next_h = student.run(rnn_step, x, h_prev, rnn_weights(D, H))
    expected = np.array([
        [-0.58172089, -0.50182032, -0.41232771, -0.31410098],
        [0.66854692, 0.79562378, 0.87755553, 0.92795967],
        [0.97934501, 0.99144213, 0.99646691, 0.99854353],
    ])
    assert_close(h, expected, atol=1e-6, what="RNNCell h", mistakes=mistakes.rnn_cell(x, h_prev, *rnn_weights(D, H)),
                 hint="h = tanh(x Wx + h_prev Wh + b).")
    assert_close(next_h, expected, atol=1e-6, what="RNNCell next state",
                 mistakes=mistakes.rnn_cell(x, h_prev, *rnn_weights(D, H), output="state"),
                 hint="the next state is the new h.")


def rnn_sequence(x, mask, weights):
    """Scenario: keras.layers.RNN over the student's RNNCell, with a mask."""
    mine = keras.layers.RNN(RNNCell(weights[1].shape[0]), return_sequences=True)
    mine.build(x.shape)
    mine.set_weights(weights)
    return mine(x, mask=mask)


@pytest.mark.step("rnn.cell")
def test_rnn_matches_keras_simple_rnn_with_masks(student):
    N, T, D, H = 3, 5, 4, 6
    x = linspace((N, T, D), -1.0, 1.0)
    mask = np.arange(T)[None, :] < np.array([[5], [3], [1]])
    reference = keras.layers.RNN(keras.layers.SimpleRNNCell(H), return_sequences=True)
    reference.build((N, T, D))
    reference.set_weights(rnn_weights(D, H))
    assert_close(student.run(rnn_sequence, x, mask, rnn_weights(D, H)), reference(x, mask=mask), atol=1e-6,
                 what="keras.layers.RNN(RNNCell) vs SimpleRNNCell")


def rnn_step_jacobians(x, h_prev, weights, points):
    """Scenario: a float64 RNNCell's Jacobians of h at (x, h_prev) by autodiff, and h at each probe point."""
    cell = RNNCell(h_prev.shape[1], dtype="float64")
    cell.build(x.shape)
    cell.set_weights(weights)
    x, h_prev = tf.constant(x), tf.constant(h_prev)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, h_prev])
        h = cell(x, [h_prev])[0]
    jacobians = [tape.jacobian(h, x), tape.jacobian(h, h_prev)]
    return jacobians, [cell(x_point, [h_point])[0] for x_point, h_point in points]


@pytest.mark.step("rnn.cell")
def test_rnn_gradient_check_float64(student):
    N, D, H = 2, 3, 4
    weights = [w.astype("float64") for w in rnn_weights(D, H)]
    inputs = [linspace((N, D), -0.5, 0.5, "float64"), linspace((N, H), -0.3, 0.3, "float64")]
    points = probe_points(inputs)
    jacobians, values = student.run(rnn_step_jacobians, *inputs, weights, points)
    theoretical = [as_rows(j, x.size) for j, x in zip(jacobians, inputs)]
    for t, n, name in zip(theoretical, numerical_jacobians(inputs, values), ["x", "h_prev"]):
        assert_close(t, n, atol=1e-7, what=f"d h / d {name} (float64)")
    reference = numerical_jacobians(inputs, [numpy_rnn_step(x, h, *weights) for x, h in points])
    for t, n, name in zip(theoretical, reference, ["x", "h_prev"]):
        assert_close(t, n, atol=1e-7, what=f"d h / d {name} (float64) vs the NumPy step's",
                     hint="h = tanh(x Wx + h_prev Wh + b); the other tests compare h itself.")


def rnn_layer_contract(inputs, weights):
    """Scenario: the Keras layer contract of keras.layers.RNN(RNNCell(5)), as a report of plain values."""
    return layer_contract_report(lambda: keras.layers.RNN(RNNCell(5)), inputs, weights=weights)


@pytest.mark.step("rnn.cell")
def test_rnn_cell_layer_contract(student):
    x = linspace((2, 3, 4), -1, 1)
    report = student.run(rnn_layer_contract, x, rnn_weights(4, 5))
    assert_layer_contract(report, (2, 5))
    reference = keras.layers.RNN(keras.layers.SimpleRNNCell(5))
    reference.build((2, 3, 4))
    reference.set_weights(rnn_weights(4, 5))
    assert_close(report["output"], reference(x), atol=1e-6, what="keras.layers.RNN(RNNCell) last h vs SimpleRNNCell")


def rnn_cell_weights_and_sizes(units, input_dim):
    """Scenario: a built RNNCell's weights (name, shape), state size and output size."""
    cell = RNNCell(units)
    cell.build((None, input_dim))
    return [(w.name, tuple(w.shape)) for w in cell.weights], cell.state_size, cell.output_size


@pytest.mark.step("rnn.cell", kit_code=True)
def test_rnn_cell_weights_in_order(student):
    weights, state_size, output_size = student.run(rnn_cell_weights_and_sizes, 4, 3)
    assert weights == [("Wx", (3, 4)), ("Wh", (4, 4)), ("b", (4,))]
    assert (state_size, output_size) == (4, 4), f"state_size, output_size = {state_size}, {output_size}, expected 4, 4"


def make_rnn_cell(units):
    """Scenario: construct an RNNCell (its arguments are checked in __init__)."""
    RNNCell(units)


@pytest.mark.step("rnn.cell", kit_code=True)
def test_rnn_cell_bad_units(student):
    with pytest.raises(ValueError, match="Received: units=-3"):
        student.run(make_rnn_cell, -3)


# --- CaptioningRNN.call ----------------------------------------------------------

V, C, D, H = 9, 5, 4, 6
FEATURES = linspace((3, C), -1.0, 1.0)
CAPTIONS_IN = np.array([[1, 4, 5, 6, 2], [1, 7, 2, 0, 0], [1, 2, 0, 0, 0]])


def captioner_weights(cell_type="rnn"):
    """The public tests' captioner weights, layer by layer (plain arrays: the judge and the scenario share them)."""
    h4 = 4 if cell_type == "lstm" else 1
    return {
        "feature_projection": [linspace((C, H), -0.5, 0.5), linspace((H,), -0.1, 0.1)],
        "embedding": [linspace((V, D), -1.0, 1.0)],
        "cell": [linspace((D, h4 * H), -0.4, 0.6), linspace((H, h4 * H), -0.3, 0.3), linspace((h4 * H,), -0.1, 0.2)],
        "output_projection": [linspace((H, V), -0.7, 0.7), linspace((V,), -0.2, 0.2)],
    }


def captioner_logits(weights, cell_type, initial_cell, features, captions):
    """Scenario: CaptioningRNN's teacher-forced logits, with the given weights."""
    return captioner_with_weights(weights, cell_type, initial_cell)((features, captions), training=False)


def keras_reference(weights, cell_type="rnn", initial_cell="zeros"):
    """The same network from Keras built-ins, with the same weights."""
    (W_embed,) = weights["embedding"]
    W_proj = weights["feature_projection"][0]
    (vocab_size, embed_dim), (feature_dim, hidden_dim) = W_embed.shape, W_proj.shape
    features = keras.Input((feature_dim,))
    captions = keras.Input((None,), dtype="int32")
    projection = keras.layers.Dense(hidden_dim)
    embedding = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True)
    output = keras.layers.Dense(vocab_size)
    h0 = projection(features)
    x = embedding(captions)
    if cell_type == "lstm":
        recurrent = keras.layers.LSTM(hidden_dim, return_sequences=True)
        c0 = h0 if initial_cell == "h0" else keras.ops.zeros_like(h0)
        h = recurrent(x, initial_state=[h0, c0])
    else:
        recurrent = keras.layers.SimpleRNN(hidden_dim, return_sequences=True)
        h = recurrent(x, initial_state=[h0])
    reference = keras.Model([features, captions], output(h))
    projection.set_weights(weights["feature_projection"])
    embedding.set_weights(weights["embedding"])
    recurrent.set_weights(weights["cell"])
    output.set_weights(weights["output_projection"])
    return reference


@pytest.mark.step("captioner.forward")
def test_captioner_forward_matches_keras_built_ins(student):
    weights = captioner_weights("rnn")
    logits = student.run(captioner_logits, weights, "rnn", "zeros", FEATURES, CAPTIONS_IN)
    expected = keras_reference(weights, "rnn")([FEATURES, CAPTIONS_IN])
    valid = CAPTIONS_IN != 0
    assert_close(np.asarray(logits)[valid], np.asarray(expected)[valid], atol=1e-5, what="CaptioningRNN logits",
                 hint="compared at the positions whose input word is not <NULL>.")


def layer_weights(model):
    """A CaptioningRNN's weights, layer by layer (the keys of `captioner_weights`)."""
    weights = {name: getattr(model, name).get_weights() for name in ("feature_projection", "embedding")}
    return {**weights, "cell": model.rnn.cell.get_weights(), "output_projection": model.output_projection.get_weights()}


def captioner_at_init(vocab_size, embed_dim, hidden_dim, features, captions):
    """Scenario: a freshly initialised CaptioningRNN's logits, and the weights it drew."""
    model = CaptioningRNN(vocab_size, cell_type="rnn", embed_dim=embed_dim, hidden_dim=hidden_dim)
    logits = model((features, captions))
    return logits, layer_weights(model)


def numpy_temporal_softmax_loss(logits, targets):
    """Sum over time of -log softmax(logits)[target] (<NULL> targets masked), mean over the batch."""
    logits = np.asarray(logits, np.float64)
    top = logits.max(axis=-1, keepdims=True)
    log_probs = logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    return -np.sum(picked * (targets != 0)) / len(targets)


@pytest.mark.step("captioner.forward")
def test_captioner_loss_at_init_is_about_log_v(student):
    captions = np.tile(np.arange(1, 11), (4, 1))
    features = linspace((4, C), -1, 1)
    logits, weights = student.run(captioner_at_init, 1000, 8, 16, features, captions[:, :-1])
    loss = numpy_temporal_softmax_loss(logits, captions[:, 1:]) / 9
    assert abs(loss - np.log(1000)) < 0.5, f"per-word loss at init should be about log V = 6.9, got {loss:.2f}"
    assert_close(logits, keras_reference(weights)([features, captions[:, :-1]]), atol=1e-5,
                 what="CaptioningRNN logits at init (with the weights it drew)")


def captioner_gradients(vocab_size, embed_dim, hidden_dim, images, captions_in, captions_out):
    """Scenario: build_captioner("rnn") with its encoder; (path, gradient norm or None) of every trainable weight."""
    from kcaption.losses import temporal_softmax_loss
    from kcaption.models import build_captioner

    model = build_captioner("rnn", vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, image_size=images.shape[1])
    with tf.GradientTape() as tape:
        loss = temporal_softmax_loss(model((images, captions_in)), captions_out)
    grads = tape.gradient(loss, model.trainable_weights)
    return [(w.path, None if g is None else float(tf.norm(tf.convert_to_tensor(g))))
            for w, g in zip(model.trainable_weights, grads)]


@pytest.mark.step("captioner.forward")
def test_captioner_gradients_reach_every_weight(student):
    images = linspace((2, 32, 32, 3), 0.0, 1.0)
    gradients = student.run(captioner_gradients, V, D, H, images, CAPTIONS_IN[:2, :-1], CAPTIONS_IN[:2, 1:])
    missing = [path for path, norm in gradients if norm is None]
    assert not missing, f"no gradient reaches {missing}: is every sub-layer used in call()?"


def captioner_short_and_padded(weights, features, short, padded):
    """Scenario: the logits of a caption, then of the same caption with <NULL> padding after it."""
    model = captioner_with_weights(weights)
    return model((features, short)), model((features, padded))


@pytest.mark.step("captioner.forward")
def test_padding_does_not_change_earlier_logits(student):
    weights = captioner_weights("rnn")
    short, padded = student.run(captioner_short_and_padded, weights, FEATURES[1:2], CAPTIONS_IN[1:2, :3],
                                CAPTIONS_IN[1:2])
    assert_close(np.asarray(padded)[:, :3], short, atol=1e-6, what="logits before the padding")
    assert_close(short, keras_reference(weights)([FEATURES[1:2], CAPTIONS_IN[1:2, :3]]), atol=1e-5,
                 what="CaptioningRNN logits of the unpadded caption")


def make_captioner(vocab_size, **kwargs):
    """Scenario: construct a CaptioningRNN (its arguments are checked in __init__)."""
    CaptioningRNN(vocab_size, **kwargs)


@pytest.mark.step("captioner.forward", kit_code=True)
def test_captioner_bad_arguments(student):
    with pytest.raises(ValueError, match="Received: cell_type='gru'"):
        student.run(make_captioner, V, cell_type="gru")
    with pytest.raises(ValueError, match="Received: hidden_dim=0"):
        student.run(make_captioner, V, hidden_dim=0)


# --- greedy sampling -------------------------------------------------------------


def numpy_greedy_search(step, state, start_tokens, max_length, end_token=2, pad_token=0):
    """Reference greedy decoding (NumPy) of a step function (tokens, state) -> (logits, state)."""
    tokens, done, outputs = np.asarray(start_tokens), np.zeros(len(start_tokens), bool), []
    for _ in range(max_length):
        logits, state = step(tokens, state)
        tokens = np.where(done, pad_token, np.argmax(logits, axis=-1))
        outputs.append(tokens)
        done = done | (tokens == end_token)
    return np.stack(outputs, axis=1)


def numpy_rnn_captioner(weights, features):
    """The RNN captioner's decoding step in NumPy, and its first state [h0]."""
    (W_embed,), (W_proj, b_proj), (W_out, b_out) = (weights[k] for k in ("embedding", "feature_projection",
                                                                          "output_projection"))

    def step(tokens, state):
        h = numpy_rnn_step(W_embed[tokens], state[0], *weights["cell"])
        return h @ W_out + b_out, [h]

    return step, [features @ W_proj + b_proj]


def scripted(answers, vocab_size=6):
    """A fake model: at step t it scores answers[:, t] highest, whatever it is fed."""
    answers = tf.constant(answers, dtype="int32")

    def next_logits(tokens, state):
        (t,) = state
        logits = tf.one_hot(answers[:, t], vocab_size) * 5.0
        return logits, [t + 1]

    return next_logits


def greedy_scripted(answers, start_tokens, max_length):
    """Scenario: greedy_search over the `scripted` fake model (state [t])."""
    return greedy_search(scripted(answers), [tf.constant(0)], start_tokens, max_length)


@pytest.mark.step("captioner.sample")
def test_greedy_search_stops_at_end_and_pads(student):
    answers = np.array([[3, 4, 2, 5, 5], [2, 3, 3, 2, 4], [5, 5, 5, 5, 5]])
    got = student.run(greedy_scripted, answers, np.ones(3, "int32"), 5)
    expected = np.array([[3, 4, 2, 0, 0], [2, 0, 0, 0, 0], [5, 5, 5, 5, 5]])
    np.testing.assert_array_equal(np.asarray(got), expected,
                                  err_msg="keep <END> (2), then <NULL> (0) for the rest of that caption.")


def greedy_feedback(start_tokens, max_length):
    """Scenario: greedy_search over a fake model whose next word is (fed word + 1) % 5 + 3; also what it was fed."""
    seen = []

    def next_logits(tokens, state):
        seen.append(np.asarray(tokens).tolist())
        return tf.one_hot((tokens + 1) % 5 + 3, 9), state  # next word depends on the fed word

    return greedy_search(next_logits, [], start_tokens, max_length), seen


@pytest.mark.step("captioner.sample")
def test_greedy_search_feeds_back_the_argmax(student):
    start = np.array([1, 4], "int32")
    out, seen = student.run(greedy_feedback, start, 3)
    assert seen[0] == [1, 4], f"the first step must be fed start_tokens, got {seen[0]}"
    np.testing.assert_array_equal(np.asarray(out)[:, :-1], np.asarray(seen[1:]).T,
                                  err_msg="each step must be fed the previous step's argmax.")
    expected = numpy_greedy_search(lambda tokens, state: (np.eye(9)[(tokens + 1) % 5 + 3], state), [], start, 3)
    np.testing.assert_array_equal(np.asarray(out), expected, err_msg="each word is the argmax of that step's logits.")


def captioner_samples(weights, cell_type, initial_cell, features, max_length):
    """Scenario: CaptioningRNN.sample with the given weights, compiled (as by default), then eager."""
    model = captioner_with_weights(weights, cell_type, initial_cell)
    return model.sample(features, max_length=max_length), model.sample(features, max_length=max_length, compiled=False)


@pytest.mark.step("captioner.sample")
def test_sample_compiled_equals_eager_and_teacher_forcing(student):
    weights = captioner_weights("rnn")
    compiled, eager = (np.asarray(ids) for ids in student.run(captioner_samples, weights, "rnn", "zeros", FEATURES, 6))
    np.testing.assert_array_equal(compiled, eager)
    assert compiled.shape == (3, 6) and compiled.dtype == np.int32
    # Feeding the sampled words back with teacher forcing predicts the same words.
    fed = np.concatenate([np.ones((3, 1), "int32"), compiled[:, :-1]], axis=1)
    predicted = np.argmax(np.asarray(student.run(captioner_logits, weights, "rnn", "zeros", FEATURES, fed)), axis=-1)
    for n in range(3):
        length = list(compiled[n]).index(2) + 1 if 2 in compiled[n] else 6
        np.testing.assert_array_equal(predicted[n, :length], compiled[n, :length])
    expected = numpy_greedy_search(*numpy_rnn_captioner(weights, FEATURES), np.ones(3, "int32"), 6)
    np.testing.assert_array_equal(compiled, expected, err_msg="sampled ids vs a NumPy greedy decode of the same RNN.")


# Fake models for every kind of state the captioners pass to greedy_search, in the scenario (keras.ops)
# and in the judge (NumPy). Both compute the logits in float32 with the same exact steps, so the argmax agrees.


def recurrent_fake(vocab_size):
    """A list state like the RNN/LSTM/attention captioners' [h, c, A]: h (N, V) float, t (N,) int (the step),
    scores (N, T, V) passed on unchanged (as A is). Logits: h = 0.5 h + one_hot(fed word), plus scores[:, t]."""

    def next_logits(tokens, state):
        h, t, scores = state
        h = 0.5 * h + ops.one_hot(tokens, vocab_size)
        now = ops.sum(scores * ops.expand_dims(ops.one_hot(t, ops.shape(scores)[1]), -1), axis=1)  # scores[:, t]
        return h + now, [h, t + 1, scores]

    return next_logits


def prefix_fake(scores, vocab_size):
    """A growing state like CaptioningTransformer's: every word fed so far (N, t), one longer at each step.
    Logits: 0.75 x how often each word was fed, plus scores[:, t]."""

    def next_logits(tokens, prefix):
        prefix = ops.concatenate([prefix, ops.expand_dims(tokens, 1)], axis=1)  # (N, t+1)
        counts = ops.sum(ops.one_hot(prefix, vocab_size), axis=1)  # (N, V)
        return 0.75 * counts + ops.take(scores, ops.shape(prefix)[1] - 1, axis=1), prefix

    return next_logits


def greedy_over_fake(fake, batches, max_length, compiled):
    """Scenario: greedy_search over a fake model for each (start_tokens, scores) batch; eager, or compiled as
    Captioner.sample compiles it: one tf.function(reduce_retracing=True), so a second batch size retraces with
    the batch size unknown."""

    def search(start_tokens, scores):
        vocab_size = scores.shape[-1]
        if fake == "recurrent":
            state = [ops.zeros_like(scores[:, 0]), ops.zeros_like(start_tokens), scores]
            return greedy_search(recurrent_fake(vocab_size), state, start_tokens, max_length)
        prefix = ops.zeros((ops.shape(start_tokens)[0], 0), "int32")
        return greedy_search(prefix_fake(scores, vocab_size), prefix, start_tokens, max_length)

    if compiled:
        search = tf.function(search, reduce_retracing=True)
        return [search(tf.constant(start), tf.constant(scores)) for start, scores in batches]
    return [search(start, scores) for start, scores in batches]


def numpy_fake(fake, scores):
    """The judge's copy of `recurrent_fake` / `prefix_fake`: a step function and its first state."""
    N, _, vocab_size = scores.shape
    one_hot = np.eye(vocab_size, dtype="float32")
    if fake == "recurrent":
        def step(tokens, state):
            h, t = state
            h = 0.5 * h + one_hot[tokens]
            return h + scores[:, t], [h, t + 1]
        return step, [np.zeros((N, vocab_size), "float32"), 0]

    def step(tokens, prefix):
        prefix = np.concatenate([prefix, tokens[:, None]], axis=1)
        return 0.75 * one_hot[prefix].sum(axis=1) + scores[:, prefix.shape[1] - 1], prefix
    return step, np.zeros((N, 0), "int32")


def fake_batches(seed, sizes, max_length, vocab_size=7):
    """(start_tokens, scores) per batch size: captions end (<END> = 2) at different steps, the last one never."""
    rng = np.random.default_rng(seed)
    batches = []
    for N in sizes:
        scores = rng.normal(size=(N, max_length, vocab_size)).astype("float32")
        scores[:, :, 0] -= 9.0  # <NULL> is never a word
        scores[:, :, 2] -= 3.0
        for n in range(N - 1):
            scores[n, 1 + n % (max_length - 2), 2] += 9.0
        start = rng.integers(3, vocab_size, size=N).astype("int32")
        start[0] = 1  # <START>
        batches.append((start, scores))
    return batches


@pytest.mark.step("captioner.sample")
@pytest.mark.parametrize("fake", ["recurrent", "prefix"])
def test_greedy_search_with_every_kind_of_state_compiled_as_the_models_run_it(student, fake):
    max_length = 6
    batches = fake_batches(3, [3, 2], max_length)
    kind = {"recurrent": "a list state [h, t, A] (like the RNN, LSTM and attention captioners)",
            "prefix": "a state that grows by one word per step (like the Transformer's prefix)"}[fake]
    expected = [numpy_greedy_search(*numpy_fake(fake, scores), start, max_length) for start, scores in batches]
    for got, want in zip(student.run(greedy_over_fake, fake, batches, max_length, False), expected):
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=f"greedy_search (eager) with {kind}.")
    try:
        compiled = student.run(greedy_over_fake, fake, batches, max_length, True)
    except Exception as error:
        raise AssertionError(
            f"greedy_search with {kind} failed inside tf.function(reduce_retracing=True), as Captioner.sample runs "
            "it; the second batch is traced with its batch size unknown (None). Use a Python for loop, ops.shape() "
            f"and keras.ops, not .shape[0], len() or a while loop with fixed shapes. The error: {error}"
        ) from error
    for got, want in zip(compiled, expected):
        np.testing.assert_array_equal(np.asarray(got), want,
                                      err_msg=f"greedy_search compiled with tf.function, batch of {len(want)}, {kind}.")


# --- overfitting a little data ---------------------------------------------------


@pytest.mark.slow
def test_rnn_captioner_overfits_50_shapes_examples():
    overfit_small_data("rnn")  # the settings of kcaption.testing.OVERFIT, as in lesson 03
