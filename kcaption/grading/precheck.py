"""Read a submitted file without running it: does it parse, and is the step still a stub?

The grader runs this in a child process under a memory and time limit
(`python -m kcaption.grading.precheck FILE QUALNAME`), so a 20 MB source file
costs that child, not the grader. Parsing never executes the student's code,
so what it prints can be believed. It prints one JSON object:

    {"status": "ok" | "syntax" | "not_found" | "stub", "line": ..., "message": ..., "text": ...}
"""

import ast
import json
import sys

from kcaption.grading.splice import find_node
from kcaption.steps import is_stub_node


def check(data, filename, qualname):
    """The verdict on source bytes `data` (a UTF-8 BOM is fine, as for Python itself)."""
    source = data.decode("utf-8-sig", errors="replace")
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as error:
        lines = source.splitlines()
        text = lines[error.lineno - 1] if error.lineno and 0 < error.lineno <= len(lines) else ""
        return {"status": "syntax", "line": error.lineno, "message": error.msg, "text": text[:300]}
    except (ValueError, RecursionError, MemoryError) as error:
        return {"status": "syntax", "line": None, "message": f"cannot be parsed ({type(error).__name__})", "text": ""}
    try:
        node = find_node(tree, qualname)
    except LookupError:
        return {"status": "not_found"}
    return {"status": "stub" if is_stub_node(node) else "ok"}


if __name__ == "__main__":
    path, qualname = sys.argv[1], sys.argv[2]
    with open(path, "rb") as f:
        print(json.dumps(check(f.read(), path, qualname)))
