"""Lesson 05: dot-product attention and the attention LSTM.

References are independent of the code under test: `keras.layers.Attention`
for the attention, `keras.layers.LSTMCell` on [x, context] for the cell (the
context's Wattn is just more input rows of the LSTM kernel).

A graded test is a scenario (a plain function that runs the student's code on
the arguments it gets and returns plain values) and a judge (the test: inputs,
expected values, verdict); see kcaption/grading/sandbox.py.
"""

import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest

from kcaption import mistakes
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
    units = h_prev.shape[1]
    cell = keras.layers.LSTMCell(units)
    cell.build((None, x.shape[1] + units))
    cell.set_weights([np.concatenate([Wx, Wattn]), Wh, b])
    h, (_, c) = cell(np.concatenate([x, context], axis=1), [h_prev, c_prev])
    return np.asarray(h), np.asarray(c), attn


def _reference_sequence(x, A, weights, h0=None, c0=None):
    """The hidden states and attention weights (N, T, H), (N, T, L) of every step, from h0 = c0 = mean of A."""
    h = A.mean(axis=1) if h0 is None else h0
    c = A.mean(axis=1) if c0 is None else c0
    hs, attns = [], []
    for t in range(x.shape[1]):
        h, c, attn = _reference_step(x[:, t], h, c, A, weights)
        hs.append(h)
        attns.append(attn)
    return np.stack(hs, axis=1), np.stack(attns, axis=1)


def attend(h_prev, A):
    """Scenario: the student's dot_product_attention."""
    return dot_product_attention(h_prev, A)


@pytest.mark.step("attention.dot_product")
def test_dot_product_attention_matches_keras_attention(student):
    A, h_prev = _features(), _values((N, H), -1.5, 2.0)
    context, weights = student.run(attend, h_prev, A)
    expected_context, expected_weights = _reference_attention(h_prev, A)
    assert_close(weights, expected_weights, atol=1e-6, what="weights",
                 mistakes=mistakes.dot_product_attention(h_prev, A, output="weights"))
    assert_close(context, expected_context, atol=1e-6, what="context",
                 mistakes=mistakes.dot_product_attention(h_prev, A, output="context"))


@pytest.mark.step("attention.dot_product")
def test_attention_weights_are_a_distribution(student):
    h_prev, A = _values((N, H), -3, 3), _features() * 10
    _, weights = student.run(attend, h_prev, A)
    weights = np.asarray(weights)
    assert weights.shape == (N, L), f"weights: expected shape {(N, L)}, got {weights.shape}."
    wrong = mistakes.dot_product_attention(h_prev, A, output="weights")
    assert_close(weights.sum(axis=1), np.ones(N), atol=1e-5, what="weights summed over L",
                 mistakes={hint: w.sum(axis=1) for hint, w in wrong.items()},
                 hint="the weights of each example are a distribution over its L positions.")


def attention_cell_step(x, h_prev, c_prev, A, weights):
    """Scenario: one AttentionLSTMCell step holding `weights` [Wx, Wh, Wattn, b]."""
    cell = AttentionLSTMCell(h_prev.shape[1])
    cell.build((None, x.shape[1]))
    cell.set_weights(weights)
    h, (h_again, c, A_again) = cell(x, [h_prev, c_prev, A])
    return h, h_again, c, A_again


@pytest.mark.step("attention.lstm_cell")
def test_attention_lstm_cell_matches_keras_lstm_cell_on_x_and_context(student):
    x, A = _values((N, D), -1, 1), _features()
    h_prev, c_prev = _values((N, H), 0.5, -0.5), _values((N, H), -0.3, 0.7)
    h, h_again, c, A_again = student.run(attention_cell_step, x, h_prev, c_prev, A, _cell_weights())
    expected_h, expected_c, _ = _reference_step(x, h_prev, c_prev, A, _cell_weights())
    assert_close(c, expected_c, atol=1e-5, what="next c",
                 mistakes=mistakes.attention_lstm_cell(x, h_prev, c_prev, A, *_cell_weights(), output="c"))
    assert_close(h, expected_h, atol=1e-5, what="next h",
                 mistakes=mistakes.attention_lstm_cell(x, h_prev, c_prev, A, *_cell_weights(), output="h"))
    assert_close(h_again, h, what="states[0]", hint="the first state is the new h.")
    assert_close(A_again, A, what="states[2]", hint="Pass the features A on unchanged.")


def cell_weight_layout(units, input_dim):
    """Scenario: the names and shapes of the weights AttentionLSTMCell.build creates."""
    cell = AttentionLSTMCell(units)
    cell.build((None, input_dim))
    return [w.name for w in cell.weights], [tuple(w.shape) for w in cell.weights]


@pytest.mark.step("attention.lstm_cell", kit_code=True)
def test_cell_weights_follow_the_course_layout(student):
    names, shapes = student.run(cell_weight_layout, H, D)
    assert names == ["Wx", "Wh", "Wattn", "b"], names
    assert shapes == [(D, 4 * H), (H, 4 * H), (H, 4 * H), (4 * H,)], shapes


