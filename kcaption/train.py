"""Training a captioner for real: `train`, `demo`, `evaluate`, `caption_images`.

One code path for every captioner and both datasets: records -> vocabulary ->
`make_dataset` -> `build_captioner` -> `compile` + `fit` -> greedy captions ->
metrics and pictures in an output folder. A run folder holds:

    model.keras        the trained model (reload with keras.models.load_model)
    vocab.json         its vocabulary (Vocabulary.load)
    loss_curve.png     train / val loss per epoch
    samples.png        held-out images, generated vs reference captions
    metrics.json       loss, token accuracy, BLEU-4, CIDEr-D, ROUGE-L on the held-out split
                       (on shapes also: the share of captions that name exactly the right objects)
    attention.png      attention models on shapes: where it looked for each word

The saved model remembers what it was trained on (`Captioner.trained_on`): the
dataset, the image size and its vocabulary's fingerprint, so `load_run` refuses
a vocab.json that is not the model's and `caption_images` warns about images
unlike the training images.

Mistakes in what is asked (a missing file, a folder that is in the way, a bad
argument) raise a `kcaption.errors.UsageError` before any work is done.
"""

import dataclasses
import hashlib
import json
import sys
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import keras
import numpy as np

from kcaption import steps
from kcaption.data import Vocabulary, image_dataset, load_shapes, make_dataset
from kcaption.data.shapes import SPLITS as SHAPES_SPLITS
from kcaption.errors import InputError, KcaptionWarning, MissingFileError, UsageError

# Per-model defaults: sized so that the demo runs in a few CPU minutes.
PRESETS = {
    "rnn": {"epochs": 15, "embed_dim": 64, "hidden_dim": 128, "learning_rate": 3e-3},
    # The demo (~255-295 CPU s). c0 = h0: the image rides the cell's additive path (see CaptioningRNN).
    "lstm": {"epochs": 25, "embed_dim": 64, "hidden_dim": 128, "learning_rate": 3e-3, "initial_cell": "h0"},
    # XLA needs minutes to compile the attention LSTM's unrolled loop on a CPU: plain graph mode.
    "attn": {"epochs": 15, "embed_dim": 64, "hidden_dim": 128, "learning_rate": 3e-3, "jit_compile": False},
    "transformer": {"epochs": 15, "embed_dim": 64, "hidden_dim": 128, "learning_rate": 2e-3},
}
MODEL_KEYS = ("embed_dim", "hidden_dim", "initial_cell")  # the preset's captioner arguments
SMALL = {"train": 120, "val": 24, "epochs": 2, "batch_size": 32}
BATCH_SIZE = 32
# The graded steps each command runs (decode_captions turns sampled ids into text).
COMMON_STEPS = ["data.decode_captions", "embedding.forward", "loss.temporal_softmax", "captioner.sample"]
REQUIRED_STEPS = {
    "rnn": COMMON_STEPS + ["rnn.cell", "captioner.forward"],
    "lstm": COMMON_STEPS + ["lstm.cell", "captioner.forward"],
    "attn": COMMON_STEPS + ["attention.dot_product", "attention.lstm_cell", "captioner.forward"],
    "transformer": COMMON_STEPS + [
        "transformer.positional_encoding", "transformer.multi_head_attention", "transformer.causal_mask",
        "transformer.decoder_layer", "transformer.captioner",
    ],
}
# What loading a saved model and sampling run (`kcaption caption`): no loss. (Keras builds a
# reloaded model by calling it, so the forward pass is needed even where decoding does not use it.)
SAMPLE_STEPS = {model: [s for s in ids if s != "loss.temporal_softmax"] for model, ids in REQUIRED_STEPS.items()}
IMAGE_SIZE = 64
MAX_LENGTH = 17  # ids per caption, <START> and <END> included
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")  # what the pipeline's tf.io.decode_image reads (Pillow's names)
# What a run folder holds (`--force` replaces these, and only these).
RUN_FILES = ("model.keras", "vocab.json", "loss_curve.png", "samples.png", "metrics.json", "attention.png")


@dataclasses.dataclass
class Splits:
    """Records of a dataset, split for training; `held_out` names the split of `val`."""

    train: list
    val: list
    held_out: str = "val"


