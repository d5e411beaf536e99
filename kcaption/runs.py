"""A training run's folder: what it holds, and whether the run in it finished.

    config.json     every setting of the run and the library versions, written first
    vocab.json      its vocabulary, written before training (a resumed run reuses it)
    backup/         the last epoch's weights and optimizer state (Keras `BackupAndRestore`);
                    deleted when the run finishes
    best.keras      the model of the epoch with the best validation score (`ModelCheckpoint`)
    history.csv     one row per finished epoch (`CSVLogger`), across resumed runs
    logs/           TensorBoard logs: losses, metrics, sample captions as text
    model.keras     the trained model, at the end
    metrics.json    the held-out scores, at the end
    results.json    the held-out captions as a COCO results file, at the end
    loss_curve.png, samples.png, attention.png
    COMPLETE        written last: the run finished (its time and the epochs run)

A run is *new* (empty folder or none), *partial* (config.json and no COMPLETE:
interrupted, or still running) or *finished*. `kcaption train` refuses a
folder that holds either, unless `--resume` (a partial run) or `--force`
(replace it); `evaluate` and `caption` warn about a model from a partial run.
Why a marker written last rather than "model.keras exists": a run killed while
writing its last files leaves a model.keras with no metrics, or a metrics.json
that claims epochs from before a crash; only the marker says all of it is there.
"""

import datetime
import json
import platform
import shutil
from pathlib import Path

from kcaption.errors import ExistingOutputError, InputError, MissingFileError

CONFIG = "config.json"
MARKER = "COMPLETE"
BACKUP = "backup"
# What a run writes: `--force` replaces a folder that holds these and nothing else.
RUN_FILES = (
    CONFIG, "vocab.json", BACKUP, "best.keras", "history.csv", "logs", "model.keras", "metrics.json",
    "results.json", "loss_curve.png", "samples.png", "attention.png", MARKER,
)


def state(out):
    """"new", "partial" or "finished" (see the module docstring)."""
    out = Path(out)
    if (out / MARKER).is_file():
        return "finished"
    return "partial" if (out / CONFIG).is_file() else "new"


def check_out(out, force=False, resume=False):
    """Refuse an output folder before any work is done, unless it is what was asked for.

    Args:
        out: the run folder to write.
        force: a folder holding an earlier run (`RUN_FILES`, nothing else) is replaced.
        resume: a partial run is continued.

    Raises:
        UsageError: `out` is a file; holds files that are not a run's; holds a
            run and neither flag says what to do with it; or `resume` without a
            partial run to continue.
    """
    out = Path(out)
    if force and resume:
        raise InputError("--force starts the run over and --resume continues it: pass one of them.")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; expected a folder to write the run into. Pick another --out.")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    others = [name for name in held if name not in RUN_FILES]
    if held and others:
        raise ExistingOutputError(
            f"--out {out} holds files that are not a run's ({_some(others)}); "
            "pick another --out (--force replaces a run folder only)."
        )
    current = state(out)
    if resume:
        if current == "new":
            raise MissingFileError(f"--resume: {out} holds no run to continue (no {CONFIG}); drop --resume to start one.")
        if current == "finished":
            raise ExistingOutputError(
                f"--resume: the run in {out} has finished ({out / MARKER}); nothing to continue. "
                "Pass --force to train it again from the start, or pick another --out."
            )
        return
    if not held or force:
        return
    if current == "finished":
        raise ExistingOutputError(f"--out {out} holds a finished run; pass --force to replace it, or pick another --out.")
    if current == "partial":
        raise ExistingOutputError(
            f"--out {out} holds an unfinished run: pass --resume to continue it, --force to start it over, "
            "or pick another --out."
        )
    raise ExistingOutputError(
        f"--out {out} already holds files ({_some(held)}); pass --force to replace them, or pick another --out."
    )


def prepare(out, force=False):
    """Create `out` (checked by `check_out`), emptied of an earlier run's files when `force`."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"--out {out}: cannot create the folder ({error.strerror}). Pick another --out.") from None
    if force:
        for name in RUN_FILES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    return out


def versions():
    """The versions a run depends on, for config.json."""
    import keras
    import numpy
    import tensorflow

    import kcaption

    return {
        "kcaption": kcaption.__version__,
        "python": platform.python_version(),
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }


def write_config(out, settings):
    """config.json: the settings (a JSON-serialisable dict) and the library versions."""
    config = {"settings": settings, "versions": versions(), "started": _now()}
    (Path(out) / CONFIG).write_text(json.dumps(config, indent=2))
    return config


def read_config(out):
    """The settings config.json holds; an InputError naming the file when it is not a run's."""
    path = Path(out) / CONFIG
    try:
        config = json.loads(path.read_text())
        return dict(config["settings"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: not a kcaption run's config ({error}); start the run over with --force.") from None


def finish(out, epochs_run):
    """Write the COMPLETE marker: the last file of a finished run."""
    marker = {"finished": _now(), "epochs_run": epochs_run}
    (Path(out) / MARKER).write_text(json.dumps(marker) + "\n")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _some(names, shown=3):
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
