"""Lesson 05: dot-product attention and the attention LSTM.

References are independent of the code under test: `keras.layers.Attention`
for the attention, `keras.layers.LSTMCell` on [x, context] for the cell (the
context's Wattn is just more input rows of the LSTM kernel).
"""

import keras
import numpy as np
import pytest

from kcaption.layers.attention import (
    AttentionLSTM,
    AttentionLSTMCell,
    attention_initial_state,
    dot_product_attention,
)
from kcaption.testing import assert_close, overfit_small_data

N, L, H, D, T = 3, 4, 6, 5, 7


def _values(shape, low=-1.0, high=1.0):
    return np.linspace(low, high, int(np.prod(shape)), dtype="float32").reshape(shape)


def _features():
    return np.sin(_values((N, L, H), -4.0, 4.0) * 3.0).astype("float32")


def _reference_attention(h_prev, A):
    """keras.layers.Attention (dot score, no learned scale) with the query pre-scaled."""
    attention = keras.layers.Attention()
    query = (h_prev / np.sqrt(A.shape[-1]))[:, None, :]  # (N, 1, H)
    context, weights = attention([query, A], return_attention_scores=True)
    return np.asarray(context)[:, 0], np.asarray(weights)[:, 0]


def _cell_weights():
    return [_values((D, 4 * H), -0.5, 0.5), _values((H, 4 * H), 0.4, -0.4),
            np.cos(_values((H, 4 * H), -3, 3)) * 0.5, _values((4 * H,), -0.2, 0.3)]


def _reference_step(x, h_prev, c_prev, A, weights):
    Wx, Wh, Wattn, b = weights
    context, attn = _reference_attention(h_prev, A)
    cell = keras.layers.LSTMCell(H)
    cell.build((None, D + H))
    cell.set_weights([np.concatenate([Wx, Wattn]), Wh, b])
    h, (_, c) = cell(np.concatenate([x, context], axis=1), [h_prev, c_prev])
    return np.asarray(h), np.asarray(c), attn


@pytest.mark.step("attention.dot_product")
def test_dot_product_attention_matches_keras_attention():
    A, h_prev = _features(), _values((N, H), -1.5, 2.0)
    context, weights = dot_product_attention(h_prev, A)
    expected_context, expected_weights = _reference_attention(h_prev, A)
    assert_close(weights, expected_weights, atol=1e-6, what="weights",
                 hint="scores = A h_prev / sqrt(H), softmax over the L positions (axis=-1).")
    assert_close(context, expected_context, atol=1e-6, what="context",
                 hint="context = sum over l of weights[:, l] * A[:, l].")


@pytest.mark.step("attention.dot_product")
def test_attention_weights_are_a_distribution():
    _, weights = dot_product_attention(_values((N, H), -3, 3), _features() * 10)
    weights = np.asarray(weights)
    assert weights.shape == (N, L), f"weights: expected shape {(N, L)}, got {weights.shape}."
    assert_close(weights.sum(axis=1), np.ones(N), atol=1e-5, what="weights summed over L",
                 hint="Softmax over the L positions, not over the batch.")


@pytest.mark.step("attention.lstm_cell")
def test_attention_lstm_cell_matches_keras_lstm_cell_on_x_and_context():
    x, A = _values((N, D), -1, 1), _features()
    h_prev, c_prev = _values((N, H), 0.5, -0.5), _values((N, H), -0.3, 0.7)
    cell = AttentionLSTMCell(H)
    cell.build((None, D))
    cell.set_weights(_cell_weights())
    h, (h_again, c, A_again) = cell(x, [h_prev, c_prev, A])
    expected_h, expected_c, _ = _reference_step(x, h_prev, c_prev, A, _cell_weights())
    hint = "Attend with h_prev first; z = x Wx + h_prev Wh + context Wattn + b; gates i, f, g, o."
    assert_close(c, expected_c, atol=1e-5, what="next c", hint=hint)
    assert_close(h, expected_h, atol=1e-5, what="next h", hint=hint)
    assert_close(h_again, h, what="states[0]", hint="Return h, [h, c, A].")
    assert_close(A_again, A, what="states[2]", hint="Pass the features A on unchanged.")


def test_cell_weights_follow_the_course_layout():
    cell = AttentionLSTMCell(H)
    cell.build((None, D))
    names = [w.name for w in cell.weights]
    shapes = [tuple(w.shape) for w in cell.weights]
    assert names == ["Wx", "Wh", "Wattn", "b"], names
    assert shapes == [(D, 4 * H), (H, 4 * H), (H, 4 * H), (4 * H,)], shapes