def load_splits(data="shapes", root=None, small=False, image_size=IMAGE_SIZE):
    """Train and held-out records of `data` ("shapes", or "coco" read from `root`: train2014 and val2014)."""
    _check_data(data, root)
    if data == "shapes":
        n_train, n_val = (SMALL["train"], SMALL["val"]) if small else (None, None)
        return Splits(load_shapes("train", n=n_train, image_size=image_size), load_shapes("val", n=n_val, image_size=image_size))
    train = _read_coco(root, "train2014")
    val = _read_coco(root, "val2014")
    if small:
        train, val = train[: SMALL["train"]], val[: SMALL["val"]]
    return Splits(train, val, held_out="val2014")


def _check_data(data, root):
    if data not in ("shapes", "coco"):
        raise InputError(f"`data` must be 'shapes' or 'coco'. Received: data={data!r}")
    if data == "coco" and root is None:
        raise InputError("--data coco needs --root DIR, the COCO folder (see `kcaption download-coco`).")
    if data == "coco" and not Path(root).is_dir():
        raise MissingFileError(f"--root {root}: no such folder; expected the COCO folder (see `kcaption download-coco`).")
    if data == "shapes" and root is not None:
        raise InputError(f"--root is the COCO folder, for --data coco only; the shapes data is built in. Received: root={root!r}")


def _read_coco(root, split):
    """read_coco's records, with its messages about the folder raised as a UsageError."""
    from kcaption.data import read_coco

    try:
        records, report = read_coco(root, split)
    except FileNotFoundError as error:
        raise MissingFileError(str(error)) from error
    except ValueError as error:
        raise InputError(str(error)) from error
    print(f"COCO {split}: {report}")
    if not records:
        raise InputError(f"{root}: the COCO split {split} has no usable image ({report}).")
    return records


def fingerprint(vocab):
    """{"size": V, "sha256": ...} of a `Vocabulary`: what a trained model stores to recognise its vocabulary.

    The hash covers the words in order, so a vocabulary of the same size whose
    words have other ids has another fingerprint.
    """
    digest = hashlib.sha256("\n".join(vocab.words).encode("utf-8")).hexdigest()
    return {"size": len(vocab), "sha256": digest[:16]}


def fit_verbosity(stream=None):
    """Keras's fit verbosity for `stream` (default: stdout): a progress bar on a terminal, else one line per epoch."""
    stream = sys.stdout if stream is None else stream
    return 1 if stream.isatty() else 2


def check_run_folder(out, force=False):
    """Refuse an output folder that is a file, or that holds files, before any work is done.

    Args:
        out: the run folder to write.
        force: a folder holding an earlier run's files (`RUN_FILES`, nothing
            else) may be replaced.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; expected a folder to write the run into. Pick another --out.")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not held:
        return
    if not force:
        raise InputError(
            f"--out {out} already holds files ({_some(held)}); pass --force to replace that run, "
            "or pick another --out."
        )
    others = [name for name in held if name not in RUN_FILES]
    if others:
        raise InputError(
            f"--out {out} holds files that are not a run's ({_some(others)}); --force replaces a run folder "
            "only. Pick another --out."
        )


def _some(names, shown=3):
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def compile_captioner(model, learning_rate=2e-3, jit_compile=True):
    """Adam, the temporal softmax loss and token accuracy; XLA-compiled steps (`jit_compile`)."""
    from kcaption.losses import TemporalSoftmaxLoss
    from kcaption.metrics import MaskedTokenAccuracy

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, clipnorm=5.0),
        loss=TemporalSoftmaxLoss(),
        metrics=[MaskedTokenAccuracy()],
        jit_compile=jit_compile,
    )
    return model


def generate(model, records, vocab, batch_size=64, image_size=IMAGE_SIZE, max_length=MAX_LENGTH - 1):
    """Greedy captions (str) for `records`' images, in order."""
    captions = []
    for images in image_dataset(records, batch_size=batch_size, image_size=image_size):
        ids = model.sample(images, max_length=max_length)
        captions += [vocab.decode(row) for row in np.asarray(ids)]
    return captions


