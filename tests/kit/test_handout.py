"""The released handout as students meet it (instructor-only, slow: CI runs it).

A handout is released (`kcaption release`), one copy is solved (`kcaption
solve`: a perfect student) and set up from its own README's commands, in a
virtual environment of its own. Then, with that environment:

- the solved handout's plain `pytest` passes completely (nothing skipped);
- every lesson notebook runs top to bottom at its full, student-facing
  settings, in the solved handout, every assertion in it holds, and it
  shows no TensorFlow start-up line and no warning;
- the untouched handout's `pytest` fails only on graded tests, each failure
  naming the step to implement, and skips the rest naming the step they need.

The executed notebooks are kept in the test's tmp folder (pictures included)
for a look.
"""

import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kcaption import steps
from kcaption.grading.release import release
from kcaption.grading.solve import solve
from kcaption.quiet import is_startup_line

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# TensorFlow's C++ log lines (severity, date, time, thread, file:line]), at start-up or later.
CPP_LOG = re.compile(r"[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] ")
LESSONS = sorted(p.name for p in (REPO / "lessons").glob("*.ipynb"))


def setup_commands(readme):
    """The pip set-up block of the handout's README (the commands a student types)."""
    found = re.search(r"```bash\n(.*?python -m venv.*?)```", readme, re.S)
    assert found, "the handout README has no ```bash block with the pip set-up commands"
    return found.group(1)


def fresh_shell_env():
    """This process's environment without the kit's switches, Python settings or virtual environment."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("KCAPTION_", "PYTHON", "VIRTUAL_ENV"))}


def student_env(venv):
    """The environment of a student's shell after `source .venv/bin/activate`: no kit switches."""
    env = fresh_shell_env()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    """(untouched handout, solved handout, the solved handout's venv)."""
    root = tmp_path_factory.mktemp("handout")
    release(root / "release")
    untouched = root / "release" / "student"
    solved = solve(root / "solved", handout=untouched)
    # The README's commands, as typed: `python` is whatever Python the student has.
    shim = root / "bin"
    shim.mkdir()
    (shim / "python").symlink_to(shutil.which("python3") or sys.executable)
    env = fresh_shell_env()
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    script = "set -euo pipefail\n" + setup_commands((solved / "README.md").read_text())
    start = time.perf_counter()
    done = subprocess.run(["bash", "-c", script], cwd=solved, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"the handout's set-up commands failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    print(f"handout set-up: {time.perf_counter() - start:.0f} s")
    return untouched, solved, solved / ".venv"


def run_pytest(folder, venv, junit):
    env = student_env(venv)
    env["PYTHONPATH"] = str(folder)  # the folder's own kcaption/, not the solved copy the venv installed
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
         "-o", "junit_family=legacy"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=3600,
    )


def outcomes(junit):
    """{test id: (outcome, message)} from a JUnit report."""
    results = {}
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kind = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        results[name] = ("passed", "") if kind is None else (kind.tag, (kind.get("message") or "") + (kind.text or ""))
    return results


def test_the_tools_the_readme_names_are_installed(handout):
    _, solved, venv = handout
    env = student_env(venv)
    for command in (["jupyter", "lab", "--version"], ["kcaption", "steps"]):
        done = subprocess.run(command, cwd=solved, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"`{' '.join(command)}` fails in the handout's environment: {done.stderr[-1500:]}"
    assert "TODO" not in done.stdout, f"`kcaption steps` in the solved handout still lists a TODO:\n{done.stdout}"


def test_solved_handout_passes_its_own_pytest(handout, tmp_path):
    _, solved, venv = handout
    done = run_pytest(solved, venv, tmp_path / "solved.xml")
    results = outcomes(tmp_path / "solved.xml")
    bad = {name: message[:300] for name, (outcome, message) in results.items() if outcome != "passed"}
    assert done.returncode == 0 and not bad, f"a perfect student's handout does not pass its own pytest: {bad}\n" \
                                             f"{done.stdout[-3000:]}"
    assert len(results) > 100, done.stdout[-2000:]


def test_untouched_handout_fails_only_on_graded_steps(handout, tmp_path):
    untouched, _, venv = handout
    run_pytest(untouched, venv, tmp_path / "untouched.xml")
    known = {s.id for s in steps.all_steps()}
    named = set()
    for name, (outcome, message) in outcomes(tmp_path / "untouched.xml").items():
        todo = set(re.findall(r"TODO ([\w.]+):", message)) & known
        if outcome in ("failure", "error"):
            assert todo, f"{name} fails in the untouched handout without naming a step to implement:\n{message[:1500]}"
            named |= todo
        elif outcome == "skipped":
            assert re.search(r"needs graded step [\w.]+", message), f"{name} is skipped without saying why: {message}"
    assert named == known, f"no failing test names these steps: {sorted(known - named)}"


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_runs_at_full_size_in_the_solved_handout(handout, lesson, tmp_path):
    _, solved, venv = handout
    executed = tmp_path / lesson
    start = time.perf_counter()
    done = subprocess.run(
        [str(venv / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute", f"lessons/{lesson}",
         "--output", str(executed), "--ExecutePreprocessor.timeout=1200"],
        cwd=solved, env=student_env(venv), capture_output=True, text=True, timeout=1800,
    )
    print(f"{lesson}: {time.perf_counter() - start:.0f} s at full size -> {executed}")
    assert done.returncode == 0, f"{lesson} fails at full size in a solved handout:\n{done.stderr[-4000:]}"
    noise = [f"cell {i}: {line}" for i, line in stderr_lines(executed)
             if is_startup_line(line) or CPP_LOG.match(line) or re.search(r"\w*Warning\b", line)]
    assert not noise, f"{lesson} shows TensorFlow start-up lines or warnings to students:\n" + "\n".join(noise[:20])


def stderr_lines(notebook):
    """(cell index, line) of everything an executed notebook printed to stderr."""
    import nbformat

    for i, cell in enumerate(nbformat.read(notebook, as_version=4).cells):
        for output in cell.get("outputs", []):
            if output.get("name") == "stderr":
                yield from ((i, line) for line in output["text"].splitlines())