def _attention_lstm():
    """An AttentionLSTM over (N, T, D) inputs, with the fixed weights of `_cell_weights`."""
    lstm = AttentionLSTM(H)
    lstm.build((None, T, D))
    lstm.set_weights(_cell_weights())
    return lstm


@pytest.mark.step("attention.lstm_cell")
def test_attention_lstm_runs_the_cell_over_the_sequence():
    x, A = _values((N, T, D), -1, 1), _features()
    lstm = _attention_lstm()
    h_seq, attn_seq = lstm(x, attention_initial_state(A), return_attention=True)
    assert tuple(h_seq.shape) == (N, T, H) and tuple(attn_seq.shape) == (N, T, L)
    h = c = A.mean(axis=1)  # the default initial state
    for t in range(T):
        h, c, attn = _reference_step(x[:, t], h, c, A, _cell_weights())
        assert_close(h_seq[:, t], h, atol=1e-5, what=f"h at step {t}")
        assert_close(attn_seq[:, t], attn, atol=1e-5, what=f"attention weights at step {t}")


@pytest.mark.step("attention.lstm_cell")
def test_attention_lstm_carries_states_over_masked_steps():
    x, A = _values((N, T, D), -1, 1), _features()
    lstm = _attention_lstm()
    mask = np.ones((N, T), bool)
    mask[0, 4:] = False
    h_seq = np.asarray(lstm(x, attention_initial_state(A), mask=mask))
    full = np.asarray(lstm(x, attention_initial_state(A)))
    assert_close(h_seq[0, 4:], np.repeat(h_seq[0, 3:4], T - 4, axis=0), what="h at masked steps")
    assert_close(h_seq[1:], full[1:], what="h of unmasked captions")


@pytest.mark.step("attention.lstm_cell")
def test_attention_lstm_saves_and_loads(tmp_path):
    x = keras.Input((T, D))
    A = keras.Input((L, H))
    model = keras.Model([x, A], AttentionLSTM(H)(x, attention_initial_state(A)))
    inputs = [_values((N, T, D)), _features()]
    path = tmp_path / "attn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert_close(loaded(inputs), model(inputs), atol=1e-6, what="output after .keras save/load")


@pytest.mark.parametrize("layer", [AttentionLSTMCell, AttentionLSTM])
def test_bad_units_are_a_clear_error(layer):
    with pytest.raises(ValueError, match="Received: units=-3"):
        layer(-3)


# Attention localisation score and overlays (not graded) -------------------------


def _peaked(cell, num_cells=16):
    weights = np.full(num_cells, 0.01, "float32")
    weights[cell] = 1.0
    return weights / weights.sum()