def score(model, records, vocab, batch_size=64, image_size=IMAGE_SIZE):
    """Metrics on held-out `records`: loss, token accuracy (teacher forcing), caption scores."""
    from kcaption.metrics import caption_scores, object_scores

    ds = make_dataset(records, vocab, batch_size=batch_size, image_size=image_size, max_length=MAX_LENGTH, too_long="skip")
    loss, accuracy = model.evaluate(ds, verbose=0)
    generated = generate(model, records, vocab, batch_size, image_size)
    scores = caption_scores([r.captions for r in records], generated)
    if all(r.objects is not None for r in records):  # shapes: did it name the right objects?
        scores.update(object_scores([r.objects for r in records], generated))
    return {"loss": float(loss), "token_accuracy": float(accuracy), **scores, "images": len(records)}, generated


def train(
    model="lstm", data="shapes", root=None, epochs=None, out="runs/train", batch_size=None, small=False,
    verbose=None, force=False,
):
    """Train a captioner and write the run folder (see the module docstring).

    Args:
        model: a name of `kcaption.models.CAPTIONERS`.
        data: "shapes" or "coco".
        root: the COCO folder (with data="coco").
        epochs: default: the model's preset (2 with `small`).
        out: the output folder: new, empty, or (with `force`) an earlier run's.
        batch_size: default 32.
        small: a tiny, fast run (for CI and checks).
        verbose: Keras's fit verbosity; default: a progress bar on a terminal,
            one line per epoch otherwise (a log file).
        force: replace the run already in `out`.

    Returns:
        A dict: the metrics, and the paths written ("paths").
    """
    from kcaption.models import build_captioner
    from kcaption.viz import caption_grid, objects_right, plot_loss_curves

    if model not in PRESETS:
        raise InputError(f"`model` must be one of {sorted(PRESETS)}. Received: model={model!r}")
    _check_positive(epochs=epochs, batch_size=batch_size)
    _check_data(data, root)
    check_run_folder(out, force)
    steps.require(REQUIRED_STEPS[model], f"kcaption train --model {model}")
    preset = PRESETS[model]
    epochs = epochs or (SMALL["epochs"] if small else preset["epochs"])
    batch_size = batch_size or (SMALL["batch_size"] if small else BATCH_SIZE)
    verbose = fit_verbosity() if verbose is None else verbose

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"--out {out}: cannot create the folder ({error.strerror}). Pick another --out.") from None
    for name in RUN_FILES:  # an earlier run's (check_run_folder allowed it)
        (out / name).unlink(missing_ok=True)
    splits = load_splits(data, root, small)
    vocab = Vocabulary.build(c for r in splits.train for c in r.captions)
    common = {"batch_size": batch_size, "image_size": IMAGE_SIZE, "max_length": MAX_LENGTH, "too_long": "skip"}
    # Each image once per epoch with 5 of its captions: the model encodes it once for all of them.
    train_ds = make_dataset(splits.train, vocab, shuffle=True, cache="memory", captions="grouped", **common)
    val_ds = make_dataset(splits.val, vocab, cache="memory", **common)

    trained_on = {"model": model, "data": data, "image_size": IMAGE_SIZE, "vocabulary": fingerprint(vocab)}
    captioner = build_captioner(
        model, len(vocab), image_size=IMAGE_SIZE, trained_on=trained_on,
        **{key: preset[key] for key in MODEL_KEYS if key in preset},
    )
    # XLA costs ~30 s of compiling up front and then runs each step ~2x faster on a CPU.
    compile_captioner(captioner, preset["learning_rate"], jit_compile=preset.get("jit_compile", True) and not small)
    print(f"Training {model} on {data}: {len(splits.train)} images, vocabulary of {len(vocab)}, {epochs} epochs.")
    start = time.perf_counter()
    history = captioner.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=verbose)
    seconds = time.perf_counter() - start

    metrics, generated = score(captioner, splits.val, vocab, batch_size)
    metrics.update({"model": model, "data": data, "split": splits.held_out, "epochs": epochs,
                    "train_seconds": round(seconds, 1)})
    metrics["samples"] = generated[:8]  # the first held-out images' captions
    paths = {
        "model": out / "model.keras",
        "vocab": out / "vocab.json",
        "loss_curve": out / "loss_curve.png",
        "samples": out / "samples.png",
        "metrics": out / "metrics.json",
    }
    captioner.save(paths["model"])
    vocab.save(paths["vocab"])
    plot_loss_curves(history, paths["loss_curve"], title=f"{model} on {data}")
    shown = splits.val[:12]
    caption_grid(
        np.stack([r.load_image() for r in shown]), generated[:12], [r.captions for r in shown],
        paths["samples"], title=f"held-out {data} images: generated vs reference",
        correct=objects_right(shown, generated[:12]),  # shapes: names exactly its coloured shapes?
    )
    if model in ("attn", "transformer") and data == "shapes":
        from kcaption.localization import attention_report

        # Where it looked for each colour/shape word, against the objects' boxes (and chance).
        paths["attention"] = out / "attention.png"
        metrics["localization"] = attention_report(captioner, splits.val, vocab, paths["attention"], IMAGE_SIZE)
    metrics["paths"] = {k: str(v) for k, v in paths.items()}
    paths["metrics"].write_text(json.dumps(metrics, indent=2))
    objects = f", objects right {metrics['objects_exact']:.0%}" if "objects_exact" in metrics else ""
    print(
        f"Done in {seconds:.0f} s. Held-out ({splits.held_out}, {metrics['images']} images): loss "
        f"{metrics['loss']:.3f}, token accuracy {metrics['token_accuracy']:.3f}, BLEU-4 {metrics['bleu4']:.3f}, "
        f"CIDEr-D {metrics['cider']:.3f}{objects}."
    )
    for name, path in paths.items():
        print(f"  {name:<11} {path}")
    return metrics


