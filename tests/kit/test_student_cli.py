"""The CLI in a student checkout whose steps are still stubs (instructor-only: a handout cannot make stubs)."""

import os
import subprocess
import sys
from pathlib import Path

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
