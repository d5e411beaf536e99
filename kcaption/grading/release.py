"""Write the student handout and the autograder bundle: `kcaption release OUT`.

    OUT/student/      kcaption/ (stubs), lessons/ (no outputs), tests/ (public),
                      pyproject.toml, environment.yml, README.md
    OUT/autograder/   kcaption/, solutions/, tests/ (public + hidden), pyproject.toml,
                      environment.yml, setup.sh, run_autograder, README.md
    OUT/autograder.zip  the bundle, zipped for Gradescope's "Upload autograder"

Before it finishes, the release checks the handout holds no reference body,
no hidden test name and no solutions folder (`find_leaks`), and stops with a
clear error if it does.
"""

import ast
import re
import shutil
import stat
import textwrap
from pathlib import Path

from kcaption import steps
from kcaption.errors import ExistingOutputError
from kcaption.grading import layout
from kcaption.grading.splice import find_node

TEMPLATE = Path(__file__).with_name("student_readme.md")

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder image.
set -euo pipefail
cd /autograder/source
python3 -m pip install --upgrade pip
python3 -m pip install -e ".[dev]"  # pytest runs the tests
# The sandbox that runs student code needs util-linux (setpriv, prlimit, unshare) and kill.
command -v setpriv >/dev/null && command -v prlimit >/dev/null || apt-get install -y util-linux procps
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for each submission. Locally:
#   ./run_autograder SUBMISSION [RESULTS_JSON]
set -uo pipefail
SOURCE=/autograder/source
[ -d "$SOURCE" ] || SOURCE="$(cd "$(dirname "$0")" && pwd)"
cd "$SOURCE"
exec "${PYTHON:-python3}" -m kcaption.cli grade "${1:-/autograder/submission}" \\
    --out "${2:-/autograder/results/results.json}" --timeout "${KCAPTION_STEP_TIMEOUT:-300}" \\
    --hidden-visibility "${KCAPTION_HIDDEN_VISIBILITY:-after_published}"
"""

AUTOGRADER_README = """\
# kcaption autograder bundle (instructors only: it holds the solutions)

Upload `../autograder.zip` to Gradescope ("Configure Autograder", Ubuntu image
with Python 3.10-3.12). Students upload their `kcaption/` folder, or a zip of it.

