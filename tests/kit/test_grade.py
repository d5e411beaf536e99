"""The autograder: full marks for the solutions, and hostile submissions handled.

Submissions are built from a copy of the repo's kcaption/: `splice.fill_in`
puts every reference body in (a perfect student), then one step is replaced
by a hostile body. Each hostile case checks: that step scores 0 with a clear
message, results.json is valid, and (for one case) the other steps are still
graded.
"""

import inspect
import json
import shutil
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from kcaption import steps
from kcaption.grading import grade, layout, results, splice

REPO = Path(__file__).resolve().parents[2]
TESTED = [s for s in steps.all_steps() if layout.test_files_for(s.id)]
# Hostile bodies wrap the reference, so the target must return float tensors.
NUMERIC = ["attention.dot_product", "rnn.cell", "lstm.cell", "embedding.forward", "attention.lstm_cell"]
TARGET = next(s for i in NUMERIC for s in TESTED if s.id == i)
OTHER = next(s for s in TESTED if s.path != TARGET.path)


@pytest.fixture(scope="module")
def solution_submission(tmp_path_factory):
    """A folder holding kcaption/ with every step filled in with its reference body."""
    folder = tmp_path_factory.mktemp("perfect")
    shutil.copytree(REPO / "kcaption", folder / "kcaption", ignore=shutil.ignore_patterns("__pycache__"))
    splice.fill_in(folder / "kcaption")
    return folder


def _hostile(submission, tmp_path, body, module_code=""):
    """A copy of `submission` whose TARGET step runs `body`, after `result = <the reference's result>`.

    The reference is inlined (as `_reference`), since the grader hides the
    reference of the step it grades.
    """
    folder = tmp_path / "hostile"
    shutil.copytree(submission, folder)
    params = inspect.signature(TARGET.stub).parameters.values()
    forward = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.name}" for p in params)
    name = TARGET.qualname.split(".")[-1]
    source = (
        f"def {name}{inspect.signature(TARGET.stub)}:\n"
        f"    import keras\n"
        f"    result = _reference({forward})\n"
        + "".join(f"    {line}\n" for line in body.splitlines())
    )
    path = folder / TARGET.path
    splice.replace_function(path, TARGET.qualname, source)
    reference = textwrap.dedent(splice.reference_source(TARGET)).replace(f"def {name}(", "def _reference(", 1)
    path.write_text(path.read_text() + "\n\n" + reference + module_code)
    return folder


def _grade(submission, tmp_path, only, timeout=240):
    out = tmp_path / "results.json"
    data = grade.grade(submission, out, timeout, only=[s.id for s in only])
    on_disk = json.loads(out.read_text())
    results.validate(on_disk)
    assert on_disk == data
    return data


def _score(data, step):
    entries = [t for t in data["tests"] if t["name"].startswith(f"[{step.id}]")]
    assert entries, f"no entry for {step.id} in results.json"
    return sum(t["score"] for t in entries), "\n".join(t["name"] + ": " + t["output"] for t in entries)


@pytest.mark.slow
def test_solutions_get_full_marks(solution_submission, tmp_path):
    """Zipped, as students often submit: the zip holds the kcaption/ folder."""
    archive = tmp_path / "submission.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in (solution_submission / "kcaption").rglob("*.py"):
            z.write(path, path.relative_to(solution_submission))
    start = time.monotonic()
    data = _grade(archive, tmp_path, TESTED)
    seconds = time.monotonic() - start
    print(f"\ngrading a full submission ({len(TESTED)} steps) took {seconds:.0f} s")
    lost = [f"{t['name']}: {t['output']}" for t in data["tests"] if t["score"] < t["max_score"]]
    assert not lost, data["output"] + "\n" + "\n".join(lost)
    assert data["score"] == pytest.approx(sum(s.points for s in TESTED)), data["output"]
    hidden = [t for t in data["tests"] if "hidden test" in t["name"]]
    assert all(t["visibility"] == "after_published" for t in hidden)
    names = {t["name"] for t in data["tests"]}
    assert len(names) == len(data["tests"]), "test names in results.json must be unique"


