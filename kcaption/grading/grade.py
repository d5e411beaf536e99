"""Grade a submission into Gradescope's results.json, one graded step at a time.

Who runs what (the trust model; README, "Grading trust model"):

- **The grader** (this module, root): unpacks the submission, copies the kit
  (package, tests, solutions) into a folder only root can read, and for each
  graded step starts a judge and reads its report. It never imports a
  submission: it parses the student's file in a limited child process
  (`precheck`) to say "syntax error" or "still a stub" without running it.
- **The judge** (one `pytest --step-id <id>` per step, root): runs the step's
  public, then hidden, tests from the private kit copy, on the reference of
  every step. The tests make the inputs, compute the expected values and
  decide; only their scenarios touch the student's code, through
  `student.run`, which sends them to...
- **the sandbox** (`worker`, a user id of its own per step): the kit's
  package with the student's file in it, the other steps' references as
  compiled code only (this step's is absent), plain data in and out
  (`wire`), limits on time, memory, processes and bytes (`jail`), a private
  /tmp where the kernel allows it. It cannot read the kit, the solutions, the
  hidden tests, other steps' folders or the report, nor signal the grader,
  nor outlive its step: every process of its user is killed after each phase.

Scoring: a step's points are split over its tests (shares rounded so they add
up to the points exactly); a test scores its share if the judge passed it. A
step that does not parse, still holds its stub, or passes a sandbox limit
scores 0, with a message naming why. Public tests show the judge's failure
message (with any line quoting instructor material cut); hidden tests show
only passed or failed, with the visibility the instructor chose.

Only files holding graded steps are taken from the submission: students
write helpers in the same file as the step that uses them.
"""

import concurrent.futures
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
import zipfile
import zlib
from pathlib import Path

from kcaption import steps
from kcaption.grading import jail, layout, results

NO_TESTS_COLLECTED = 5  # pytest's exit code when no test was collected
ZIP_LIMIT = 200 * 2**20  # bytes a submission zip may expand to
FIRST_UID = 61000  # sandbox users are FIRST_UID + the step's index; no account needed
STARTUP_SECONDS = 120  # the judge's own start-up and clean-up, on top of the step's time limit
STEP_MEMORY_MB = 1700  # one step holds up to ~1.6 GB, judge and sandbox together (measured), for `default_workers`
HIDDEN_VISIBILITIES = ("after_published", "visible", "hidden", "after_due_date")
HIDDEN_FAILED = "Failed. This hidden test checks cases the public tests do not; its details stay hidden."
SECRET_FOLDERS = ("solutions", "tests", ".git")  # of the kit's root: never visible to a sandbox
# Where grading folders go: not under /tmp, which each sandbox gets a private, empty one of.
WORK_ROOT = Path("/var/lib/kcaption")


class SubmissionError(ValueError):
    """The submission cannot be graded at all (no kcaption/ in it, bad zip...)."""


class GraderSetupError(RuntimeError):
    """The grader cannot build its sandbox here (not root, tools missing)."""


def grade(submission, out="results.json", timeout=300.0, *, only=None, workers=None,
          limits=None, hidden_visibility="after_published"):
    """Grade `submission` (a folder or .zip holding the student's kcaption/) into `out`.

    Args:
        submission: the student's `kcaption/` folder, a folder holding it, or a zip of either.
        out: where to write results.json (always written, even if grading itself fails).
        timeout: seconds each graded step's tests may take in the sandbox.
        only: grade only these step ids (the others are left out of results.json).
        workers: steps graded at once (default: what the machine's CPUs and memory allow,
            `default_workers`).
        limits: a `jail.Limits` for every step's sandbox (default: `jail.Limits()`).
        hidden_visibility: Gradescope visibility of hidden tests' results: "after_published"
            (default: students see them once grades are published), "visible", "hidden" or
            "after_due_date".

    Returns:
        The results.json document, as a dict.
    """
    start = time.monotonic()
    if hidden_visibility not in HIDDEN_VISIBILITIES:
        raise ValueError(f"hidden_visibility must be one of {HIDDEN_VISIBILITIES}. Received: {hidden_visibility!r}")
    limits = limits or jail.Limits()
    try:
        _check_setup()
        data = _grade(Path(submission), float(timeout), only, workers or default_workers(), limits,
                      hidden_visibility)
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


