"""Checks shared by the tests and the lessons' check cells.

Messages speak to a student: what was expected, what came out, what to look at.
Keras's own layer-test helper (`keras.src.testing`) is private, so the kit owns
a small one: `check_layer_contract`.
"""

import dataclasses

import numpy as np

from kcaption.feedback import diagnose


def rel_error(actual, expected):
    """Max relative error, as in the CS231n checks: max |a-e| / max(1e-8, |a|+|e|)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(actual - expected) / np.maximum(1e-8, np.abs(actual) + np.abs(expected))))


def numeric_gradient(f, x, df=None, h=1e-5):
    """The gradient of `f` at `x` by centred differences, in float64 (CS231n's `eval_numerical_gradient_array`).

    Each entry of x is moved by +h and -h in turn:
        grad[i] = (g(x + h e_i) - g(x - h e_i)) / (2 h),   g(x) = sum(f(x) * df)
    With `df=None`, f must return a scalar and g is f itself. With an upstream
    gradient `df` (the shape of f's output), the result is the gradient of
    sum(f(x) * df): exactly what a backward pass given `df` returns.

    Why centred, and why float64: the error of a centred difference is O(h^2)
    (a one-sided one's is O(h)); in float64, rounding adds about 1e-16 / h, so
    h = 1e-5 leaves ~1e-10, well below the 1e-7 a bug of any size gives. In
    float32 rounding alone would be ~1e-2.

    Args:
        f: a function of one array (NumPy or tensor in, array-like out). It is
            called 2 * x.size times with float64 copies of x; x itself is not changed.
        x: the point, an array.
        df: the upstream gradient, or None for a scalar f.
        h: the step.

    Returns:
        A float64 array of x's shape.
    """
    x = np.array(x, dtype=np.float64)
    if df is not None:
        df = np.asarray(df, dtype=np.float64)

    def g(point):
        value = np.asarray(f(point), dtype=np.float64)
        if df is None:
            if value.size != 1:
                raise ValueError(
                    f"numeric_gradient: f returned shape {value.shape}; without `df` it must return a scalar "
                    f"(pass the upstream gradient as df=...). Received: f(x).shape={value.shape}"
                )
            return float(value.reshape(()))
        if value.shape != df.shape:
            raise ValueError(
                f"numeric_gradient: `df` must have the shape of f(x), {value.shape}. Received: df.shape={df.shape}"
            )
        return float(np.sum(value * df))

    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + h
        up = g(x.copy())
        x[index] = saved - h
        down = g(x.copy())
        x[index] = saved
        grad[index] = (up - down) / (2 * h)
    return grad


def assert_close(actual, expected, *, atol=1e-6, rtol=1e-5, what="output", hint="", mistakes=None, masked=None):
    """Assert `actual` matches `expected`, with a message a student can act on.

    The message says what was expected, what came out and where they differ
    most, then what the difference shows (`kcaption.feedback.diagnose`): the
    known mistake that gives this very output, or the pattern of the difference.

    Args:
        actual: what the student's code returned.
        expected: the reference value.
        atol, rtol: tolerances, as in `np.allclose`.
        what: a name for the value, e.g. "next_h".
        hint: what the check requires, true whatever went wrong (e.g. "no dropout at
            inference"); never a guess at the cause, which `mistakes` gives.
        mistakes: hint -> the output of a known mistake on the same inputs, from
            `kcaption.mistakes` (computed by the judge, never by the code under test).
        masked: optional boolean array, True at positions that should be masked.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        problem = f"expected shape {expected.shape}, got {actual.shape}."
    elif not np.all(np.isfinite(actual)):
        problem = "contains NaN or inf."
    elif not np.allclose(actual, expected, atol=atol, rtol=rtol):
        diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
        worst = np.unravel_index(np.argmax(diff), diff.shape)
        problem = (f"does not match the reference (atol={atol}, rtol={rtol}). "
                   f"Largest difference {diff[worst]:.3g} at index {tuple(int(i) for i in worst)}: "
                   f"got {actual[worst]!s}, expected {expected[worst]!s}.")
    else:
        return
    _fail(what, problem, diagnose(actual, expected, mistakes=mistakes, atol=atol, rtol=rtol, masked=masked), hint)


def assert_equal(actual, expected, *, what="output", hint="", mistakes=None):
    """Assert `actual == expected` for plain values (strings, lists), with `assert_close`'s diagnosis."""
    if actual == expected:
        return
    _fail(what, f"expected {expected!r}, got {actual!r}.", diagnose(actual, expected, mistakes=mistakes), hint)


def _fail(what, problem, diagnosis, hint):
    raise AssertionError(" ".join([f"{what}: {problem}", *diagnosis, hint]).rstrip())


def check(name, actual, expected, *, atol=1e-6, rtol=1e-5, hint="", mistakes=None, masked=None):
    """A lesson check cell: print a verdict and the relative error, raise on mismatch (as `assert_close`)."""
    assert_close(actual, expected, atol=atol, rtol=rtol, what=name, hint=hint, mistakes=mistakes, masked=masked)
    print(f"{name}: OK (relative error {rel_error(actual, expected):.2e}, atol={atol}, rtol={rtol})")


def check_layer_contract(layer_factory, inputs, expected_output_shape, *, custom_objects=None):
    """Check the Keras layer contract on a fresh layer from `layer_factory()`.

    `layer_contract_report` (which runs the layer) then `assert_layer_contract`
    (which judges what it saw): a graded test runs the first in the sandbox and
    the second in the grader, so the verdict is never made next to student code.
    """
    report = layer_contract_report(layer_factory, inputs, custom_objects=custom_objects)
    assert_layer_contract(report, expected_output_shape)


def layer_contract_report(layer_factory, inputs, *, weights=None, custom_objects=None):
    """Run a fresh layer from `layer_factory()` through the Keras layer contract; report what happened.

    Runs: the first call (weights must appear in `build()`, none before);
    `get_config()` -> `from_config` with the same weights; a `.keras`
    save/load round-trip of a model wrapping the layer; one gradient step
    (every trainable weight must get a gradient).

    Args:
        layer_factory: a zero-argument callable returning a new, unbuilt layer.
        inputs: a NumPy array (or a list of arrays) to call the layer on.
        weights: set after the first call (from `build()`'s shapes), so the judge
            can compute the expected `output` itself; None keeps the initial ones.
        custom_objects: passed to `keras.models.load_model` (usually not needed:
            kcaption layers are registered serializable).

    Returns:
        A dict of plain values (it crosses the sandbox wall): `name`,
        `weights_before_call`, `weights_after_call`, `trainable`, `output`
        (the first output), `from_config_output`, `reloaded_output`,
        `weights_without_gradient`.
    """
    import tempfile
    from pathlib import Path

    import keras
    import tensorflow as tf

    def first(outputs):
        return outputs[0] if isinstance(outputs, (list, tuple)) else outputs

    layer = layer_factory()
    report = {"name": type(layer).__name__, "weights_before_call": len(layer.weights)}
    output = first(layer(inputs, training=False))
    if weights is not None:
        layer.set_weights(weights)
        output = first(layer(inputs, training=False))
    report.update(weights_after_call=len(layer.weights), trainable=bool(layer.trainable),
                  output=keras.ops.convert_to_numpy(output))

    clone = type(layer).from_config(layer.get_config())
    clone(inputs, training=False)
    clone.set_weights(layer.get_weights())
    report["from_config_output"] = keras.ops.convert_to_numpy(first(clone(inputs, training=False)))

    as_list = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    model_inputs = [keras.Input(shape=np.shape(x)[1:], dtype=np.asarray(x).dtype.name) for x in as_list]
    model_inputs = model_inputs if isinstance(inputs, (list, tuple)) else model_inputs[0]
    model = keras.Model(model_inputs, layer(model_inputs))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "layer.keras"
        model.save(path)
        loaded = keras.models.load_model(path, custom_objects=custom_objects)
    reloaded = loaded(as_list if isinstance(inputs, (list, tuple)) else as_list[0], training=False)
    report["reloaded_output"] = keras.ops.convert_to_numpy(first(reloaded))

    unused = []
    if layer.trainable_weights:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.cast(first(layer(inputs, training=True)), "float32")))
        grads = tape.gradient(loss, layer.trainable_weights)
        unused = [w.path for w, g in zip(layer.trainable_weights, grads) if g is None]
    report["weights_without_gradient"] = unused
    return report


def assert_layer_contract(report, expected_output_shape):
    """Judge a `layer_contract_report`: raise AssertionError naming what broke the contract."""
    name = report["name"]
    assert report["weights_before_call"] == 0, f"{name} created weights before build(); create them in build()."
    shape = tuple(np.shape(report["output"]))
    assert shape == tuple(expected_output_shape), (
        f"{name}: expected output shape {tuple(expected_output_shape)}, got {shape}."
    )
    assert report["weights_after_call"] or not report["trainable"], f"{name} has no weights after its first call."
    assert_close(report["from_config_output"], report["output"], atol=1e-6, what=f"{name}.from_config(get_config())")
    assert_close(report["reloaded_output"], report["output"], atol=1e-6, what=f"{name} after .keras save/load")
    unused = report["weights_without_gradient"]
    assert not unused, f"{name}: no gradient reaches {unused}: is every weight used in call()?"


# The overfit check of each captioner: its public test and its lesson's cell both run these settings.
# Measured with the reference code (loss per caption, last epoch): rnn 0.05, lstm 0.32, attn 0.71,
# transformer 0.37; 12-18 s each on a 2-core CPU.
OVERFIT = {
    "rnn": dict(epochs=40, learning_rate=5e-3, threshold=2.0, embed_dim=32, hidden_dim=128),
    "lstm": dict(epochs=40, learning_rate=5e-3, threshold=2.0, embed_dim=32, hidden_dim=128),
    "attn": dict(epochs=60, learning_rate=1e-2, threshold=2.0, embed_dim=32, hidden_dim=128),
    "transformer": dict(epochs=40, learning_rate=2e-3, threshold=2.0, embed_dim=64, hidden_dim=128,
                        num_heads=4, dropout=0.0),
}


@dataclasses.dataclass
class OverfitRun:
    """What `overfit_small_data` trained: enough to plot the loss and caption the images it memorised.

    Attributes:
        history: the `keras.callbacks.History` of the run.
        model: the trained captioner.
        vocab: its `Vocabulary`, built from the training captions.
        records: the training records.
    """

    history: object
    model: object
    vocab: object
    records: list


def overfit_small_data(model_name, n=50):
    """The overfit check: a captioner must drive its loss on `n` shapes examples below a threshold.

    A model that cannot memorise 50 captions has a bug (or a learning rate far
    off); this is the cheapest end-to-end check of a captioner. Runs the
    settings `OVERFIT[model_name]` (epochs, learning rate, threshold, model
    size) on the first caption of each image, batch 25, with the optimiser of
    `kcaption.train.compile_captioner` and no XLA (compiling would cost more
    than it saves on so little data).

    Args:
        model_name: a key of `OVERFIT` ("rnn", "lstm", "attn", "transformer").
        n: number of training images.

    Returns:
        An `OverfitRun` (history, model, vocab, records).
    """
    import keras

    from kcaption.data import Vocabulary, load_shapes, make_dataset
    from kcaption.models import build_captioner
    from kcaption.train import compile_captioner

    if model_name not in OVERFIT:
        raise ValueError(f"`model_name` must be one of {sorted(OVERFIT)}. Received: model_name={model_name!r}")
    model_kwargs = dict(OVERFIT[model_name])
    epochs, learning_rate, threshold = (model_kwargs.pop(k) for k in ("epochs", "learning_rate", "threshold"))
    records = load_shapes("train", n=n)
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    dataset = make_dataset(records, vocab, batch_size=25, captions="first", cache="memory")
    keras.utils.set_random_seed(0)
    model = build_captioner(model_name, len(vocab), **model_kwargs)
    compile_captioner(model, learning_rate, jit_compile=False)
    history = model.fit(dataset, epochs=epochs, verbose=0)
    final = history.history["loss"][-1]
    if not final < threshold:
        raise AssertionError(
            f"{model_name} captioner: loss per caption {final:.2f} after {epochs} epochs on {n} examples "
            f"(want < {threshold}). A model that cannot overfit a little data has a bug: check the step's tests first."
        )
    return OverfitRun(history, model, vocab, records)


def captioner_with_weights(weights, cell_type="rnn", initial_cell="zeros"):
    """A CaptioningRNN whose layers hold `weights` (layer name -> arrays), built without running call().

    For scenarios (it builds the student's model) and lesson checks alike.
    """
    from kcaption.models import CaptioningRNN

    (W_embed,) = weights["embedding"]
    W_proj = weights["feature_projection"][0]
    model = CaptioningRNN(W_embed.shape[0], cell_type=cell_type, embed_dim=W_embed.shape[1],
                          hidden_dim=W_proj.shape[1], initial_cell=initial_cell)
    model.feature_projection.build((None, W_proj.shape[0]))
    model.embedding.build((None, None))
    model.rnn.build((None, None, W_embed.shape[1]))
    model.output_projection.build((None, W_proj.shape[1]))
    for name, values in weights.items():
        (model.rnn.cell if name == "cell" else getattr(model, name)).set_weights(values)
    return model


def plain_captions(captions):
    """What decode_captions returned, as plain data: a str subclass (np.str_) as str, lists and tuples kept."""
    if isinstance(captions, str):
        return str(captions)
    if type(captions) in (list, tuple):
        return type(captions)(plain_captions(c) for c in captions)
    return captions


def numpy_temporal_softmax_loss(logits, targets, ignore_index=0):
    """The loss in float64 NumPy: -(1/N) sum of log_softmax(logits)[target] over the unignored positions."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.asarray(targets)[..., None], axis=-1)[..., 0]
    return -float((picked * (np.asarray(targets) != ignore_index)).sum()) / len(targets)
