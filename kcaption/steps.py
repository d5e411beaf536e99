"""The graded-step registry and the solutions switch.

A *graded step* is a function or method that students write. In `kcaption/`
its body is the student stub: a docstring with the math, the shapes and hints,
then ``raise NotImplementedError("TODO <step id>: ...")``. It is declared with
the `graded` decorator, which records its id, lesson and points:

    class LSTMCell(keras.layers.Layer):
        @graded("lstm.cell", lesson="04_lstm", points=4)
        def call(self, inputs, states, training=None):
            '''One LSTM step ... (the math, shapes and hints).'''
            raise NotImplementedError("TODO lstm.cell: implement LSTMCell.call")

The reference body lives in `solutions/`, in the file at the same relative
path (`solutions/layers/lstm.py` for `kcaption/layers/lstm.py`), under the same
qualified name and with the same signature. A method is written inside a class
of the same name, so the solution file reads like the filled-in stub:

    class LSTMCell:
        def call(self, inputs, states, training=None):
            ...

One switch, the environment variable ``KCAPTION_SOLUTIONS=1``, makes every
graded step run its reference body. It is read at call time, so it can be
flipped inside a running process. Two more knobs serve the autograder and the
repo's own tests, not students:

- ``KCAPTION_STUDENT_STEPS=a,b``: with the switch on, these steps still run the
  checkout's own body. Grading one step against the reference of every other
  step means one bug is charged once, not to every step built on it.
- ``KCAPTION_SOLUTIONS_DIR``: where the reference bodies are (default: the
  `solutions/` folder beside the `kcaption/` package).

Why a call-time switch rather than copying solutions into the package (as
nbgrader's "generate" step does)? There is one source of truth for each side,
the handout is `kcaption/` as it is in the repo, and a test can run the same
graded code both ways in one process.
"""

import ast
import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import os
import pkgutil
import textwrap
from pathlib import Path

SOLUTIONS_ENV = "KCAPTION_SOLUTIONS"
STUDENT_STEPS_ENV = "KCAPTION_STUDENT_STEPS"
SOLUTIONS_DIR_ENV = "KCAPTION_SOLUTIONS_DIR"

