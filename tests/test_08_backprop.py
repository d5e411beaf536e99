"""Lesson 08: backprop by hand. Each backward step against numeric gradients and Keras's autodiff, then trained.

Each graded test comes in two halves (kcaption/grading/sandbox.py): a scenario,
the plain function right above it, runs your code and returns plain values; the
test makes the inputs, computes the references and judges. The references are
`numeric_gradient` (centred differences of a NumPy forward) and
`tf.GradientTape` through Keras's own layers (`SimpleRNNCell`, `LSTMCell`,
`Embedding`, `SparseCategoricalCrossentropy`) holding the same weights, all in
float64: a right backward pass is within ~1e-10 of both, a wrong one ~1e-2 off.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kcaption import mistakes
from kcaption.backprop import (
    lstm_step_backward,
    rnn_backward,
    rnn_step_backward,
    temporal_softmax_loss_backward,
    wiring,
    word_embedding_backward,
)
from kcaption.layers import LSTMCell, RNNCell, WordEmbedding
from kcaption.losses import TemporalSoftmaxLoss
from kcaption.models import CaptioningRNN
from kcaption.testing import assert_close, numeric_gradient, rel_error
from kcaption.train import compile_captioner

# rel_error vs the numeric gradient (CS231n's check): a right answer measures 1e-9 or less here, a wrong one 1e-2
# or more. It is a max over entries, so the numeric gradient's own round-off (~1e-10, absolute) sets the floor
# at the smallest entry: the LSTM step's 6 gradients (360 entries, some gates saturated) measure 1.5e-8.
REL_ERROR = 1e-8
LSTM_REL_ERROR = 1e-7
ATOL = 1e-10  # vs autodiff: both are exact up to float64 round-off


def linspace(shape, low, high):
    return np.linspace(low, high, int(np.prod(shape))).reshape(shape)


def wavy(shape, scale=1.0):
    """An upstream gradient without linspace's regularity, so that no mistake cancels out on it."""
    return np.sin(linspace(shape, -7.0, 7.0) * 3.1) * scale


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numeric_gradients(forward, inputs, df=None):
    """{"d" + name: the numeric gradient of sum(forward(**inputs) * df) w.r.t. inputs[name]}."""
    def moved(name):
        return lambda value: forward(**{**inputs, name: value})

    return {f"d{name}": numeric_gradient(moved(name), value, df=df) for name, value in inputs.items()}


def tape_gradients(names, outputs, sources, tape, upstream):
    """{name: d outputs / d source} by tf.GradientTape, dense, as NumPy."""
    grads = tape.gradient(outputs, sources, output_gradients=upstream)
    return {name: np.asarray(tf.convert_to_tensor(g)) for name, g in zip(names, grads)}


def check_gradients(got, names, tape, numeric, catalog, what, hint="", bound=REL_ERROR):
    """Each returned gradient vs autodiff (with the known mistakes' hints), then its rel_error vs the numeric one."""
    count = len(got) if isinstance(got, list | tuple) else type(got).__name__
    assert isinstance(got, list | tuple) and len(got) == len(names), (
        f"{what} must return {len(names)} gradients, ({', '.join(names)}). Received: {count}.")
    for name, value in zip(names, got):
        assert_close(value, tape[name], atol=ATOL, rtol=1e-8, what=f"{what} {name} vs tf.GradientTape",
                     mistakes=catalog(name), hint=hint)
        error = rel_error(value, numeric[name])
        assert error <= bound, f"{what} {name}: rel_error {error:.2e} vs the numeric gradient, over {bound}."


# --- rnn_step_backward -----------------------------------------------------------------------------------------

RNN_GRADS = ["dx", "dprev_h", "dWx", "dWh", "db"]


def numpy_rnn_step(x, prev_h, Wx, Wh, b):
    return np.tanh(x @ Wx + prev_h @ Wh + b)


def rnn_step_case():
    """CS231n's shapes (N, D, H = 4, 5, 6), linspace values: x, prev_h, Wx, Wh, b and dnext_h."""
    N, D, H = 4, 5, 6
    return dict(x=linspace((N, D), -0.4, 0.7), prev_h=linspace((N, H), -0.2, 0.5), Wx=linspace((D, H), -0.1, 0.9),
                Wh=linspace((H, H), -0.3, 0.7), b=linspace((H,), -0.2, 0.4)), wavy((N, H)) + 0.3