def _attention_lstm(weights, input_dim):
    """An AttentionLSTM over (N, T, input_dim) inputs, holding the cell weights `weights`."""
    lstm = AttentionLSTM(weights[1].shape[0])
    lstm.build((None, None, input_dim))
    lstm.set_weights(weights)
    return lstm


def attention_lstm_sequence(x, A, weights):
    """Scenario: an AttentionLSTM from attention_initial_state(A), returning its attention too."""
    lstm = _attention_lstm(weights, x.shape[2])
    return lstm(x, attention_initial_state(A), return_attention=True)


@pytest.mark.step("attention.lstm_cell")
def test_attention_lstm_runs_the_cell_over_the_sequence(student):
    x, A = _values((N, T, D), -1, 1), _features()
    h_seq, attn_seq = student.run(attention_lstm_sequence, x, A, _cell_weights())
    assert tuple(h_seq.shape) == (N, T, H) and tuple(attn_seq.shape) == (N, T, L)
    h = c = A.mean(axis=1)  # the default initial state
    for t in range(T):
        h, c, attn = _reference_step(x[:, t], h, c, A, _cell_weights())
        assert_close(h_seq[:, t], h, atol=1e-5, what=f"h at step {t}")
        assert_close(attn_seq[:, t], attn, atol=1e-5, what=f"attention weights at step {t}")


def attention_lstm_with_and_without_mask(x, A, weights, mask):
    """Scenario: one AttentionLSTM over `x`, with `mask`, then without."""
    lstm = _attention_lstm(weights, x.shape[2])
    return lstm(x, attention_initial_state(A), mask=mask), lstm(x, attention_initial_state(A))


@pytest.mark.step("attention.lstm_cell")
def test_attention_lstm_carries_states_over_masked_steps(student):
    x, A = _values((N, T, D), -1, 1), _features()
    mask = np.ones((N, T), bool)
    mask[0, 4:] = False
    h_seq, full = student.run(attention_lstm_with_and_without_mask, x, A, _cell_weights(), mask)
    assert_close(h_seq[0, 4:], np.repeat(h_seq[0, 3:4], T - 4, axis=0), what="h at masked steps")
    assert_close(h_seq[1:], full[1:], what="h of unmasked captions")
    expected, _ = _reference_sequence(x, A, _cell_weights())
    assert_close(full, expected, atol=1e-5, what="h without a mask")
    assert_close(h_seq[0, :4], expected[0, :4], atol=1e-5, what="h before the masked steps")


def attention_lstm_save_and_load(x, A, weights):
    """Scenario: a model around an AttentionLSTM holding `weights`, then its .keras save/load copy."""
    x_in, A_in = keras.Input(x.shape[1:]), keras.Input(A.shape[1:])
    model = keras.Model([x_in, A_in], AttentionLSTM(weights[1].shape[0])(x_in, attention_initial_state(A_in)))
    model.set_weights(weights)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "attn.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
    return loaded([x, A]), model([x, A])


@pytest.mark.step("attention.lstm_cell")
def test_attention_lstm_saves_and_loads(student):
    x, A = _values((N, T, D)), _features()
    reloaded, original = student.run(attention_lstm_save_and_load, x, A, _cell_weights())
    assert_close(reloaded, original, atol=1e-6, what="output after .keras save/load")
    assert_close(original, _reference_sequence(x, A, _cell_weights())[0], atol=1e-5, what="output before saving")


def make_attention_layer(name, units):
    """Scenario: construct AttentionLSTMCell or AttentionLSTM (by class name) with `units`."""
    {"AttentionLSTMCell": AttentionLSTMCell, "AttentionLSTM": AttentionLSTM}[name](units)


@pytest.mark.step("attention.lstm_cell", kit_code=True)
@pytest.mark.parametrize("layer", [AttentionLSTMCell, AttentionLSTM])
def test_bad_units_are_a_clear_error(student, layer):
    with pytest.raises(ValueError, match="Received: units=-3"):
        student.run(make_attention_layer, layer.__name__, -3)


def initial_state(A):
    """Scenario: attention_initial_state(A)."""
    return attention_initial_state(A)


@pytest.mark.step("attention.lstm_cell", kit_code=True)
def test_attention_initial_state_is_the_mean_of_the_features(student):
    A = _features()
    h0, c0, A_again = student.run(initial_state, A)
    assert_close(h0, A.mean(axis=1), atol=1e-6, what="h0", hint="h0 = mean of A over the L positions.")
    assert_close(c0, A.mean(axis=1), atol=1e-6, what="c0", hint="c0 = h0.")
    assert_close(A_again, A, atol=0, what="the features passed on")


