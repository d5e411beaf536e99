"""Grade a submission into Gradescope's results.json, one graded step at a time.

For each graded step, in its own work folder and process:

1. the kit's pristine files (package, public + hidden tests, solutions) are
   written afresh; the student's file that holds the step replaces the kit's;
2. `pytest --step-id <id>` runs that step's public and hidden tests with every
   OTHER step on its reference body (KCAPTION_SOLUTIONS=1,
   KCAPTION_STUDENT_STEPS=<id>): a bug is charged to its own step only. The
   step's own reference body is removed from the work folder's solutions, so
   the submission cannot call it;
3. the process runs under a time limit (`timeout`, seconds) and a limit on
   what it may write (`OUTPUT_LIMIT`, which stops runaway prints); afterwards,
   every kit file in the work folder is compared with the pristine copy.

Scoring: a step's points are split evenly over its tests, so a step scores
points x (fraction of its tests that pass). A step that does not import, runs
out of time or output, or changes the kit's files scores 0, with a message
saying why; so does a step still holding its stub (without running anything).
Public tests show their failure message; hidden tests say only passed or
failed (visibility "after_published").

Only files holding graded steps are taken from the submission: students
write helpers in the same file as the step that uses them.
"""

import ast
import concurrent.futures
import errno
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from kcaption import steps
from kcaption.grading import layout, results
from kcaption.grading.splice import find_node

NO_TESTS_COLLECTED = 5  # pytest's exit code when no test was collected
OUTPUT_LIMIT = 16 * 2**20  # bytes any one file written by a step's process may reach
ZIP_LIMIT = 200 * 2**20  # bytes a submission zip may expand to
HIDDEN_FAILED = "Failed. This hidden test checks cases the public tests do not; its details stay hidden."


class SubmissionError(ValueError):
    """The submission cannot be graded at all (no kcaption/ in it, bad zip...)."""


def grade(submission, out="results.json", timeout=300.0, *, only=None, workers=None):
    """Grade `submission` (a folder or .zip holding the student's kcaption/) into `out`.

    Args:
        submission: the student's `kcaption/` folder, a folder holding it, or a zip of either.
        out: where to write results.json (always written, even if grading itself fails).
        timeout: seconds each graded step's tests may take, start-up included.
        only: grade only these step ids (the others are left out of results.json).
        workers: processes at once (default: the CPU count, at most 4).

    Returns:
        The results.json document, as a dict.
    """
    start = time.monotonic()
    try:
        data = _grade(Path(submission), float(timeout), only, workers or min(4, os.cpu_count() or 1))
    except Exception:  # results.json must exist whatever happens; the error is shown, then raised
        data = results.results(
            [], 0, "The autograder itself failed; please tell your instructor.\n" + traceback.format_exc()
        )
        results.write(data, out)
        raise
    data["execution_time"] = round(time.monotonic() - start, 1)
    results.write(data, out)
    print(data["output"])
    print(f"score {data['score']} written to {out} in {data['execution_time']} s")
    return data


def _grade(submission, timeout, only, workers):
    kit = {path: (layout.ROOT / path).read_bytes() for path in layout.grader_files()}
    graded = [s for s in steps.all_steps() if only is None or s.id in only]
    with tempfile.TemporaryDirectory(prefix="kcaption-grade-") as tmp:
        tmp = Path(tmp)
        try:
            package = find_package(submission, tmp / "submission")
        except SubmissionError as error:
            verdicts = {s.id: _zero(s, "Submission not graded", str(error)) for s in graded}
        else:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                jobs = {s.id: pool.submit(_grade_step_safely, s, package, kit, tmp, timeout) for s in graded}
                verdicts = {i: job.result() for i, job in jobs.items()}
    tests = [t for s in graded for t in verdicts[s.id][1]]
    lines = []
    for s in graded:
        got, _, note = verdicts[s.id]
        lines.append(f"{s.id:<32} {got:6.2f} / {s.points:<3} ({note})")
    total = sum(got for got, _, _ in verdicts.values())
    points = sum(s.points for s in graded)
    lines.append(f"{'total':<32} {total:6.2f} / {points}")
    return results.results(tests, total, "\n".join(lines))