def keras_rnn_step_gradients(inputs, dnext_h):
    """rnn_step's gradients by tf.GradientTape through keras.layers.SimpleRNNCell."""
    cell = keras.layers.SimpleRNNCell(inputs["Wh"].shape[0], dtype="float64")
    cell.build(inputs["x"].shape)
    cell.set_weights([inputs["Wx"], inputs["Wh"], inputs["b"]])
    x, prev_h = tf.constant(inputs["x"]), tf.constant(inputs["prev_h"])
    with tf.GradientTape() as tape:
        tape.watch([x, prev_h])
        next_h, _ = cell(x, [prev_h])
    return tape_gradients(RNN_GRADS, next_h, [x, prev_h, *cell.weights], tape, tf.constant(dnext_h))


def rnn_step_gradients(dnext_h, x, prev_h, next_h, Wx, Wh):
    """Scenario: your rnn_step_backward."""
    return rnn_step_backward(dnext_h, x, prev_h, next_h, Wx, Wh)


@pytest.mark.step("backprop.rnn_step")
def test_rnn_step_backward_matches_numeric_and_autodiff_gradients(student):
    inputs, dnext_h = rnn_step_case()
    x, prev_h, Wx, Wh = (inputs[k] for k in ("x", "prev_h", "Wx", "Wh"))
    next_h = numpy_rnn_step(**inputs)
    got = student.run(rnn_step_gradients, dnext_h, x, prev_h, next_h, Wx, Wh)
    check_gradients(got, RNN_GRADS, keras_rnn_step_gradients(inputs, dnext_h),
                    numeric_gradients(numpy_rnn_step, inputs, dnext_h),
                    lambda name: mistakes.rnn_step_backward(dnext_h, x, prev_h, next_h, Wx, Wh, output=name),
                    "rnn_step_backward", hint="dz = dnext_h * (1 - next_h**2); then dz Wx^T, dz Wh^T, x^T dz, "
                    "prev_h^T dz and dz summed over the batch.")


# --- rnn_backward ----------------------------------------------------------------------------------------------

BPTT_GRADS = ["dx", "dh0", "dWx", "dWh", "db"]


def numpy_rnn(x, h0, Wx, Wh, b):
    """The forward over time, h (N, T, H)."""
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = numpy_rnn_step(x[:, t], h, Wx, Wh, b)
        hs.append(h)
    return np.stack(hs, axis=1)


def rnn_case():
    """CS231n's shapes (N, D, T, H = 2, 3, 10, 5), linspace values: x, h0, Wx, Wh, b and dh."""
    N, D, T, H = 2, 3, 10, 5
    return dict(x=linspace((N, T, D), -0.1, 0.3), h0=linspace((N, H), -0.3, 0.1), Wx=linspace((D, H), -0.2, 0.4),
                Wh=linspace((H, H), -0.4, 0.1), b=linspace((H,), -0.7, 0.1)), wavy((N, T, H)) + 0.3


def keras_rnn_gradients(inputs, dh):
    """rnn's gradients by tf.GradientTape through keras.layers.RNN(SimpleRNNCell), h0 as its initial_state."""
    rnn = keras.layers.RNN(keras.layers.SimpleRNNCell(inputs["Wh"].shape[0], dtype="float64"),
                           return_sequences=True, dtype="float64")
    rnn.build(inputs["x"].shape)
    rnn.set_weights([inputs["Wx"], inputs["Wh"], inputs["b"]])
    x, h0 = tf.constant(inputs["x"]), tf.constant(inputs["h0"])
    with tf.GradientTape() as tape:
        tape.watch([x, h0])
        h = rnn(x, initial_state=[h0])
    return tape_gradients(BPTT_GRADS, h, [x, h0, *rnn.weights], tape, tf.constant(dh))


def rnn_gradients(dh, x, h0, h, Wx, Wh):
    """Scenario: your rnn_backward."""
    return rnn_backward(dh, x, h0, h, Wx, Wh)


@pytest.mark.step("backprop.rnn")
def test_rnn_backward_matches_numeric_and_autodiff_gradients(student):
    inputs, dh = rnn_case()
    x, h0, Wx, Wh = (inputs[k] for k in ("x", "h0", "Wx", "Wh"))
    h = numpy_rnn(**inputs)
    got = student.run(rnn_gradients, dh, x, h0, h, Wx, Wh)
    check_gradients(got, BPTT_GRADS, keras_rnn_gradients(inputs, dh), numeric_gradients(numpy_rnn, inputs, dh),
                    lambda name: mistakes.rnn_backward(dh, x, h0, h, Wx, Wh, output=name), "rnn_backward",
                    hint="from t = T-1 down to 0, step t gets dh[:, t] plus what step t+1 handed back, and the "
                    "weight gradients add up over t.")


