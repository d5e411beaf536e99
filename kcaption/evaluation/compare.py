"""Compare trained captioners on the same held-out images: one table, one picture.

Each model is scored on the same images with the same metrics, greedy and
with beam search, and timed the same way, so the table answers the lesson's
question, "what did each architecture buy?", with the cost beside the gain:

    model        params  train s  BLEU-4  CIDEr-D  objects  local.  greedy ms  beam ms
    rnn          ...

Decode times are per image, in one compiled batch: the first call (which
traces and compiles) is left out, then the fastest of `repeats` calls counts,
as the benchmarks time things on a noisy machine.
"""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from kcaption.errors import InputError

COLUMNS = (  # (key, header, format)
    ("model", "model", "{}"),
    ("params", "params", "{:,}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("bleu4", "BLEU-4", "{:.3f}"),
    ("cider_d", "CIDEr-D", "{:.3f}"),
    ("objects_exact", "objects", "{:.0%}"),
    ("localization", "local.", "{:.0%}"),
    ("beam_bleu4", "beam BLEU-4", "{:.3f}"),
    ("beam_cider_d", "beam CIDEr-D", "{:.3f}"),
    ("greedy_ms", "greedy ms", "{:.2f}"),
    ("beam_ms", "beam ms", "{:.2f}"),
)


@dataclasses.dataclass
class Comparison:
    """What `compare_runs` found: one row per model, and each model's captions of the images.

    Attributes:
        rows: one dict per model, with the keys of `COLUMNS` (a missing value is None).
        captions: {model name: greedy captions of `records`, in order}.
        records: the held-out records scored.
        beam_width: the beam search's k.
    """

    rows: list
    captions: dict
    records: list
    beam_width: int

    def table(self):
        """The rows as an aligned text table; "-" where a model has no value (e.g. localisation of an LSTM)."""
        cells = [[header for _, header, _ in COLUMNS]]
        for row in self.rows:
            cells.append(["-" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in COLUMNS])
        widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
        return "\n".join(
            "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            for line in cells
        )


@dataclasses.dataclass
class Entry:
    """One model to compare: what it is called in the table, the model, its vocabulary, its image side."""

    name: str
    model: object
    vocab: object
    image_size: int = 64
    train_seconds: float = None


def compare_models(entries, split="test", n=200, beam_width=3, repeats=3):
    """Score and time trained captioners on the same shapes images, greedy and with beam search.

    Args:
        entries: `Entry`s, one per model.
        split: the shapes split to score ("test": no model saw it while training).
        n: the first n images of the split.
        beam_width: k of the beam-search columns.
        repeats: timed decoding calls per model and decoding; the fastest counts.

    Returns:
        A `Comparison`.
    """
    from kcaption.data import image_dataset, load_shapes
    from kcaption.evaluation.localization import attention_report
    from kcaption.evaluation.metrics import caption_scores, object_scores
    from kcaption.models import CaptioningTransformer

    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"compare_models needs one name per model, each once. Received: names={names!r}")
    rows, captions, records = [], {}, None
    for entry in entries:
        records = load_shapes(split, n=n, image_size=entry.image_size)  # the same images, at this model's size
        (images,) = list(image_dataset(records, batch_size=len(records), image_size=entry.image_size))
        references = [r.captions for r in records]
        model = entry.model
        row = {"model": entry.name, "params": int(model.count_params()), "train_seconds": entry.train_seconds}
        for prefix, decoding in (("", {}), ("beam_", {"beam_width": beam_width})):
            ids, seconds = _timed_sample(model, images, decoding, repeats)
            generated = [entry.vocab.decode(r) for r in np.asarray(ids)]
            scores = caption_scores(references, generated, java=False)
            row[f"{prefix}bleu4"], row[f"{prefix}cider_d"] = scores["bleu4"], scores["cider"]
            row["beam_ms" if prefix else "greedy_ms"] = 1000 * seconds / len(records)
            if not prefix:
                row["objects_exact"] = object_scores([r.objects for r in records], generated)["objects_exact"]
                captions[entry.name] = generated
        attends = isinstance(model, CaptioningTransformer) or getattr(model, "cell_type", None) == "attn"
        row["localization"] = (attention_report(model, records, entry.vocab, image_size=entry.image_size)["score"]
                               if attends else None)
        rows.append(row)
    return Comparison(rows, captions, records, beam_width)


