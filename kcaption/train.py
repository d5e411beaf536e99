"""Training a captioner for real: `train`, `demo`, `evaluate`, `caption_images`.

One code path for every captioner and both datasets: records -> vocabulary ->
batches (pixels, or features cached by a frozen backbone) -> `build_captioner`
-> `compile` + `fit` with the run's callbacks -> greedy captions -> metrics and
pictures in the run folder (`kcaption.runs` lists what it holds, and how a
finished run is told from a partial one).

Two kinds of run, one command:
- shapes (the default): the small CNN trained with the decoder, 64-px images
  held in memory; a few CPU minutes.
- COCO (`data="coco"`): a frozen ImageNet backbone at its native size runs
  once over the images (`kcaption.data.features`), and the decoder trains on
  its cached features, streamed from disk: ~10x faster per epoch than pixels
  through the same backbone, and memory that does not grow with the dataset.
  The saved model keeps the backbone in front, so it captions image files.

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
import shutil
import sys
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import keras
import numpy as np

from kcaption import runs, steps
from kcaption.data import Vocabulary, image_dataset, load_shapes, make_dataset
from kcaption.data.records import IMAGE_FORMATS, image_format
from kcaption.data.shapes import SPLITS as SHAPES_SPLITS
from kcaption.errors import InputError, KcaptionWarning, MissingFileError, UsageError

# Per-model defaults on shapes: sized so that the demo runs in a few CPU minutes.
PRESETS = {
    "rnn": {"epochs": 15, "embed_dim": 64, "hidden_dim": 128, "learning_rate": 3e-3},
    # The demo (~255-295 CPU s). c0 = h0: the image rides the cell's additive path (see CaptioningRNN).
    "lstm": {"epochs": 25, "embed_dim": 64, "hidden_dim": 128, "learning_rate": 3e-3, "initial_cell": "h0"},
    # XLA needs minutes to compile the attention LSTM's unrolled loop on a CPU: plain graph mode.
    "attn": {"epochs": 15, "embed_dim": 64, "hidden_dim": 128, "learning_rate": 3e-3, "jit_compile": False},
    "transformer": {"epochs": 15, "embed_dim": 64, "hidden_dim": 128, "learning_rate": 2e-3},
}
# On COCO: the sizes of the seeds' decoders (CS231n: H = 512; Show, Attend and Tell: 512), a warm-up then
# cosine decay from `learning_rate` (see kcaption.optim), 10 epochs (~4 on one GPU's hour with cached features).
COCO_PRESETS = {
    "rnn": {"epochs": 10, "embed_dim": 256, "hidden_dim": 512, "learning_rate": 1e-3},
    "lstm": {"epochs": 10, "embed_dim": 256, "hidden_dim": 512, "learning_rate": 1e-3, "initial_cell": "h0"},
    "attn": {"epochs": 10, "embed_dim": 256, "hidden_dim": 512, "learning_rate": 1e-3},
    "transformer": {"epochs": 10, "embed_dim": 256, "hidden_dim": 1024, "learning_rate": 5e-4},
}
MODEL_KEYS = ("embed_dim", "hidden_dim", "initial_cell")  # the preset's captioner arguments
SMALL = {"train": 120, "val": 24, "epochs": 2, "batch_size": 32}
BATCH_SIZE = 32
COCO_BATCH_SIZE = 64  # images per batch, each with 5 captions: 320 captions per step
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
BACKWARD_STEPS = {  # what --manual-backward runs (lesson 08), besides the model's own steps
    "rnn": ["backprop.embedding", "backprop.loss", "backprop.rnn_step"],
    "lstm": ["backprop.embedding", "backprop.loss", "backprop.lstm_step"],
}
SAMPLE_STEPS = {model: [s for s in ids if s != "loss.temporal_softmax"] for model, ids in REQUIRED_STEPS.items()}
IMAGE_SIZE = 64
NATIVE_SIZE = 224  # the keras.applications backbones' ImageNet size
MAX_LENGTH = 17  # ids per caption, <START> and <END> included: at most 15 words
SAMPLES_SEEN = 64  # held-out images captioned after each epoch (SampleCaptions: val CIDEr-D)
RUN_FILES = runs.RUN_FILES


@dataclasses.dataclass
class Settings:
    """Every setting of a run, as config.json stores it (None: the default for the data, see `resolve`)."""

    model: str = "lstm"
    data: str = "shapes"
    root: str | None = None
    karpathy: str | None = None
    backbone: str | None = None
    weights: str | None = None
    image_size: int | None = None
    features: str | None = None
    precision: str = "float32"
    strategy: str = "default"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    min_count: int | None = None
    num_layers: int = 1
    inject: str = "init"
    manual_backward: bool = False
    monitor: str = "val_loss"
    patience: int | None = None
    small: bool = False

    def resolve(self):
        """The settings with every default filled in for the data and model (checked)."""
        from kcaption.distribute import PRECISIONS, STRATEGIES
        from kcaption.models.encoder import BACKBONES

        if self.model not in PRESETS:
            raise InputError(f"`model` must be one of {sorted(PRESETS)}. Received: model={self.model!r}")
        _check_data(self.data, self.root)
        _check_positive(epochs=self.epochs, batch_size=self.batch_size, image_size=self.image_size,
                        min_count=self.min_count, num_layers=self.num_layers, patience=self.patience)
        coco = self.data == "coco"
        backbone = self.backbone or ("efficientnet_b0" if coco else "small_cnn")
        if backbone != "small_cnn" and backbone not in BACKBONES:
            raise InputError(
                f"--backbone must be 'small_cnn' or one of {sorted(BACKBONES)}. Received: backbone={backbone!r}"
            )
        weights = self.weights or ("none" if backbone == "small_cnn" else "imagenet")
        if weights not in ("imagenet", "none") or (backbone == "small_cnn" and weights != "none"):
            raise InputError(
                "--weights is 'imagenet' or 'none' for a keras.applications backbone ('none': random frozen "
                f"weights, for tests); the small CNN trains from scratch. Received: weights={weights!r}, "
                f"backbone={backbone!r}"
            )
        preset = (COCO_PRESETS if coco else PRESETS)[self.model]
        features = self.features
        if features is None and coco and backbone != "small_cnn":
            features = str(Path(self.root) / "features")
        if features == "none" or backbone == "small_cnn":
            features = None
        karpathy = self.karpathy
        if karpathy is None and coco and (Path(self.root) / "dataset_coco.json").is_file():
            karpathy = str(Path(self.root) / "dataset_coco.json")
        if karpathy is not None and not coco:
            raise InputError(f"--karpathy is a COCO split file, for --data coco only. Received: karpathy={karpathy!r}")
        if karpathy is not None and not Path(karpathy).is_file():
            raise MissingFileError(f"--karpathy {karpathy}: no such file; expected the Karpathy split dataset_coco.json.")
        resolved = dataclasses.replace(
            self,
            root=None if self.root is None else str(self.root),
            karpathy=karpathy,
            backbone=backbone,
            weights=weights,
            image_size=self.image_size or (IMAGE_SIZE if backbone == "small_cnn" else NATIVE_SIZE),
            features=features,
            epochs=self.epochs or (SMALL["epochs"] if self.small else preset["epochs"]),
            batch_size=self.batch_size or (SMALL["batch_size"] if self.small else COCO_BATCH_SIZE if coco else BATCH_SIZE),
            learning_rate=self.learning_rate or preset["learning_rate"],
            min_count=self.min_count or (5 if coco and not self.small else 1),
        )
        _check_choice("precision", resolved.precision, PRECISIONS)
        _check_choice("strategy", resolved.strategy, STRATEGIES)
        _check_choice("monitor", resolved.monitor, ("val_loss", "val_cider"))
        _check_choice("inject", resolved.inject, ("init", "pre"))
        if resolved.model not in ("rnn", "lstm") and (resolved.num_layers != 1 or resolved.inject != "init"):
            raise InputError(
                "--num-layers and --inject shape the recurrent decoders (rnn, lstm). "
                f"Received: model={resolved.model!r}, num_layers={resolved.num_layers}, inject={resolved.inject!r}"
            )
        if resolved.manual_backward and resolved.model not in BACKWARD_STEPS:
            raise InputError(
                "--manual-backward trains with lesson 08's backward steps, written for the rnn and lstm "
                f"captioners. Received: model={resolved.model!r}"
            )
        return resolved

    @property
    def preset(self):
        return (COCO_PRESETS if self.data == "coco" else PRESETS)[self.model]

    @property
    def kind(self):
        """The features the captioner reads: "pooled" (rnn, lstm) or "spatial" (attn, transformer)."""
        from kcaption.models import POOLED

        return "pooled" if self.model in POOLED else "spatial"


def _check_choice(name, value, choices):
    if value not in choices:
        raise InputError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}. Received: {name}={value!r}")


@dataclasses.dataclass
class Splits:
    """Records of a dataset, split for training; `held_out` names the split of `val`."""

    train: list
    val: list
    held_out: str = "val"


def load_splits(data="shapes", root=None, small=False, image_size=IMAGE_SIZE, karpathy=None):
    """Train and held-out records of `data` ("shapes", or "coco" read from `root`).

    COCO: the Karpathy split when `karpathy` names its file (train = train +
    restval, 113k images; held out: val, 5k), else the official train2014 / val2014.
    """
    _check_data(data, root)
    if data == "shapes":
        n_train, n_val = (SMALL["train"], SMALL["val"]) if small else (None, None)
        return Splits(load_shapes("train", n=n_train, image_size=image_size), load_shapes("val", n=n_val, image_size=image_size))
    if karpathy is not None:
        train = _read_coco(root, karpathy=karpathy, karpathy_split="train+restval")
        val, held_out = _read_coco(root, karpathy=karpathy, karpathy_split="val"), "karpathy val"
    else:
        train, val, held_out = _read_coco(root, "train2014"), _read_coco(root, "val2014"), "val2014"
    if small:
        train, val = train[: SMALL["train"]], val[: SMALL["val"]]
    return Splits(train, val, held_out=held_out)


def _check_data(data, root, choices=("shapes", "coco")):
    if data not in choices:
        raise InputError(f"`data` must be one of {', '.join(map(repr, choices))}. Received: data={data!r}")
    folder = "the COCO folder (see `kcaption download-coco`)" if data == "coco" else \
        "a COCO-format folder (a captions JSON and its images)"
    if data != "shapes" and root is None:
        raise InputError(f"--data {data} needs --root DIR, {folder}.")
    if data != "shapes" and not Path(root).is_dir():
        raise MissingFileError(f"--root {root}: no such folder; expected {folder}.")
    if data == "shapes" and root is not None:
        raise InputError(f"--root is the images' folder, for --data coco or folder; the shapes data is built in. "
                         f"Received: root={root!r}")


def _read_coco(root, split=None, karpathy=None, karpathy_split=None):
    """read_coco's records, with its messages about the folder raised as a UsageError."""
    from kcaption.data import read_coco

    return _read_records(lambda: read_coco(root, split, karpathy_split=karpathy_split, karpathy_file=karpathy),
                         f"COCO {karpathy_split or split}", root)