Grade a submission locally, as root (student code runs as an unprivileged user
of its own, which needs root): `sudo ./run_autograder path/to/kcaption results.json`
(set `PYTHON` to choose the interpreter, `KCAPTION_STEP_TIMEOUT` for seconds
per graded step, `KCAPTION_HIDDEN_VISIBILITY` for when students see hidden
tests' pass/fail: after_published (default), visible, hidden, after_due_date).
Hardware: 2 CPUs and 4 GB grade a full submission with 2 workers.
"""


def release(out, force=False, verbose=True):
    """Write `out/student/`, `out/autograder/` and `out/autograder.zip`.

    Args:
        out: the output folder; it must not exist unless `force`.
        force: replace `out` if it exists.
        verbose: print what was written.
    """
    out = Path(out)
    if out.exists():
        if not force:
            raise ExistingOutputError(f"{out} exists: pass --force to replace it. Received: out={str(out)!r}")
        shutil.rmtree(out)
    all_steps = steps.all_steps()
    bodies = [s for s in all_steps if not s.is_todo]
    if bodies:
        raise ValueError(
            "These graded steps hold a body, not a stub, in kcaption/; the handout would give it away: "
            + ", ".join(f"{s.id} ({s.path})" for s in bodies)
        )
    root = layout.ROOT
    student, autograder = out / "student", out / "autograder"
    common = layout.package_files() + [Path("pyproject.toml"), Path("environment.yml")]
    _copy(root, student, common + layout.public_test_files())
    for path in layout.files_under(root, "lessons"):
        _copy_lesson(root / path, student / path)
    (student / "README.md").write_text(student_readme(all_steps))
    _copy(root, autograder, layout.grader_files() + [Path("environment.yml")])
    _write(autograder / "setup.sh", SETUP_SH, executable=True)
    _write(autograder / "run_autograder", RUN_AUTOGRADER, executable=True)
    _write(autograder / "README.md", AUTOGRADER_README)
    leaks = find_leaks(student)
    if leaks:
        shutil.rmtree(out)
        raise ValueError("The student handout would leak:\n  " + "\n  ".join(leaks))
    shutil.make_archive(str(out / "autograder"), "zip", autograder)
    if verbose:
        print(
            f"Wrote {student} ({len(all_steps)} graded steps, all stubs; no leak found), "
            f"{autograder} and {out / 'autograder.zip'}. A solved copy, for instructors: `kcaption solve`."
        )


def _copy(root, into, paths):
    for path in paths:
        (into / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / path, into / path)


def _write(path, text, executable=False):
    path.write_text(text)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _copy_lesson(source, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix != ".ipynb":
        shutil.copy2(source, target)
        return
    import nbformat

    notebook = nbformat.read(source, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, target)


def student_readme(all_steps):
    """The handout's README: the template with the table of graded steps filled in."""
    rows = [f"| `{s.id}` | {s.lesson} | `{s.path}`: `{s.qualname}` | {s.points} |" for s in all_steps]
    table = "| step | lesson | where | points |\n|---|---|---|---|\n" + "\n".join(rows)
    first = all_steps[0] if all_steps else None
    return (
        TEMPLATE.read_text()
        .replace("{steps_table}", table)
        .replace("{total_points}", str(sum(s.points for s in all_steps)))
        .replace("{example_step}", first.id if first else "lstm.cell")
        .replace("{example_lesson}", first.lesson if first else "04_lstm")
    )


def _normalised(text):
    """Lines stripped of indentation, without blank lines and comment-only lines."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def reference_body(step):
    """The normalised lines of `step`'s reference body (docstring left out)."""
    path = steps.solutions_dir() / Path(step.path).relative_to("kcaption")
    source = path.read_text()
    node = find_node(ast.parse(source), step.qualname)
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    lines = source.splitlines()[body[0].lineno - 1 : node.end_lineno]
    return _normalised(textwrap.dedent("\n".join(lines)))


def hidden_test_names(root=layout.ROOT):
    """The names of the hidden test functions and files."""
    names = set()
    for path in layout.hidden_test_files(root):
        if path.suffix == ".py":
            names.add(path.stem)
            tree = ast.parse((root / path).read_text())
            names.update(n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test"))
    return names


def _texts(folder):
    """(path, text) of every readable text file under `folder`; notebooks as their cells' sources."""
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".ipynb":
            import nbformat

            yield path, "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
            continue
        try:
            yield path, path.read_text()
        except UnicodeDecodeError:
            continue


def find_leaks(folder):
    """What in `folder` gives away instructor material: reference bodies, hidden tests, solutions."""
    leaks = [f"a solutions folder: {p}" for p in Path(folder).rglob("solutions") if p.is_dir()]
    withheld = {Path(f).name for f in (layout.HIDDEN_TESTS, *layout.INSTRUCTOR_ONLY)}
    leaks += [f"an instructor-only folder: {p}" for p in Path(folder).rglob("*")
              if p.is_dir() and p.name in withheld and p.parent.name == "tests"]
    bodies = {s.id: "\n".join(reference_body(s)) for s in steps.all_steps()}
    names = hidden_test_names()
    for path, text in _texts(folder):
        flat = "\n" + "\n".join(_normalised(text)) + "\n"
        leaks += [f"the reference body of {i} in {path}" for i, body in bodies.items() if f"\n{body}\n" in flat]
        leaks += [f"the hidden test name {n!r} in {path}" for n in sorted(names) if re.search(rf"\b{n}\b", text)]
    return leaks
