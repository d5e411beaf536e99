"""The autograder: full marks for the solutions, and the grader's own contract.

Hostile submissions are in `test_grader_attacks.py`; both build submissions
with `submissions.py`.
"""

import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from submissions import OTHER, TARGET, TESTED, score

from kcaption import steps
from kcaption.grading import grade, results

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_solutions_get_full_marks(solution_submission, tmp_path, grade_run):
    """Zipped, as students often submit: the zip holds the kcaption/ folder."""
    archive = tmp_path / "submission.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in (solution_submission / "kcaption").rglob("*.py"):
            z.write(path, path.relative_to(solution_submission))
    start = time.monotonic()
    data = grade_run(archive, TESTED)
    seconds = time.monotonic() - start
    print(f"\ngrading a full submission ({len(TESTED)} steps) took {seconds:.0f} s")
    lost = [f"{t['name']}: {t['output']}" for t in data["tests"] if t["score"] < t["max_score"]]
    assert not lost, data["output"] + "\n" + "\n".join(lost)
    assert data["score"] == pytest.approx(sum(s.points for s in TESTED)), data["output"]
    hidden = [t for t in data["tests"] if "hidden test" in t["name"]]
    assert all(t["visibility"] == "after_published" for t in hidden)
    names = {t["name"] for t in data["tests"]}
    assert len(names) == len(data["tests"]), "test names in results.json must be unique"


def test_syntax_error_costs_its_step_only_and_quotes_the_students_line(solution_submission, tmp_path, grade_run):
    folder = tmp_path / "broken"
    shutil.copytree(solution_submission, folder)
    path = folder / TARGET.path
    path.write_text(path.read_text() + "\ndef oops(students_own_line:\n")
    data = grade_run(folder, [TARGET, OTHER])
    got, detail = score(data, TARGET)
    assert got == 0 and "Syntax error" in detail and TARGET.path in detail, detail
    assert "def oops(students_own_line:" in detail, detail
    got, detail = score(data, OTHER)
    assert got == pytest.approx(OTHER.points, abs=1e-6), detail


def test_untouched_stubs_and_missing_package(tmp_path, grade_run):
    handout = tmp_path / "handout"
    shutil.copytree(REPO / "kcaption", handout / "kcaption", ignore=shutil.ignore_patterns("__pycache__"))
    data = grade_run(handout, steps.all_steps())
    assert data["score"] == 0
    assert all("Not implemented" in t["name"] for t in data["tests"]), data["output"]
    empty = tmp_path / "empty"
    empty.mkdir()
    data = grade_run(empty, steps.all_steps())
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


def test_grading_twice_gives_the_same_scores(solution_submission, tmp_path, grade_run):
    first = grade_run(solution_submission, [TARGET, OTHER])
    second = grade_run(solution_submission, [TARGET, OTHER])
    assert [(t["name"], t["score"]) for t in first["tests"]] == [(t["name"], t["score"]) for t in second["tests"]]
    assert first["score"] == pytest.approx(TARGET.points + OTHER.points, abs=1e-9), first["output"]


@pytest.mark.parametrize("points, n", [(3, 7), (4, 9), (2, 3), (36, 1), (5, 11)])
def test_shares_add_up_to_the_points_exactly(points, n):
    parts = grade.shares(points, n)
    assert len(parts) == n and round(sum(parts), 9) == points
    assert all(abs(p - points / n) < 1e-3 for p in parts)


def test_hidden_visibility_is_an_instructor_setting(solution_submission, grade_run):
    data = grade_run(solution_submission, [TARGET], hidden_visibility="visible")
    hidden = [t for t in data["tests"] if "hidden test" in t["name"]]
    assert hidden and all(t["visibility"] == "visible" for t in hidden)
    assert all(t["output"] == "Passed." for t in hidden)
    with pytest.raises(ValueError, match="hidden_visibility"):
        grade.grade(solution_submission, "unused.json", hidden_visibility="secret")


def test_grading_needs_root_and_says_so(solution_submission, tmp_path):
    tmp_path.chmod(0o777)
    code = f"from kcaption.grading import grade; grade.grade({str(solution_submission)!r}, {str(tmp_path / 'r.json')!r})"
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "needs root" in done.stderr, done.stderr[-2000:]


def test_default_workers_follow_cpus_and_memory(monkeypatch):
    monkeypatch.setattr(grade.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(grade, "_read_first", lambda *paths: None)
    monkeypatch.setattr(grade, "_available_memory", lambda: 64 * 2**30)
    assert grade.default_workers() == 4  # at most 4
    monkeypatch.setattr(grade.os, "sched_getaffinity", lambda pid: {0, 1})
    assert grade.default_workers() == 2  # one per CPU
    monkeypatch.setattr(grade, "_available_memory", lambda: 3 * 2**30)  # one step holds ~1.6 GB
    assert grade.default_workers() == 1
    monkeypatch.setattr(grade, "_read_first", lambda *paths: "50000 100000" if "cpu.max" in paths[0] else None)
    monkeypatch.setattr(grade, "_available_memory", lambda: 64 * 2**30)
    assert grade.default_workers() == 1  # a cgroup quota of half a CPU


def test_a_file_with_only_kit_code_tests_of_a_step_is_run_for_it(tmp_path):
    from kcaption.grading import layout

    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text('@pytest.mark.step("rnn.cell", kit_code=True)\ndef test_x(student): ...\n')
    (tmp_path / "tests" / "test_y.py").write_text('@pytest.mark.step("rnn.cell2")\ndef test_y(student): ...\n')
    assert layout.test_files_for("rnn.cell", tmp_path) == [Path("tests/test_x.py")]