def _read_folder(root, captions=None):
    """read_caption_folder's records, with its messages about the folder raised as a UsageError."""
    from kcaption.data import read_caption_folder

    return _read_records(lambda: read_caption_folder(root, captions=captions), f"Folder {root}", root)


def _read_records(read, what, root):
    try:
        records, report = read()
    except FileNotFoundError as error:
        raise MissingFileError(str(error)) from error
    except ValueError as error:
        raise InputError(str(error)) from error
    print(f"{what}: {report}")
    if not records:
        raise InputError(f"{root}: {what} has no usable image ({report}).")
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


def check_run_folder(out, force=False, resume=False):
    """Refuse an output folder before any work is done (see `kcaption.runs.check_out`)."""
    runs.check_out(out, force=force, resume=resume)


def compile_captioner(model, learning_rate=2e-3, jit_compile=True, steps_per_execution=1, optimizer=None):
    """Adam, the temporal softmax loss and token accuracy.

    Args:
        learning_rate: Adam's constant rate (each weight's gradient clipped to norm 5: `clipnorm`, not `global_clipnorm`).
        jit_compile: XLA-compiled steps.
        steps_per_execution: training steps per call into the compiled graph
            (fewer Python round trips: it matters on a GPU, where a step is short).
        optimizer: another optimizer instead (e.g. `kcaption.optim.make_optimizer`'s schedule).
    """
    from kcaption.evaluation.metrics import MaskedTokenAccuracy
    from kcaption.losses import TemporalSoftmaxLoss

    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(learning_rate, clipnorm=5.0),
        loss=TemporalSoftmaxLoss(manual_backward=getattr(model, "manual_backward", False)),
        metrics=[MaskedTokenAccuracy()],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def generate(model, records, vocab, batch_size=64, image_size=IMAGE_SIZE, max_length=MAX_LENGTH - 1, inputs=None,
             decoding=None):
    """Captions (str) for `records`' images, in order: greedy, or as `decoding` says.

    Args:
        inputs: a dataset of what `model.sample` takes, batched in record order
            (e.g. cached features); default: the records' images.
        decoding: None (greedy), or `model.sample`'s decoding arguments, e.g.
            `{"beam_width": 3, "length_penalty": 0.6}`.
    """
    if inputs is None:
        inputs = image_dataset(records, batch_size=batch_size, image_size=image_size)
    captions = []
    for batch in inputs:
        ids = model.sample(batch, max_length=max_length, **(decoding or {}))
        captions += [vocab.decode(row) for row in np.asarray(ids)]
    return captions