# --- word_embedding_backward -----------------------------------------------------------------------------------

EMBEDDING_IDS = np.array([[0, 3, 1, 3], [2, 1, 0, 6], [3, 5, 3, 1]])  # word 3 four times, 1 three times, 4 never


def numpy_embedding(W_embed):
    return W_embed[EMBEDDING_IDS]


def keras_embedding_gradient(W_embed, dout):
    """dW by tf.GradientTape through keras.layers.Embedding (an IndexedSlices, made dense)."""
    embedding = keras.layers.Embedding(*W_embed.shape, dtype="float64")
    embedding.build(EMBEDDING_IDS.shape)
    embedding.set_weights([W_embed])
    with tf.GradientTape() as tape:
        out = embedding(EMBEDDING_IDS)
    return tape_gradients(["dW_embed"], out, [embedding.embeddings], tape, tf.constant(dout))


def embedding_gradient(dout, ids, vocab_size):
    """Scenario: your word_embedding_backward."""
    return word_embedding_backward(dout, ids, vocab_size)


@pytest.mark.step("backprop.embedding")
def test_word_embedding_backward_adds_up_repeated_words(student):
    (N, T), V, D = EMBEDDING_IDS.shape, 7, 5
    W_embed, dout = linspace((V, D), -1.0, 1.0), 0.6 + wavy((N, T, D), 0.4)  # > 0: a word's sum never cancels
    got = student.run(embedding_gradient, dout, EMBEDDING_IDS, V)
    check_gradients([got], ["dW_embed"], keras_embedding_gradient(W_embed, dout),
                    numeric_gradients(numpy_embedding, {"W_embed": W_embed}, dout),
                    lambda name: mistakes.word_embedding_backward(dout, EMBEDDING_IDS, V), "word_embedding_backward",
                    hint="row v of dW is the sum of dout over every position whose id is v (0 if v never occurs).")


# --- temporal_softmax_loss_backward ----------------------------------------------------------------------------

LOSS_TARGETS = np.array([[1, 4, 2, 0], [3, 5, 0, 0], [2, 3, 4, 5]])  # 0 = <NULL>: ignored


def numpy_temporal_softmax_loss(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_p, LOSS_TARGETS[..., None], axis=-1)[..., 0]  # (N, T)
    return -(picked * (LOSS_TARGETS != 0)).sum() / len(LOSS_TARGETS)


def keras_loss_gradient(logits):
    """dlogits by tf.GradientTape through Keras's cross-entropy (ignore_class=0), summed, divided by N."""
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0, reduction="sum",
                                                               dtype="float64")
    logits = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = cross_entropy(LOSS_TARGETS, logits) / len(LOSS_TARGETS)
    return tape_gradients(["dlogits"], loss, [logits], tape, None)


def loss_gradient(logits, targets):
    """Scenario: your temporal_softmax_loss_backward."""
    return temporal_softmax_loss_backward(logits, targets)


@pytest.mark.step("backprop.loss")
def test_temporal_softmax_loss_backward_is_zero_at_null_targets(student):
    logits = linspace((3, 4, 6), -2.0, 3.0)[:, :, ::-1] + wavy((3, 4, 6))
    got = student.run(loss_gradient, logits, LOSS_TARGETS)
    check_gradients([got], ["dlogits"], keras_loss_gradient(logits),
                    numeric_gradients(numpy_temporal_softmax_loss, {"logits": logits}),
                    lambda name: mistakes.temporal_softmax_loss_backward(logits, LOSS_TARGETS),
                    "temporal_softmax_loss_backward", hint="dlogits = mask * (softmax - onehot) / N.")
    masked = np.broadcast_to((LOSS_TARGETS == 0)[..., None], logits.shape)
    assert_close(np.where(masked, got, 1.0), np.where(masked, 0.0, 1.0), atol=0, rtol=0,
                 what="dlogits at <NULL> targets", hint="a position whose target is ignored sends back exactly 0.")


# --- lstm_step_backward ----------------------------------------------------------------------------------------

LSTM_GRADS = ["dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"]


