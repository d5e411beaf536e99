"""Fixtures of the grader's own tests (see `submissions.py`)."""

from submissions import grade_run, hostile, solution_submission  # noqa: F401
