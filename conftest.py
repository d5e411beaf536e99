"""How `pytest -n N` (pytest-xdist; `make test` runs two workers) shares the suite out: by test file.

A file's tests run on one worker, so its module and session fixtures (a
released handout, a trained model) are built once, not once per worker. The
files whose tests grade (`kcaption.grading.grade`) run on one worker together:
one grader per machine holds its lock and its sandbox users, and their tests
check that no other grader's folder or process is left (a grader on another
worker would be one).

xdist's own `--dist loadgroup` would say this with markers, but with pytest 9.2
it groups nothing: xdist 3.8 renames `item._nodeid`, which pytest 9.2 no longer
reads. A scheduler is xdist's documented extension point (`LoadFileScheduling`
is one). This file sits at the repo root so that the controlling process, which
collects no tests, loads it; no handout holds it.
"""

from pathlib import PurePosixPath

import pytest

GRADING = {"test_grade.py", "test_grader_attacks.py", "test_release.py"}


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: unknown without it
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadFileScheduling

    class ByFileGradingTogether(LoadFileScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            return "grading" if PurePosixPath(path).name in GRADING else path

    return ByFileGradingTogether(config, log)