def numpy_lstm_step(x, prev_h, prev_c, Wx, Wh, b):
    """next_h and next_c side by side, (N, 2H): gates i, f, g, o."""
    i, f, g, o = np.split(x @ Wx + prev_h @ Wh + b, 4, axis=-1)
    next_c = sigmoid(f) * prev_c + sigmoid(i) * np.tanh(g)
    return np.concatenate([sigmoid(o) * np.tanh(next_c), next_c], axis=-1)


def lstm_step_case():
    """CS231n's shapes (N, D, H = 4, 5, 6), linspace values: the inputs, dnext_h and dnext_c."""
    N, D, H = 4, 5, 6
    return dict(x=linspace((N, D), -0.4, 1.2), prev_h=linspace((N, H), -0.3, 0.7), prev_c=linspace((N, H), -0.4, 0.9),
                Wx=linspace((D, 4 * H), -2.1, 1.3), Wh=linspace((H, 4 * H), -0.7, 2.2),
                b=linspace((4 * H,), 0.3, 0.7)), wavy((N, H)), wavy((N, H))[::-1] * 0.5


def keras_lstm_step_gradients(inputs, dnext_h, dnext_c):
    """lstm_step's gradients by tf.GradientTape through keras.layers.LSTMCell (gates i, f, c, o)."""
    cell = keras.layers.LSTMCell(inputs["Wh"].shape[0], dtype="float64")
    cell.build(inputs["x"].shape)
    cell.set_weights([inputs["Wx"], inputs["Wh"], inputs["b"]])
    x, prev_h, prev_c = (tf.constant(inputs[k]) for k in ("x", "prev_h", "prev_c"))
    with tf.GradientTape() as tape:
        tape.watch([x, prev_h, prev_c])
        _, (next_h, next_c) = cell(x, [prev_h, prev_c])
    return tape_gradients(LSTM_GRADS, [next_h, next_c], [x, prev_h, prev_c, *cell.weights], tape,
                          [tf.constant(dnext_h), tf.constant(dnext_c)])


def lstm_step_gradients(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b):
    """Scenario: your lstm_step_backward."""
    return lstm_step_backward(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b)


@pytest.mark.step("backprop.lstm_step")
def test_lstm_step_backward_matches_numeric_and_autodiff_gradients(student):
    inputs, dnext_h, dnext_c = lstm_step_case()
    got = student.run(lstm_step_gradients, dnext_h, dnext_c, *inputs.values())
    check_gradients(got, LSTM_GRADS, keras_lstm_step_gradients(inputs, dnext_h, dnext_c),
                    numeric_gradients(numpy_lstm_step, inputs, np.concatenate([dnext_h, dnext_c], axis=-1)),
                    lambda name: mistakes.lstm_step_backward(dnext_h, dnext_c, *inputs.values(), output=name),
                    "lstm_step_backward", hint="dc = dnext_c + dnext_h * o * (1 - tanh(next_c)**2); dz's blocks in "
                    "the order i, f, g, o.", bound=LSTM_REL_ERROR)


# --- fit: manual gradients train to autodiff's weights ---------------------------------------------------------

V, D, H = 8, 3, 5
CAPTIONS = np.array([[1, 4, 5, 4, 6, 2, 0], [1, 3, 3, 7, 2, 0, 0], [1, 5, 4, 2, 0, 0, 0], [1, 7, 6, 5, 4, 3, 2]])
IDS, TARGETS = CAPTIONS[:, :-1], CAPTIONS[:, 1:]  # N, T = 4, 6; words repeat, <NULL> targets pad
FIT = dict(batch_size=2, epochs=2, shuffle=False, verbose=0)  # 4 SGD steps


def tiny_weights(cell_type):
    """The embedding's, the cell's and the output layer's weights, in Keras's order."""
    units = H if cell_type == "rnn" else 4 * H
    bias = linspace((units,), -0.2, 0.4) if cell_type == "rnn" else linspace((units,), -0.5, 1.0)
    return [linspace((V, D), -1.0, 1.0), linspace((D, units), -0.6, 0.8), wavy((H, units), 0.5), bias,
            wavy((H, V), 0.7)[::-1].copy(), linspace((V,), -0.3, 0.2)]


class MaskedCrossEntropy(keras.losses.Loss):
    """Keras's cross-entropy summed over time where the target is not <NULL>, averaged over the captions."""

    def call(self, targets, logits):
        per_word = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)  # (N, T)
        return ops.sum(per_word * ops.cast(ops.not_equal(targets, 0), per_word.dtype), axis=1)  # (N,), then a mean


