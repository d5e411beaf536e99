"""Runs that survive: the run folder's states, SIGKILL then --resume, Ctrl-C, and what a partial run may not claim."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kcaption import runs, steps
from kcaption.errors import ExistingOutputError, InputError, MissingFileError

REPO = Path(__file__).resolve().parents[2]


def kcaption(*args, **kwargs):
    """`python -m kcaption ARGS` started in the background (the switch KCAPTION_SOLUTIONS is inherited).

    With Ctrl-C's signal as a terminal delivers it: a test run started in the background by a
    non-interactive shell (CI) inherits SIGINT ignored, and Python then installs no handler for it.
    """
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "kcaption", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def epochs_logged(out):
    """The epoch numbers of history.csv's rows, in file order."""
    path = out / "history.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file) if row.get("epoch", "").isdigit()]


def wait_for(condition, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended first (exit {process.returncode}): {process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.05)


def test_the_states_of_a_run_folder_and_what_train_may_do_with_each(tmp_path):
    out = tmp_path / "run"
    assert runs.state(out) == "new"
    runs.check_out(out)  # a new folder: fine
    with pytest.raises(MissingFileError, match="no run to continue"):
        runs.check_out(out, resume=True)

    out.mkdir()
    runs.write_config(out, {"model": "lstm"})
    assert runs.state(out) == "partial"
    with pytest.raises(ExistingOutputError, match="unfinished run: pass --resume"):
        runs.check_out(out)
    runs.check_out(out, resume=True)
    runs.check_out(out, force=True)
    with pytest.raises(InputError, match="pass one of them"):
        runs.check_out(out, force=True, resume=True)

    runs.finish(out, epochs_run=3)
    assert runs.state(out) == "finished"
    with pytest.raises(ExistingOutputError, match="finished run; pass --force"):
        runs.check_out(out)
    with pytest.raises(ExistingOutputError, match="nothing to continue"):
        runs.check_out(out, resume=True)
    runs.check_out(out, force=True)
    config = json.loads((out / runs.CONFIG).read_text())
    assert config["settings"] == {"model": "lstm"} and {"tensorflow", "keras", "kcaption"} <= set(config["versions"])

    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExistingOutputError, match=r"not a run's \(notes.txt\)"):
        runs.check_out(out, force=True)


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_and_ends_with_the_epochs_asked_for(tmp_path):
    steps.require(["lstm.cell", "captioner.forward", "loss.temporal_softmax", "captioner.sample"], "this test")
    out = tmp_path / "run"
    first = kcaption("train", "--small", "--epochs", "5", "--out", out)
    wait_for(lambda: (out / runs.BACKUP).is_dir() and epochs_logged(out), first)
    first.send_signal(signal.SIGKILL)  # no clean-up of any kind
    first.communicate()
    done = epochs_logged(out)
    assert runs.state(out) == "partial" and not (out / "metrics.json").exists(), "a killed run looks finished"
    assert 1 <= len(done) < 5, f"killed too late to test resuming: {done}"

    if (out / "best.keras").is_file():  # a model of an unfinished run: evaluate says so
        evaluation = kcaption("evaluate", out / "best.keras", "--split", "val", "--out", tmp_path / "eval")
        _, err = evaluation.communicate(timeout=300)
        assert evaluation.returncode == 0 and "warning: " in err and "from an unfinished run" in err, err[-2000:]

    again = kcaption("train", "--out", out)  # neither --resume nor --force: refused, nothing touched
    _, err = again.communicate(timeout=120)
    assert again.returncode == 2 and "unfinished run: pass --resume" in err, err

    resumed = kcaption("train", "--out", out, "--resume")
    stdout, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert "resuming" in stdout
    assert sorted(set(epochs_logged(out))) == [0, 1, 2, 3, 4], epochs_logged(out)
    assert runs.state(out) == "finished" and not (out / runs.BACKUP).exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["epochs"], metrics["epochs_run"]) == (5, 5)
    for name in ("model.keras", "best.keras", "results.json", "loss_curve.png"):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_ctrl_c_stops_with_one_line_saying_how_to_resume_and_claims_nothing(tmp_path):
    steps.require(["lstm.cell", "captioner.forward", "loss.temporal_softmax", "captioner.sample"], "this test")
    out = tmp_path / "run"
    run = kcaption("train", "--small", "--epochs", "40", "--out", out)
    wait_for(lambda: (out / runs.BACKUP / "training_metadata.json").is_file(), run)  # an epoch backed up
    run.send_signal(signal.SIGINT)
    stdout, err = run.communicate(timeout=120)
    assert run.returncode == 130, (run.returncode, err[-3000:])
    assert "Traceback" not in err and "Segmentation" not in err and "free()" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("kcaption train: interrupted; the last checkpoint"), lines[-3:]
    assert f"kcaption train --out {out} --resume" in lines[-1]
    assert not (out / "metrics.json").exists() and runs.state(out) == "partial"
    assert (out / runs.BACKUP / "training_metadata.json").is_file(), "Ctrl-C deleted the backup to resume from"


