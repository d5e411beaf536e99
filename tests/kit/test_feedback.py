"""Feedback names the likely cause: a check's hint is chosen from what actually came out.

- Unit: for each step's mistake catalog (`kcaption.mistakes`), on the public
  tests' inputs, each mistake's own output is diagnosed with its hint and no
  other; the right output passes; an unrelated wrong output gets the neutral
  sentence, never a guess. The patterns of `kcaption.feedback` each on a case.
- Trust: no scenario (the half that runs student code) computes a hint, and
  the shipped modules hold no reference body.
- End to end: every catalogued mutant with a `hint` fails its step's tests
  with a message that says that hint.
"""

import ast
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from kcaption import backprop, mistakes
from kcaption.data import END, NULL, START, Vocabulary, decode_captions
from kcaption.feedback import diagnose
from kcaption.grading import mutants, release
from kcaption.layers import LSTMCell, RNNCell, WordEmbedding
from kcaption.layers.attention import AttentionLSTMCell, dot_product_attention
from kcaption.layers.multi_head_attention import MultiHeadAttention
from kcaption.layers.positional import PositionalEncoding
from kcaption.layers.transformer import causal_mask
from kcaption.losses import temporal_softmax_loss
from kcaption.testing import assert_close, assert_equal

ROOT = Path(__file__).resolve().parents[2]
NEUTRAL = "It matches none of the known mistakes this check looks for."
KNOWN = "It matches a known mistake: "


def linspace(shape, low, high):
    return np.linspace(low, high, int(np.prod(shape))).reshape(shape)


def wavy(shape, scale=1.0):
    return np.sin(linspace(shape, -7.0, 7.0) * 3.1) * scale


def unrelated(value):
    """A wrong value no mistake models: the right one plus an irregular ripple."""
    value = np.asarray(value, np.float64)
    return value + 0.3 * np.cos(np.arange(value.size) ** 1.7).reshape(value.shape)


# --- the right outputs, from the reference steps (this repo runs them: KCAPTION_SOLUTIONS=1) -------------


def _cell(layer, input_dim, weights, x, states):
    layer.build((None, input_dim))
    layer.set_weights(weights)
    h, new_states = layer(x, states)
    return [np.asarray(v) for v in (h, *new_states)]


def embedding_case():
    W, ids = linspace((7, 3), -1.0, 1.0), np.array([[0, 3, 1, 2], [2, 1, 0, 6]])
    layer = WordEmbedding(7, 3, dtype="float64")
    layer.build(ids.shape)
    layer.set_weights([W])
    return {"embedding.forward": (mistakes.embedding_forward(W, ids), np.asarray(layer(ids)), dict(atol=0, rtol=0))}


def loss_case():
    logits = np.linspace(-2.0, 3.0, 72).reshape(3, 4, 6)[:, :, ::-1].copy()
    targets = np.array([[1, 4, 2, 0], [3, 5, 0, 0], [2, 0, 0, 0]])
    right = float(temporal_softmax_loss(logits, targets))
    return {"loss.temporal_softmax": (mistakes.temporal_softmax_loss(logits, targets), right, dict(atol=1e-5))}


def rnn_case():
    x, h_prev = linspace((3, 10), -0.4, 0.7), linspace((3, 4), -0.2, 0.5)
    weights = [linspace((10, 4), -0.1, 0.9), linspace((4, 4), -0.3, 0.7), linspace((4,), -0.2, 0.4)]
    h, state = _cell(RNNCell(4, dtype="float64"), 10, weights, x, [h_prev])
    return {f"rnn.cell {output}": (mistakes.rnn_cell(x, h_prev, *weights, output=output), right, dict(atol=1e-6))
            for output, right in (("h", h), ("state", state))}


def lstm_case():
    x, h_prev, c_prev = linspace((3, 4), -0.4, 1.2), linspace((3, 5), -0.3, 0.7), linspace((3, 5), -0.4, 0.9)
    weights = [linspace((4, 20), -2.1, 1.3), linspace((5, 20), -0.7, 2.2), linspace((20,), 0.3, 0.7)]
    h, _, c = _cell(LSTMCell(5, dtype="float64"), 4, weights, x, [h_prev, c_prev])
    return {f"lstm.cell {output}": (mistakes.lstm_cell(x, h_prev, c_prev, *weights, output=output), right,
                                    dict(atol=1e-10))
            for output, right in (("h", h), ("c", c))}


