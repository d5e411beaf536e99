"""Hidden tests, lesson 03: RNN cell edge cases, captioner forward, greedy sampling.

Scenarios (run the student's code, return plain values) sit right above their tests (the judges).
"""

import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcaption.decoding import greedy_search
from kcaption.layers import RNNCell
from kcaption.testing import assert_close, captioner_with_weights


def numpy_rnn(x, mask, h0, Wx, Wh, b):
    """Masked vanilla RNN in NumPy: a masked step keeps the state and repeats the output."""
    h, outputs = h0, []
    for t in range(x.shape[1]):
        new = np.tanh(x[:, t] @ Wx + h @ Wh + b)
        h = np.where(mask[:, t:t + 1], new, h)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def rnn_sequence_from(x, mask, h0, weights):
    """Scenario: keras.layers.RNN(RNNCell) with the given weights, initial state and mask."""
    layer = keras.layers.RNN(RNNCell(h0.shape[1]), return_sequences=True)
    layer.build(x.shape)
    layer.set_weights(weights)
    return layer(x, initial_state=[h0], mask=mask)


@pytest.mark.step("rnn.cell")
@pytest.mark.parametrize("N,T,D,H", [(1, 1, 2, 3), (1, 6, 4, 2), (5, 1, 3, 3), (4, 7, 5, 8)])
def test_rnn_random_shapes_with_masks_and_initial_state(student, N, T, D, H):
    rng = np.random.default_rng(N + 10 * T)
    x = rng.normal(size=(N, T, D)).astype("float32")
    h0 = rng.normal(size=(N, H)).astype("float32")
    lengths = rng.integers(1, T + 1, size=N)
    mask = np.arange(T)[None, :] < lengths[:, None]
    weights = [rng.normal(scale=0.5, size=s).astype("float32") for s in [(D, H), (H, H), (H,)]]
    assert_close(student.run(rnn_sequence_from, x, mask, h0, weights), numpy_rnn(x, mask, h0, *weights), atol=1e-5,
                 what=f"masked RNN over N={N}, T={T}")


def rnn_step_mixed_precision(x, h, weights):
    """Scenario: one RNNCell step under the mixed_float16 policy, fed float16."""
    cell = RNNCell(h.shape[1], dtype="mixed_float16")
    cell.build(x.shape)
    cell.set_weights(weights)
    out, _ = cell(x, [h])
    return out


@pytest.mark.step("rnn.cell")
def test_rnn_cell_mixed_precision(student):
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    h = np.linspace(-0.5, 0.5, 6).reshape(3, 2)
    weights = [np.linspace(-0.3, 0.3, 8).reshape(4, 2), np.linspace(-0.2, 0.4, 4).reshape(2, 2), np.array([0.1, -0.1])]
    out = student.run(rnn_step_mixed_precision, x.astype("float16"), h.astype("float16"),
                      [w.astype("float32") for w in weights])
    assert keras.backend.standardize_dtype(out.dtype) == "float16", f"output dtype {out.dtype}, expected float16"
    assert_close(np.asarray(out, "float64"), np.tanh(x @ weights[0] + h @ weights[1] + weights[2]), atol=5e-3,
                 what="RNNCell under mixed_float16")


def rnn_save_load(x, weights):
    """Scenario: a model holding keras.layers.RNN(RNNCell) saved to .keras and loaded: (loaded(x), model(x))."""
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.RNN(RNNCell(weights[1].shape[0]),
                                                                          return_sequences=True)])
    model.set_weights(weights)
    with tempfile.TemporaryDirectory() as folder:
        model.save(f"{folder}/rnn.keras")
        loaded = keras.models.load_model(f"{folder}/rnn.keras")
    return loaded(x), model(x)