def _check_setup():
    if os.geteuid() != 0:
        raise GraderSetupError(
            "kcaption grade runs each step's student code as an unprivileged user of its own, which "
            "needs root (Gradescope runs the autograder as root). Run it with sudo, or in a container."
        )
    missing = [t for t in ("prlimit", "setpriv", "kill") if not shutil.which(t)]
    if missing:
        raise GraderSetupError(f"The grader needs util-linux's {', '.join(missing)} on PATH.")


def default_workers():
    """Steps to grade at once: one per CPU this process may use, as memory allows, at most 4."""
    cpus = len(os.sched_getaffinity(0))
    quota = _read_first("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    period = _read_first("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if quota and quota.split()[0] not in ("max", "-1"):
        fields = quota.split()
        cpus = min(cpus, max(1, int(int(fields[0]) / int(fields[1] if len(fields) > 1 else period or 100000))))
    memory = _available_memory()
    by_memory = max(1, memory // (STEP_MEMORY_MB * 2**20)) if memory else cpus
    return max(1, min(cpus, by_memory, 4))


def _read_first(*paths):
    for path in paths:
        try:
            return Path(path).read_text().strip()
        except OSError:
            continue
    return None


def _available_memory():
    """Bytes this container may still use: its cgroup's limit if set, else what /proc/meminfo has free."""
    limit = _read_first("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    meminfo = _read_first("/proc/meminfo") or ""
    free = next((int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.startswith("MemAvailable")), 0)
    if limit and limit.isdigit() and int(limit) < 2**60:
        return min(int(limit), free) if free else int(limit)
    return free


def _grade(submission, timeout, only, workers, limits, hidden_visibility):
    WORK_ROOT.mkdir(mode=0o711, parents=True, exist_ok=True)
    with open(WORK_ROOT / "grader.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one grader at a time per machine: they share the sandbox user ids
        return _grade_locked(submission, timeout, only, workers, limits, hidden_visibility)


def _grade_locked(submission, timeout, only, workers, limits, hidden_visibility):
    graded = [s for s in steps.all_steps() if only is None or s.id in only]
    uids = {s.id: FIRST_UID + i for i, s in enumerate(steps.all_steps())}
    for uid in uids.values():
        jail.kill_all(uid)  # left over from a grader that was killed
    base = Path(tempfile.mkdtemp(prefix="grade-", dir=WORK_ROOT))
    try:
        base.chmod(0o711)  # sandbox users may pass through to their own folder, not list
        kit = base / "kit"
        for path in layout.grader_files():
            (kit / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(layout.ROOT / path, kit / path)
        kit.chmod(0o700)
        private_mounts = jail.isolation_available()
        hide = [str(layout.ROOT / f) for f in SECRET_FOLDERS]
        if not private_mounts:
            _make_private(hide)
        try:
            package = find_package(submission, base / "submission")
        except SubmissionError as error:
            verdicts = {s.id: _zero(s, "Submission not graded", str(error)) for s in graded}
        else:
            context = dict(kit=kit, base=base, timeout=timeout, limits=limits, private_mounts=private_mounts,
                           hide=hide, hidden_visibility=hidden_visibility, secrets=_secret_lines(kit))
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                jobs = {s.id: pool.submit(_grade_step_safely, s, package, uids[s.id], context) for s in graded}
                verdicts = {i: job.result() for i, job in jobs.items()}
    finally:
        for uid in uids.values():
            jail.kill_all(uid)
        shutil.rmtree(base, ignore_errors=True)
    tests = [t for s in graded for t in verdicts[s.id][1]]
    lines = []
    for s in graded:
        got, _, note = verdicts[s.id]
        lines.append(f"{s.id:<32} {got:6.2f} / {s.points:<3} ({note})")
    total = round(sum(t["score"] for t in tests), 4)
    lines.append(f"{'total':<32} {total:6.2f} / {sum(s.points for s in graded)}")
    return results.results(tests, total, "\n".join(lines))


def _make_private(folders):
    """Without private mounts, the kit's secret folders are closed to other users by their mode."""
    for folder in map(Path, folders):
        if folder.is_dir() and folder.stat().st_mode & 0o077:
            folder.chmod(folder.stat().st_mode & 0o700)
            print(f"kcaption grade: made {folder} readable by its owner only (student code runs as another user).")


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
    """Extract `path` into `into`, counting real bytes (a zip's stated sizes may lie)."""
    budget = ZIP_LIMIT
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                target = (into / member.filename).resolve()
                if not target.is_relative_to(into.resolve()):
                    raise SubmissionError(f"The zip holds a path outside itself. Received: {member.filename}")
                if member.is_dir() or "__MACOSX" in Path(member.filename).parts:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(target, "wb") as sink:
                    while chunk := source.read(2**20):
                        budget -= len(chunk)
                        if budget < 0:
                            raise SubmissionError(
                                f"The zip expands to more than {ZIP_LIMIT >> 20} MB. Received: {path.name}")
                        sink.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as error:
        raise SubmissionError(
            f"Your zip is damaged and cannot be read ({type(error).__name__}: {str(error)[:200]}): make it "
            f"again from your kcaption/ folder. Received: {path.name}"
        ) from None


def _zero(step, title, message):
    """A step's verdict when it scores 0 without per-test results: (score, [one entry], note)."""
    return 0, [results.test_entry(f"[{step.id}] {title}", 0, step.points, message)], title.lower()


def _precheck(step, source_path, kit):
    """A reason to give `step` zero without running it, or None. Parses in a limited child process."""
    if not source_path.is_file():
        return "Not submitted", f"Your submission has no {step.path}."
    command = ["prlimit", f"--as={4 * 2**30}", "--", sys.executable, "-m", "kcaption.grading.precheck",
               str(source_path), step.qualname]
    try:
        done = subprocess.run(command, capture_output=True, timeout=60, env=_clean_env(PYTHONPATH=str(kit)))
        verdict = json.loads(done.stdout)
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        return "Too large", f"{step.path} could not be read in 60 s within 4 GB: is it really your source file?"
    if verdict["status"] == "syntax":
        where = f"line {verdict['line']}: " if verdict["line"] else ""
        return "Syntax error", f"{step.path} {where}{verdict['message']}\n    {verdict['text'].strip()}"
    if verdict["status"] == "not_found":
        return "Not found", f"{step.path} has no {step.qualname}: keep the name and signature of the stub."
    if verdict["status"] == "stub":
        return "Not implemented", f"{step.qualname} in {step.path} still raises NotImplementedError."
    return None


def _clean_env(**extra):
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("KCAPTION_", "PYTHON"))}
    return {**keep, "PYTHONDONTWRITEBYTECODE": "1", **extra}


def _grade_step_safely(step, package, uid, context):
    """`_grade_step`, with a failure of the grader itself charged to this step only, and said so."""
    try:
        return _grade_step(step, package, uid, context)
    except Exception:
        return _zero(step, "Autograder error", (
            "The autograder failed on this step; please tell your instructor.\n" + traceback.format_exc()))
    finally:
        jail.kill_all(uid)


def _grade_step(step, package, uid, context):
    kit, timeout = context["kit"], context["timeout"]
    student_file = package / Path(step.path).relative_to("kcaption")
    reason = _precheck(step, student_file, kit)
    if reason:
        return _zero(step, *reason)
    folder = context["base"] / step.id
    judge_dir = folder / "judge"
    judge_dir.mkdir(parents=True)
    folder.chmod(0o711)
    judge_dir.chmod(0o700)
    shutil.copyfile(student_file, judge_dir / "student.py")
    config = {
        "step": step.id, "step_path": step.path, "step_qualname": step.qualname, "uid": uid,
        "kit": str(kit), "box": str(folder / "box"), "judge_dir": str(judge_dir),
        "student_file": str(judge_dir / "student.py"), "limits": vars(context["limits"]),
        "timeout": timeout, "deadline": time.time() + timeout + STARTUP_SECONDS / 4,
        "private_mounts": context["private_mounts"], "hide": context["hide"],
    }
    (judge_dir / "config.json").write_text(json.dumps(config))
    report = judge_dir / "report.xml"
    code = _run_judge(step, kit, judge_dir, report, timeout)
    sandbox = _read_json(judge_dir / "sandbox.json")
    violation = sandbox.get("violation")
    if code is None or (violation and violation.startswith("time")):
        return _zero(step, "Timed out", (
            f"The tests of {step.id} did not finish in {timeout:g} s: look for a loop that never "
            "ends (e.g. a `while` whose condition never changes)."))
    if violation:
        return _zero(step, "Over a limit", (
            f"The sandbox stopped your code, so this step is not graded: {violation}. Graded code may only "
            "compute and return its result (no big prints, files, processes or memory)."))
    cases = _read_report(report) if code in (0, 1) else []
    if code == NO_TESTS_COLLECTED:
        return _zero(step, "No test", f"No test grades {step.id}: please tell your instructor.")
    if not cases:
        tail = (judge_dir / "judge.log").read_text(errors="replace")[-3000:]
        return _zero(step, "Autograder error", (
            f"The tests of {step.id} could not run (exit code {code}); please tell your instructor.\n{tail}"))
    got, entries, note = _entries(step, cases, context)
    return got, entries, f"{note}, sandbox peak {sandbox.get('peak_mb', 0):.0f} MB"


def _run_judge(step, kit, judge_dir, report, timeout):
    """Run the step's tests in the judge. Returns pytest's exit code, or None if it ran out of time."""
    env = _clean_env(
        KCAPTION_SOLUTIONS="1", KCAPTION_SOLUTIONS_DIR=str(kit / "solutions"), PYTHONPATH=str(kit),
        KCAPTION_JUDGE=str(judge_dir / "config.json"), TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg",
        PYTHONHASHSEED="0",
    )
    files = layout.test_files_for(step.id, kit)  # public first, then hidden: the sandbox's two phases
    command = [
        sys.executable, "-m", "pytest", *map(str, files), "--step-id", step.id, "-q",
        "-p", "no:cacheprovider", "--tb=short", f"--junitxml={report}", "-o", "junit_family=xunit1",
        f"--basetemp={judge_dir / 'pytest-tmp'}",
    ]
    with (judge_dir / "judge.log").open("wb") as sink:
        process = subprocess.Popen(command, cwd=kit, env=env, stdin=subprocess.DEVNULL, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return process.wait(timeout + STARTUP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            return None


def _read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _read_report(report):
    """(test file, test name, outcome, message) for each test in the judge's JUnit XML report."""
    try:
        root = ET.parse(report).getroot()
    except (ET.ParseError, OSError):
        return []
    cases = []
    for case in root.iter("testcase"):
        problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        outcome = "passed" if problem is None else problem.tag
        message = "" if problem is None else (problem.text or problem.get("message") or "")
        kit_code = any(p.get("name") == "kit_code" for p in case.iter("property"))
        cases.append((case.get("file") or "", case.get("name", "?"), outcome, message, kit_code))
    return cases


def _secret_lines(kit):
    """Lines of the solutions and hidden tests long enough to be worth hiding in shown output."""
    lines = set()
    for path in layout.solution_files(kit) + layout.hidden_test_files(kit):
        for line in (kit / path).read_text(errors="replace").splitlines():
            line = line.strip()
            if len(line) >= 16 and not line.startswith(("#", "import ", "from ", '"""', "def test_")):
                lines.add(line)
    return lines


def scrub(text, secrets):
    """`text` with every line that quotes a secret line replaced by a notice."""
    return "\n".join(
        "[line hidden: it quotes instructor material]" if any(s in line for s in secrets) else line
        for line in text.splitlines()
    )


def shares(points, n):
    """`n` shares of `points`, each rounded to 4 decimals, adding up to `points` exactly."""
    share = round(points / n, 4)
    return [share] * (n - 1) + [round(points - share * (n - 1), 4)]


def _entries(step, cases, context):
    """Per-test entries: the step's own tests share its points; its kit-code tests scale them.

    A kit-code test checks code the kit provides in the student's file (a
    layer's build(), a helper): breaking it costs the step, but keeping it
    intact earns nothing on its own, so wrong code in the step still scores 0.
    """
    cases = [c for c in cases if c[2] != "skipped"]
    own = [c for c in cases if not c[4]]
    kit = [c for c in cases if c[4]]
    if not own:
        return _zero(step, "Did not run", f"Every test of {step.id} was skipped.")
    scale = sum(c[2] == "passed" for c in kit) / len(kit) if kit else 1.0
    n_hidden = sum(Path(file).parent.name == "hidden" for file, *_ in cases)
    entries, number = [], 0
    shared = shares(step.points, len(own))
    for file, name, outcome, message, kit_code in own + kit:
        passed = outcome == "passed"
        share = 0 if kit_code else shared.pop(0)
        if Path(file).parent.name == "hidden":
            number += 1
            title, shown, visibility = (f"hidden test {number} of {n_hidden}",
                                        "Passed." if passed else HIDDEN_FAILED, context["hidden_visibility"])
        else:
            title, visibility = f"{Path(file).name}::{name}", "visible"
            shown = "Passed." if passed else scrub(message, context["secrets"])
        if kit_code:
            shown += f"\n(Kit code in your file: each such test that fails scales this step's score; now x{scale:.2f}.)"
        entries.append(results.test_entry(f"[{step.id}] {title}", share * passed * scale, share, shown, visibility))
    passed = sum(outcome == "passed" for _, _, outcome, _, _ in cases)
    return sum(e["score"] for e in entries), entries, f"{passed}/{len(cases)} tests passed"
