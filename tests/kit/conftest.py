"""Fixtures of the grader's own tests (see `submissions.py`), what CI runs once rather than twice, and how
the suite splits over pytest-xdist workers (`make test` runs two)."""

import os
from pathlib import Path

import pytest
from submissions import grade_run, hostile, solution_submission  # noqa: F401

TESTS = Path(__file__).resolve().parents[1]
SOLVED_HANDOUT_RUN = "test_handout.py::test_solved_handout_passes_its_own_pytest"
# Files whose tests grade (kcaption.grading.grade): one grader per machine holds its lock, so they share a worker.
GRADING = {"test_grade.py", "test_grader_attacks.py", "test_release.py"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    _group_by_file(config, items)
    _public_tests_once_in_ci(config, items)


def _public_tests_once_in_ci(config, items):
    """In CI, the public tests (tests/test_*.py) run once: in the solved handout, as students run them.

    `test_handout.py` runs the solved handout's own `pytest`, which holds every
    public test, on the reference bodies filled in (here they run the same
    bodies through KCAPTION_SOLUTIONS=1). Running them here too took about 6 of
    CI's minutes for nothing more. Off CI, or when the handout run is not
    selected, they run here as usual.
    """
    if os.environ.get("CI") != "true" or not any(item.nodeid.split("@")[0].endswith(SOLVED_HANDOUT_RUN) for item in items):
        return
    public = [item for item in items if Path(item.fspath).parent == TESTS]
    if public:
        config.hook.pytest_deselected(items=public)
        items[:] = [item for item in items if Path(item.fspath).parent != TESTS]


def _group_by_file(config, items):
    """Under `pytest -n N --dist loadgroup`: one worker per test file, the grading files on one worker.

    A file's module and session fixtures (a released handout, a trained model) are
    then built once, not once per worker, and two graders never wait on each
    other's lock. Without xdist nothing changes.
    """
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        name = Path(item.fspath).name
        item.add_marker(pytest.mark.xdist_group("grading" if name in GRADING else str(Path(item.fspath))))