@pytest.mark.step("rnn.cell")
def test_rnn_cell_save_load_in_a_model(student):
    x = np.linspace(-1, 1, 12).reshape(2, 3, 2).astype("float32")
    weights = [np.linspace(-0.6, 0.6, 8).reshape(2, 4), np.linspace(-0.4, 0.5, 16).reshape(4, 4),
               np.linspace(-0.1, 0.2, 4)]
    weights = [w.astype("float32") for w in weights]
    loaded, original = student.run(rnn_save_load, x, weights)
    assert_close(loaded, original, atol=1e-6, what="after save/load")
    assert_close(original, numpy_rnn(x, np.ones((2, 3), bool), np.zeros((2, 4)), *weights), atol=1e-5,
                 what="RNN(RNNCell) in the model before saving")


# --- the captioner: the judge's NumPy reference ------------------------------------


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numpy_cell_step(cell_type, weights, x, state):
    """One step of the reference cell: (h, next state). Gates i, f, g, o; "attn" attends with h_prev."""
    if cell_type == "rnn":
        Wx, Wh, b = weights
        h = np.tanh(x @ Wx + state[0] @ Wh + b)
        return h, [h]
    if cell_type == "lstm":
        (Wx, Wh, b), (h_prev, c_prev) = weights, state
        z = x @ Wx + h_prev @ Wh + b
    else:
        (Wx, Wh, Wattn, b), (h_prev, c_prev, A) = weights, state
        scores = np.einsum("nlh,nh->nl", A, h_prev) / np.sqrt(A.shape[-1])
        attention = np.exp(scores - scores.max(axis=1, keepdims=True))
        attention /= attention.sum(axis=1, keepdims=True)
        z = x @ Wx + h_prev @ Wh + np.einsum("nl,nlh->nh", attention, A) @ Wattn + b
    z_i, z_f, z_g, z_o = np.split(z, 4, axis=-1)
    c = sigmoid(z_f) * c_prev + sigmoid(z_i) * np.tanh(z_g)
    h = sigmoid(z_o) * np.tanh(c)
    return h, [h, c, *state[2:]]


def numpy_initial_state(cell_type, initial_cell, projected):
    if cell_type == "attn":
        mean = projected.mean(axis=1)
        return [mean, mean, projected]
    if cell_type == "lstm":
        return [projected, projected if initial_cell == "h0" else np.zeros_like(projected)]
    return [projected]


def numpy_captioner(weights, cell_type, initial_cell, features, captions):
    """Teacher-forced logits (N, T, V); at a <NULL> input the states (and the output) are carried over.
    Captions start with <START>."""
    (W_proj, b_proj), (W_embed,), (W_out, b_out) = (weights[k] for k in ("feature_projection", "embedding",
                                                                          "output_projection"))
    state = numpy_initial_state(cell_type, initial_cell, features.astype("float64") @ W_proj + b_proj)
    outputs = []
    for t in range(captions.shape[1]):
        h, new_state = numpy_cell_step(cell_type, weights["cell"], W_embed[captions[:, t]], state)
        keep = (captions[:, t] != 0)[:, None]
        state = [np.where(keep, new, old) for new, old in zip(new_state[:2], state[:2])] + state[2:]
        outputs.append(state[0])
    return np.stack(outputs, axis=1) @ W_out + b_out


def numpy_sampler(weights, cell_type, initial_cell, features):
    """The captioner's decoding step in NumPy, and its first state (for `numpy_greedy_search`)."""
    (W_proj, b_proj), (W_embed,), (W_out, b_out) = (weights[k] for k in ("feature_projection", "embedding",
                                                                          "output_projection"))

    def step(tokens, state):
        h, state = numpy_cell_step(cell_type, weights["cell"], W_embed[tokens], state)
        return h @ W_out + b_out, state

    return step, numpy_initial_state(cell_type, initial_cell, features.astype("float64") @ W_proj + b_proj)