def attention_case():
    h_prev, A = linspace((3, 6), -1.5, 2.0), np.sin(linspace((3, 4, 6), -4.0, 4.0) * 3.0)
    context, weights = (np.asarray(v) for v in dot_product_attention(h_prev, A))
    return {f"attention.dot_product {output}": (mistakes.dot_product_attention(h_prev, A, output=output), right,
                                                dict(atol=1e-6))
            for output, right in (("weights", weights), ("context", context))}


def attention_lstm_case():
    x, A = linspace((3, 5), -1, 1), np.sin(linspace((3, 4, 6), -4.0, 4.0) * 3.0)
    h_prev, c_prev = linspace((3, 6), 0.5, -0.5), linspace((3, 6), -0.3, 0.7)
    weights = [linspace((5, 24), -0.5, 0.5), linspace((6, 24), 0.4, -0.4), np.cos(linspace((6, 24), -3, 3)) * 0.5,
               linspace((24,), -0.2, 0.3)]
    h, _, c, _ = _cell(AttentionLSTMCell(6, dtype="float64"), 5, weights, x, [h_prev, c_prev, A])
    return {f"attention.lstm_cell {output}": (
        mistakes.attention_lstm_cell(x, h_prev, c_prev, A, *weights, output=output), right, dict(atol=1e-5))
        for output, right in (("h", h), ("c", c))}


def positional_case():
    x = wavy((2, 17, 16))
    right = np.asarray(PositionalEncoding(max_len=17, embed_dim=16, dtype="float64")(x, training=False))
    return {"transformer.positional_encoding": (mistakes.positional_encoding(x), right, dict(atol=1e-5))}


def causal_mask_case():
    return {f"transformer.causal_mask {length}": (mistakes.causal_mask(length), np.asarray(causal_mask(length)),
                                                  dict(atol=0))
            for length in (4, 7)}


def mha_weights(value_dim, E=12):
    """[Wq, bq, Wk, bk, Wv, bv, Wo, bo] for queries of width E and keys/values of width `value_dim`."""
    return [wavy((E, E), 0.5)[::-1].copy(), linspace((E,), -0.1, 0.1), wavy((value_dim, E), 0.4),
            linspace((E,), -0.1, 0.2), wavy((value_dim, E), 0.3)[:, ::-1].copy(), linspace((E,), -0.1, 0.3),
            wavy((E, E), 0.4), linspace((E,), -0.1, 0.4)]


def multi_head_case():
    N, T, S, E, heads = 2, 5, 7, 12, 3
    mask = np.tril(np.ones((T, T), bool))[None] & np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)[:, None, :]
    cases = {}
    for name, query, value, attention_mask in [("", wavy((N, T, E)), wavy((N, S, 10)) * 2, None),
                                              (" masked", wavy((N, T, E)), wavy((N, T, E)), mask)]:
        weights = mha_weights(value.shape[-1])
        layer = MultiHeadAttention(E, heads, dtype="float64")
        layer.build(query.shape, value.shape, value.shape)
        layer.set_weights(weights)
        out, attention = (np.asarray(v) for v in layer(query, value, attention_mask=attention_mask,
                                                        return_attention_scores=True))
        for output, right in (("output", out), ("weights", attention)):
            catalog = mistakes.multi_head_attention(query, value, weights, heads, attention_mask=attention_mask,
                                                    output=output)
            cases[f"transformer.multi_head_attention{name} {output}"] = (catalog, right, dict(atol=1e-5))
    return cases