def compare_runs(run_folders, split="test", n=200, beam_width=3, repeats=3):
    """`compare_models` on the models of run folders written by `kcaption train` (or their model.keras files).

    Each is named by its model ("lstm"); by its folder's name when two runs have the same model, and by the
    folder's path when their folders have the same name too.
    """
    from kcaption.train import _load_model, _load_vocabulary, inspect_run

    runs = [inspect_run(_model_path(folder)) for folder in run_folders]
    for run in runs:
        if run.image_size is None:
            raise InputError(f"{run.model_path} was trained on cached features; compare captions shapes images, "
                             "so it needs a model that reads images.")
    names = [run.model for run in runs]
    for name_of in (lambda run: run.model_path.parent.name, lambda run: str(run.model_path.parent)):
        names = [name_of(run) if names.count(name) > 1 else name for name, run in zip(names, runs)]
    entries = [Entry(name, _load_model(run), _load_vocabulary(run), run.image_size, _train_seconds(run))
               for name, run in zip(names, runs)]
    return compare_models(entries, split=split, n=n, beam_width=beam_width, repeats=repeats)


def comparison_grid(comparison, path=None, count=8, columns=4):
    """The first `count` images, each with every model's greedy caption (✓/✗: objects right), and a reference."""
    from kcaption.viz import caption_grid, objects_right

    shown = comparison.records[:count]
    captions = {name: c[:count] for name, c in comparison.captions.items()}
    images = np.stack([r.load_image() for r in shown])
    return caption_grid(images, captions, [r.captions for r in shown], path, columns=columns,
                        title="the same held-out images, captioned by each model (greedy)",
                        correct={name: objects_right(shown, c) for name, c in captions.items()})


def write_comparison(comparison, out):
    """Write `out`/comparison.json (the rows) and `out`/comparison.png (the grid); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "comparison.json", out / "comparison.png"
    paths[0].write_text(json.dumps({"beam_width": comparison.beam_width, "images": len(comparison.records),
                                    "rows": comparison.rows}, indent=2))
    comparison_grid(comparison, paths[1])
    return paths


def compare(run_folders, split="test", n=200, beam_width=3, out=None):
    """`kcaption compare`: print the table of `compare_runs`, write comparison.json and comparison.png.

    Args:
        out: the folder to write (default: comparison/ beside the first run).
    """
    from kcaption import steps
    from kcaption.train import REQUIRED_STEPS, inspect_run

    runs = [inspect_run(_model_path(folder)) for folder in run_folders]
    paths = [str(run.model_path.resolve()) for run in runs]
    repeated = sorted({path for path in paths if paths.count(path) > 1})
    if repeated:
        raise InputError(f"kcaption compare got the same run more than once: {', '.join(repeated)}.")
    needed = sorted({s for run in runs for s in REQUIRED_STEPS[run.model]} | {"decoding.beam_search"})
    steps.require(needed, "kcaption compare")
    comparison = compare_runs(run_folders, split=split, n=n, beam_width=beam_width)
    out = Path(out) if out is not None else runs[0].model_path.parent.parent / "comparison"
    paths = write_comparison(comparison, out)
    print(f"{len(runs)} models on the same {len(comparison.records)} shapes {split} images "
          f"(beam search k={beam_width}; decode times per image, one compiled batch):")
    print(comparison.table())
    print(f"Wrote {paths[0]} and {paths[1]}.")
    return comparison


def _timed_sample(model, images, decoding, repeats):
    """(token ids, seconds of the fastest of `repeats` calls), after one untimed call that compiles."""
    ids = model.sample(images, **decoding)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ids = model.sample(images, **decoding)
        np.asarray(ids)  # wait for the result
        best = min(best, time.perf_counter() - start)
    return ids, best


def _model_path(folder):
    folder = Path(folder)
    return folder if folder.suffix == ".keras" else folder / "model.keras"


def _train_seconds(run):
    """The training time its run recorded (metrics.json), or None."""
    metrics = run.model_path.parent / "metrics.json"
    if not metrics.is_file():
        return None
    return json.loads(metrics.read_text()).get("train_seconds")
