"""Every lesson notebook runs top to bottom on the solutions, with small settings.

Notebooks read KCAPTION_SMALL=1 to shrink their training runs, and are stored
without outputs (students get clean notebooks). Their check cells pass the
same mistake catalogs as the public tests, so both show the same hint.
"""

import ast
import inspect
import json
import os
from pathlib import Path

import pytest

from kcaption import mistakes

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "lessons").glob("*.ipynb"))


def test_there_are_lessons():
    assert NOTEBOOKS, "no notebook in lessons/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_clean(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} are stored with outputs; clear them before committing."


def _code(cell):
    """A code cell's source as Python: IPython's magics and shell lines dropped."""
    return "\n".join(line for line in cell["source"].splitlines() if not line.lstrip().startswith(("%", "!")))


def _catalogs_passed(path):
    """Names of the `kcaption.mistakes` functions whose result a check call of `path` passes as `mistakes=`."""
    import nbformat

    names = set()
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(_code(cell))):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                value = keyword.value
                if (keyword.arg == "mistakes" and isinstance(value, ast.Call)
                        and isinstance(value.func, ast.Attribute) and isinstance(value.func.value, ast.Name)
                        and value.func.value.id == "mistakes"):
                    names.add(value.func.attr)
    return names


def test_check_cells_pass_every_mistake_catalog():
    catalogs = {name for name, f in inspect.getmembers(mistakes, inspect.isfunction)
                if f.__module__ == mistakes.__name__ and not name.startswith("_")}
    passed = set().union(*(_catalogs_passed(path) for path in NOTEBOOKS))
    missing = sorted(catalogs - passed)
    assert not missing, (
        f"no lesson check cell passes mistakes=mistakes.<name>(...) for {missing}: its check shows a weaker "
        "hint than the public test's. Pass the catalog to that step's check in its lesson.")
    unknown = sorted(passed - catalogs)
    assert not unknown, f"lessons pass mistakes={unknown}, which kcaption.mistakes does not define."


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CI") == "true",
                    reason="CI runs every lesson at full size, in a released and solved handout (test_handout.py)")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("KCAPTION_SOLUTIONS", "1")
    monkeypatch.setenv("KCAPTION_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