def score(model, records, vocab, batch_size=64, image_size=IMAGE_SIZE, data=None, inputs=None, java=False,
          decoding=None):
    """Metrics on held-out `records`: loss, token accuracy (teacher forcing), caption scores.

    Args:
        data: the teacher-forcing dataset of `records` (default: their images, see make_dataset).
        inputs: what `generate` decodes (default: their images).
        java: the Java tools (the PTB tokenizer, METEOR; ~10 s of start-up): used on COCO,
            whose captions have punctuation; shapes captions have none, so the Python
            tokenizer gives the same scores there.
        decoding: as in `generate`.
    """
    from kcaption.evaluation.metrics import caption_scores, object_scores

    if data is None:
        data = make_dataset(records, vocab, batch_size=batch_size, image_size=image_size, max_length=MAX_LENGTH,
                            too_long="skip")
    loss, accuracy = model.evaluate(data, verbose=0)
    generated = generate(model, records, vocab, batch_size, image_size, inputs=inputs, decoding=decoding)
    scores = caption_scores([r.captions for r in records], generated, java=java)
    if all(r.objects is not None for r in records):  # shapes: did it name the right objects?
        scores.update(object_scores([r.objects for r in records], generated))
    return {"loss": float(loss), "token_accuracy": float(accuracy), **scores, "images": len(records)}, generated