def _cell_of(point, side=4, image_size=64):
    x, y = point
    return int(y // (image_size / side)) * side + int(x // (image_size / side))


def test_described_object_resolves_colour_and_shape_words():
    from kcaption.data import ShapeObject
    from kcaption.localization import described_object

    red_circle = ShapeObject("circle", "red", "small", (2, 2, 12, 12))
    red_square = ShapeObject("square", "red", "large", (30, 30, 50, 50))
    blue_square = ShapeObject("square", "blue", "small", (40, 2, 52, 14))
    objects = [red_circle, red_square, blue_square]
    words = "a small red circle to the left of a red square and a blue".split()
    assert described_object(words, 2, objects) is red_circle  # "red" before "circle"
    assert described_object(words, 3, objects) is red_circle
    assert described_object(words, 9, objects) is red_square
    assert described_object(words, 13, objects) is blue_square  # "blue" alone, the only blue object
    assert described_object(words, 1, objects) is None  # "small" is neither
    assert described_object("a red".split(), 1, objects) is None  # two red objects: ambiguous
    assert described_object("a green circle".split(), 1, objects) is None  # not in the image


def test_localization_score_hits_misses_and_chance():
    from kcaption.data import make_shapes
    from kcaption.localization import localization_score

    # Images whose colours are all different and shapes too: each word names one object.
    records = [r for r in make_shapes(40, seed=5)
               if len({o.color for o in r.objects}) == len({o.shape for o in r.objects}) == len(r.objects)]
    captions, good, bad, expected_chance = [], [], [], []
    for record in records:
        words = record.captions[0].split()
        captions.append(words)
        good_rows, bad_rows = [], []
        for word in words:
            obj = next((o for o in record.objects if word in (o.color, o.shape)), record.objects[0])
            good_rows.append(_peaked(_cell_of(obj.center)))
            far = (64 - obj.center[0], 64 - obj.center[1])  # the point mirrored through the centre
            bad_rows.append(_peaked(_cell_of(far)))
            if word in (obj.color, obj.shape):
                x0, y0, x1, y1 = obj.box  # cells overlapped, counted per axis: 16-pixel cells
                overlapped = (int(np.ceil(x1 / 16)) - x0 // 16) * (int(np.ceil(y1 / 16)) - y0 // 16)
                expected_chance.append(overlapped / 16)
        good.append(np.stack(good_rows))
        bad.append(np.stack(bad_rows))
    objects = [r.objects for r in records]
    result = localization_score(captions, good, objects, image_size=64)
    assert result.words == len(expected_chance) > 10 and result.skipped == 0
    assert result.score == 1.0 and result.hits == result.words
    assert abs(result.chance - np.mean(expected_chance)) < 1e-9
    assert localization_score(captions, bad, objects, image_size=64).score < 0.35
    uniform = [np.full((len(c), 16), 1 / 16, "float32") for c in captions]
    assert localization_score(captions, uniform, objects, image_size=64).chance == result.chance


def test_localization_score_rejects_non_square_grids():
    from kcaption.data import make_shapes
    from kcaption.localization import localization_score

    record = make_shapes(1)[0]
    with pytest.raises(ValueError, match="num_cells=15"):
        localization_score([["red"]], [np.ones((1, 15))], [record.objects], image_size=64)


def test_attention_overlay_writes_a_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from kcaption.data import make_shapes
    from kcaption.viz.attention import attention_overlay

    record = make_shapes(1, seed=2)[0]
    words = record.captions[0].split()
    attention = np.stack([_peaked(t % 16) for t in range(len(words) + 1)])
    fig = attention_overlay(record.image, words, attention, path=tmp_path / "attn.png", boxes={1: record.objects[0].box})
    assert (tmp_path / "attn.png").stat().st_size > 1000
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["image", *words]


# The attention LSTM captioner ---------------------------------------------------


@pytest.mark.step("attention.lstm_cell")
def test_attention_captioner_fits_samples_and_saves(tmp_path):
    from kcaption.models import build_captioner
    from kcaption.viz.attention import sample_with_attention

    model = build_captioner("attn", 12, embed_dim=8, hidden_dim=16)
    images = _values((2, 64, 64, 3), 0.0, 1.0)
    captions = np.array([[1, 4, 5, 6, 2, 0], [1, 7, 8, 2, 0, 0]], "int32")
    assert tuple(model((images, captions)).shape) == (2, 6, 12)
    ids, attention = sample_with_attention(model, images, max_length=5)
    assert ids.shape == (2, 5) and attention.shape == (2, 5, 16)
    assert_close(attention.sum(-1), np.ones((2, 5)), atol=1e-5, what="attention weights summed over the grid")
    # The weights recorded while sampling are those of a teacher-forced pass over the sampled words.
    captions_in = np.concatenate([np.ones((2, 1), "int32"), ids[:, :-1]], axis=1)
    A = model.feature_projection(model.encode(images))
    _, teacher_forced = model.rnn(model.embedding(captions_in), initial_state=model.initial_state(A), return_attention=True)
    assert_close(attention, teacher_forced, atol=1e-5, what="attention while sampling vs teacher forcing")
    model.save(tmp_path / "attn.keras")
    loaded = keras.models.load_model(tmp_path / "attn.keras")
    assert_close(loaded((images, captions)), model((images, captions)), atol=1e-5, what="logits after save/load")


@pytest.mark.slow
def test_attention_captioner_overfits_50_shapes_examples():
    overfit_small_data("attn", epochs=60, learning_rate=1e-2, threshold=2.0, embed_dim=32, hidden_dim=128)


def test_attention_report_scores_and_draws(tmp_path):
    from kcaption.data import Vocabulary, load_shapes
    from kcaption.localization import attention_report
    from kcaption.models import build_captioner

    records = load_shapes("val", n=3)
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    model = build_captioner("attn", len(vocab), embed_dim=8, hidden_dim=16)
    report = attention_report(model, records, vocab, path=tmp_path / "attention.png", max_length=6)
    assert set(report) == {"score", "chance", "hits", "words", "skipped"}
    assert (tmp_path / "attention.png").stat().st_size > 1000
