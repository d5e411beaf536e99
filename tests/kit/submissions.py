"""Submissions for testing the grader (instructor-only): a perfect one, and hostile copies of it.

`splice.fill_in` turns a copy of kcaption/ into what a perfect student would
submit; `hostile(body, module_code)` then replaces one numeric step (TARGET)
by a body that first computes `result` with the inlined reference (the grader
hides the reference of the step it grades) and then runs `body`.
"""

import inspect
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from kcaption import steps
from kcaption.grading import grade, jail, layout, results, splice

REPO = Path(__file__).resolve().parents[2]
TESTED = [s for s in steps.all_steps() if layout.test_files_for(s.id)]
# Hostile bodies wrap the reference, so the target must return float tensors.
NUMERIC = ["rnn.cell", "lstm.cell", "attention.dot_product", "embedding.forward", "attention.lstm_cell"]
TARGET = next(s for i in NUMERIC for s in TESTED if s.id == i)
OTHER = next(s for s in TESTED if s.path != TARGET.path)
SANDBOX_UIDS = [grade.FIRST_UID + i for i in range(len(steps.all_steps()))]


@pytest.fixture(scope="session")
def solution_submission(tmp_path_factory):
    """A folder holding kcaption/ with every step filled in with its reference body."""
    folder = tmp_path_factory.mktemp("perfect")
    shutil.copytree(REPO / "kcaption", folder / "kcaption", ignore=shutil.ignore_patterns("__pycache__"))
    splice.fill_in(folder / "kcaption")
    return folder


def forward_call(step):
    """`name(a, b=b, ...)`: the call that forwards a step's own arguments."""
    params = inspect.signature(step.stub).parameters.values()
    return ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.name}" for p in params)


@pytest.fixture
def hostile(solution_submission, tmp_path):
    """`hostile(body, module_code="", step=TARGET)`: a copy of the perfect submission with a hostile step."""

    def make(body, module_code="", step=TARGET):
        folder = tmp_path / f"hostile-{len(list(tmp_path.glob('hostile-*')))}"
        shutil.copytree(solution_submission, folder)
        name = step.qualname.split(".")[-1]
        source = (
            f"def {name}{inspect.signature(step.stub)}:\n"
            f"    import keras\n"
            f"    result = _reference({forward_call(step)})\n"
            + "".join(f"    {line}\n" for line in textwrap.dedent(body).splitlines())
        )
        path = folder / step.path
        splice.replace_function(path, step.qualname, source)
        reference = textwrap.dedent(splice.reference_source(step)).replace(f"def {name}(", "def _reference(", 1)
        path.write_text(path.read_text() + "\n\n" + reference + textwrap.dedent(module_code))
        return folder

    return make


@pytest.fixture
def grade_run(tmp_path):
    """`grade_run(submission, only, timeout=240, **options)`: grade, check results.json, and check the machine is clean."""

    def run(submission, only, timeout=240, **options):
        out = tmp_path / "results" / "results.json"
        data = grade.grade(submission, out, timeout, only=[s.id for s in only], **options)
        on_disk = json.loads(out.read_text())
        results.validate(on_disk)
        assert on_disk == data
        assert data["score"] <= sum(t["max_score"] for t in data["tests"]) + 1e-9
        alive = {uid: jail.processes_of(uid) for uid in SANDBOX_UIDS}
        assert not any(alive.values()), f"sandbox processes outlived the grader: {alive}"
        assert not list(grade.WORK_ROOT.glob("grade-*")), "the grader left its work folder behind"
        strays = [p for uid in SANDBOX_UIDS for p in jail.stray_files(uid)]
        assert not strays, f"sandbox users left files behind: {strays[:5]}"
        return data

    return run


def score(data, step):
    """(points, "name: output" lines) of `step` in a results.json document."""
    entries = [t for t in data["tests"] if t["name"].startswith(f"[{step.id}]")]
    assert entries, f"no entry for {step.id} in results.json"
    return sum(t["score"] for t in entries), "\n".join(t["name"] + ": " + t["output"] for t in entries)