def train(
    model="lstm", data="shapes", root=None, epochs=None, out="runs/train", batch_size=None, small=False,
    verbose=None, force=False, resume=False, **options,
):
    """Train a captioner and write the run folder (see `kcaption.runs`).

    Args:
        model: a name of `kcaption.models.CAPTIONERS`.
        data: "shapes" or "coco".
        root: the COCO folder (with data="coco").
        epochs: default: the model's preset (2 with `small`).
        out: the run folder: new, empty, or (with `force`) an earlier run's, or
            (with `resume`) an interrupted run's.
        batch_size: images per batch; default 32 on shapes, 64 on COCO.
        small: a tiny, fast run (for CI and checks).
        verbose: Keras's fit verbosity; default: a progress bar on a terminal,
            one line per epoch otherwise (a log file).
        force: replace the run already in `out`.
        resume: continue the interrupted run in `out` with its own settings
            (config.json) and vocabulary, from its last backup; `epochs` may be
            raised. Other settings given that differ from the run's are refused.
        **options: the other `Settings` (karpathy, backbone, weights,
            image_size, features, precision, strategy, learning_rate,
            min_count, num_layers, inject, manual_backward, monitor, patience).

    Returns:
        A dict: the metrics, and the paths written ("paths").
    """
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(Settings)})
    if unknown:
        raise TypeError(f"train() got unexpected keyword arguments: {', '.join(unknown)}")
    given = Settings(model=model, data=data, root=root, epochs=epochs, batch_size=batch_size, small=small, **options)
    check_run_folder(out, force, resume)
    settings = _resumed_settings(out, given) if resume else given.resolve()
    backward = BACKWARD_STEPS[settings.model] if settings.manual_backward else []
    steps.require(REQUIRED_STEPS[settings.model] + backward, f"kcaption train --model {settings.model}"
                  + " --manual-backward" * settings.manual_backward)
    verbose = fit_verbosity() if verbose is None else verbose
    from kcaption.distribute import get_strategy, is_chief, set_precision, worker_path

    strategy = get_strategy(settings.strategy)
    # A multi-worker run's other workers write a run of their own beside it (TensorFlow's guide), deleted after.
    mine = runs.prepare(worker_path(out, strategy), force)
    previous = keras.config.dtype_policy()
    set_precision(settings.precision)
    try:
        return _train(settings, mine, strategy, verbose, resume)
    finally:
        keras.config.set_dtype_policy(previous)
        if not is_chief(strategy):
            shutil.rmtree(mine.parent, ignore_errors=True)


def _resumed_settings(out, given):
    """The run's own settings, with `epochs` from `given` when set; other settings given must agree."""
    stored = runs.read_config(out)
    defaults = dataclasses.asdict(Settings())
    conflicts = [
        f"{name}={value!r} (the run's: {stored.get(name)!r})"
        for name, value in dataclasses.asdict(given).items()
        if name != "epochs" and value != defaults[name] and value != stored.get(name)
    ]
    if conflicts:
        raise InputError(
            f"--resume continues {out} with its own settings ({Path(out) / runs.CONFIG}); these differ: "
            + ", ".join(conflicts) + ". Drop them, or start a new run with --force or another --out."
        )
    settings = Settings(**{**stored, "epochs": given.epochs or stored["epochs"]})
    return settings.resolve()