def demo(model="lstm", out="runs/demo", epochs=None, small=False, force=False, verbose=None):
    """Train on the built-in shapes data and write the run folder (see `train`)."""
    if model in REQUIRED_STEPS:
        steps.require(REQUIRED_STEPS[model], f"kcaption demo --model {model}")
    return train(model=model, data="shapes", epochs=epochs, out=out, small=small, force=force, verbose=verbose)


def _check_positive(**values):
    for name, value in values.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InputError(f"`{name}` must be a positive int (or None: the default). Received: {name}={value!r}")


@dataclasses.dataclass
class SavedRun:
    """A saved captioner, checked but not loaded: `model` is its kind ("lstm", ...), `config` its Keras config."""

    model_path: Path
    vocab_path: Path
    model: str
    config: dict

    @property
    def trained_on(self):
        """What `kcaption train` recorded (see `Captioner`), or None for a model saved without it."""
        return self.config.get("trained_on")

    @property
    def image_size(self):
        """The side of the images it was trained on, or None for a model fed features."""
        if self.trained_on:
            return self.trained_on["image_size"]
        encoder = self.config.get("encoder")
        return None if encoder is None else encoder["config"]["image_size"]


def inspect_run(model_path):
    """Check that `model_path` is a captioner saved by `kcaption train`, with its vocabulary beside it.

    Reads only the model's config (no weights, no graded step runs), so a
    command can check its steps before it loads the model.

    Returns:
        A `SavedRun`.

    Raises:
        UsageError: the path is missing or a folder, the file is not a Keras
            model (or is damaged), holds another kind of model, or has no
            vocab.json beside it; the message names the file.
    """
    model_path = Path(model_path)
    expected = "expected a model saved by `kcaption train` (e.g. runs/demo/model.keras)"
    if model_path.is_dir():
        hint = f"; did you mean {model_path / 'model.keras'}?" if (model_path / "model.keras").is_file() else "."
        raise InputError(f"{model_path} is a folder; {expected}{hint}")
    if not model_path.exists():
        raise MissingFileError(f"{model_path}: no such file; {expected}.")
    with open(model_path, "rb") as file:
        if file.read(4) != b"PK\x03\x04":
            raise InputError(f"{model_path} is not a Keras model file (a .keras file is a zip archive); {expected}.")
    try:
        with zipfile.ZipFile(model_path) as archive:
            damaged = archive.testzip() is not None
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, json.JSONDecodeError, UnicodeDecodeError):
        damaged, config = True, None
    if damaged or not isinstance(config, dict):
        raise InputError(
            f"{model_path} is damaged (truncated or corrupt: its zip archive does not read back); "
            "copy it again or train the model again."
        )
    vocab_path = model_path.with_name("vocab.json")
    if not vocab_path.is_file():
        raise MissingFileError(
            f"{model_path}: expected its vocabulary beside it, at {vocab_path} (`kcaption train` writes both)."
        )
    kinds = {"CaptioningRNN": lambda c: c.get("cell_type"), "CaptioningTransformer": lambda c: "transformer"}
    class_name = config.get("class_name")
    if class_name not in kinds or not str(config.get("module", "")).startswith("kcaption."):
        raise InputError(f"{model_path} holds a {class_name} model, not a kcaption captioner; {expected}.")
    inner = config.get("config", {})
    return SavedRun(model_path, vocab_path, kinds[class_name](inner), inner)