_TRUE = {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class Step:
    """One graded step: what students write, where, and what it is worth."""

    id: str
    lesson: str
    points: int
    module: str  # e.g. "kcaption.layers.lstm"
    qualname: str  # e.g. "LSTMCell.call"
    stub: object  # the function as written in kcaption/ (unwrapped)

    @property
    def path(self):
        """Where the student writes it, relative to the repo root."""
        return self.module.replace(".", "/") + ".py"

    @property
    def is_todo(self):
        """True while the checkout's body is still the stub."""
        return is_stub(self.stub)

    def solution(self):
        """The reference body of this step, from the solutions folder."""
        module = _load_solution_module(self.module)
        obj = module
        for part in self.qualname.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise LookupError(
                    f"Graded step {self.id!r}: {module.__file__} defines no "
                    f"{self.qualname!r}. Received: missing attribute {part!r}."
                ) from None
        return obj


_REGISTRY: dict = {}

# In-process override of the environment: None, or a pair
# (reference: bool, student_steps: frozenset). A plain global, not a context
# variable, so that threads (tf.data, Keras callbacks) see it too.
_override = None


def graded(step_id, *, lesson, points):
    """Declare a graded step (see the module docstring).

    Args:
        step_id: stable id, "<area>.<name>", e.g. "lstm.cell".
        lesson: the lesson notebook that teaches it, e.g. "04_lstm".
        points: what it is worth in the autograder.
    """
    if not isinstance(points, int) or points <= 0:
        raise ValueError(
            f"graded({step_id!r}): `points` must be a positive int. Received: points={points!r}"
        )

    def decorator(fn):
        step = Step(step_id, lesson, points, fn.__module__, fn.__qualname__, fn)
        known = _REGISTRY.get(step_id)
        if known is not None and (known.module, known.qualname) != (step.module, step.qualname):
            raise ValueError(
                f"Graded step id {step_id!r} is used twice: by {known.module}.{known.qualname} "
                f"and by {step.module}.{step.qualname}."
            )
        _REGISTRY[step_id] = step

        @functools.wraps(fn)
        def run_step(*args, **kwargs):
            # Not `fn`: IPython's %autoreload swaps run_step's __dict__ (so __wrapped__), never its closure.
            body = step.solution() if uses_reference(step_id) else run_step.__wrapped__
            return body(*args, **kwargs)

        run_step.graded_step = step_id
        return run_step

    return decorator


def uses_reference(step_id):
    """Whether `step_id` runs its reference body right now."""
    if _override is not None:
        reference, student_steps = _override
    else:
        reference = os.environ.get(SOLUTIONS_ENV, "").strip().lower() in _TRUE
        student_steps = _parse_ids(os.environ.get(STUDENT_STEPS_ENV, ""))
    return reference and step_id not in student_steps


@contextlib.contextmanager
def solutions(enabled=True, student_steps=()):
    """Run graded steps on their reference bodies inside a `with` block.

    Args:
        enabled: True runs the reference bodies, False the checkout's own.
        student_steps: ids that keep the checkout's own body even when enabled.
    """
    global _override
    saved = _override
    _override = (bool(enabled), frozenset(student_steps))
    try:
        yield
    finally:
        _override = saved


def _parse_ids(text):
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def solutions_dir():
    """The folder of reference bodies (it does not exist in a student handout)."""
    configured = os.environ.get(SOLUTIONS_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "solutions"


@functools.cache
def _load_solution_file(path):
    spec = importlib.util.spec_from_file_location(
        "kcaption_solutions." + Path(path).stem + f"_{abs(hash(path))}", path
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# In the grader's sandbox there is no solutions folder to read: the judge hands
# the worker the compiled reference modules it may run (`use_compiled_solutions`).
_compiled_solutions = None


def use_compiled_solutions(codes):
    """Take reference modules as code objects, {path relative to solutions/: code}, not from disk."""
    global _compiled_solutions
    _compiled_solutions = dict(codes)


@functools.cache
def _exec_compiled_solution(relative):
    module = importlib.util.module_from_spec(
        importlib.util.spec_from_loader("kcaption_solutions." + relative.replace("/", ".")[:-3], loader=None)
    )
    exec(_compiled_solutions[relative], module.__dict__)
    return module


def _load_solution_module(module_name):
    relative = module_name.split(".", 1)[1].replace(".", "/") + ".py"
    if _compiled_solutions is not None:
        if relative not in _compiled_solutions:
            raise FileNotFoundError(f"No reference module for {module_name} in this sandbox.")
        return _exec_compiled_solution(relative)
    path = solutions_dir() / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"{SOLUTIONS_ENV}=1 asks for the reference bodies, but there is no {path}. "
            f"A student handout has no solutions/ folder: unset {SOLUTIONS_ENV} to run "
            f"your own code, or point {SOLUTIONS_DIR_ENV} at a solutions folder."
        )
    return _load_solution_file(str(path))


def clear_solution_cache():
    """Forget loaded solution modules (after the solutions folder changed)."""
    _load_solution_file.cache_clear()


def is_stub(fn):
    """True if `fn`'s body is only a docstring and `raise NotImplementedError(...)`."""
    fn = inspect.unwrap(fn)
    return is_stub_node(ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0])


def is_stub_node(node):
    """True if a parsed `def` node's body is only a docstring and `raise NotImplementedError(...)`."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc
    if isinstance(exc, ast.Call):
        exc = exc.func
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


@dataclasses.dataclass(frozen=True)
class DeclaredStep:
    """A graded step as its source file declares it, read without importing the package."""

    id: str
    lesson: str
    points: int
    module: str
    qualname: str
    is_todo: bool

    path = Step.path


def declared_steps():
    """Every graded step, in lesson order then id, read from the `@graded(...)` lines with `ast`.

    The same steps as `all_steps()`, without importing the package's modules (and
    so TensorFlow): `kcaption steps` answers in a fraction of a second.
    """
    package = Path(__file__).resolve().parent
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent).with_suffix("")
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found += _declared_in(tree.body, ".".join(relative.parts), prefix="")
    return sorted(found, key=lambda s: (s.lesson, s.id))


def _declared_in(body, module, prefix):
    """The `DeclaredStep`s of the functions in `body` (and in the classes nested there)."""
    found = []
    for node in body:
        if isinstance(node, ast.ClassDef):
            found += _declared_in(node.body, module, f"{prefix}{node.name}.")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Call)
                    and isinstance(decorator.func, ast.Name)
                    and decorator.func.id == "graded"
                ):
                    keywords = {k.arg: ast.literal_eval(k.value) for k in decorator.keywords}
                    found.append(DeclaredStep(
                        ast.literal_eval(decorator.args[0]), keywords["lesson"], keywords["points"],
                        module, prefix + node.name, is_stub_node(node),
                    ))
    return found


def all_steps():
    """Every graded step of the package, in lesson order then id."""
    import kcaption

    for info in pkgutil.walk_packages(kcaption.__path__, prefix="kcaption."):
        importlib.import_module(info.name)
    return sorted(_REGISTRY.values(), key=lambda s: (s.lesson, s.id))


def get_step(step_id):
    """The `Step` with this id."""
    steps = {s.id: s for s in all_steps()}
    if step_id not in steps:
        raise KeyError(
            f"No graded step {step_id!r}. Known steps: {', '.join(sorted(steps))}. "
            f"Received: step_id={step_id!r}"
        )
    return steps[step_id]


class StepsNotImplemented(RuntimeError):
    """Raised by `require` when a command needs steps that are still stubs (their ids: `step_ids`)."""

    def __init__(self, message, step_ids=()):
        super().__init__(message)
        self.step_ids = list(step_ids)


def implemented(step_id):
    """Whether running `step_id` runs code: its reference (see `uses_reference`) or a body that is not the stub."""
    return uses_reference(step_id) or not get_step(step_id).is_todo


def require(step_ids, what):
    """Stop with a friendly message if any of `step_ids` is still a stub.

    Args:
        step_ids: the graded steps `what` runs.
        what: the command or feature, e.g. "kcaption demo".
    """
    missing = [get_step(i) for i in step_ids if not implemented(i)]
    if missing:
        lines = [f"  - {s.id:<24} {s.qualname} in {s.path} (lesson {s.lesson})" for s in missing]
        raise StepsNotImplemented(
            f"{what} needs graded steps you have not implemented yet:\n"
            + "\n".join(lines)
            + "\nOpen each file, replace the `raise NotImplementedError` with your code, and "
            f"check each step with its lesson's check cells or `pytest --step-id {missing[0].id}`.",
            [s.id for s in missing],
        )


def table(steps=None):
    """The steps (default: `declared_steps()`, no TensorFlow import) as a text table: id, lesson, points, status."""
    steps = declared_steps() if steps is None else steps
    rows = [("id", "lesson", "points", "status", "where")]
    for s in steps:
        status = "reference" if uses_reference(s.id) else ("TODO" if s.is_todo else "implemented")
        rows.append((s.id, s.lesson, str(s.points), status, f"{s.path}: {s.qualname}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum(s.points for s in steps)
    done = sum(s.points for s in steps if not s.is_todo)
    lines.append(f"\n{len(steps)} graded steps, {total} points; implemented in this checkout: {done}.")
    return "\n".join(lines)
