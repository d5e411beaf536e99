"""A solved copy of the student handout: `kcaption solve OUT` (instructors only).

What a perfect student would hand in, as a whole handout: every graded stub
replaced by its reference body (`splice.fill_in`). Instructors use it to try
the lessons at full size, to check the handout's own `pytest` passes, and as
an answer key; CI runs both on it (`.ci/handout`). It holds the reference
bodies: never give it to students.
"""

import ast
import shutil
import tempfile
from pathlib import Path

from kcaption import steps
from kcaption.errors import ExistingOutputError, InputError, MissingFileError
from kcaption.grading import splice


def solve(out, handout=None, force=False):
    """Write a solved copy of a student handout to `out`.

    Args:
        out: the output folder; it must not exist unless `force`.
        handout: a released student handout (the `student/` folder written by
            `kcaption release`); None releases this kit's handout first.
        force: replace `out` if it exists.

    Returns:
        The path of the solved handout.
    """
    out = Path(out)
    if out.exists() and not force:
        raise ExistingOutputError(f"{out} exists: pass --force to replace it. Received: out={str(out)!r}")
    if handout is not None and not (Path(handout) / "kcaption" / "steps.py").is_file():
        raise InputError(
            "--handout must be a student handout folder (it holds kcaption/steps.py): "
            f"the `student/` folder written by `kcaption release`. Received: handout={str(handout)!r}"
        )
    if not steps.solutions_dir().is_dir():
        raise MissingFileError(
            f"No reference solutions at {steps.solutions_dir()}: run `kcaption solve` from the kit's repo "
            "or the autograder bundle."
        )
    with tempfile.TemporaryDirectory() as tmp:
        if handout is None:
            from kcaption.grading.release import release

            release(Path(tmp) / "release", verbose=False)
            handout = Path(tmp) / "release" / "student"
        staged = Path(tmp) / "solved"
        shutil.copytree(handout, staged, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        splice.fill_in(staged / "kcaption")
        left = [s.id for s in steps.all_steps() if _still_stub(staged, s)]
        if left:
            raise RuntimeError(f"These steps are still stubs after filling in: {', '.join(left)}")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(staged, out)
    print(f"Wrote {out}: the handout with all {len(steps.all_steps())} graded steps solved (instructors only).")
    return out


def _still_stub(root, step):
    tree = ast.parse((root / step.path).read_text())
    return steps.is_stub_node(splice.find_node(tree, step.qualname))
