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
    """`python -m kcaption ARGS` started in the background (the switch KCAPTION_SOLUTIONS is inherited)."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "kcaption", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env, **kwargs)


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
