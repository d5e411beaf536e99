"""Run a test's scenario on the student's code: here, or in the grader's sandbox.

A graded test is written in two halves (see the README, "Grading trust model"):

    def lstm_step(x, h_prev, c_prev, weights):          # the scenario: runs student code
        cell = LSTMCell(5, dtype="float64")
        ...
        return h, c                                      # plain values only (`wire`)

    @pytest.mark.step("lstm.cell")
    def test_lstm_step_matches_numpy(student):          # the judge: inputs, reference, verdict
        h, c = student.run(lstm_step, x, h_prev, c_prev, weights)
        assert_close(h, numpy_lstm_step(...)[0], ...)

On a student's machine (and in the repo) `student.run` calls the scenario in
this process, with its arguments and result passed through `wire.round_trip`
so they mean exactly what they mean when graded, and Python, NumPy and
TensorFlow seeded (`seed_everything`) as the sandbox seeds them. In the grader, the test runs
in the trusted judge process and `student.run` sends the call to a sandboxed
worker (`kcaption.grading.worker`) running as an unprivileged user: student
code never runs next to the reference values, the comparison or the report.
"""

import inspect
import json
import marshal
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import time
from pathlib import Path

from kcaption.grading import wire


def check_scenario(scenario):
    """Raise TypeError unless `scenario` is a plain module-level function (the sandbox finds it by name)."""
    if not inspect.isfunction(scenario) or scenario.__qualname__ != scenario.__name__ or scenario.__name__ == "<lambda>":
        raise TypeError(
            "student.run takes a module-level function of the test file (the sandbox looks it up by "
            f"name), not a lambda, method or closure. Received: {scenario!r}"
        )


class LocalRunner:
    """Runs scenarios in this process: a student's own `pytest`, the repo's test run."""

    def run(self, scenario, *args, **kwargs):
        """`scenario(*args, **kwargs)`, with arguments and result as plain data."""
        check_scenario(scenario)
        args, kwargs = wire.round_trip((list(args), kwargs))
        seed_everything()
        return wire.round_trip(scenario(*args, **kwargs))


def seed_everything(seed=0):
    """Seed Python, NumPy and TensorFlow before each scenario, here and in the sandbox alike."""
    import keras

    keras.utils.set_random_seed(seed)


# --- The grader's side: the judge process talks to a sandboxed worker ----------------

JUDGE_ENV = "KCAPTION_JUDGE"  # set by the grader only: the path of the judge's config (root-only)

_BUILTIN_ERRORS = {e.__name__: e for e in (
    ValueError, TypeError, KeyError, IndexError, AttributeError, NotImplementedError, RuntimeError,
    AssertionError, ZeroDivisionError, LookupError, ArithmeticError, NameError, UnboundLocalError,
    RecursionError, OverflowError, FileNotFoundError, OSError,
)}


class StudentCodeError(Exception):
    """The student's code raised, or ended its process, while a scenario ran in the sandbox."""


class SandboxLimit(StudentCodeError):
    """The sandbox passed one of its limits (time, memory, processes, disk, output)."""


def _student_error(error, runner):
    """A local exception for an error reported by the worker: same builtin type and message."""
    kind, message = str(error.get("type", "Error"))[:80], str(error.get("message", ""))
    lines = [f"{kind}: {message}"]
    for filename, lineno, name in error.get("frames", [])[-8:]:
        shown = runner.source_line(str(filename), int(lineno))
        if shown is not None:
            lines.append(f"  {shown[0]}, line {lineno}, in {str(name)[:60]}\n    {shown[1]}")
    base = _BUILTIN_ERRORS.get(kind) if error.get("builtin") is True else None
    cls = type(kind, (StudentCodeError, base), {}) if base else StudentCodeError
    return cls("\n".join(lines))