def small_captioner_weights(cell_type, V=8, C=5, D=4, H=6):
    """Random weights by layer (drawn in the order of CaptioningRNN.weights); <NULL> is never predicted."""
    rng = np.random.default_rng(7)
    gates = 1 if cell_type == "rnn" else 4
    cell = [(D, gates * H), (H, gates * H)] + ([(H, gates * H)] if cell_type == "attn" else []) + [(gates * H,)]
    shapes = {"feature_projection": [(C, H), (H,)], "embedding": [(V, D)], "cell": cell,
              "output_projection": [(H, V), (V,)]}
    weights = {name: [rng.normal(scale=0.8, size=s).astype("float32") for s in layer] for name, layer in shapes.items()}
    weights["output_projection"][1][0] = -1e3  # never predict <NULL>: a fed <NULL> would be masked in teacher forcing
    return weights


# --- the captioner: scenarios ------------------------------------------------------


def captioner_logits(weights, cell_type, initial_cell, features, captions):
    """Scenario: CaptioningRNN's teacher-forced logits, with the given weights."""
    return captioner_with_weights(weights, cell_type, initial_cell)((features, captions), training=False)


def captioner_batch_and_alone(weights, features, captions):
    """Scenario: the logits of a batch, then of each caption computed alone."""
    model = captioner_with_weights(weights)
    alone = [model((features[n:n + 1], captions[n:n + 1])) for n in range(len(captions))]
    return model((features, captions)), alone


@pytest.mark.step("captioner.forward")
@pytest.mark.parametrize("N,T", [(1, 1), (1, 5), (4, 1), (3, 6)])
def test_captioner_forward_shapes_and_batch_independence(student, N, T):
    weights = small_captioner_weights("rnn")
    features = np.linspace(-1, 1, N * 5).reshape(N, 5).astype("float32")
    captions = (np.arange(N * T).reshape(N, T) % 7 + 1).astype("int32")
    logits, alone = student.run(captioner_batch_and_alone, weights, features, captions)
    logits = np.asarray(logits)
    assert logits.shape == (N, T, 8), f"logits shape {logits.shape}, expected {(N, T, 8)}"
    for n in range(N):
        assert_close(logits[n:n + 1], alone[n], atol=1e-5, what=f"caption {n} computed alone")
    assert_close(logits, numpy_captioner(weights, "rnn", "zeros", features, captions), atol=1e-4,
                 what="CaptioningRNN logits vs a NumPy RNN captioner")


@pytest.mark.step("captioner.forward")
def test_captioner_h0_comes_from_the_features(student):
    weights = small_captioner_weights("rnn")
    captions = np.array([[1, 3, 4]] * 2)
    features = np.stack([np.zeros(5), np.ones(5)]).astype("float32")
    logits = np.asarray(student.run(captioner_logits, weights, "rnn", "zeros", features, captions))
    assert np.abs(logits[0] - logits[1]).max() > 1e-3, "the image features must change the logits (h0)."
    assert_close(logits, numpy_captioner(weights, "rnn", "zeros", features, captions), atol=1e-4,
                 what="CaptioningRNN logits vs a NumPy RNN captioner", hint="h0 is made from the image features.")


def captioner_save_load(vocab_size, images, captions, max_length):
    """Scenario: build_captioner("rnn") saved to .keras and loaded: logits and samples of both."""
    from kcaption.models import build_captioner

    model = build_captioner("rnn", vocab_size, embed_dim=4, hidden_dim=6, image_size=images.shape[1])
    expected = model((images, captions))
    with tempfile.TemporaryDirectory() as folder:
        model.save(f"{folder}/c.keras")
        loaded = keras.models.load_model(f"{folder}/c.keras")
    return (loaded((images, captions)), expected, loaded.sample(images, max_length=max_length),
            model.sample(images, max_length=max_length))


@pytest.mark.step("captioner.forward")
def test_captioner_save_load_round_trip(student):
    images = np.linspace(0, 1, 2 * 32 * 32 * 3).reshape(2, 32, 32, 3).astype("float32")
    captions = np.array([[1, 4, 5], [1, 2, 0]])
    reloaded, expected, reloaded_ids, ids = student.run(captioner_save_load, 9, images, captions, 5)
    assert_close(reloaded, expected, atol=1e-5, what="captioner logits after save/load")
    np.testing.assert_array_equal(reloaded_ids, ids)