def find_package(submission, scratch):
    """The folder of the student's kcaption/ package inside `submission` (unzipped into `scratch`)."""
    if submission.is_file():
        if not zipfile.is_zipfile(submission):
            raise SubmissionError(f"Expected your kcaption/ folder or a .zip of it. Received: {submission.name}")
        _unzip(submission, scratch)
        submission = scratch
    if not submission.is_dir():
        raise SubmissionError(f"Nothing to grade: no such folder. Received: {submission}")
    wanted = {Path(s.path).relative_to("kcaption") for s in steps.all_steps()}
    candidates = [submission] + sorted(
        (p for p in submission.rglob("kcaption") if p.is_dir() and "__MACOSX" not in p.parts),
        key=lambda p: len(p.parts),
    )
    best = max(candidates, key=lambda p: sum((p / w).is_file() for w in wanted))
    if not any((best / w).is_file() for w in wanted):
        raise SubmissionError(
            "Found none of the graded files (e.g. kcaption/" + str(sorted(wanted)[0]) + ") in your "
            "submission. Submit your kcaption/ folder, or a .zip of it."
        )
    return best


def _unzip(path, into):
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if sum(m.file_size for m in members) > ZIP_LIMIT:
            raise SubmissionError(f"The zip expands to more than {ZIP_LIMIT >> 20} MB. Received: {path.name}")
        for member in members:
            target = (into / member.filename).resolve()
            if not target.is_relative_to(into.resolve()):
                raise SubmissionError(f"The zip holds a path outside itself. Received: {member.filename}")
        archive.extractall(into)


def _zero(step, title, message):
    """A step's verdict when it scores 0 without per-test results: (score, [one entry], note)."""
    return 0, [results.test_entry(f"[{step.id}] {title}", 0, step.points, message)], title.lower()


def _precheck(step, source_path):
    """A reason to give `step` zero without running it, or None."""
    if not source_path.is_file():
        return "Not submitted", f"Your submission has no {step.path}."
    source = source_path.read_text(errors="replace")
    try:
        compile(source, step.path, "exec")
    except SyntaxError as error:
        return "Syntax error", f"{step.path} line {error.lineno}: {error.msg}\n{(error.text or '').rstrip()}"
    try:
        stub = _is_stub_in(source, step.qualname)
    except LookupError:
        return "Not found", f"{step.path} has no {step.qualname}: keep the name and signature of the stub."
    if stub:
        return "Not implemented", f"{step.qualname} in {step.path} still raises NotImplementedError."
    return None


def _is_stub_in(source, qualname):
    """`steps.is_stub` on source text: the grading process never imports a submission."""
    body = find_node(ast.parse(source), qualname).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Raise):
        return False
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _grade_step_safely(step, package, kit, tmp, timeout):
    """`_grade_step`, with a failure of the grader itself charged to this step only, and said so."""
    try:
        return _grade_step(step, package, kit, tmp, timeout)
    except Exception:
        return _zero(step, "Autograder error", (
            "The autograder failed on this step; please tell your instructor.\n" + traceback.format_exc()))


def _grade_step(step, package, kit, tmp, timeout):
    student_file = package / Path(step.path).relative_to("kcaption")
    reason = _precheck(step, student_file)
    if reason:
        return _zero(step, *reason)
    work = tmp / f"work-{step.id}"
    reference = Path("solutions") / Path(step.path).relative_to("kcaption")
    kit = {**kit, reference: _without_reference(kit[reference], step)}
    for path, content in kit.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(content)
    shutil.copyfile(student_file, work / step.path)
    report, log = tmp / f"report-{step.id}.xml", tmp / f"log-{step.id}.txt"
    code = _run_tests(step, work, report, log, timeout)
    tail = _tail(log)
    changed = _changed_files(work, kit, exclude=step.path)
    if changed:
        return _zero(step, "Changed the kit's files", (
            "Your code changed files it must not touch, so this step is not graded: "
            + ", ".join(changed[:10]) + ". Graded code may only compute and return its result."))
    if code is None:
        return _zero(step, "Timed out", (
            f"The tests of {step.id} did not finish in {timeout:g} s: look for a loop that never "
            f"ends (e.g. a `while` whose condition never changes).\n{tail}"))
    cases = _read_report(report) if code in (0, 1) else []
    too_large = os.strerror(errno.EFBIG)  # what a write past OUTPUT_LIMIT raises
    if code == -signal.SIGXFSZ or any(too_large in c[3] for c in cases) or too_large in tail:
        return _zero(step, "Too much output", (
            f"Your code wrote more than {OUTPUT_LIMIT >> 20} MB of output (prints in a loop?), so this "
            "step is not graded. Remove the debugging prints."))
    if code == NO_TESTS_COLLECTED:
        return _zero(step, "No test", f"No test grades {step.id}: please tell your instructor.")
    if not cases:
        return _zero(step, "Did not run", (
            f"The tests of {step.id} could not run (exit code {code}): does your file import? "
            f"The end of the log:\n{tail}"))
    return _entries(step, cases)