def _train(settings, out, strategy, verbose, resume):
    from kcaption.callbacks import SampleCaptions, read_history, run_callbacks
    from kcaption.data.records import drop_long_captions
    from kcaption.distribute import synchronize_batch_norm
    from kcaption.evaluation.metrics import format_scores, write_coco_results
    from kcaption.models import build_captioner
    from kcaption.viz import caption_grid, objects_right, plot_loss_curves

    splits = load_splits(settings.data, settings.root, settings.small, settings.image_size, settings.karpathy)
    train_records, dropped = drop_long_captions(splits.train, MAX_LENGTH)
    if dropped.too_long:
        print(f"Captions: {dropped}. Left out, they add no words to the vocabulary.")
    vocab_path = out / "vocab.json"
    if resume:
        vocab = Vocabulary.load(vocab_path)
    else:
        vocab = Vocabulary.build((c for r in train_records for c in r.captions), min_count=settings.min_count)
    common = {"batch_size": settings.batch_size, "max_length": MAX_LENGTH, "too_long": "skip"}
    # Each image once per epoch with 5 of its captions: the model encodes it once for all of them.
    inputs = _inputs(settings, train_records, splits.val, vocab, common)
    if not resume:  # the run starts here: a failure before (no weights, a bad cache) leaves no partial run
        vocab.save(vocab_path)
        runs.write_config(out, dataclasses.asdict(settings))
    trained_on = {
        "model": settings.model, "data": settings.data, "image_size": settings.image_size,
        "backbone": settings.backbone, "weights": settings.weights, "vocabulary": fingerprint(vocab),
    }
    preset = settings.preset
    with strategy.scope():
        # A store of its own, made in the scope: its encoder's variables are then the strategy's.
        encoder = _store(settings).encoder() if inputs.store is not None else None
        captioner = build_captioner(
            settings.model, len(vocab), backbone=settings.backbone, image_size=settings.image_size,
            encoder=encoder, trained_on=trained_on, **_model_arguments(settings),
        )
        # XLA costs ~30 s of compiling up front and then runs each step ~2x faster on a CPU. Not under a
        # strategy: XLA failed there on logical CPUs ("resource on a different device"; GPUs not measured).
        jit = preset.get("jit_compile", True) and not settings.small and settings.strategy == "default"
        compile_captioner(captioner, settings.learning_rate, jit_compile=jit,
                          optimizer=_optimizer(settings, len(train_records)))
        captioner(next(iter(inputs.val))[0])  # built before fit: BackupAndRestore loads into it
        if strategy.num_replicas_in_sync > 1:
            synchronize_batch_norm(captioner)  # statistics of the global batch, as on one device
    samples = SampleCaptions(inputs.samples, [r.captions for r in splits.val[:SAMPLES_SEEN]], vocab,
                             log_dir=out / "logs")
    callbacks = run_callbacks(out, samples, monitor=settings.monitor, patience=settings.patience)
    where = "cached features" if inputs.store is not None else "images"
    print(
        f"Training {settings.model} on {settings.data} ({where}, {settings.backbone} {settings.image_size} px): "
        f"{len(train_records)} images, vocabulary of {len(vocab)}, {settings.epochs} epochs"
        + (f", resuming {out}." if resume else ".")
    )
    start = time.perf_counter()
    try:
        captioner.fit(inputs.train, validation_data=inputs.val, epochs=settings.epochs, verbose=verbose,
                      callbacks=callbacks)
    except KeyboardInterrupt:
        from kcaption.errors import Interrupted

        raise Interrupted(_interrupted_message(out)) from None
    seconds = time.perf_counter() - start
    history = read_history(out)
    epochs_run = len(history.get("loss", []))

    metrics, generated = score(captioner, splits.val, vocab, settings.batch_size, settings.image_size,
                               data=inputs.val, inputs=inputs.decode, java=settings.data == "coco" and not settings.small)
    metrics.update({"model": settings.model, "data": settings.data, "split": splits.held_out,
                    "epochs": settings.epochs, "epochs_run": epochs_run, "train_seconds": round(seconds, 1)})
    metrics["samples"] = generated[:8]  # the first held-out images' captions
    paths = {name: out / f"{name}.{ext}" for name, ext in
             [("model", "keras"), ("vocab", "json"), ("loss_curve", "png"), ("samples", "png"),
              ("results", "json"), ("metrics", "json")]}
    captioner.save(paths["model"])  # on every worker (saving is collective), each into its own folder
    write_coco_results(paths["results"], [r.image_id for r in splits.val], generated)
    plot_loss_curves(history, paths["loss_curve"], title=f"{settings.model} on {settings.data}")
    shown = splits.val[:12]
    caption_grid(
        _thumbnails(shown, settings.image_size), generated[:12], [r.captions for r in shown],
        paths["samples"], title=f"held-out {settings.data} images: generated vs reference",
        correct=objects_right(shown, generated[:12]),  # shapes: names exactly its coloured shapes?
    )
    if settings.model in ("attn", "transformer") and settings.data == "shapes" and inputs.store is None:
        from kcaption.evaluation.localization import attention_report

        # Where it looked for each colour/shape word, against the objects' boxes (and chance).
        paths["attention"] = out / "attention.png"
        metrics["localization"] = attention_report(captioner, splits.val, vocab, paths["attention"],
                                                   settings.image_size)
    metrics["paths"] = {k: str(v) for k, v in paths.items()}
    paths["metrics"].write_text(json.dumps(metrics, indent=2))
    runs.finish(out, epochs_run)
    objects = f", objects right {metrics['objects_exact']:.0%}" if "objects_exact" in metrics else ""
    print(
        f"Done in {seconds:.0f} s ({epochs_run} epochs). Held-out ({splits.held_out}, {metrics['images']} images): "
        f"loss {metrics['loss']:.3f}, token accuracy {metrics['token_accuracy']:.3f}{objects}."
    )
    print(format_scores(metrics))
    for name, path in paths.items():
        print(f"  {name:<11} {path}")
    return metrics