def config_round_trip(name, kwargs):
    """Scenario: get_config() of a layer made with `kwargs`, and of its from_config copy (those keys only)."""
    layer = {"AttentionLSTMCell": AttentionLSTMCell, "AttentionLSTM": AttentionLSTM}[name](**kwargs)
    config = layer.get_config()
    again = type(layer).from_config(config).get_config()
    return {key: config.get(key) for key in kwargs}, {key: again.get(key) for key in kwargs}


@pytest.mark.step("attention.lstm_cell", kit_code=True)
@pytest.mark.parametrize("layer", [AttentionLSTMCell, AttentionLSTM])
def test_layers_round_trip_their_config(student, layer):
    kwargs = {"units": 7, "name": "attention"}
    config, again = student.run(config_round_trip, layer.__name__, kwargs)
    assert config == kwargs, f"{layer.__name__}.get_config(): expected {kwargs}, got {config}."
    assert again == kwargs, f"{layer.__name__}.from_config(get_config()).get_config(): expected {kwargs}, got {again}."


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
    from kcaption.evaluation.localization import described_object

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
    from kcaption.evaluation.localization import localization_score

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
    from kcaption.evaluation.localization import localization_score

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


def _attention_captioner(vocab_size, embed_dim, hidden_dim):
    from kcaption.models import build_captioner

    return build_captioner("attn", vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim)


def attention_captioner_sample(images, captions, vocab_size, embed_dim, hidden_dim, max_length):
    """Scenario: an attention captioner (its initial weights): logits, greedy sampling with its
    attention, a .keras save/load copy, and the weights it holds."""
    from kcaption.viz.attention import sample_with_attention

    model = _attention_captioner(vocab_size, embed_dim, hidden_dim)
    logits = model((images, captions))
    ids, attention = sample_with_attention(model, images, max_length=max_length)
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder) / "attn.keras")
        loaded = keras.models.load_model(Path(folder) / "attn.keras")
    return {
        "logits": logits, "ids": ids, "attention": attention, "weights": model.get_weights(),
        "reloaded": loaded((images, captions)), "original": model((images, captions)),
    }


def attention_captioner_teacher_forced(images, captions_in, weights, vocab_size, embed_dim, hidden_dim):
    """Scenario: the same captioner holding `weights`, teacher-forced on `captions_in`: its LSTM's
    attention, and what the LSTM was fed (the projected features A, the embedded words, its weights)."""
    model = _attention_captioner(vocab_size, embed_dim, hidden_dim)
    model((images, captions_in))
    model.set_weights(weights)
    A = model.feature_projection(model.encode(images))
    embedded = model.embedding(captions_in)
    _, attention = model.rnn(embedded, initial_state=model.initial_state(A), return_attention=True)
    return {"attention": attention, "A": A, "embedded": embedded, "cell_weights": model.rnn.get_weights()}


@pytest.mark.step("attention.lstm_cell")
def test_attention_captioner_fits_samples_and_saves(student):
    images = _values((2, 64, 64, 3), 0.0, 1.0)
    captions = np.array([[1, 4, 5, 6, 2, 0], [1, 7, 8, 2, 0, 0]], "int32")
    run = student.run(attention_captioner_sample, images, captions, 12, 8, 16, 5)
    assert tuple(run["logits"].shape) == (2, 6, 12)
    ids, attention = run["ids"], run["attention"]
    assert ids.shape == (2, 5) and attention.shape == (2, 5, 16)
    assert_close(attention.sum(-1), np.ones((2, 5)), atol=1e-5, what="attention weights summed over the grid")
    # The weights recorded while sampling are those of a teacher-forced pass over the sampled words.
    captions_in = np.concatenate([np.ones((2, 1), "int32"), ids[:, :-1]], axis=1)
    forced = student.run(attention_captioner_teacher_forced, images, captions_in, run["weights"], 12, 8, 16)
    assert_close(attention, forced["attention"], atol=1e-5, what="attention while sampling vs teacher forcing")
    # ... and those of the reference LSTM, fed the same words and features.
    _, expected = _reference_sequence(forced["embedded"], forced["A"], forced["cell_weights"])
    assert_close(attention, expected, atol=1e-5, what="attention while sampling vs the reference LSTM")
    assert_close(run["reloaded"], run["original"], atol=1e-5, what="logits after save/load")


@pytest.mark.slow
def test_attention_captioner_overfits_50_shapes_examples():
    overfit_small_data("attn")  # the settings of kcaption.testing.OVERFIT, as in lesson 05


def test_attention_report_scores_and_draws(tmp_path):
    from kcaption.data import Vocabulary, load_shapes
    from kcaption.evaluation.localization import attention_report
    from kcaption.models import build_captioner

    records = load_shapes("val", n=3)
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    model = build_captioner("attn", len(vocab), embed_dim=8, hidden_dim=16)
    report = attention_report(model, records, vocab, path=tmp_path / "attention.png", max_length=6)
    assert set(report) == {"score", "chance", "hits", "words", "skipped"}
    assert (tmp_path / "attention.png").stat().st_size > 1000