class SandboxRunner:
    """Runs scenarios in a sandboxed worker, as the step's own unprivileged user.

    One worker per phase: the public tests' worker is killed (with everything it
    started, and its folder wiped) before the hidden tests' worker starts, so
    nothing a hidden test showed the student's code can reach a public test's
    output. The config (written by the grader) gives the step, the user id, the
    folders, the limits and the deadline.
    """

    def __init__(self, config):
        from kcaption.grading import jail

        self.config = config
        self.kit = Path(config["kit"])
        self.box = Path(config["box"])
        self.uid = int(config["uid"])
        self.limits = jail.Limits(**config["limits"])
        self.deadline = float(config["deadline"])
        self.student_file = Path(config["student_file"])
        self.student_lines = self.student_file.read_bytes().decode("utf-8-sig", "replace").splitlines()
        self.violation = None
        self.peak_mb = 0.0
        self.phase = self.process = self.watchdog = None
        self.loaded = set()

    # -- worker life --------------------------------------------------------------
    def _solutions(self):
        """The other steps' reference modules, compiled; this step's own reference is not among them."""
        from kcaption.grading.splice import without_reference

        codes = {}
        for path in sorted((self.kit / "solutions").rglob("*.py")):
            relative = path.relative_to(self.kit / "solutions").as_posix()
            source = path.read_bytes()
            if relative == Path(self.config["step_path"]).relative_to("kcaption").as_posix():
                source = without_reference(source, self.config["step"], self.config["step_qualname"])
            codes[relative] = marshal.dumps(compile(source, f"solutions/{relative}", "exec", dont_inherit=True))
        return codes

    def _prepare_box(self):
        from kcaption.grading import jail

        jail.remove([self.box])
        package = self.box / "pkg" / "kcaption"
        shutil.copytree(self.kit / "kcaption", package, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copyfile(self.student_file, self.box / "pkg" / self.config["step_path"])
        (self.box / "home").mkdir()
        for path in [self.box, *self.box.rglob("*")]:
            os.lchown(path, self.uid, self.uid)
        self.box.chmod(0o700)

    def _start(self, phase):
        from kcaption.grading import jail

        self._prepare_box()
        worker_in, judge_out = os.pipe()  # (read end, write end)
        judge_in, worker_out = os.pipe()
        home = self.box / "home"
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home),
            "PYTHONPATH": str(self.box / "pkg"), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            "KCAPTION_SOLUTIONS": "1", "KCAPTION_STUDENT_STEPS": self.config["step"],
            "KERAS_HOME": str(home / ".keras"), "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2",
            "LANG": "C.UTF-8",
        }
        argv = jail.command(
            [sys.executable, "-m", "kcaption.grading.worker", str(worker_in), str(worker_out)],
            self.uid, self.limits, private_mounts=self.config["private_mounts"], hide=self.config["hide"],
            keep=[sys.prefix, sys.base_prefix, *site.getsitepackages()],
            stash=Path(self.config["judge_dir"]) / "mounts",
        )
        log = open(Path(self.config["judge_dir"]) / f"worker-{phase}.log", "ab")
        self.process = subprocess.Popen(
            argv, cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(worker_in, worker_out), start_new_session=True,
        )
        log.close()
        os.close(worker_in)
        os.close(worker_out)
        self.requests, self.answers = os.fdopen(judge_out, "wb"), os.fdopen(judge_in, "rb")
        self.watchdog = jail.Watchdog(self.uid, self.limits, self.box, log.name)
        self.watchdog.start()
        self.phase, self.loaded = phase, set()
        self._call({"op": "setup", "solutions": self._solutions()})

    def _stop(self):
        from kcaption.grading import jail

        if self.process is None:
            return
        self.watchdog.stop()
        self.violation = self.violation or self.watchdog.broken or self.watchdog.check()  # one last look
        self.peak_mb = max(self.peak_mb, self.watchdog.peak_mb)
        for stream in (self.requests, self.answers):
            try:
                stream.close()
            except OSError:
                pass
        jail.kill_all(self.uid)
        self.process.wait()
        self.process = None
        stray = [] if self.config["private_mounts"] else jail.stray_files(self.uid)
        if stray:
            self.violation = self.violation or f"files outside its folder: it wrote {stray[0]}"
        jail.remove(stray + [self.box])

    def close(self):
        """Stop the worker, and record what the grader must know (limits passed, peak memory)."""
        self._stop()
        report = {"violation": self.violation, "peak_mb": round(self.peak_mb, 1)}
        Path(self.config["judge_dir"], "sandbox.json").write_text(json.dumps(report))

    # -- requests -----------------------------------------------------------------
    def _limit(self, message):
        from kcaption.grading import jail

        self.violation = self.violation or message
        jail.kill_all(self.uid)
        return SandboxLimit(f"The sandbox stopped your code: {message}.")

    def _call(self, request):
        if self.violation:
            raise SandboxLimit(f"The sandbox stopped your code earlier: {self.violation}.")
        try:
            wire.write_message(self.requests, request)
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: reading says why
        remaining = self.deadline - time.time()
        ready, _, _ = select.select([self.answers], [], [], max(0.0, remaining))
        if not ready:
            raise self._limit(f"time: the step's tests ran past their {self.config['timeout']:g} s")
        try:
            answer = wire.read_message(self.answers, max_bytes=64 * 2**20)
        except ValueError as error:
            answer = {"error": {"type": "SandboxError", "message": f"unreadable answer ({error})"}}
        if answer is None or self.watchdog.broken:
            code = self.process.wait()
            self._stop()
            if self.violation:
                raise SandboxLimit(f"The sandbox stopped your code: {self.violation}.")
            if code == -signal.SIGXFSZ:
                raise self._limit(f"output: a file it wrote passed {self.limits.file_mb} MB")
            raise StudentCodeError(f"Your code ended the test process (exit code {code}) instead of returning.")
        if type(answer) is not dict or not ({"ok", "error"} & set(answer)):
            raise StudentCodeError("The sandbox gave an answer of the wrong form.")
        if "error" in answer:
            raise _student_error(answer["error"] if type(answer["error"]) is dict else {}, self)
        return answer["ok"]

    def source_line(self, filename, lineno):
        """(where, line) to show for a frame of the student's file or a public test; None otherwise."""
        if filename.endswith(self.config["step_path"]) and filename.startswith(str(self.box)):
            where, lines = self.config["step_path"], self.student_lines
        elif filename.startswith("tests/") and "/hidden/" not in filename:
            where, lines = filename, (self.kit / filename).read_text().splitlines()
        else:
            return None
        return where, (lines[lineno - 1].strip() if 0 < lineno <= len(lines) else "")

    def run(self, scenario, *args, **kwargs):
        """`scenario(*args, **kwargs)` in the sandbox; its plain-data result, or the student's error raised here."""
        check_scenario(scenario)
        path = Path(inspect.getfile(scenario)).resolve()
        relative = path.relative_to(self.kit.resolve()).as_posix()
        phase = "hidden" if path.parent.name == "hidden" else "public"
        if phase != self.phase or self.process is None:
            if self.violation:
                raise SandboxLimit(f"The sandbox stopped your code earlier: {self.violation}.")
            self._stop()
            self._start(phase)
        module = "kcaption_scenarios." + relative[:-3].replace("/", ".")
        if module not in self.loaded:
            code = compile(path.read_bytes(), relative, "exec", dont_inherit=True)
            self._call({"op": "load", "module": module, "filename": relative, "code": marshal.dumps(code)})
            self.loaded.add(module)
        return self._call({"op": "run", "module": module, "function": scenario.__name__,
                           "args": list(args), "kwargs": dict(kwargs)})


_runner = None


def runner():
    """The runner for this process: the sandbox when the grader set `KCAPTION_JUDGE`, else in-process."""
    global _runner
    if _runner is None:
        config = os.environ.get(JUDGE_ENV)
        _runner = SandboxRunner(json.loads(Path(config).read_text())) if config else LocalRunner()
    return _runner


def close_runner():
    """Stop the sandbox (if one was started) at the end of the judge's session."""
    if isinstance(_runner, SandboxRunner):
        _runner.close()
