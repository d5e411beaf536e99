"""Write a function into a package file: to build submissions for testing the grader.

`fill_in(package_dir)` turns a copy of the handout's `kcaption/` into what a
perfect student would submit: every stub replaced by its reference body (and
the solution file's imports and helpers appended). `replace_function` puts any
source in place of one step (a bug, an infinite loop, ...), keeping the stub's
decorators.
"""

import ast
import textwrap
from pathlib import Path

from kcaption import steps


def find_node(tree, qualname):
    """The `def` (or `class`) node of `qualname` (e.g. "LSTMCell.call") in a parsed module."""
    node, found = tree, None
    for part in qualname.split("."):
        found = next(
            (n for n in node.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part),
            None,
        )
        if found is None:
            raise LookupError(f"No {qualname!r} in the file. Received: missing {part!r}")
        node = found
    return found


def without_reference(solution_file, step_id, qualname):
    """The solution file's bytes with the reference body of `qualname` replaced by an error.

    While a step is graded nothing needs its reference (every other step's
    reference calls the student's step through the package), so a submission
    cannot call it either.
    """
    lines = solution_file.decode().splitlines(keepends=True)
    node = find_node(ast.parse(solution_file), qualname)
    indent = " " * node.body[0].col_offset
    error = f"{indent}raise RuntimeError('The reference of {step_id} is not available while it is graded.')\n"
    return "".join(lines[: node.body[0].lineno - 1] + [error] + lines[node.end_lineno :]).encode()


def replace_function(path, qualname, source):
    """Replace the `def` of `qualname` in the file at `path` by `source` (a whole `def`).

    The stub's decorators stay; `source` may be indented any way.
    """
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True)
    node = find_node(ast.parse("".join(lines)), qualname)
    indent = " " * node.col_offset
    new = textwrap.indent(textwrap.dedent(source).rstrip() + "\n", indent)
    path.write_text("".join(lines[: node.lineno - 1]) + new + "".join(lines[node.end_lineno :]))


def reference_source(step):
    """The reference `def` of `step`, as written in its solution file."""
    path = steps.solutions_dir() / Path(step.path).relative_to("kcaption")
    text = path.read_text()
    node = find_node(ast.parse(text), step.qualname)
    return "".join(text.splitlines(keepends=True)[node.lineno - 1 : node.end_lineno])


def fill_in(package_dir):
    """Replace every stub in the `kcaption/` copy at `package_dir` by its reference body."""
    package_dir = Path(package_dir)
    by_file = {}
    for step in steps.all_steps():
        by_file.setdefault(step.path, []).append(step)
    for relative, file_steps in by_file.items():
        target = package_dir / Path(relative).relative_to("kcaption")
        for step in file_steps:
            replace_function(target, step.qualname, reference_source(step))
        solution = steps.solutions_dir() / Path(relative).relative_to("kcaption")
        text = solution.read_text()
        top_names = {s.qualname.split(".")[0] for s in file_steps}
        extras = [
            ast.get_source_segment(text, n)
            for n in ast.parse(text).body
            if not (isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name in top_names)
            and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))  # docstring
            and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")
        ]
        if extras:
            with target.open("a") as f:
                f.write("\n\n# From the solution file: its imports and helpers.\n" + "\n".join(extras) + "\n")
