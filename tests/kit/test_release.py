"""`kcaption release`: the handout gives nothing away, the bundle grades.

The scan is independent of the release's own guard: for every graded step,
the reference body's normalised lines must appear nowhere in OUT/student, nor
any hidden test name, nor a solutions/ or instructor-only folder.
"""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kcaption import steps
from kcaption.grading import grade, release

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "out"
    release.release(out)
    return out


def _normalised(text):
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _student_texts(out):
    for path in sorted((out / "student").rglob("*")):
        if path.is_file():
            try:
                yield path, path.read_text()
            except UnicodeDecodeError:
                continue


def test_handout_layout(out):
    student = out / "student"
    for name in ("kcaption/steps.py", "tests/conftest.py", "pyproject.toml", "environment.yml", "README.md"):
        assert (student / name).is_file(), f"the handout lacks {name}"
    public = {p.name for p in (REPO / "tests").glob("test_*.py")}
    assert {p.name for p in (student / "tests").glob("test_*.py")} == public
    for folder in ("solutions", "tests/hidden", "tests/kit", "tests/mutants"):
        assert not (student / folder).exists(), f"{folder} must not be in the handout"
    assert not list(student.rglob("solutions")), "no solutions folder anywhere in the handout"
    readme = (student / "README.md").read_text()
    for step in steps.all_steps():
        assert step.id in readme and step.path in readme
    assert "{" not in readme.replace("{:", ""), "a template field was left unfilled"


def test_handout_holds_no_reference_body(out):
    texts = [(p, "\n" + "\n".join(_normalised(t)) + "\n") for p, t in _student_texts(out)]
    for step in steps.all_steps():
        body = "\n".join(release.reference_body(step))
        assert body, f"{step.id}: empty reference body"
        leaks = [str(p) for p, text in texts if f"\n{body}\n" in text]
        assert not leaks, f"the reference body of {step.id} is in {leaks}"


def test_handout_holds_no_hidden_test_name(out):
    names = set()
    for path in (REPO / "tests" / "hidden").glob("*.py"):
        names.add(path.stem)
        names.update(n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef))
    for path, text in _student_texts(out):
        found = [n for n in names if n.startswith("test") and n in text]
        assert not found, f"hidden test names {found} appear in {path}"


def test_lessons_have_no_outputs(out):
    for path in (out / "student" / "lessons").glob("*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        assert not [c for c in cells if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])]


def test_scanner_catches_a_planted_leak(out, tmp_path):
    step = steps.all_steps()[0]
    planted = tmp_path / "student"
    (planted / "notes").mkdir(parents=True)
    (planted / "notes" / "copied.py").write_text("    " + "\n    ".join(release.reference_body(step)) + "\n")
    (planted / "solutions").mkdir()
    leaks = release.find_leaks(planted)
    assert any(step.id in leak for leak in leaks) and any("solutions" in leak for leak in leaks), leaks


def test_existing_out_needs_force(out):
    with pytest.raises(FileExistsError, match="--force"):
        release.release(out)


def test_handout_grades_zero(out, tmp_path):
    data = grade.grade(out / "student", tmp_path / "results.json", 60)
    assert data["score"] == 0
    assert len(data["tests"]) == len(steps.all_steps())


def test_autograder_bundle_runs(out, tmp_path):
    bundle = out / "autograder"
    for name in ("setup.sh", "run_autograder"):
        assert os.access(bundle / name, os.X_OK), f"{name} must be executable"
    for name in ("solutions", "tests/hidden", "tests/conftest.py", "pyproject.toml"):
        assert (bundle / name).exists(), f"the bundle lacks {name}"
    assert not (bundle / "tests" / "kit").exists() and not (bundle / "tests" / "mutants").exists()
    assert (out / "autograder.zip").is_file()
    results_json = tmp_path / "results.json"
    subprocess.run(
        [str(bundle / "run_autograder"), str(out / "student"), str(results_json)],
        check=True, capture_output=True, env={**os.environ, "PYTHON": sys.executable},
    )
    data = json.loads(results_json.read_text())
    assert data["score"] == 0 and len(data["tests"]) == len(steps.all_steps())


def test_solve_fills_every_step_and_refuses_what_it_cannot_solve(out, tmp_path):
    from kcaption.grading.solve import solve

    solved = solve(tmp_path / "solved", handout=out / "student")
    for step in steps.all_steps():
        source = (solved / step.path).read_text()
        assert f"TODO {step.id}:" not in source, f"{step.id} is still a stub in the solved copy"
    assert (solved / "lessons").is_dir() and not (solved / "solutions").exists()
    assert (out / "student" / "kcaption" / "layers" / "lstm.py").read_text().count("TODO lstm.cell") == 1, \
        "solving must not touch the released handout"
    with pytest.raises(FileExistsError, match="--force"):
        solve(solved, handout=out / "student")
    with pytest.raises(ValueError, match="--handout must be a student handout folder"):
        solve(tmp_path / "other", handout=tmp_path)


def test_handout_points_only_to_what_it_ships(out):
    """The lessons and README must not send a student to repo-only files (bench/, make, solutions...).

    The student README is not the repo's: it has no measured figures.
    """
    student = out / "student"
    repo_only = sorted({p.name for p in REPO.iterdir() if not p.name.startswith(".")} - {p.name for p in student.iterdir()})
    assert "bench" in repo_only and "solutions" in repo_only, repo_only
    pattern = re.compile(rf"`[^`]*\b({'|'.join(map(re.escape, repo_only))})\b[^`]*`"
                         r"|\bmake (demo|test)\b|\bREADME('s)?\b[^.\n]{0,30}\bfigures\b")
    found = []
    for path, text in release._texts(student):
        if path.suffix in (".ipynb", ".md"):
            found += [f"{path.relative_to(student)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not found, "the handout points to what it does not ship:\n  " + "\n  ".join(found)


def test_release_and_solve_refuse_an_existing_folder_in_one_line(out, capsys):
    from kcaption import cli

    for command in (["release", str(out)], ["solve", str(out)]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "exists: pass --force" in err and "Traceback" not in err, err
