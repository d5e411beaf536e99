"""Shared pytest set-up: which bodies the graded steps run, and stub mode.

- In this repo (a `solutions/` folder exists) `pytest` grades the reference
  bodies: KCAPTION_SOLUTIONS defaults to 1. Set KCAPTION_SOLUTIONS=0 to grade
  your own code instead. In a student handout there is no `solutions/`, so
  `pytest` grades the student's code.
- `pytest --stubs` proves the graded tests grade something: every test marked
  `@pytest.mark.step("<id>")` runs with that step's stub (every other step on
  its reference body) and must fail. Unmarked tests are not run, nor are tests
  marked `@pytest.mark.step("<id>", kit_code=True)`: they test code the kit
  provides in the step's file (a layer's `build()`, `get_config()`, a helper),
  so they count for that step when graded but need not fail on its stub.
- `pytest --step-id lstm.cell` runs only the tests that grade that step (the
  autograder and the mutation run use it; it combines with `--stubs`).
- A test that grades no step but runs one that is still a stub (say, an
  overfit run that needs `lstm.cell`) is reported as skipped, naming the step
  to implement first — not as a failure of the kit.
"""

import os
import re

import pytest

from kcaption import quiet_tensorflow, steps
from kcaption.grading import sandbox

if steps.solutions_dir().is_dir():
    os.environ.setdefault(steps.SOLUTIONS_ENV, "1")

quiet_tensorflow()  # no C++ start-up lines in the test run (KCAPTION_TF_LOGS=1 shows them)


def pytest_addoption(parser):
    parser.addoption(
        "--stubs",
        action="store_true",
        help="run each graded test with its step's stub; every one must fail.",
    )
    parser.addoption(
        "--step-id",
        action="append",
        default=[],
        metavar="ID",
        help="run only the tests that grade this step (repeatable), e.g. --step-id lstm.cell.",
    )


def pytest_collection_modifyitems(config, items):
    known = {s.id for s in steps.all_steps()}
    for item in items:
        for marker in item.iter_markers("step"):
            if marker.args[0] not in known:
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.step({marker.args[0]!r}) names no graded step."
                )
    wanted = set(config.getoption("--step-id"))
    if wanted - known:
        raise pytest.UsageError(f"--step-id: no graded step {sorted(wanted - known)}.")
    if wanted:
        chosen = [i for i in items if i.get_closest_marker("step") and i.get_closest_marker("step").args[0] in wanted]
        config.hook.pytest_deselected(items=[i for i in items if i not in chosen])
        items[:] = chosen
    if not config.getoption("--stubs"):
        return
    selected = [item for item in items if item.get_closest_marker("step")
                and not item.get_closest_marker("step").kwargs.get("kit_code")]
    config.hook.pytest_deselected(items=[i for i in items if i not in selected])
    items[:] = selected
    for item in selected:
        item.add_marker(pytest.mark.xfail(strict=True, reason="a graded test must fail on the stub"))


@pytest.fixture
def student():
    """Runs a test's scenario on the student's code: `student.run(scenario, *args)`.

    Here, in this process. When graded, in the grader's sandbox, while the test
    itself (the reference values and the verdict) runs where student code
    cannot reach it. See `kcaption/grading/sandbox.py`.
    """
    return sandbox.runner()


def pytest_sessionfinish(session):
    sandbox.close_runner()


@pytest.fixture(autouse=True)
def _kit_code_in_report(request, record_property):
    """The grader reads this from the JUnit report: a kit-code test scales its step, it earns nothing alone."""
    marker = request.node.get_closest_marker("step")
    if marker is not None and marker.kwargs.get("kit_code"):
        record_property("kit_code", "1")


@pytest.fixture(autouse=True)
def _graded_step_bodies(request):
    """In --stubs mode, run the marked step's stub and every other step's reference."""
    marker = request.node.get_closest_marker("step")
    if marker is None or not request.config.getoption("--stubs"):
        yield
        return
    with steps.solutions(True, student_steps={marker.args[0]}):
        yield


_TODO = re.compile(r"TODO ([\w.]+):")


def _todo_steps(error):
    """The ids of the stubs that stopped a test, searched along the exception chain.

    A stub's NotImplementedError says "TODO <id>:"; `steps.require` (a command's
    pre-check) raises StepsNotImplemented with the ids.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, steps.StepsNotImplemented):
            return error.step_ids
        if isinstance(error, NotImplementedError):
            found = _TODO.search(str(error))
            if found:
                return [found.group(1)]
        error = error.__cause__ or error.__context__
    return []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if not report.failed or call.excinfo is None or item.get_closest_marker("step"):
        return
    needed = [steps.get_step(i) for i in _todo_steps(call.excinfo.value)]
    if needed:
        report.outcome = "skipped"
        report.longrepr = (
            str(item.path), item.location[1] or 0,
            "Skipped: needs graded step " + ", ".join(
                f"{s.id} ({s.qualname} in {s.path}, lesson {s.lesson})" for s in needed)
            + (": implement it first." if len(needed) == 1 else ": implement them first."),
        )