def test_syntax_error_costs_its_step_only(solution_submission, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(solution_submission, folder)
    path = folder / TARGET.path
    path.write_text(path.read_text() + "\ndef oops(:\n")
    data = _grade(folder, tmp_path, [TARGET, OTHER])
    got, detail = _score(data, TARGET)
    assert got == 0 and "Syntax error" in detail and TARGET.path in detail, detail
    got, detail = _score(data, OTHER)
    assert got == pytest.approx(OTHER.points, abs=1e-3), detail


@pytest.mark.parametrize(
    "case, body, module_code, message",
    [
        ("import error", "return result", "\nimport kcaption_no_such_module\n", "kcaption_no_such_module"),
        ("infinite loop", "while True:\n    pass", "", "Timed out"),
        ("prints megabytes", "print('x' * 2**20 * 32)\nreturn result", "", "Too much output"),
        ("returns NaN", "return keras.tree.map_structure(lambda t: t * float('nan'), result)", "", "NaN"),
        ("wrong shapes", "return keras.tree.map_structure(lambda t: t[..., :-1], result)", "", "shape"),
    ],
)
def test_hostile_body_scores_zero_with_a_message(solution_submission, tmp_path, case, body, module_code, message):
    submission = _hostile(solution_submission, tmp_path, body, module_code)
    timeout = 15 if case == "infinite loop" else 240
    data = _grade(submission, tmp_path, [TARGET], timeout)
    got, detail = _score(data, TARGET)
    assert got == 0, f"{case}: expected 0 for {TARGET.id}, got {got}:\n{detail}"
    assert message.lower() in detail.lower(), f"{case}: the message should say {message!r}:\n{detail}"
    assert len(json.dumps(data)) < 200_000, "results.json must stay small"


def test_calling_the_reference_gets_nothing(solution_submission, tmp_path):
    folder = tmp_path / "cheat"
    shutil.copytree(solution_submission, folder)
    params = inspect.signature(TARGET.stub).parameters.values()
    forward = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.name}" for p in params)
    splice.replace_function(folder / TARGET.path, TARGET.qualname, (
        f"def {TARGET.qualname.split('.')[-1]}{inspect.signature(TARGET.stub)}:\n"
        f"    from kcaption import steps\n"
        f"    return steps.get_step({TARGET.id!r}).solution()({forward})\n"))
    got, detail = _score(_grade(folder, tmp_path, [TARGET]), TARGET)
    assert got == 0 and "not available while it is graded" in detail, detail


def test_rewriting_the_tests_is_detected(solution_submission, tmp_path):
    """Module code that replaces the step's tests by passing ones, with a wrong body: 0, tampering."""
    fake = f'import pytest\\n\\n@pytest.mark.step("{TARGET.id}")\\ndef test_fine():\\n    pass\\n'
    module_code = (
        "\nfrom pathlib import Path as _Path\n"
        f"_root = _Path(__file__).resolve().parents[{len(Path(TARGET.path).parts) - 1}]\n"
        "for _test in (_root / 'tests').rglob('test_*.py'):\n"
        f"    _test.write_text('{fake}')\n"
    )
    submission = _hostile(solution_submission, tmp_path, "return None", module_code)
    got, detail = _score(_grade(submission, tmp_path, [TARGET]), TARGET)
    assert got == 0 and "changed files" in detail and "tests/" in detail, detail


def test_untouched_stubs_and_missing_package(tmp_path):
    handout = tmp_path / "handout"
    shutil.copytree(REPO / "kcaption", handout / "kcaption", ignore=shutil.ignore_patterns("__pycache__"))
    data = _grade(handout, tmp_path, steps.all_steps())
    assert data["score"] == 0
    assert all("Not implemented" in t["name"] for t in data["tests"]), data["output"]
    empty = tmp_path / "empty"
    empty.mkdir()
    data = _grade(empty, tmp_path, steps.all_steps())
    assert data["score"] == 0 and "Submit your kcaption/ folder" in data["tests"][0]["output"]


def test_finds_the_package_wherever_it_is(tmp_path):
    wanted = Path(steps.all_steps()[0].path)
    for layout_, package in [("kcaption", "kcaption"), ("nested/deeper/kcaption", "nested/deeper/kcaption"), ("", "")]:
        root = tmp_path / f"case{len(layout_)}"
        (root / package / wanted.relative_to("kcaption")).parent.mkdir(parents=True)
        (root / package / wanted.relative_to("kcaption")).write_text("")
        assert grade.find_package(root, tmp_path / "scratch") == root / package


def test_zip_slip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../outside.py", "x = 1")
    with pytest.raises(grade.SubmissionError, match="outside"):
        grade.find_package(archive, tmp_path / "scratch")


def test_results_are_validated():
    good = results.results([results.test_entry("t", 1, 1, "ok")], 1)
    results.validate(good)
    for bad in (
        {**good, "score": float("nan")},
        {**good, "tests": [{**good["tests"][0], "visibility": "secret"}]},
        {**good, "tests": [{"name": "t"}]},
    ):
        with pytest.raises(ValueError, match="Received"):
            results.validate(bad)
    assert len(results.truncate("x" * 10**6)) < results.MAX_OUTPUT + 100