@functools.cache
def keras_fit(cell_type):
    """The same model made of Keras's own layers, trained on autodiff: its weights after `fit`."""
    cell = (keras.layers.SimpleRNNCell if cell_type == "rnn" else keras.layers.LSTMCell)(H, dtype="float64")
    model = keras.Sequential([keras.layers.Embedding(V, D, dtype="float64"),
                              keras.layers.RNN(cell, return_sequences=True, dtype="float64"),
                              keras.layers.Dense(V, dtype="float64")])
    model.build(IDS.shape)
    model.set_weights(tiny_weights(cell_type))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=MaskedCrossEntropy(dtype="float64"), jit_compile=False)
    model.fit(IDS, TARGETS, **FIT)
    return model.get_weights()


def fit_tiny_captioner(weights, ids, targets, cell_type, manual):
    """Scenario: a float64 WordEmbedding -> RNN(cell) -> Dense model, the layers named in `manual` on your
    backward steps, trained 4 SGD steps: its weights after."""
    cell = (RNNCell if cell_type == "rnn" else LSTMCell)(H, manual_backward="cell" in manual, dtype="float64")
    model = keras.Sequential([WordEmbedding(V, D, manual_backward="embedding" in manual, dtype="float64"),
                              keras.layers.RNN(cell, return_sequences=True, dtype="float64"),
                              keras.layers.Dense(V, dtype="float64")])
    model.build(ids.shape)
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=TemporalSoftmaxLoss(manual_backward="loss" in manual),
                  jit_compile=False)
    model.fit(ids, targets, **FIT)
    return model.get_weights()


@pytest.mark.parametrize("cell_type, manual", [
    pytest.param("rnn", "cell", marks=pytest.mark.step("backprop.rnn_step"), id="rnn_step"),
    pytest.param("lstm", "cell", marks=pytest.mark.step("backprop.lstm_step"), id="lstm_step"),
    pytest.param("rnn", "embedding", marks=pytest.mark.step("backprop.embedding"), id="embedding"),
    pytest.param("rnn", "loss", marks=pytest.mark.step("backprop.loss"), id="loss"),
])
def test_fit_on_manual_gradients_gives_autodiffs_weights(student, cell_type, manual):
    got = student.run(fit_tiny_captioner, tiny_weights(cell_type), IDS, TARGETS, cell_type, [manual])
    names = ["W_embed", "Wx", "Wh", "b", "W_out", "b_out"]
    for name, value, expected, before in zip(names, got, keras_fit(cell_type), tiny_weights(cell_type)):
        assert np.abs(expected - before).max() > 1e-3, f"the reference fit did not move {name}"
        assert_close(value, expected, atol=1e-12, rtol=1e-10, what=f"{name} after 4 SGD steps on your {manual}'s "
                     "gradients vs on autodiff's", hint=f"the gradient check of your {manual} backward step comes "
                     "first: make it pass.")


# --- the captioner: CaptioningRNN(manual_backward=True) (kit code) ---------------------------------------------

C = 6


def captioner_weights():
    return {"feature_projection": [linspace((C, H), -0.5, 0.5), linspace((H,), -0.1, 0.1)],
            "embedding": [linspace((V, D), -1.0, 1.0)],
            "cell": [linspace((D, H), -0.6, 0.8), wavy((H, H), 0.5), linspace((H,), -0.2, 0.4)],
            "output_projection": [wavy((H, V), 0.7), linspace((V,), -0.3, 0.2)]}