@pytest.mark.step("captioner.forward")
@pytest.mark.parametrize("cell_type", ["rnn", "lstm"])
def test_captioner_null_padding_is_masked(student, cell_type):
    weights = small_captioner_weights(cell_type)
    features = np.linspace(-1, 1, 10).reshape(2, 5).astype("float32")
    captions = np.array([[1, 3, 4, 0, 0], [1, 5, 0, 0, 0]], "int32")
    logits = np.asarray(student.run(captioner_logits, weights, cell_type, "zeros", features, captions))
    for n, length in enumerate([3, 2]):
        for t in range(length, captions.shape[1]):
            assert_close(logits[n, t], logits[n, length - 1], atol=1e-6,
                         what=f"logits at the <NULL> position {t} of caption {n}",
                         hint="a <NULL> step keeps the state, so its logits repeat the last real step's.")
    assert_close(logits, numpy_captioner(weights, cell_type, "zeros", features, captions), atol=1e-4,
                 what=f"CaptioningRNN(cell_type={cell_type!r}) logits vs a NumPy captioner")


@pytest.mark.step("captioner.forward")
@pytest.mark.parametrize("cell_type,initial_cell", [("rnn", "zeros"), ("lstm", "zeros"), ("lstm", "h0"),
                                                    ("attn", "zeros")])
def test_captioner_forward_every_cell_type_matches_numpy(student, cell_type, initial_cell):
    """CaptioningRNN.call in every configuration: the state from self.initial_state, the mask, the projections."""
    weights = small_captioner_weights(cell_type)
    shape = (3, 4, 5) if cell_type == "attn" else (3, 5)  # "attn" takes spatial features (N, L, C)
    features = np.linspace(-1.5, 1.5, int(np.prod(shape))).reshape(shape).astype("float32")
    captions = np.array([[1, 3, 4, 6, 2, 0], [1, 5, 2, 0, 0, 0], [1, 7, 7, 3, 5, 2]], "int32")
    logits = student.run(captioner_logits, weights, cell_type, initial_cell, features, captions)
    first_states = {"rnn": "[h0]", "lstm": f"[h0, {'h0' if initial_cell == 'h0' else '0'}]",
                    "attn": "[mean of A, mean of A, A], A the projected spatial features"}
    assert_close(logits, numpy_captioner(weights, cell_type, initial_cell, features, captions), atol=1e-4,
                 what=f"CaptioningRNN(cell_type={cell_type!r}, initial_cell={initial_cell!r}) logits vs NumPy",
                 hint=f"the cell starts from {first_states[cell_type]}; <NULL> steps are masked.")


# --- greedy sampling -------------------------------------------------------------


def greedy_always_end(batch_size, max_length):
    """Scenario: greedy_search over a fake model that always scores <END> highest."""
    def next_logits(tokens, state):
        return tf.one_hot(tf.fill(tf.shape(tokens), 2), 4), state

    return greedy_search(next_logits, [], np.ones(batch_size, "int32"), max_length)


@pytest.mark.step("captioner.sample")
def test_greedy_search_all_end_at_once_and_length_one(student):
    out = np.asarray(student.run(greedy_always_end, 4, 4))
    np.testing.assert_array_equal(out, [[2, 0, 0, 0]] * 4)
    out = np.asarray(student.run(greedy_always_end, 1, 1))
    np.testing.assert_array_equal(out, [[2]])


def greedy_next_word(start_tokens, max_length, end_token, pad_token):
    """Scenario: greedy_search over a fake model whose next word is the fed word + 1, other end and pad tokens."""
    def next_logits(tokens, state):
        return tf.one_hot(tokens + 1, 8), state

    return greedy_search(next_logits, [], start_tokens, max_length, end_token=end_token, pad_token=pad_token)


@pytest.mark.step("captioner.sample")
def test_greedy_search_other_end_and_pad_tokens(student):
    out = np.asarray(student.run(greedy_next_word, np.array([1, 3]), 5, 4, 7))
    np.testing.assert_array_equal(out, [[2, 3, 4, 7, 7], [4, 7, 7, 7, 7]])


