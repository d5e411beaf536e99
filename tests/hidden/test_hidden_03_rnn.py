"""Hidden tests, lesson 03: RNN cell edge cases, captioner forward, greedy sampling."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcaption.decoding import greedy_search
from kcaption.layers import RNNCell
from kcaption.models import CaptioningRNN
from kcaption.testing import assert_close


def numpy_rnn(x, mask, h0, Wx, Wh, b):
    """Masked vanilla RNN in NumPy: a masked step keeps the state and repeats the output."""
    h, outputs = h0, []
    for t in range(x.shape[1]):
        new = np.tanh(x[:, t] @ Wx + h @ Wh + b)
        h = np.where(mask[:, t:t + 1], new, h)
        outputs.append(h)
    return np.stack(outputs, axis=1)


@pytest.mark.step("rnn.cell")
@pytest.mark.parametrize("N,T,D,H", [(1, 1, 2, 3), (1, 6, 4, 2), (5, 1, 3, 3), (4, 7, 5, 8)])
def test_rnn_random_shapes_with_masks_and_initial_state(N, T, D, H):
    rng = np.random.default_rng(N + 10 * T)
    x = rng.normal(size=(N, T, D)).astype("float32")
    h0 = rng.normal(size=(N, H)).astype("float32")
    lengths = rng.integers(1, T + 1, size=N)
    mask = np.arange(T)[None, :] < lengths[:, None]
    weights = [rng.normal(scale=0.5, size=s).astype("float32") for s in [(D, H), (H, H), (H,)]]
    layer = keras.layers.RNN(RNNCell(H), return_sequences=True)
    layer.build((N, T, D))
    layer.set_weights(weights)
    assert_close(layer(x, initial_state=[h0], mask=mask), numpy_rnn(x, mask, h0, *weights), atol=1e-5,
                 what=f"masked RNN over N={N}, T={T}")


@pytest.mark.step("rnn.cell")
def test_rnn_cell_mixed_precision():
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    h = np.linspace(-0.5, 0.5, 6).reshape(3, 2)
    weights = [np.linspace(-0.3, 0.3, 8).reshape(4, 2), np.linspace(-0.2, 0.4, 4).reshape(2, 2), np.array([0.1, -0.1])]
    cell = RNNCell(2, dtype="mixed_float16")
    cell.build((3, 4))
    cell.set_weights([w.astype("float32") for w in weights])
    out, _ = cell(x.astype("float16"), [h.astype("float16")])
    assert keras.backend.standardize_dtype(out.dtype) == "float16", f"output dtype {out.dtype}, expected float16"
    assert_close(np.asarray(out, "float64"), np.tanh(x @ weights[0] + h @ weights[1] + weights[2]), atol=5e-3,
                 what="RNNCell under mixed_float16")


@pytest.mark.step("rnn.cell")
def test_rnn_cell_save_load_in_a_model(tmp_path):
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.RNN(RNNCell(4), return_sequences=True)])
    x = np.linspace(-1, 1, 12).reshape(2, 3, 2).astype("float32")
    model.save(tmp_path / "rnn.keras")
    assert_close(keras.models.load_model(tmp_path / "rnn.keras")(x), model(x), atol=1e-6, what="after save/load")


def small_captioner(cell_type, V=8, C=5, **kwargs):
    model = CaptioningRNN(V, cell_type=cell_type, embed_dim=4, hidden_dim=6, **kwargs)
    rng = np.random.default_rng(7)
    model((np.zeros((1, C), "float32"), np.ones((1, 2), "int32")))
    model.set_weights([rng.normal(scale=0.8, size=w.shape).astype("float32") for w in model.weights])
    kernel, bias = model.output_projection.get_weights()
    bias[0] = -1e3  # never predict <NULL>: a fed <NULL> would be masked in teacher forcing
    model.output_projection.set_weights([kernel, bias])
    return model


@pytest.mark.step("captioner.forward")
@pytest.mark.parametrize("N,T", [(1, 1), (1, 5), (4, 1), (3, 6)])
def test_captioner_forward_shapes_and_batch_independence(N, T):
    model = small_captioner("rnn")
    features = np.linspace(-1, 1, N * 5).reshape(N, 5).astype("float32")
    captions = (np.arange(N * T).reshape(N, T) % 7 + 1).astype("int32")
    logits = np.asarray(model((features, captions)))
    assert logits.shape == (N, T, 8), f"logits shape {logits.shape}, expected {(N, T, 8)}"
    for n in range(N):
        alone = model((features[n:n + 1], captions[n:n + 1]))
        assert_close(logits[n:n + 1], alone, atol=1e-5, what=f"caption {n} computed alone")


@pytest.mark.step("captioner.forward")
def test_captioner_h0_comes_from_the_features():
    model = small_captioner("rnn")
    captions = np.array([[1, 3, 4]] * 2)
    features = np.stack([np.zeros(5), np.ones(5)]).astype("float32")
    logits = np.asarray(model((features, captions)))
    assert np.abs(logits[0] - logits[1]).max() > 1e-3, "the image features must change the logits (h0)."


@pytest.mark.step("captioner.forward")
def test_captioner_save_load_round_trip(tmp_path):
    from kcaption.models import build_captioner

    model = build_captioner("rnn", 9, embed_dim=4, hidden_dim=6, image_size=32)
    images = np.linspace(0, 1, 2 * 32 * 32 * 3).reshape(2, 32, 32, 3).astype("float32")
    captions = np.array([[1, 4, 5], [1, 2, 0]])
    expected = model((images, captions))
    model.save(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras")
    assert_close(loaded((images, captions)), expected, atol=1e-5, what="captioner logits after save/load")
    np.testing.assert_array_equal(loaded.sample(images, max_length=5), model.sample(images, max_length=5))


@pytest.mark.step("captioner.sample")
def test_greedy_search_all_end_at_once_and_length_one():
    def next_logits(tokens, state):
        return tf.one_hot(tf.fill(tf.shape(tokens), 2), 4), state

    out = np.asarray(greedy_search(next_logits, [], np.ones(4, "int32"), 4))
    np.testing.assert_array_equal(out, [[2, 0, 0, 0]] * 4)
    out = np.asarray(greedy_search(next_logits, [], np.ones(1, "int32"), 1))
    np.testing.assert_array_equal(out, [[2]])


@pytest.mark.step("captioner.sample")
def test_greedy_search_other_end_and_pad_tokens():
    def next_logits(tokens, state):
        return tf.one_hot(tokens + 1, 8), state

    out = np.asarray(greedy_search(next_logits, [], np.array([1, 3]), 5, end_token=4, pad_token=7))
    np.testing.assert_array_equal(out, [[2, 3, 4, 7, 7], [4, 7, 7, 7, 7]])


@pytest.mark.step("captioner.sample")
def test_greedy_search_inside_tf_function():
    calls = []

    def next_logits(tokens, state):
        calls.append(1)
        return tf.one_hot(tf.minimum(tokens + 1, 2), 5), state

    compiled = tf.function(lambda start: greedy_search(next_logits, [], start, 6))
    np.testing.assert_array_equal(compiled(tf.constant([0, 1])), [[1, 2, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0]])


@pytest.mark.step("captioner.sample")
@pytest.mark.parametrize("cell_type,initial_cell", [("rnn", "zeros"), ("lstm", "zeros"), ("lstm", "h0")])
def test_step_by_step_sampling_equals_teacher_forcing(cell_type, initial_cell):
    model = small_captioner(cell_type, initial_cell=initial_cell)
    features = np.linspace(-2, 2, 20).reshape(4, 5).astype("float32")
    sampled = np.asarray(model.sample(features, max_length=7))
    fed = np.concatenate([np.ones((4, 1), "int32"), sampled[:, :-1]], axis=1)
    predicted = np.argmax(np.asarray(model((features, fed))), axis=-1)
    for n in range(4):
        row = list(sampled[n])
        length = row.index(2) + 1 if 2 in row else 7
        np.testing.assert_array_equal(predicted[n, :length], sampled[n, :length],
                                      err_msg="sampling must feed back exactly the argmax of the teacher-forced pass")
        assert all(t == 0 for t in row[length:]), "after <END> every token must be <NULL>"


@pytest.mark.step("captioner.forward")
@pytest.mark.parametrize("cell_type", ["rnn", "lstm"])
def test_captioner_null_padding_is_masked(cell_type):
    model = small_captioner(cell_type)
    features = np.linspace(-1, 1, 10).reshape(2, 5).astype("float32")
    captions = np.array([[1, 3, 4, 0, 0], [1, 5, 0, 0, 0]], "int32")
    logits = np.asarray(model((features, captions)))
    for n, length in enumerate([3, 2]):
        for t in range(length, captions.shape[1]):
            assert_close(logits[n, t], logits[n, length - 1], atol=1e-6,
                         what=f"logits at the <NULL> position {t} of caption {n}",
                         hint="Pass mask=(captions_in != <NULL>) to the RNN: a masked step keeps the state.")
