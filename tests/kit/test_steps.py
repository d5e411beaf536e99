"""The graded-step contract (instructor side: this file is not in the handout).

- every stub and its reference body have the same signature;
- every stub is really a stub and raises NotImplementedError naming its step;
- every step is graded by public and hidden tests, which pass on the
  solutions (the rest of this suite) and fail on the stubs (`pytest --stubs`);
- the solutions switch and `require` behave as documented.
"""

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kcaption import steps

REPO = Path(__file__).resolve().parents[2]
ALL = steps.all_steps()
IDS = [s.id for s in ALL]


def test_there_are_graded_steps():
    assert ALL, "no graded step is registered: is @graded used in kcaption/?"
    assert len(IDS) == len(set(IDS))


@pytest.mark.parametrize("step", ALL, ids=IDS)
def test_stub_and_solution_have_the_same_signature(step):
    stub = inspect.signature(step.stub)
    solution = inspect.signature(step.solution())
    assert stub == solution, (
        f"{step.id}: the stub in {step.path} is {step.qualname}{stub}, "
        f"the solution is {solution}. They must match exactly."
    )


@pytest.mark.parametrize("step", ALL, ids=IDS)
def test_stub_raises_not_implemented_naming_the_step(step):
    assert step.is_todo, f"{step.id}: {step.path} holds a body, not a stub. Move it to solutions/."
    params = inspect.signature(step.stub).parameters.values()
    args = [None for p in params if p.default is inspect.Parameter.empty and p.kind <= p.POSITIONAL_OR_KEYWORD]
    with pytest.raises(NotImplementedError, match=step.id.replace(".", r"\.")):
        step.stub(*args)


@pytest.mark.parametrize("step", ALL, ids=IDS)
def test_step_has_docstring_with_hints(step):
    doc = inspect.getdoc(step.stub) or ""
    assert len(doc.splitlines()) >= 3, f"{step.id}: the stub needs a docstring with the math and hints."


def _graded_test_ids(folder):
    """Which steps the tests under `folder` grade, read from their markers."""
    found = set()
    for path in folder.glob("test_*.py"):
        text = path.read_text()
        found.update(s.id for s in ALL if f'step("{s.id}")' in text)
    return found


@pytest.mark.parametrize("kind", ["public", "hidden"])
def test_every_step_is_graded(kind):
    folder = REPO / "tests" / ("hidden" if kind == "hidden" else "")
    missing = set(IDS) - _graded_test_ids(folder)
    assert not missing, f"no {kind} test is marked @pytest.mark.step(...) for: {sorted(missing)}"


def test_every_hidden_test_grades_a_step():
    """CI runs the hidden tests only inside full-marks grading (tests/kit/conftest.py), which runs each step's
    tests: a hidden test that graded no step would run nowhere."""
    def collected(*options):
        result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                 "tests/hidden", *options], capture_output=True, text=True, cwd=REPO,
                                env={**os.environ, "CI": ""})
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return {line for line in result.stdout.splitlines() if "::" in line}

    every = collected()
    graded = collected(*[option for step_id in IDS for option in ("--step-id", step_id)])
    assert every and every == graded, f"hidden tests that grade no step: {sorted(every - graded)}"


def _marked_tests():
    """(file, test node) for every test function marked @pytest.mark.step, public and hidden."""
    for path in sorted((REPO / "tests").glob("test_*.py")) + sorted((REPO / "tests" / "hidden").glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any("mark.step" in ast.unparse(d) for d in node.decorator_list):
                yield path.relative_to(REPO), node


def test_every_graded_test_runs_student_code_only_through_the_sandbox():
    """A graded test that judges without `student.run` would judge the reference, not the student."""
    bad = []
    for path, node in _marked_tests():
        calls = [n for n in ast.walk(node) if isinstance(n, ast.Attribute) and n.attr == "run"
                 and isinstance(n.value, ast.Name) and n.value.id == "student"]
        if "student" not in [a.arg for a in node.args.args] or not calls:
            bad.append(f"{path}::{node.name}")
    assert not bad, "graded tests that never call student.run(scenario, ...):\n  " + "\n  ".join(bad)


def test_switch_picks_the_body():
    step = ALL[0]
    with steps.solutions(False):
        assert not steps.uses_reference(step.id)
    with steps.solutions(True):
        assert steps.uses_reference(step.id)
        with steps.solutions(True, student_steps={step.id}):
            assert not steps.uses_reference(step.id)


def test_environment_switch(monkeypatch):
    step = ALL[0]
    monkeypatch.setenv(steps.SOLUTIONS_ENV, "1")
    monkeypatch.setenv(steps.STUDENT_STEPS_ENV, "")
    assert steps.uses_reference(step.id)
    monkeypatch.setenv(steps.STUDENT_STEPS_ENV, f"other.step, {step.id}")
    assert not steps.uses_reference(step.id)
    monkeypatch.setenv(steps.SOLUTIONS_ENV, "0")
    monkeypatch.delenv(steps.STUDENT_STEPS_ENV)
    assert not steps.uses_reference(step.id)


def test_require_names_the_missing_steps_and_lessons():
    step = ALL[0]
    with steps.solutions(False):
        with pytest.raises(steps.StepsNotImplemented) as info:
            steps.require([step.id], "kcaption demo")
    message = str(info.value)
    assert step.id in message and step.path in message and step.lesson in message
    with steps.solutions(True):
        steps.require([step.id], "kcaption demo")  # no error


def test_missing_solutions_folder_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(steps.SOLUTIONS_DIR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="unset KCAPTION_SOLUTIONS"):
        ALL[0].solution()


def test_steps_command_lists_every_step():
    out = subprocess.run(
        [sys.executable, "-m", "kcaption.cli", "steps"],
        capture_output=True, text=True, check=True, cwd=REPO,
        env={**os.environ, steps.SOLUTIONS_ENV: "0"},
    ).stdout
    for step in ALL:
        assert step.id in out and step.lesson in out
    assert "TODO" in out and "points" in out


def test_graded_tests_fail_on_the_stubs():
    """Every test marked with a step must fail when that step is a stub."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--stubs", "-q", "-p", "no:cacheprovider",
         "-x", "tests", "--ignore=tests/kit"],
        capture_output=True, text=True, cwd=REPO,
    )
    tail = result.stdout[-3000:]
    assert result.returncode == 0, (
        "Some graded tests pass on the stub of the step they grade (XPASS(strict) below): "
        "such a test grades nothing.\n" + tail
    )
    assert "xfailed" in tail, tail


def test_unmarked_test_needing_a_stub_is_skipped_naming_the_step():
    """In a handout, a non-graded test that runs a stub says which step to implement."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/test_01_data.py::test_pipeline_first_and_random_captions"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, steps.SOLUTIONS_ENV: "0"},
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert "needs graded step data.decode_captions" in result.stdout and "1 skipped" in result.stdout
