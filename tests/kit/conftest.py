"""Fixtures of the grader's own tests (see `submissions.py`), and what CI runs once rather than twice."""

import os
from pathlib import Path

from submissions import grade_run, hostile, solution_submission  # noqa: F401

TESTS = Path(__file__).resolve().parents[1]
SOLVED_HANDOUT_RUN = "test_handout.py::test_solved_handout_passes_its_own_pytest"


def pytest_collection_modifyitems(config, items):
    """In CI, the public tests (tests/test_*.py) run once: in the solved handout, as students run them.

    `test_handout.py` runs the solved handout's own `pytest`, which holds every
    public test, on the reference bodies filled in (here they run the same
    bodies through KCAPTION_SOLUTIONS=1). Running them here too took about 6 of
    CI's minutes for nothing more. Off CI, or when the handout run is not
    selected, they run here as usual.
    """
    if os.environ.get("CI") != "true" or not any(item.nodeid.endswith(SOLVED_HANDOUT_RUN) for item in items):
        return
    public = [item for item in items if Path(item.fspath).parent == TESTS]
    if public:
        config.hook.pytest_deselected(items=public)
        items[:] = [item for item in items if Path(item.fspath).parent != TESTS]
