"""Fixtures of the grader's own tests (see `submissions.py`), and what CI runs once rather than twice."""

import os
from pathlib import Path

from submissions import grade_run, hostile, solution_submission  # noqa: F401

TESTS = Path(__file__).resolve().parents[1]
# A run that runs these tests again, on the same reference bodies, and fails if one of them fails.
RUNS_AGAIN = {
    TESTS: "test_handout.py::test_solved_handout_passes_its_own_pytest",
    TESTS / "hidden": "test_grade.py::test_solutions_get_full_marks",
}


def pytest_collection_modifyitems(config, items):
    """In CI, the public and the hidden tests run once each, where they run anyway.

    - The public tests (tests/test_*.py) run in the solved handout:
      `test_handout.py` runs its own `pytest`, which holds every public test, on
      the reference bodies filled in, as students run them (here they run the
      same bodies through KCAPTION_SOLUTIONS=1). That saved about 6 of CI's minutes.
    - The hidden tests (tests/hidden/) run in full-marks grading:
      `test_grade.py` grades the reference bodies, every step on its public and
      hidden tests in the sandbox, and asserts every step's full marks; each
      hidden test grades a step (`tests/kit/test_steps.py` checks that), so a
      failing one costs marks there.
    Off CI, or when that other run is not selected, they run here as usual.
    """
    if os.environ.get("CI") != "true":
        return
    for folder, other_run in RUNS_AGAIN.items():
        if any(item.nodeid.endswith(other_run) for item in items):
            again = [item for item in items if Path(item.fspath).parent == folder]
            if again:
                config.hook.pytest_deselected(items=again)
                items[:] = [item for item in items if Path(item.fspath).parent != folder]