def load_run(model_path):
    """A saved captioner and the vocabulary saved beside it, checked against each other.

    Raises:
        UsageError: see `inspect_run`; or vocab.json is not the vocabulary the
            model was trained with (another size, or the same size with other
            words or another order).
    """
    run = inspect_run(model_path)
    vocab = _load_vocabulary(run)
    return _load_model(run), vocab


def _load_model(run):
    from kcaption import losses, metrics, models  # noqa: F401 (registers the classes load_model needs)

    try:
        return keras.models.load_model(run.model_path)
    except (ValueError, OSError) as error:
        raise InputError(
            f"{run.model_path}: Keras cannot load it ({_first_line(error)}); was it saved by another version of kcaption?"
        ) from error


def _load_vocabulary(run):
    """The vocabulary beside the model, checked against the fingerprint the model stores."""
    try:
        vocab = Vocabulary.load(run.vocab_path)
    except ValueError as error:
        raise InputError(str(error)) from error
    mismatch = f"{run.vocab_path} is not the vocabulary {run.model_path} was trained with"
    remedy = "use the vocab.json that `kcaption train` saved with the model."
    stored = (run.trained_on or {}).get("vocabulary")
    size = stored["size"] if stored else run.config.get("vocab_size")
    if size is not None and size != len(vocab):
        raise InputError(f"{mismatch}: it has {len(vocab)} words, the model's has {size}; {remedy}")
    if stored is None:
        warnings.warn(
            f"{run.model_path} was saved without its vocabulary's fingerprint (by an older kcaption): "
            f"{run.vocab_path} has the right size but its words cannot be checked. Train again to store it.",
            KcaptionWarning,
            stacklevel=3,
        )
    elif stored["sha256"] != fingerprint(vocab)["sha256"]:
        raise InputError(
            f"{mismatch}: it has the same number of words ({size}) but other words or another order, "
            f"so the captions would come out as the wrong words; {remedy}"
        )
    return vocab


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def evaluate(model_path, data="shapes", root=None, split=None, out=None):
    """Score a saved model on a held-out split; print (and write to `out`) the metrics JSON.

    Args:
        model_path: a model.keras written by `kcaption train`.
        data: "shapes" or "coco".
        root: the COCO folder (with data="coco").
        split: default "test" for shapes (one of "train", "val", "test"; `kcaption
            train` reports on "val"), "val2014" for COCO.
        out: a JSON file to write the metrics to (replaced if it exists).
    """
    _check_data(data, root)
    split = split or ("test" if data == "shapes" else "val2014")
    if data == "shapes" and split not in SHAPES_SPLITS:
        raise InputError(f"--split must be one of {sorted(SHAPES_SPLITS)} for the shapes data. Received: split={split!r}")
    if out is not None and Path(out).is_dir():
        raise InputError(f"--out {out} is a folder; expected the path of a JSON file to write the metrics to.")
    if out is not None and not Path(out).resolve().parent.is_dir():
        raise MissingFileError(f"--out {out}: no folder {Path(out).parent} to write it in; create it first.")
    run = inspect_run(model_path)
    steps.require(REQUIRED_STEPS[run.model], f"kcaption evaluate with a saved {run.model} model")
    vocab = _load_vocabulary(run)
    records = load_shapes(split, image_size=run.image_size) if data == "shapes" else _read_coco(root, split)
    model = _load_model(run)
    compile_captioner(model)
    metrics, _ = score(model, records, vocab, image_size=run.image_size)
    metrics.update({"data": data, "split": split})
    text = json.dumps(metrics, indent=2)
    print(text)
    if out is not None:
        Path(out).write_text(text)
    return metrics