def test_the_run_callbacks_go_by_what_monitor_says_and_sample_captions_come_first(tmp_path):
    import keras

    from kcaption.callbacks import SampleCaptions, run_callbacks

    with pytest.raises(ValueError, match="needs the SampleCaptions callback"):
        run_callbacks(tmp_path, monitor="val_cider")
    samples = SampleCaptions(None, [], vocab=None)
    callbacks = run_callbacks(tmp_path, samples, monitor="val_cider", patience=3)
    assert callbacks[0] is samples, "val_cider must be in the logs before the callbacks that read it"
    best = [c for c in callbacks if isinstance(c, keras.callbacks.ModelCheckpoint)]
    stop = [c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)]
    assert len(best) == 1 and best[0].monitor == "val_cider" and best[0].save_best_only
    assert len(stop) == 1 and (stop[0].monitor, stop[0].patience) == ("val_cider", 3)
    assert best[0].mode == stop[0].mode == "max", "a higher CIDEr-D is an improvement"
    assert isinstance(callbacks[-1], keras.callbacks.BackupAndRestore), "the backup is written last"
    assert not [c for c in run_callbacks(tmp_path) if isinstance(c, keras.callbacks.EarlyStopping)]


def test_history_keeps_one_row_per_epoch_the_last_written(tmp_path):
    from kcaption.callbacks import read_history

    # A run killed after an epoch's row but before its backup redoes that epoch and writes it again.
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n0,5.0,6.0\n1,4.0,5.5\n1,3.9,5.4\n2,3.5,5.0\n")
    assert read_history(tmp_path) == {"loss": [5.0, 3.9, 3.5], "val_loss": [6.0, 5.4, 5.0]}


def test_sample_captions_puts_val_cider_in_the_logs_and_writes_them_to_tensorboard(tmp_path):
    import numpy as np

    from kcaption.callbacks import SampleCaptions
    from kcaption.data import Vocabulary
    from kcaption.evaluation.metrics import caption_scores
    from kcaption.models import build_captioner

    steps.require(["lstm.cell", "captioner.forward", "captioner.sample", "data.decode_captions"], "this test")
    vocab = Vocabulary.build(["a red square", "a blue circle"])
    model = build_captioner("lstm", len(vocab), backbone=None, embed_dim=4, hidden_dim=6)
    features = np.linspace(-1, 1, 2 * 5, dtype="float32").reshape(2, 5)
    model((features, np.ones((2, 3), "int32")))
    references = [["a red square"], ["a blue circle"]]
    callback = SampleCaptions(features, references, vocab, max_length=4, log_dir=tmp_path / "logs", stream=open(
        tmp_path / "printed.txt", "w"))
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    captions = [vocab.decode(row) for row in np.asarray(model.sample(features, max_length=4))]
    assert logs["val_cider"] == pytest.approx(caption_scores(references, captions, java=False)["cider"])
    assert list((tmp_path / "logs" / "samples").glob("events.out.tfevents.*")), "no TensorBoard text summary"
