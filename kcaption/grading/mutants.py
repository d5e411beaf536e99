"""Mutation testing of the graders: `kcaption mutants`.

A grade is only as good as the bugs the tests catch. The catalog
(`tests/mutants/catalog.py`, instructor-only) lists realistic student bugs as
edits of the reference solutions, `Edit(step, old, new, why)`:

- `MUTANTS`: bugs. Each one must make a test of its step fail (it is *caught*);
  a mutant that passes every test (*survives*) is a missing test.
- `VARIANTS`: other correct ways to write a step. Each one must pass.

Each entry runs on its own copy of `solutions/` with the one edit applied
(KCAPTION_SOLUTIONS_DIR points at it; every step runs its reference, so the
edited step runs the edit), and only that step's public + hidden tests run
(`pytest --step-id <id> -x`). Entries are shared out to `workers` processes
that each import TensorFlow once and run `pytest.main` per entry; a test that
hangs past `TIMEOUT` fails (the grader would time it out: the mutant is caught),
and a process that dies is restarted after the entry that killed it. An entry whose `old` text is not found exactly
once in its file is an error, never a silent pass. The run fails unless every
mutant is caught, every variant passes, and every step has `MIN_MUTANTS` bugs
and `MIN_VARIANTS` variants (a passing variant shows the step's tests pass on
a correct body, so a caught mutant is caught for its bug).
"""

import concurrent.futures
import contextlib
import dataclasses
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kcaption import steps as registry
from kcaption.grading import layout

CATALOG = layout.ROOT / "tests" / "mutants" / "catalog.py"
MIN_MUTANTS = 2
MIN_VARIANTS = 1  # a passing variant also shows the step's tests pass on a correct body
TIMEOUT = 300  # seconds per entry; a mutant that hangs counts as caught (the grader times it out)


@dataclasses.dataclass(frozen=True)
class Edit:
    """Replace `old` by `new` in the reference solution of `step`.

    Args:
        step: the graded step id, e.g. "lstm.cell".
        old: text found exactly once in the solution file (indentation included).
        new: what replaces it.
        why: the bug (or the variant) in a student's words, e.g. "forgot the bias".
        file: the solutions file, relative to solutions/ (default: the step's own file).
        hint: for a bug that a check's feedback models (a mistake of `kcaption.mistakes`, or a
            pattern of `kcaption.feedback`), words its failing test's message must say
            (tests/kit/test_feedback.py checks it).
    """

    step: str
    old: str
    new: str
    why: str
    file: str = ""
    hint: str = ""

    def path(self, solutions):
        return Path(solutions) / (self.file or str(Path(registry.get_step(self.step).path).relative_to("kcaption")))

    def apply(self, solutions):
        """Edit the file in the solutions folder `solutions`; raise CatalogError if `old` is not there once."""
        path = self.path(solutions)
        text = path.read_text() if path.is_file() else ""
        count = text.count(self.old)
        if count != 1 or self.old == self.new:
            raise CatalogError(
                f"{self.step} ({self.why}): `old` must occur exactly once in {path} and differ from `new`; "
                f"the catalog entry no longer applies and must be updated. Received: {count} occurrences."
            )
        edited = text.replace(self.old, self.new)
        try:
            compile(edited, str(path), "exec")
        except SyntaxError as error:
            raise CatalogError(f"{self.step} ({self.why}): the edit breaks the syntax: {error}") from None
        path.write_text(edited)


class CatalogError(ValueError):
    """A catalog entry that cannot be applied."""


