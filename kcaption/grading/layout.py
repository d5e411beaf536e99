"""Which files of the kit go where: the package, public and hidden tests, solutions.

The kit root is the folder that holds `kcaption/` (the repo, or an autograder
bundle). Tests are split by folder:

    tests/conftest.py, tests/test_*.py   public: in the handout and the bundle
    tests/hidden/                        hidden: in the bundle only
    tests/kit/, tests/mutants/           instructor-only: in neither
    tests/scale/                         the COCO-scale path (features, resume, distribution): in neither
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HIDDEN_TESTS = "tests/hidden"
INSTRUCTOR_ONLY = ("tests/kit", "tests/mutants", "tests/scale")
_JUNK = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}


def files_under(root, folder, exclude=()):
    """Files under `root/folder`, relative to `root`, skipping caches and `exclude` folders."""
    root = Path(root)
    excluded = {root / e for e in exclude}
    found = []
    for path in sorted((root / folder).rglob("*")):
        if not path.is_file() or path.suffix == ".pyc" or _JUNK & set(path.parts):
            continue
        if any(path.is_relative_to(e) for e in excluded):
            continue
        found.append(path.relative_to(root))
    return found


def package_files(root=ROOT):
    """The `kcaption/` package (stubs for every graded step)."""
    return files_under(root, "kcaption")


def public_test_files(root=ROOT):
    """`tests/` without the hidden and instructor-only folders."""
    return files_under(root, "tests", exclude=(HIDDEN_TESTS, *INSTRUCTOR_ONLY))


def hidden_test_files(root=ROOT):
    return files_under(root, HIDDEN_TESTS)


def solution_files(root=ROOT):
    return files_under(root, "solutions")


def grader_files(root=ROOT):
    """Everything a grading run needs: package, public + hidden tests, solutions, pytest config."""
    extra = [Path("pyproject.toml")] if (Path(root) / "pyproject.toml").is_file() else []
    return (
        package_files(root) + public_test_files(root) + hidden_test_files(root)
        + solution_files(root) + extra
    )


def test_files_for(step_id, root=ROOT):
    """The public and hidden test files that hold a test marked with `step_id`."""
    marks = (f'step("{step_id}"', f"step('{step_id}'")  # also step("id", kit_code=True)
    return [
        path for path in public_test_files(root) + hidden_test_files(root)
        if path.suffix == ".py" and any(m in (Path(root) / path).read_text() for m in marks)
    ]
