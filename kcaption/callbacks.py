"""Callbacks of a training run: sample captions and CIDEr-D each epoch, and the run's Keras callbacks."""

import sys
from pathlib import Path

import keras
import numpy as np

from kcaption import runs


class SampleCaptions(keras.callbacks.Callback):
    """After each epoch: greedy captions of a few held-out images, and their CIDEr-D.

    Prints the first `shown` captions with a reference each, adds `val_cider`
    (CIDEr-D of all `inputs`' captions against `references`) to the epoch's
    logs, so that `ModelCheckpoint(monitor="val_cider")`, `EarlyStopping` and
    the CSV/TensorBoard logs see it, and writes the captions to TensorBoard as
    text. Put it before the callbacks that read `val_cider`: Keras calls them in
    order with the same logs.

    Args:
        inputs: what `model.sample` takes for these images: images or features, one batch.
        references: one list of reference captions (str) per image.
        vocab: the `Vocabulary` that decodes the sampled ids.
        max_length: words generated per caption.
        shown: captions printed each epoch.
        log_dir: a TensorBoard folder for the text summaries, or None.
        stream: where to print (default: stdout).
    """

    def __init__(self, inputs, references, vocab, max_length=16, shown=3, log_dir=None, stream=None):
        super().__init__()
        self.inputs = inputs
        self.references = references
        self.vocab = vocab
        self.max_length = max_length
        self.shown = shown
        self.log_dir = log_dir
        self.stream = stream
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        from kcaption.evaluation.metrics import caption_scores

        ids = np.asarray(self.model.sample(self.inputs, max_length=self.max_length))
        captions = [self.vocab.decode(row) for row in ids]
        cider = caption_scores(self.references, captions, java=False)["cider"]  # no JVM each epoch
        if logs is not None:
            logs["val_cider"] = cider
        stream = self.stream or sys.stdout
        print(f"epoch {epoch + 1}: val CIDEr-D {cider:.3f} on {len(captions)} images; e.g.", file=stream)
        for caption, refs in list(zip(captions, self.references))[: self.shown]:
            print(f"  {caption!r}  (a reference: {refs[0]!r})", file=stream)
        if self.log_dir is not None:
            self._write_text(epoch, captions)

    def _write_text(self, epoch, captions):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(Path(self.log_dir) / "samples"))
        lines = [f"| {c} | {refs[0]} |" for c, refs in zip(captions[: 3 * self.shown], self.references)]
        table = "| generated | a reference |\n|---|---|\n" + "\n".join(lines)
        with self._writer.as_default():
            tf.summary.text("val_samples", table, step=epoch)
        self._writer.flush()


class Backup(keras.callbacks.BackupAndRestore):
    """Keras's `BackupAndRestore`, keeping the two last backups, for runs killed while writing one.

    A SIGKILL (or a full disk) during a save leaves a backup that does not read
    back ("bad object header version number"): the previous one is then
    restored (Keras's `double_checkpoint`). When there is none (killed during
    the first epoch's backup), the run starts over from epoch 1, with a
    warning, rather than stopping.
    """

    def __init__(self, backup_dir, save_freq="epoch"):
        super().__init__(backup_dir, save_freq=save_freq, double_checkpoint=True)

    def on_train_begin(self, logs=None):
        import shutil
        import warnings

        from kcaption.errors import KcaptionWarning

        try:
            super().on_train_begin(logs)
        except (OSError, ValueError, KeyError) as error:
            warnings.warn(
                f"{self.backup_dir}: the backup was cut off while being written ({error}), and there is no "
                "earlier one: training starts over from epoch 1.",
                KcaptionWarning,
                stacklevel=2,
            )
            shutil.rmtree(self.backup_dir, ignore_errors=True)
            self.model._initial_epoch = 0


def run_callbacks(out, samples=None, monitor="val_loss", patience=None, backup_every=None):
    """The callbacks of a run in folder `out` (see `kcaption.runs` for what each writes).

    Args:
        out: the run folder.
        samples: a `SampleCaptions`, or None.
        monitor: what `best.keras` and early stopping go by: "val_loss" (lower
            is better) or "val_cider" (higher; needs `samples`).
        patience: epochs without improvement before stopping early; None: never.
        backup_every: also back up every this many batches (default: each epoch's end only).
    """
    if monitor not in ("val_loss", "val_cider"):
        raise ValueError(f"`monitor` must be 'val_loss' or 'val_cider'. Received: monitor={monitor!r}")
    if monitor == "val_cider" and samples is None:
        raise ValueError("monitor='val_cider' needs the SampleCaptions callback that computes it.")
    out = Path(out)
    mode = "min" if monitor == "val_loss" else "max"
    callbacks = [] if samples is None else [samples]
    # The backup goes last: a run killed after an epoch's other files but before its backup redoes that
    # epoch, and `read_history` keeps the epoch's last row.
    callbacks += [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        keras.callbacks.ModelCheckpoint(str(out / "best.keras"), monitor=monitor, mode=mode, save_best_only=True),
        keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False, profile_batch=0),
    ]
    if patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience))
    return callbacks + [Backup(str(out / runs.BACKUP), save_freq=backup_every or "epoch")]


def read_history(out):
    """{metric: [value per epoch]} from the run's history.csv, one value per epoch (the last written wins)."""
    import csv

    path = Path(out) / "history.csv"
    if not path.is_file():
        return {}
    rows = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            if row.get("epoch", "").isdigit():
                rows[int(row["epoch"])] = row
    history = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            if key != "epoch" and value not in ("", None):
                history.setdefault(key, []).append(float(value))
    return history