def backprop_case():
    """Lesson 08's five backward steps, every gradient each returns, on inputs with N, T, D, H, V all different."""
    N, T, D, H, V = 3, 4, 5, 6, 7
    x, h0 = wavy((N, T, D)), wavy((N, H), 0.5)
    Wx, Wh, b = wavy((D, H), 0.4), wavy((H, H), 0.3), wavy((H,), 0.2)
    h, prev = [], h0
    for t in range(T):
        prev = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
        h.append(prev)
    h, dh = np.stack(h, axis=1), wavy((N, T, H), 0.7)
    cases = {}
    step = backprop.rnn_step_backward(dh[:, -1], x[:, -1], h[:, -2], h[:, -1], Wx, Wh)
    for output, right in zip(("dx", "dprev_h", "dWx", "dWh", "db"), step):
        cases[f"backprop.rnn_step {output}"] = (
            mistakes.rnn_step_backward(dh[:, -1], x[:, -1], h[:, -2], h[:, -1], Wx, Wh, output=output),
            np.asarray(right), dict(atol=1e-10))
    for output, right in zip(("dx", "dh0", "dWx", "dWh", "db"), backprop.rnn_backward(dh, x, h0, h, Wx, Wh)):
        cases[f"backprop.rnn {output}"] = (mistakes.rnn_backward(dh, x, h0, h, Wx, Wh, output=output),
                                           np.asarray(right), dict(atol=1e-10))
    ids = np.array([[1, 2, 2, 0], [4, 4, 4, 1], [6, 2, 5, 3]])
    dout = wavy((N, T, D))
    cases["backprop.embedding"] = (mistakes.word_embedding_backward(dout, ids, V),
                                   np.asarray(backprop.word_embedding_backward(dout, ids, V)), dict(atol=1e-10))
    logits = wavy((N, T, V), 2.0)
    cases["backprop.loss"] = (mistakes.temporal_softmax_loss_backward(logits, ids),
                              np.asarray(backprop.temporal_softmax_loss_backward(logits, ids)), dict(atol=1e-10))
    Wx4, Wh4, b4 = wavy((D, 4 * H), 0.4), wavy((H, 4 * H), 0.3), wavy((4 * H,), 0.5)
    c_prev, dnext_h, dnext_c = wavy((N, H), 0.8), wavy((N, H), 0.6), wavy((N, H), 0.9)
    arguments = (dnext_h, dnext_c, x[:, 0], h0, c_prev, Wx4, Wh4, b4)
    for output, right in zip(("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"), backprop.lstm_step_backward(*arguments)):
        cases[f"backprop.lstm_step {output}"] = (mistakes.lstm_step_backward(*arguments, output=output),
                                                 np.asarray(right), dict(atol=1e-10))
    return cases


CASES = {}
for make in (embedding_case, loss_case, rnn_case, lstm_case, attention_case, attention_lstm_case, positional_case,
             causal_mask_case, multi_head_case, backprop_case):
    CASES.update(make())

# Outputs for the mistakes a catalog recognises by a test rather than by a value.
EXAMPLES = {
    "each id gave a vector of V numbers, not D": np.zeros((2, 4, 7)),
}


def failure(actual, expected, catalog, tolerance):
    with pytest.raises(AssertionError) as info:
        assert_close(actual, expected, what="value", mistakes=catalog, **tolerance)
    return str(info.value)


@pytest.mark.parametrize("name", CASES)
def test_each_mistake_gets_its_own_hint_and_the_right_output_passes(name):
    catalog, right, tolerance = CASES[name]
    assert_close(right, right, mistakes=catalog, **tolerance)
    for hint, value in catalog.items():
        if callable(value):
            value = next(example for start, example in EXAMPLES.items() if hint.startswith(start))
        hidden = np.shape(value) == np.shape(right) and np.allclose(value, right, **tolerance)
        assert not hidden, f"{name}: on these inputs the mistake gives the right output, no check can see it: {hint!r}"
        message = failure(value, right, catalog, tolerance)
        assert KNOWN + hint in message and " Or: " not in message, f"{name}, {hint!r}: {message}"


@pytest.mark.parametrize("name", CASES)
def test_an_unrelated_wrong_output_gets_no_guess(name):
    catalog, right, tolerance = CASES[name]
    message = failure(unrelated(right), right, catalog, tolerance)
    assert NEUTRAL in message and KNOWN not in message, message
    assert not [hint for hint in catalog if hint in message], message