def _without_reference(solution_file, step):
    """The solution file with `step`'s reference body replaced by an error.

    While a step is graded nothing needs its reference (every other step's
    reference calls the student's step through the package), so a submission
    cannot call it either.
    """
    lines = solution_file.decode().splitlines(keepends=True)
    node = find_node(ast.parse(solution_file), step.qualname)
    indent = " " * node.body[0].col_offset
    error = f"{indent}raise RuntimeError('The reference of {step.id} is not available while it is graded.')\n"
    return "".join(lines[: node.body[0].lineno - 1] + [error] + lines[node.end_lineno :]).encode()


def _run_tests(step, work, report, log, timeout):
    """Run the step's tests in `work`. Returns pytest's exit code, or None on timeout."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KCAPTION_")},
        steps.SOLUTIONS_ENV: "1",
        steps.STUDENT_STEPS_ENV: step.id,
        steps.SOLUTIONS_DIR_ENV: str(work / "solutions"),
        "PYTHONPATH": str(work),
        "PYTHONDONTWRITEBYTECODE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MPLBACKEND": "Agg",
    }
    files = [str(f) for f in layout.test_files_for(step.id, work)]
    command = [
        sys.executable, "-m", "pytest", *files, "--step-id", step.id, "-q", "-p", "no:cacheprovider",
        "--tb=short", f"--junitxml={report}", "-o", "junit_family=xunit1",
    ]

    def limit_output():
        resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))

    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=limit_output,
        )
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
    return code


def _tail(log, size=3000):
    with log.open("rb") as f:
        f.seek(max(0, log.stat().st_size - size))
        return f.read().decode(errors="replace")


def _digest(data):
    return hashlib.sha256(data).hexdigest()


def _changed_files(work, kit, exclude):
    """Kit files in `work` that differ from the pristine copy, and test files that appeared."""
    changed = [
        str(path) for path, content in kit.items()
        if str(path) != exclude
        and (not (work / path).is_file() or _digest((work / path).read_bytes()) != _digest(content))
    ]
    known = {str(p) for p in kit}
    for folder in ("tests", "solutions"):
        changed += [str(p) for p in layout.files_under(work, folder) if str(p) not in known]
    return changed


def _read_report(report):
    """(test file, test name, outcome, message) for each test in a JUnit XML report."""
    try:
        root = ET.parse(report).getroot()
    except (ET.ParseError, OSError):
        return []
    cases = []
    for case in root.iter("testcase"):
        problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        outcome = "passed" if problem is None else problem.tag
        message = "" if problem is None else (problem.text or problem.get("message") or "")
        cases.append((case.get("file") or "", case.get("name", "?"), outcome, message))
    return cases


def _entries(step, cases):
    cases = [c for c in cases if c[2] != "skipped"]
    if not cases:
        return _zero(step, "Did not run", f"Every test of {step.id} was skipped.")
    share = step.points / len(cases)
    n_hidden = sum(Path(file).parent.name == "hidden" for file, *_ in cases)
    entries, number = [], 0
    for file, name, outcome, message in cases:
        passed = outcome == "passed"
        if Path(file).parent.name == "hidden":
            number += 1
            entries.append(results.test_entry(
                f"[{step.id}] hidden test {number} of {n_hidden}", share * passed, share,
                "Passed." if passed else HIDDEN_FAILED, visibility="after_published"))
        else:
            entries.append(results.test_entry(
                f"[{step.id}] {Path(file).name}::{name}", share * passed, share,
                "Passed." if passed else message))
    passed = sum(outcome == "passed" for _, _, outcome, _ in cases)
    return step.points * passed / len(cases), entries, f"{passed}/{len(cases)} tests passed"
