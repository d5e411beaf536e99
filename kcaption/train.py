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
"""

import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np

from kcaption import steps
from kcaption.data import Vocabulary, image_dataset, load_shapes, make_dataset

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
IMAGE_SIZE = 64
MAX_LENGTH = 17  # ids per caption, <START> and <END> included


@dataclasses.dataclass
class Splits:
    """Records of a dataset, split for training."""

    train: list
    val: list


def load_splits(data="shapes", root=None, small=False, image_size=IMAGE_SIZE):
    """Train and held-out records of `data` ("shapes" or "coco" read from `root`)."""
    if data == "shapes":
        n_train, n_val = (SMALL["train"], SMALL["val"]) if small else (None, None)
        return Splits(load_shapes("train", n=n_train, image_size=image_size), load_shapes("val", n=n_val, image_size=image_size))
    if data == "coco":
        from kcaption.data import read_coco

        if root is None:
            raise ValueError("--data coco needs the COCO folder. Received: root=None")
        train, report = read_coco(root, "train2014")
        print(f"COCO train2014: {report}")
        val, report = read_coco(root, "val2014")
        print(f"COCO val2014: {report}")
        if small:
            train, val = train[: SMALL["train"]], val[: SMALL["val"]]
        return Splits(train, val)
    raise ValueError(f"`data` must be 'shapes' or 'coco'. Received: data={data!r}")


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


def train(model="lstm", data="shapes", root=None, epochs=None, out="runs/train", batch_size=None, small=False, verbose=1):
    """Train a captioner and write the run folder (see the module docstring).

    Args:
        model: a name of `kcaption.models.CAPTIONERS`.
        data: "shapes" or "coco".
        root: the COCO folder (with data="coco").
        epochs: default: the model's preset (2 with `small`).
        out: the output folder.
        batch_size: default 64 (32 with `small`).
        small: a tiny, fast run (for CI and checks).
        verbose: Keras's fit verbosity (1: a progress bar).

    Returns:
        A dict: the metrics, and the paths written ("paths").
    """
    from kcaption.models import build_captioner
    from kcaption.viz import caption_grid, plot_loss_curves

    if model not in PRESETS:
        raise ValueError(f"`model` must be one of {sorted(PRESETS)}. Received: model={model!r}")
    steps.require(REQUIRED_STEPS[model], f"kcaption train --model {model}")
    preset = PRESETS[model]
    epochs = epochs or (SMALL["epochs"] if small else preset["epochs"])
    batch_size = batch_size or (SMALL["batch_size"] if small else BATCH_SIZE)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    splits = load_splits(data, root, small)
    vocab = Vocabulary.build(c for r in splits.train for c in r.captions)
    common = {"batch_size": batch_size, "image_size": IMAGE_SIZE, "max_length": MAX_LENGTH, "too_long": "skip"}
    # Each image once per epoch with 5 of its captions: the model encodes it once for all of them.
    train_ds = make_dataset(splits.train, vocab, shuffle=True, cache="memory", captions="grouped", **common)
    val_ds = make_dataset(splits.val, vocab, cache="memory", **common)

    captioner = build_captioner(
        model, len(vocab), image_size=IMAGE_SIZE, **{key: preset[key] for key in MODEL_KEYS if key in preset}
    )
    # XLA costs ~30 s of compiling up front and then runs each step ~2x faster on a CPU.
    compile_captioner(captioner, preset["learning_rate"], jit_compile=preset.get("jit_compile", True) and not small)
    print(f"Training {model} on {data}: {len(splits.train)} images, vocabulary of {len(vocab)}, {epochs} epochs.")
    start = time.perf_counter()
    history = captioner.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=verbose)
    seconds = time.perf_counter() - start

    metrics, generated = score(captioner, splits.val, vocab, batch_size)
    metrics.update({"model": model, "data": data, "epochs": epochs, "train_seconds": round(seconds, 1)})
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
        f"Done in {seconds:.0f} s. Held-out: loss {metrics['loss']:.3f}, token accuracy "
        f"{metrics['token_accuracy']:.3f}, BLEU-4 {metrics['bleu4']:.3f}, CIDEr-D {metrics['cider']:.3f}{objects}."
    )
    for name, path in paths.items():
        print(f"  {name:<11} {path}")
    return metrics


def demo(model="lstm", out="runs/demo", epochs=None, small=False):
    """Train on the built-in shapes data and write the run folder (see `train`)."""
    return train(model=model, data="shapes", epochs=epochs, out=out, small=small)


def load_run(model_path):
    """A saved captioner and the vocabulary saved beside it."""
    from kcaption import losses, metrics, models  # noqa: F401 (registers the classes load_model needs)

    model_path = Path(model_path)
    vocab_path = model_path.with_name("vocab.json")
    if not vocab_path.is_file():
        raise FileNotFoundError(f"{model_path}: expected its vocabulary beside it, at {vocab_path}.")
    return keras.models.load_model(model_path), Vocabulary.load(vocab_path)


def evaluate(model_path, data="shapes", root=None, split="test", out=None):
    """Score a saved model on a held-out split; print (and write to `out`) the metrics JSON."""
    model, vocab = load_run(model_path)
    if data == "shapes":
        records = load_shapes(split)
    else:
        from kcaption.data import read_coco

        records, report = read_coco(root, split)
        print(f"COCO {split}: {report}")
    compile_captioner(model)
    metrics, _ = score(model, records, vocab)
    text = json.dumps(metrics, indent=2)
    print(text)
    if out is not None:
        Path(out).write_text(text)
    return metrics


def caption_images(model_path, images, beam_width=1):
    """Print a caption for each image file (greedy; beam search is added by the decoding lessons)."""
    from kcaption.data import CaptionRecord

    if beam_width != 1:
        raise ValueError(f"This captioner decodes greedily only. Received: beam_width={beam_width}")
    model, vocab = load_run(model_path)
    records = [CaptionRecord(str(path), str(path), []) for path in images]
    captions = generate(model, records, vocab)
    for path, caption in zip(images, captions):
        print(f"{path}: {caption}")
    return captions