def test_decode_captions_mistakes_are_recognised_and_a_right_result_passes():
    assert (mistakes.NULL, mistakes.START, mistakes.END) == (NULL, START, END)
    words = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "red", "circle", "blue"]
    batch, row = np.array([[1, 4, 5, 6, 2, 0], [1, 7, 6, 2, 5, 5]]), np.array([1, 4, 5, 6, 2, 0])
    right = decode_captions(batch, Vocabulary(words))
    assert right == ["a red circle", "blue circle"]
    cases = [
        (batch, ["<START> a red circle", "<START> blue circle"], "'<START>' is in a caption"),
        (batch, ["a red circle <END>", "blue circle <END>"], "'<END>' is in a caption"),
        (batch, ["a red circle <NULL>", "blue circle"], "'<NULL>' is in a caption"),
        (batch, ["a red circle", "blue circle red red"], "words after its <END>"),
        (row, ["a red circle"], "(T,) ids gave a list"),
        (batch, "a red circle", "(N, T) ids gave a single str"),
        (batch, [["a", "red", "circle"], ["blue", "circle"]], "a list of words"),
    ]
    for ids, got, hint in cases:
        expected = decode_captions(ids, Vocabulary(words))
        with pytest.raises(AssertionError) as info:
            assert_equal(got, expected, what="captions", mistakes=mistakes.decode_captions(ids, words))
        message = str(info.value)
        assert KNOWN in message and hint in message and " Or: " not in message, message
    assert_equal(right, right, mistakes=mistakes.decode_captions(batch, words))
    with pytest.raises(AssertionError) as info:
        assert_equal(["a red square", "blue circle"], right, mistakes=mistakes.decode_captions(batch, words))
    assert NEUTRAL in str(info.value) and "Item 0 is 'a red square' instead of 'a red circle'." in str(info.value)


# --- the patterns of a difference --------------------------------------------------------------------


EXPECTED = linspace((2, 3, 4), -1.0, 2.0)


@pytest.mark.parametrize("actual, expected, seen", [
    (EXPECTED[..., 0], EXPECTED, "Axis 2 of the expected shape (size 4) is missing."),
    (EXPECTED[:, None], EXPECTED, "There is an extra axis 1 of size 1."),
    (EXPECTED.transpose(2, 0, 1), EXPECTED, "axes in the order (2, 0, 1): transposed?"),
    (EXPECTED[:, :2], EXPECTED, "Axis 1 has 2 entries instead of 3."),
    (np.where(EXPECTED > 1.5, np.nan, EXPECTED), EXPECTED, "4 of 24 values are NaN or inf, the first at index (1, 2, 0)."),
    (np.zeros_like(EXPECTED), EXPECTED, "Every value is 0."),
    (-EXPECTED, EXPECTED, "the sign flipped"),
    (EXPECTED * 8**0.5, EXPECTED, "Every value is 2.828 (about sqrt(8)) times the expected one"),
    (EXPECTED / 8**0.5, EXPECTED, "(about 1/sqrt(8)) times"),
    (EXPECTED + 0.5, EXPECTED, "Every value is off by the same +0.5"),
    (np.swapaxes(EXPECTED[:, :3, :3], 1, 2), EXPECTED[:, :3, :3], "transposed (its last two axes swapped)"),
    (EXPECTED.astype(np.float32).astype(np.float64), EXPECTED, "to about float32 precision only"),
    (np.concatenate([EXPECTED[:1], EXPECTED[:1]]), EXPECTED,
     "24 values differ, all at index 1 of axis 0 (the other indices are right); along that axis, index 1 holds "
     "the expected value of index 0."),
])
def test_the_pattern_of_a_difference_is_said_as_seen(actual, expected, seen):
    tolerance = dict(atol=1e-9, rtol=1e-9) if "float32" in seen else {}
    assert seen in " ".join(diagnose(actual, expected, **tolerance))


