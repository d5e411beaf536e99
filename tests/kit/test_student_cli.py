"""The CLI in a student checkout whose steps are still stubs (instructor-only: a handout cannot make stubs)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kcaption import steps

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args):
    """Run `python -m kcaption ARGS` with every graded step on the checkout's stub."""
    env = {**os.environ, steps.SOLUTIONS_ENV: "0", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "kcaption", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


def test_demo_stops_early_on_stubs_naming_the_steps(tmp_path):
    result = run_cli("demo", "--small", "--out", str(tmp_path / "demo"))
    assert result.returncode == 2, result.stderr[-2000:]
    for step_id in ["embedding.forward", "lstm.cell", "captioner.forward", "captioner.sample"]:
        assert step_id in result.stderr, result.stderr
    assert not (tmp_path / "demo" / "model.keras").exists()


def test_demo_names_the_command_that_was_run_and_how_to_test_a_step(tmp_path):
    result = run_cli("demo", "--small", "--out", str(tmp_path / "demo"))
    assert result.returncode == 2
    assert result.stderr.startswith("kcaption demo --model lstm needs graded steps"), result.stderr
    assert "pytest --step-id " in result.stderr


def saved_lstm(folder):
    """A small untrained LSTM captioner saved as `kcaption train` saves one (built on the reference steps)."""
    from kcaption.data import Vocabulary
    from kcaption.models import build_captioner

    vocab = Vocabulary.build(["a red circle", "a blue square"])
    with steps.solutions(True):
        model = build_captioner("lstm", len(vocab), embed_dim=8, hidden_dim=8)
        model((np.zeros((1, 64, 64, 3), "float32"), np.ones((1, 4), "int32")))
    folder.mkdir()
    model.save(folder / "model.keras")
    vocab.save(folder / "vocab.json")
    return folder / "model.keras"


@pytest.mark.parametrize("command, missing", [
    (["caption"], ["captioner.sample", "lstm.cell", "data.decode_captions"]),
    (["evaluate"], ["captioner.sample", "lstm.cell", "loss.temporal_softmax"]),
])
def test_caption_and_evaluate_check_their_steps_first(tmp_path, capsys, command, missing):
    from kcaption.cli import main

    model_path = saved_lstm(tmp_path / "run")
    Image.fromarray(np.full((64, 64, 3), 230, np.uint8)).save(tmp_path / "a.png")
    args = [*command, str(model_path)] + ([str(tmp_path / "a.png")] if command == ["caption"] else [])
    with steps.solutions(False):
        code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"kcaption {command[0]} with a saved lstm model needs graded steps"), err
    assert "Traceback" not in err and "TODO " not in err and "pytest --step-id " in err
    for step_id in missing:
        assert step_id in err