def _model_arguments(settings):
    preset = settings.preset
    arguments = {key: preset[key] for key in MODEL_KEYS if key in preset}
    if settings.model in ("rnn", "lstm"):
        arguments.update(num_layers=settings.num_layers, inject=settings.inject,
                         manual_backward=settings.manual_backward)
        if settings.inject == "pre":  # the states start from zeros, and the image is the first word
            arguments.pop("initial_cell", None)
    return arguments


def _optimizer(settings, n_train):
    """None (compile_captioner's constant rate) on shapes, as the demo's figures were measured; on COCO,
    a warm-up over the first epoch then cosine decay (kcaption.optim)."""
    if settings.data == "shapes" or settings.epochs < 2:
        return None
    from kcaption.optim import make_optimizer

    return make_optimizer(settings.learning_rate, -(-n_train // settings.batch_size), settings.epochs)


@dataclasses.dataclass
class _Inputs:
    train: object  # grouped training batches
    val: object  # plain held-out batches, for the loss
    decode: object  # held-out inputs in record order, for the captions (None: the images)
    samples: object  # one batch of the first held-out inputs, for SampleCaptions
    store: object = None  # the FeatureStore, when training on cached features


def _inputs(settings, train_records, val_records, vocab, common):
    """The run's datasets: images (shapes, or a trainable backbone) or a frozen backbone's cached features."""
    # Under a strategy: whole batches only (each replica an equal share), shuffled alike on every worker.
    shuffling = {"shuffle": True, "seed": 0, "drop_remainder": True} if settings.strategy != "default" else {
        "shuffle": True}
    if settings.features is None:
        size = {"image_size": settings.image_size}
        cache = "memory" if settings.data == "shapes" else None  # COCO streams from disk
        train = make_dataset(train_records, vocab, cache=cache, captions="grouped", **shuffling, **size, **common)
        val = make_dataset(val_records, vocab, cache=cache, **size, **common)
        samples = next(iter(image_dataset(val_records[:SAMPLES_SEEN], batch_size=SAMPLES_SEEN, **size)))
        return _Inputs(_sharded(train, settings), _sharded(val, settings), None, samples)
    from kcaption.data.features import feature_dataset

    store = _store(settings)
    train_cache = store.extract(train_records, _cache_split(settings, "train"))
    val_cache = store.extract(val_records, _cache_split(settings, "val"))
    kind = settings.kind
    train = feature_dataset(train_cache, train_records, vocab, kind=kind, captions="grouped", **shuffling, **common)
    val = feature_dataset(val_cache, val_records, vocab, kind=kind, captions="all", **common)
    decode = val_cache.batches(kind, batch_size=settings.batch_size)
    samples = next(iter(val_cache.batches(kind, batch_size=SAMPLES_SEEN)))
    return _Inputs(_sharded(train, settings), _sharded(val, settings), decode, samples, store)


def _sharded(dataset, settings):
    """A multi-worker run's workers each keep their share of every batch (see `distribute.shard_by_example`)."""
    if settings.strategy != "multiworker":
        return dataset
    from kcaption.distribute import shard_by_example

    return shard_by_example(dataset)


def _store(settings):
    """The `FeatureStore` of the run's frozen backbone."""
    from kcaption.data.features import FeatureStore

    weights = None if settings.weights == "none" else settings.weights
    return FeatureStore(settings.features, backbone=settings.backbone, weights=weights, image_size=settings.image_size)


def _cache_split(settings, which):
    """The feature cache's name for a split: the Karpathy or official split, and `small` runs apart."""
    return ("karpathy-" if settings.karpathy else "") + which + ("-small" if settings.small else "")


def build_features(data="coco", root=None, small=False, **options):
    """Run a frozen backbone once over the train and val images and cache its features (see `kcaption.data.features`).

    What `train` does first when it needs them, on its own: an interrupted
    extraction continues where it stopped; a complete cache is left as it is.

    Args:
        data, root, small: as for `train`.
        **options: karpathy, backbone, weights, image_size, features (see `Settings`).

    Returns:
        {split: FeatureCache}.
    """
    settings = Settings(data=data, root=root, small=small, **options).resolve()
    if settings.features is None:
        raise InputError(
            f"the {settings.backbone} encoder trains with the decoder: it has no fixed features to cache. "
            "Pick a keras.applications --backbone (and --features DIR for the shapes data)."
        )
    from kcaption.data.records import drop_long_captions

    splits = load_splits(settings.data, settings.root, settings.small, settings.image_size, settings.karpathy)
    store = _store(settings)
    caches = {}
    # The images `train` trains on: an image whose captions are all too long is not one of them.
    for which, records in [("train", drop_long_captions(splits.train, MAX_LENGTH)[0]), ("val", splits.val)]:
        caches[which] = store.extract(records, _cache_split(settings, which))
        print(f"{which}: {len(records)} images' features in {caches[which].path}")
    return caches


def _thumbnails(records, image_size):
    """uint8 (N, S, S, 3) images of `records`, resized as the model saw them (for the samples picture)."""
    batch = next(iter(image_dataset(records, batch_size=len(records), image_size=image_size)))
    return np.round(np.asarray(batch) * 255).astype(np.uint8)


def _interrupted_message(out):
    backup = Path(out) / runs.BACKUP
    where = (f"the last checkpoint (end of an epoch) is in {backup}" if backup.is_dir()
             else "no epoch had finished, so there is no checkpoint yet")
    return f"interrupted; {where}. Resume with: kcaption train --out {out} --resume"


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
    from kcaption import losses, models  # noqa: F401 (registers the classes load_model needs)
    from kcaption.evaluation import metrics  # noqa: F401

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


def evaluate(model_path, data="shapes", root=None, split=None, out=None, karpathy=None, captions=None,
             decoding=None):
    """Score a saved model on a held-out split, as papers report it; print the table, write the files.

    Writes `out`/metrics.json (the scores: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D;
    loss and token accuracy; on shapes, objects right; how it decoded) and
    `out`/results.json (the captions as a COCO results file, `[{"image_id",
    "caption"}]`, what the official evaluation server takes).

    Args:
        model_path: a model.keras written by `kcaption train`.
        data: "shapes", "coco", or "folder": any COCO-format folder (a captions
            JSON and its images, e.g. an outside test set such as NICE; see
            `kcaption.data.read_caption_folder`).
        root: the COCO folder (data="coco") or the folder (data="folder").
        split: shapes: "train", "val" or "test" (default: test; `kcaption train`
            reports on val). COCO: a Karpathy split ("test", "val", "train",
            "restval"; default: test when the Karpathy file is there) or an
            official one ("val2014", the default otherwise). Not for a folder.
        out: the folder to write (default: beside the model,
            eval-<data>-<split>[-beam<k>|-sampled]/).
        karpathy: the Karpathy split file (default: ROOT/dataset_coco.json).
        captions: data="folder": its captions file (default: the one .json in ROOT).
        decoding: None (greedy), or `Captioner.sample`'s decoding arguments,
            e.g. `{"beam_width": 3, "length_penalty": 0.6}`.
    """
    from kcaption.data.coco import KARPATHY_SPLITS
    from kcaption.evaluation.metrics import format_scores, write_coco_results

    _check_data(data, root, choices=("shapes", "coco", "folder"))
    if data == "coco":
        karpathy = karpathy or (str(Path(root) / "dataset_coco.json") if (Path(root) / "dataset_coco.json").is_file()
                                else None)
    if data == "folder" and split is not None:
        raise InputError(f"--split is for shapes and coco; a folder is scored whole. Received: split={split!r}")
    if captions is not None and data != "folder":
        raise InputError(f"--captions names a folder's captions file, with --data folder. Received: data={data!r}")
    split = split or {"shapes": "test", "folder": Path(root or ".").name}.get(data) or ("test" if karpathy else "val2014")
    if data == "shapes" and split not in SHAPES_SPLITS:
        raise InputError(f"--split must be one of {sorted(SHAPES_SPLITS)} for the shapes data. Received: split={split!r}")
    if data == "coco" and split in KARPATHY_SPLITS and karpathy is None:
        raise MissingFileError(f"--split {split} is a Karpathy split, and {Path(root) / 'dataset_coco.json'} is "
                               "not there; pass --karpathy FILE, or an official split such as val2014.")
    run = inspect_run(model_path)
    out = Path(out) if out is not None else run.model_path.parent / f"eval-{data}-{split}{decoding_suffix(decoding)}"
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; expected a folder to write metrics.json and results.json into.")
    steps.require(REQUIRED_STEPS[run.model] + decoding_steps(decoding), f"kcaption evaluate with a saved {run.model} model")
    _warn_if_partial(run)
    vocab = _load_vocabulary(run)
    if data == "shapes":
        records = load_shapes(split, image_size=run.image_size)
    elif data == "folder":
        records = _read_folder(root, captions)
    elif split in KARPATHY_SPLITS:
        records = _read_coco(root, karpathy=karpathy, karpathy_split=split)
    else:
        records = _read_coco(root, split)
    model = _load_model(run)
    compile_captioner(model)
    metrics, generated = score(model, records, vocab, image_size=run.image_size, java=data != "shapes",
                               decoding=decoding)
    metrics.update({"data": data, "split": split, "decoding": decoding_name(decoding)})
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_coco_results(out / "results.json", [r.image_id for r in records], generated)
    where = f"{root}" if data == "folder" else f"{data} {split}"
    print(f"{run.model_path} on {where} ({len(records)} images, {decoding_name(decoding)}):")
    print(format_scores(metrics))
    print(f"Wrote {out / 'metrics.json'} and {out / 'results.json'} (a COCO results file).")
    return metrics


def decoding_name(decoding):
    """How captions were decoded, in words: "greedy", "beam search (k=3, length penalty 0.6)", "sampling (...)"."""
    decoding = {k: v for k, v in (decoding or {}).items() if v is not None}
    beam = decoding.pop("beam_width", 1)
    penalty = decoding.pop("length_penalty", 0.0)
    if beam > 1:
        return f"beam search (k={beam}" + (f", length penalty {penalty:g})" if penalty else ")")
    if decoding:
        return "sampling (" + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in decoding.items()) + ")"
    return "greedy"


def decoding_suffix(decoding):
    """The part of an output folder's name that says how it decoded: "", "-beam3", "-sampled"."""
    name = decoding_name(decoding)
    if name.startswith("beam"):
        return f"-beam{decoding['beam_width']}"
    return "" if name == "greedy" else "-sampled"


def decoding_steps(decoding):
    """The graded steps a decoding needs beyond greedy's: beam search's."""
    return ["decoding.beam_search"] if (decoding or {}).get("beam_width", 1) > 1 else []


def _warn_if_partial(run):
    """A model from a run folder whose run did not finish: say so (best.keras of an interrupted run)."""
    folder = run.model_path.parent
    if runs.state(folder) == "partial":
        warnings.warn(
            f"{run.model_path} is from an unfinished run ({folder} has no {runs.MARKER}): it was interrupted or "
            f"is still training. Resume it with `kcaption train --out {folder} --resume`.",
            KcaptionWarning,
            stacklevel=3,
        )


def caption_images(model_path, images, decoding=None, attention=None):
    """Print a caption for each image file; report the files that cannot be read and caption the rest.

    Captions are greedy, or as `decoding` says (`Captioner.sample`'s decoding
    arguments, e.g. `{"beam_width": 3}`). With `attention` (a PNG path), an
    attention captioner also draws where it looked for each word of the first
    readable image's caption.

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
    if attention is not None and run.model not in ("attn", "transformer"):
        raise InputError(f"--attention draws an attention captioner's weights; {run.model_path} is a {run.model} "
                         "model, which has none (attn and transformer models do).")
    steps.require(SAMPLE_STEPS[run.model] + decoding_steps(decoding), f"kcaption caption with a saved {run.model} model")
    _warn_if_partial(run)
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
    captions = dict(zip(decoded, generate(model, records, vocab, image_size=run.image_size, decoding=decoding)))
    for path in decoded:
        print(f"{path}: {captions[path]}")
    if attention is not None:
        _draw_attention(model, records[0], captions[next(iter(decoded))], vocab, run.image_size, attention)
    return [captions.get(path) for path in images]


def _draw_attention(model, record, caption, vocab, image_size, path):
    """Draw where `model` looked for each word of `caption`, its caption of `record`'s image."""
    from kcaption.viz.attention import attention_overlay, caption_attention

    (image,) = next(iter(image_dataset([record], batch_size=1, image_size=image_size)))
    ids = np.asarray(vocab.encode(caption))[None, 1:]  # the words and <END>, as decoded
    weights = caption_attention(model, image[None], ids)[0]
    attention_overlay(np.asarray(image), caption.split(), weights, path=path, title=f"{Path(record.image).name}: {caption}")
    print(f"Wrote {path}: where it looked for each word.")


def read_image(path):
    """A uint8 (H, W, 3) image, or an `InputError` naming the file and why it cannot be read.

    Decoded with Pillow, which reports a damaged file quietly (TensorFlow's decoder
    logs C++ lines first), and limited to the formats the pipeline's TensorFlow
    decoder reads, told from the file's first bytes as that decoder tells them
    (`image_format`: Pillow calls a camera's JPEG "MPO", which TensorFlow reads).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder, not an image file")
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: an empty file (0 bytes), not an image")
    kind = image_format(path)
    if kind is None:
        raise InputError(f"{path}: not an image file (expected one of {', '.join(IMAGE_FORMATS)})")
    if kind not in IMAGE_FORMATS:
        raise InputError(f"{path}: a {kind} image; expected one of {', '.join(IMAGE_FORMATS)}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))  # decodes the whole file
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (expected one of {', '.join(IMAGE_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path}: a damaged or truncated image ({error})") from None


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