def test_wrong_values_only_at_masked_positions_ask_about_the_mask():
    masked = np.arange(4) >= 2  # the last two of 4 positions
    actual = EXPECTED.copy()
    actual[..., 2:] += 1.0
    assert diagnose(actual, EXPECTED, masked=masked) == [
        "12 of 24 values differ, all at masked positions (the others are right): is the mask applied?"]


def test_plain_values_say_what_differs():
    assert diagnose("a red circle", ["a red circle"]) == ["It is a str, not a list."]
    assert diagnose(["a", "b"], ["a"]) == ["It has 2 items instead of 1."]


def test_nothing_seen_and_no_catalog_adds_nothing():
    assert diagnose(unrelated(EXPECTED), EXPECTED) == ["24 of 24 values differ."]
    assert diagnose("a blue circle", "a red circle") == []


def test_a_mistake_that_gives_the_right_answer_here_is_never_shown():
    catalog = {"a mistake these inputs cannot reveal": EXPECTED.copy(), "sign flipped?": -EXPECTED}
    assert diagnose(unrelated(EXPECTED), EXPECTED, mistakes=catalog)[-1] == NEUTRAL
    assert diagnose(-EXPECTED, EXPECTED, mistakes=catalog) == [KNOWN + "sign flipped?"]


def test_the_message_keeps_what_was_expected_what_came_out_and_the_largest_difference():
    W, ids = linspace((7, 3), -1.0, 1.0).astype("float32"), np.array([[0, 3, 1, 2], [2, 1, 0, 6]])
    message = failure(W[ids - 1], W[ids], mistakes.embedding_forward(W, ids), dict(atol=0))
    assert message.startswith("value: does not match the reference (atol=0, rtol=1e-05). Largest difference 1.8 at "
                              "index (0, 0, 0): got 0.8, expected -1.0. It matches a known mistake: each id k got "
                              "row k-1 of W_embed: are the ids off by one?"), message


# --- trust: hints are the judge's, and the handout's modules hold no reference ---------------------------


def scenarios_computing_hints(path):
    """Scenario functions (the first argument of a `student.run`) in `path` that touch mistakes or feedback."""
    tree = ast.parse(path.read_text())
    scenarios = {call.args[0].id for call in ast.walk(tree) if isinstance(call, ast.Call)
                 and isinstance(call.func, ast.Attribute) and call.func.attr == "run" and call.args
                 and isinstance(call.args[0], ast.Name)}
    return [f"{path.name}: {node.name}" for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name in scenarios
            and any(isinstance(n, ast.Name) and n.id in ("mistakes", "diagnose", "feedback") for n in ast.walk(node))]


def test_no_scenario_computes_a_hint():
    tests = sorted((ROOT / "tests").glob("test_0*.py")) + sorted((ROOT / "tests" / "hidden").glob("test_*.py"))
    assert [path for path in tests if "mistakes." in path.read_text()], "the public tests use the mistake catalogs"
    assert [found for path in tests for found in scenarios_computing_hints(path)] == []


def test_the_feedback_modules_hold_no_reference_body(tmp_path):
    for name in ("mistakes.py", "feedback.py"):
        shutil.copy(ROOT / "kcaption" / name, tmp_path / name)
    assert release.find_leaks(tmp_path) == []


# --- end to end: a modelled bug fails its step's tests with its hint ---------------------------------------


@pytest.mark.slow
def test_modelled_mutants_fail_with_their_hint():
    """~1 minute: each catalogued mutant with a `hint` runs its step's tests (public first, stopping at the first
    failure); that failure's message must say the hint (a known mistake's, or a pattern's: float32 precision)."""
    hinted = [edit for edit in mutants.load_catalog()[0] if edit.hint]
    assert len({edit.step for edit in hinted}) >= 10
    keras.backend.clear_session()
    done = mutants.run_catalog([("mutant", edit) for edit in hinted], workers=2)
    missing = [f"{edit.step} ({edit.why}): expected a failure that says {edit.hint!r}, in\n{log}"
               for _, edit, verdict, log in done
               if verdict != "caught" or not re.search(r"AssertionError: [^\n]*" + re.escape(edit.hint), log)]
    assert not missing, "\n\n".join(missing)