def greedy_in_tf_function(start_tokens, max_length):
    """Scenario: greedy_search traced inside tf.function, over a fake model whose next word is min(fed + 1, 2)."""
    def next_logits(tokens, state):
        return tf.one_hot(tf.minimum(tokens + 1, 2), 5), state

    compiled = tf.function(lambda start: greedy_search(next_logits, [], start, max_length))
    return compiled(tf.constant(start_tokens))


@pytest.mark.step("captioner.sample")
def test_greedy_search_inside_tf_function(student):
    np.testing.assert_array_equal(student.run(greedy_in_tf_function, np.array([0, 1], "int32"), 6),
                                  [[1, 2, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0]])


def captioner_sample(weights, cell_type, initial_cell, features, max_length):
    """Scenario: CaptioningRNN.sample (compiled, as by default) with the given weights."""
    return captioner_with_weights(weights, cell_type, initial_cell).sample(features, max_length=max_length)


@pytest.mark.step("captioner.sample")
@pytest.mark.parametrize("cell_type,initial_cell", [("rnn", "zeros"), ("lstm", "zeros"), ("lstm", "h0")])
def test_step_by_step_sampling_equals_teacher_forcing(student, cell_type, initial_cell):
    from test_03_rnn import numpy_greedy_search

    weights = small_captioner_weights(cell_type)
    features = np.linspace(-2, 2, 20).reshape(4, 5).astype("float32")
    sampled = np.asarray(student.run(captioner_sample, weights, cell_type, initial_cell, features, 7))
    fed = np.concatenate([np.ones((4, 1), "int32"), sampled[:, :-1]], axis=1)
    predicted = np.argmax(np.asarray(student.run(captioner_logits, weights, cell_type, initial_cell, features, fed)),
                          axis=-1)
    for n in range(4):
        row = list(sampled[n])
        length = row.index(2) + 1 if 2 in row else 7
        np.testing.assert_array_equal(predicted[n, :length], sampled[n, :length],
                                      err_msg="sampling must feed back exactly the argmax of the teacher-forced pass")
        assert all(t == 0 for t in row[length:]), "after <END> every token must be <NULL>"
    expected = numpy_greedy_search(*numpy_sampler(weights, cell_type, initial_cell, features), np.ones(4, int), 7)
    np.testing.assert_array_equal(sampled, expected, err_msg="sampled ids vs a NumPy greedy decode of the same model")


def captioner_sample_two_batches(weights, cell_type, initial_cell, features, other_features, max_length):
    """Scenario: one model's compiled sample for two batch sizes (the second retraces with the batch size unknown)."""
    model = captioner_with_weights(weights, cell_type, initial_cell)
    return model.sample(features, max_length=max_length), model.sample(other_features, max_length=max_length)


@pytest.mark.step("captioner.sample")
@pytest.mark.parametrize("cell_type,initial_cell", [("rnn", "zeros"), ("lstm", "h0"), ("attn", "zeros")])
def test_compiled_sample_for_a_new_batch_size_matches_numpy(student, cell_type, initial_cell):
    from test_03_rnn import numpy_greedy_search

    weights = small_captioner_weights(cell_type)
    shape = (4, 3, 5) if cell_type == "attn" else (4, 5)
    features = np.linspace(-2, 2, int(np.prod(shape))).reshape(shape).astype("float32")
    batches = [features, features[::-1][:3] * 0.5]
    sampled = student.run(captioner_sample_two_batches, weights, cell_type, initial_cell, *batches, 6)
    for got, batch in zip(sampled, batches):
        expected = numpy_greedy_search(*numpy_sampler(weights, cell_type, initial_cell, batch), np.ones(len(batch), int),
                                       6)
        np.testing.assert_array_equal(got, expected, err_msg=f"compiled sample, batch of {len(batch)}, vs NumPy")