def load_catalog(path=CATALOG):
    """(MUTANTS, VARIANTS) from the catalog file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"No mutant catalog at {path} (it is instructor-only, not in a handout).")
    spec = importlib.util.spec_from_file_location("kcaption_mutant_catalog", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.MUTANTS), list(getattr(module, "VARIANTS", []))


def _pytest_args(step_id):
    files = [str(f) for f in layout.test_files_for(step_id)]
    return [*files, "--step-id", step_id, "-x", "-q", "-p", "no:cacheprovider", "--tb=line"]


class _TimedOut(Exception):
    """Raised in a test that runs past the time limit: a hanging mutant is caught."""


def _worker(jobs_file, results_file):
    """Run jobs one after another in this process: TensorFlow is imported once, not once per job.

    Each job is {"step", "solutions"}; each result line is {"index", "code", "log"}.
    """
    import keras
    import pytest

    def alarm(signum, frame):
        raise _TimedOut(f"the tests ran past {TIMEOUT} s")

    signal.signal(signal.SIGALRM, alarm)
    for job in json.loads(Path(jobs_file).read_text()):
        os.environ[registry.SOLUTIONS_DIR_ENV] = job["solutions"]
        registry.clear_solution_cache()
        keras.backend.clear_session()
        log = io.StringIO()
        signal.alarm(TIMEOUT)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            code = int(pytest.main(_pytest_args(job["step"])))
        signal.alarm(0)
        with open(results_file, "a") as f:
            f.write(json.dumps({"index": job["index"], "code": code, "log": log.getvalue()[-2000:]}) + "\n")


def run_batch(jobs, scratch):
    """Run `jobs` ({"index", "step", "solutions"}) in worker processes, restarting after a crash.

    Returns {index: (pytest exit code, or None if the process died in that job; log)}.
    """
    scratch = Path(scratch)
    env = {k: v for k, v in os.environ.items() if k != registry.STUDENT_STEPS_ENV}
    env.update({registry.SOLUTIONS_ENV: "1", "PYTHONDONTWRITEBYTECODE": "1",
                "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"})
    done, todo = {}, list(jobs)
    while todo:
        jobs_file, results_file = scratch / "jobs.json", scratch / "results.jsonl"
        jobs_file.write_text(json.dumps(todo))
        results_file.unlink(missing_ok=True)
        worker = subprocess.run(
            [sys.executable, "-m", "kcaption.grading.mutants", str(jobs_file), str(results_file)],
            cwd=layout.ROOT, env=env, capture_output=True, text=True,
        )
        lines = results_file.read_text().splitlines() if results_file.is_file() else []
        for line in lines:
            result = json.loads(line)
            done[result["index"]] = (result["code"], result["log"])
        todo = [job for job in todo if job["index"] not in done]
        if todo:  # the worker died during todo[0]: as in grading, that job's tests did not pass
            done[todo.pop(0)["index"]] = (None, f"the test process died ({worker.returncode}): "
                                                + (worker.stdout + worker.stderr)[-1500:])
    return done


def _verdict(kind, code):
    """'caught'/'SURVIVED' for a mutant, 'passes'/'FAILS' for a variant, or 'error'."""
    if kind == "mutant":
        return {None: "caught", 1: "caught", 0: "SURVIVED"}.get(code, "error")
    return {0: "passes", 1: "FAILS", None: "FAILS"}.get(code, "error")


def run_catalog(entries, workers=2):
    """Run (kind, edit) entries; returns [(kind, edit, verdict, log)] in the same order."""
    with tempfile.TemporaryDirectory(prefix="kcaption-mutants-") as scratch:
        scratch = Path(scratch)
        jobs, outcomes = [], {}
        for index, (_, edit) in enumerate(entries):
            solutions = scratch / f"solutions-{index}"
            shutil.copytree(registry.solutions_dir(), solutions, ignore=shutil.ignore_patterns("__pycache__"))
            try:
                edit.apply(solutions)
            except CatalogError as error:
                outcomes[index] = ("catalog", str(error))
                continue
            jobs.append({"index": index, "step": edit.step, "solutions": str(solutions)})
        batches = [jobs[i::workers] for i in range(workers)]
        for i in range(workers):
            (scratch / f"worker-{i}").mkdir()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            runs = [pool.submit(run_batch, batch, scratch / f"worker-{i}") for i, batch in enumerate(batches)]
            for run in runs:
                outcomes.update(run.result())
    return [(kind, edit, _verdict(kind, outcomes[i][0]), outcomes[i][1]) for i, (kind, edit) in enumerate(entries)]


def main(steps=None, verbose=False, workers=2):
    """Run the catalog (only `steps`, a list of ids, if given); print the mutation score.

    Returns:
        0 if every mutant is caught, every variant passes and every step has enough entries; else 1.
    """
    mutants, variants = load_catalog()
    known = {s.id for s in registry.all_steps()}
    wanted = (set(steps) if steps else known) & known
    problems = [f"entry for unknown step {e.step!r} ({e.why})" for e in mutants + variants if e.step not in known]
    problems += [f"--step {i!r}: no such graded step" for i in sorted(set(steps or ()) - known)]
    for i in sorted(wanted):
        n_mutants, n_variants = sum(e.step == i for e in mutants), sum(e.step == i for e in variants)
        if n_mutants < MIN_MUTANTS or n_variants < MIN_VARIANTS:
            problems.append(f"{i}: {n_mutants} mutant(s) and {n_variants} variant(s); "
                            f"need at least {MIN_MUTANTS} and {MIN_VARIANTS}")
    entries = [("mutant", e) for e in mutants if e.step in wanted]
    entries += [("variant", e) for e in variants if e.step in wanted]
    start = time.monotonic()
    done = run_catalog(entries, workers)
    for kind, edit, verdict, log in done:
        print(f"{verdict:<9} {kind:<8} {edit.step:<32} {edit.why}")
        if verbose or verdict in ("SURVIVED", "FAILS", "error"):
            print("    " + log.strip().replace("\n", "\n    "))
    for problem in problems:
        print(f"catalog: {problem}")
    verdicts = [(kind, verdict) for kind, _, verdict, _ in done]
    n_mutants = sum(kind == "mutant" for kind, _ in verdicts)
    caught = verdicts.count(("mutant", "caught"))
    n_variants = len(verdicts) - n_mutants
    passing = verdicts.count(("variant", "passes"))
    errors = sum(verdict == "error" for _, verdict in verdicts)
    score = 100.0 * caught / n_mutants if n_mutants else 0.0
    print(
        f"Mutation score: {score:.1f}% ({caught}/{n_mutants} mutants of {len(wanted)} step(s) caught by the "
        f"public + hidden tests); valid variants passing: {passing}/{n_variants}; errors: {errors}; "
        f"{time.monotonic() - start:.0f} s with {workers} processes."
    )
    ok = n_mutants and caught == n_mutants and passing == n_variants and not errors and not problems
    return 0 if ok else 1


if __name__ == "__main__":
    _worker(*sys.argv[1:])