def fit_captioning_rnn(weights, features, captions, manual_backward):
    """Scenario: a CaptioningRNN (cell_type="rnn") compiled by compile_captioner with SGD: its weights before and
    after 2 steps."""
    model = CaptioningRNN(V, cell_type="rnn", embed_dim=D, hidden_dim=H, manual_backward=manual_backward)
    model((features, captions[:, :-1]))
    for name, values in weights.items():
        (model.rnn.cell if name == "cell" else getattr(model, name)).set_weights(values)
    before = model.get_weights()
    compile_captioner(model, optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
    model.fit((features, captions[:, :-1]), captions[:, 1:], batch_size=2, epochs=1, shuffle=False, verbose=0)
    return before, model.get_weights()


@pytest.mark.step("captioner.forward", kit_code=True)
def test_captioning_rnn_on_manual_gradients_trains_like_autodiff(student):
    features = linspace((len(CAPTIONS), C), -1.0, 1.0)
    _, manual = student.run(fit_captioning_rnn, captioner_weights(), features, CAPTIONS, True)
    before, autodiff = student.run(fit_captioning_rnn, captioner_weights(), features, CAPTIONS, False)
    assert max(np.abs(a - b).max() for a, b in zip(autodiff, before)) > 1e-3, "the autodiff fit moved no weight"
    for index, (value, expected) in enumerate(zip(manual, autodiff)):
        assert_close(value, expected, atol=1e-6, what=f"weight {index} after 2 SGD steps, manual vs autodiff "
                     "(float32)")


# --- manual_backward is a layer argument (kit code) -------------------------------------------------------------

LAYERS = [
    pytest.param("RNNCell", marks=pytest.mark.step("rnn.cell", kit_code=True)),
    pytest.param("LSTMCell", marks=pytest.mark.step("lstm.cell", kit_code=True)),
    pytest.param("WordEmbedding", marks=pytest.mark.step("embedding.forward", kit_code=True)),
    pytest.param("TemporalSoftmaxLoss", marks=pytest.mark.step("loss.temporal_softmax", kit_code=True)),
    pytest.param("CaptioningRNN", marks=pytest.mark.step("captioner.forward", kit_code=True)),
]


def make_with_manual_backward(kind, manual_backward):
    make = {"RNNCell": lambda: RNNCell(4, manual_backward=manual_backward),
            "LSTMCell": lambda: LSTMCell(4, manual_backward=manual_backward),
            "WordEmbedding": lambda: WordEmbedding(7, 3, manual_backward=manual_backward),
            "TemporalSoftmaxLoss": lambda: TemporalSoftmaxLoss(manual_backward=manual_backward),
            "CaptioningRNN": lambda: CaptioningRNN(7, cell_type="rnn", embed_dim=3, hidden_dim=4,
                                                   manual_backward=manual_backward)}
    return make[kind]()


def manual_backward_after_config_round_trip(kind):
    """Scenario: `manual_backward` of a layer made with True, in its config and after from_config."""
    made = make_with_manual_backward(kind, True)
    config = made.get_config()
    return config["manual_backward"], type(made).from_config(config).manual_backward


@pytest.mark.parametrize("kind", LAYERS)
def test_manual_backward_survives_the_config_round_trip(student, kind):
    assert student.run(manual_backward_after_config_round_trip, kind) == (True, True)


def make_layer(kind, manual_backward):
    """Scenario: make a layer (its arguments are checked in __init__)."""
    make_with_manual_backward(kind, manual_backward)


@pytest.mark.parametrize("kind", LAYERS)
def test_manual_backward_must_be_a_bool(student, kind):
    with pytest.raises(ValueError, match="Received: manual_backward='yes'"):
        student.run(make_layer, kind, "yes")


def make_attention_captioner():
    """Scenario: an attention CaptioningRNN asked for manual gradients."""
    CaptioningRNN(7, cell_type="attn", embed_dim=3, hidden_dim=4, manual_backward=True)


@pytest.mark.step("captioner.forward", kit_code=True)
def test_attention_captioner_has_no_manual_backward(student):
    with pytest.raises(ValueError, match="Received: cell_type='attn'"):
        student.run(make_attention_captioner)


def train_step_on_a_transposed_dWx(x, prev_h, weights):
    """Scenario: a tape through RNNCell(manual_backward=True) with an rnn_step_backward whose dWx is (H, D)."""
    def transposed_dWx(dnext_h, x, prev_h, next_h, Wx, Wh):
        return ops.zeros_like(x), ops.zeros_like(prev_h), ops.transpose(ops.zeros_like(Wx)), ops.zeros_like(Wh), \
            ops.zeros_like(Wh[0])

    cell = RNNCell(prev_h.shape[1], manual_backward=True, dtype="float64")
    cell.build(x.shape)
    cell.set_weights(weights)
    kept, wiring.rnn_step_backward = wiring.rnn_step_backward, transposed_dWx
    try:
        with tf.GradientTape() as tape:
            h, _ = cell(x, [prev_h])
        tape.gradient(h, cell.weights)
    finally:
        wiring.rnn_step_backward = kept


@pytest.mark.step("rnn.cell", kit_code=True)
def test_a_backward_step_of_the_wrong_shape_is_named(student):
    inputs, _ = rnn_step_case()
    with pytest.raises(ValueError, match=r"rnn_step_backward returned dWx of shape \(6, 5\)"):
        student.run(train_step_on_a_transposed_dWx, inputs["x"], inputs["prev_h"],
                    [inputs["Wx"], inputs["Wh"], inputs["b"]])