def caption_images(model_path, images):
    """Print a greedy caption for each image file; report the files that cannot be read and caption the rest.

    Warns (one line for all the images) when images differ from the training
    images: when their size is not the training size (they are resized, which
    may distort them), and, for a model trained on shapes, when they do not
    look like shapes images. The rule for that: every shapes image has a plain,
    light border (its shapes keep 2 pixels from the edge of a light, slightly
    noisy background), so an image whose outermost pixels are dark or vary
    (mean below 180, or a standard deviation above 16 of 255, in any channel)
    is not one. A model trained on shapes knows only coloured shapes: what it
    says about a photo means nothing.

    Returns:
        The captions, in the order of `images`; None for a file that could not be read.

    Raises:
        UsageError: see `inspect_run`, or not one of the files could be read.
    """
    run = inspect_run(model_path)
    if run.image_size is None:
        raise InputError(f"{run.model_path} was trained on precomputed features; it cannot caption image files.")
    steps.require(SAMPLE_STEPS[run.model], f"kcaption caption with a saved {run.model} model")
    vocab = _load_vocabulary(run)
    decoded = {}
    for path in images:
        try:
            decoded[path] = read_image(path)
        except UsageError as error:
            print(f"{error}; skipped.", file=sys.stderr)
    if not decoded:
        raise InputError(f"none of the {len(images)} image files could be read (see above); nothing to caption.")
    _warn_unlike_training(run, decoded)
    model = _load_model(run)
    from kcaption.data import CaptionRecord

    records = [CaptionRecord(str(path), str(path), []) for path in decoded]
    captions = dict(zip(decoded, generate(model, records, vocab, image_size=run.image_size)))
    for path in decoded:
        print(f"{path}: {captions[path]}")
    return [captions.get(path) for path in images]


def read_image(path):
    """A uint8 (H, W, 3) image, or an `InputError` naming the file and why it cannot be read.

    Decoded with Pillow, which reports a damaged file quietly (TensorFlow's decoder
    logs C++ lines first), and limited to the formats the pipeline's TensorFlow
    decoder reads.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder, not an image file")
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: an empty file (0 bytes), not an image")
    try:
        with Image.open(path) as image:
            kind = image.format
            pixels = np.asarray(image.convert("RGB"))  # decodes the whole file
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (expected one of {', '.join(IMAGE_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path}: a damaged or truncated image ({error})") from None
    if kind not in IMAGE_FORMATS:
        raise InputError(f"{path}: a {kind} image; expected one of {', '.join(IMAGE_FORMATS)}")
    return pixels


def looks_like_shapes(image):
    """Whether a uint8 (H, W, 3) image has the plain, light border of every shapes image (see `caption_images`)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float64)  # (4S, 3)
    return bool(border.mean(axis=0).min() >= 180 and border.std(axis=0).max() <= 16)


def _warn_unlike_training(run, decoded):
    size = run.image_size
    resized = [(path, image.shape) for path, image in decoded.items() if image.shape[:2] != (size, size)]
    if resized:
        path, shape = resized[0]
        warnings.warn(
            f"{len(resized)} of {len(decoded)} images are not {size}x{size}, the size {run.model_path} was "
            f"trained on: they are resized to it, which may distort them (e.g. {path}: {shape[1]}x{shape[0]}).",
            KcaptionWarning,
            stacklevel=3,
        )
    if (run.trained_on or {}).get("data") == "shapes":
        unlike = [path for path, image in decoded.items() if not looks_like_shapes(image)]
        if unlike:
            warnings.warn(
                f"{len(unlike)} of {len(decoded)} images do not look like shapes images (e.g. {unlike[0]}), and "
                f"{run.model_path} was trained on the kit's shapes only: its captions of other pictures mean nothing.",
                KcaptionWarning,
                stacklevel=3,
            )
