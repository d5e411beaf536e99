"""The attack suite: what a determined student tries, and what the grader does about it.

Each case grades a perfect submission in which one step (TARGET) is hostile:
its body computes the right result with the inlined reference, then attacks
(forges the report, patches numpy, forks, reads the solutions, hogs memory...)
and returns a WRONG result, or the right one only if the attack got it
instructor material. Each case asserts: the hostile step scores 0, with a
message that names the limit (where one applies) and does not teach the
trick; results.json is valid; and (in `grade_run`) no process of a sandbox
user survives, no work folder or stray file is left. Some cases also grade
OTHER, which must keep its full marks.
"""

import hashlib
import shutil
import time
import zipfile

import pytest
from submissions import OTHER, REPO, TARGET, score

from kcaption.grading import jail, layout

WRONG = "return keras.tree.map_structure(lambda t: t * 0 + 0.5, result)"

FORGE = """
import glob as _glob, os as _os
_FORGED = ('<testsuites><testsuite name="pytest" tests="1"><testcase classname="x" name="test_x" '
           'file="tests/test_x.py"/></testsuite></testsuites>')


def _forge():
    paths = _glob.glob("/var/lib/kcaption/*/*/judge/report.xml")
    try:
        args = open(f"/proc/{_os.getppid()}/cmdline").read().split("\\0")
        paths += [a.split("=", 1)[1] for a in args if a.startswith("--junitxml=")]
    except OSError:
        pass
    for path in paths:
        try:
            open(path, "w").write(_FORGED)
        except OSError:
            pass
"""

READ_SECRETS = f"""
import glob as _glob


def _secrets():
    '''Everything instructor-only this process manages to read.'''
    texts = []
    for pattern in ["{REPO}/solutions/**/*.py", "{REPO}/tests/hidden/*.py", "{REPO}/.git/**/*",
                    "/autograder/source/solutions/**/*.py", "/var/lib/kcaption/*/kit/**/*.py",
                    "/var/lib/kcaption/*/*/box/**/*.py", "/var/lib/kcaption/*/*/judge/*"]:
        for path in _glob.glob(pattern, recursive=True):
            try:
                texts.append(open(path, errors="replace").read())
            except OSError:
                pass
    return texts
"""


def _reference_line():
    """A line of TARGET's reference body: finding it means the attack read the solutions."""
    from kcaption.grading.release import reference_body

    return max(reference_body(TARGET), key=len)


def _zero(data, step=TARGET):
    got, detail = score(data, step)
    assert got == 0, f"the hostile {step.id} scored {got}:\n{detail}"
    return detail


def _full(data, step=OTHER):
    got, detail = score(data, step)
    assert got == pytest.approx(step.points, abs=1e-6), f"{step.id} lost points to another step's attack:\n{detail}"


# --- 1. Wrong code never earns points -------------------------------------------------


def test_forged_report_then_exit(hostile, grade_run):
    data = grade_run(hostile("_forge()\nos._exit(0)", FORGE + "import os\n"), [TARGET, OTHER])
    _zero(data)
    _full(data)


def test_report_rewritten_at_exit(hostile, grade_run):
    data = grade_run(hostile("import atexit\natexit.register(_forge)\n" + WRONG, FORGE), [TARGET])
    _zero(data)


def test_patched_checks_and_pytest_session(hostile, grade_run):
    body = """
import gc, sys, numpy, numpy.testing
numpy.allclose = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
for module in list(sys.modules.values()):
    for name in ("assert_close", "assert_allclose", "assert_layer_contract"):
        if hasattr(module, name):
            setattr(module, name, lambda *a, **k: None)
for thing in gc.get_objects():
    if type(thing).__name__ in ("Session", "TestReport", "CallInfo"):
        try:
            thing.outcome = "passed"
        except Exception:
            pass
""" + WRONG
    data = grade_run(hostile(body), [TARGET])
    _zero(data)


def test_object_faking_a_match(hostile, grade_run):
    module_code = """

class _Anything:
    shape = dtype = None
    def __eq__(self, other):
        return True
    def __array__(self, dtype=None, copy=None):
        import numpy
        return numpy.zeros(1)
"""
    data = grade_run(hostile("return keras.tree.map_structure(lambda t: _Anything(), result)", module_code),
                     [TARGET])
    _zero(data)


def test_forked_process_outliving_its_step(hostile, grade_run, tmp_path):
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    results_dir.chmod(0o777)  # only the grader's clean-up stands between the fork and results.json
    body = f"""
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(6)
        for path in ["{results_dir}/results.json", "{results_dir}/forged.json"]:
            try:
                open(path, "w").write('{{"score": 99}}')
            except OSError:
                pass
    os._exit(0)
""" + WRONG
    data = grade_run(hostile(body), [TARGET])
    _zero(data)
    before = (results_dir / "results.json").read_bytes()
    time.sleep(8)
    assert (results_dir / "results.json").read_bytes() == before
    assert not (results_dir / "forged.json").exists(), "a process of the student's outlived the grader"


@pytest.mark.parametrize("how", ["environment", "disk and other steps' folders"])
def test_reading_a_reference_gets_nothing(hostile, grade_run, monkeypatch, how):
    if how == "environment":
        for name, value in [("KCAPTION_SOLUTIONS_DIR", str(REPO / "solutions")), ("KCAPTION_SOLUTIONS", "1"),
                            ("KCAPTION_STUDENT_STEPS", "")]:
            monkeypatch.setenv(name, value)
        body = f"""
from kcaption import steps
steps.clear_solution_cache()
try:
    return steps.get_step({TARGET.id!r}).solution()({_forward()})
except Exception:
    pass
""" + WRONG
        module_code = ""
    else:
        body = f"""
if any({_reference_line()!r} in text for text in _secrets()):
    return result
""" + WRONG
        module_code = READ_SECRETS
    data = grade_run(hostile(body, module_code), [TARGET, OTHER])
    _zero(data)
    _full(data)


def _forward():
    from submissions import forward_call

    return forward_call(TARGET)


def test_swapping_the_tests_changes_nothing(hostile, grade_run):
    """Module code overwrites every test file it can find with a passing one, restores nothing: 0."""
    fake = f'import pytest\\n\\n@pytest.mark.step("{TARGET.id}")\\ndef test_fine():\\n    pass\\n'
    module_code = f"""
import glob as _glob
for _path in _glob.glob("{REPO}/tests/**/test_*.py", recursive=True) + _glob.glob(
        "/var/lib/kcaption/*/kit/tests/**/test_*.py", recursive=True):
    try:
        open(_path, "w").write('{fake}')
    except OSError:
        pass
"""
    digests = {p: hashlib.sha256((REPO / p).read_bytes()).hexdigest() for p in layout.public_test_files(REPO)}
    data = grade_run(hostile(WRONG, module_code), [TARGET])
    _zero(data)
    assert digests == {p: hashlib.sha256((REPO / p).read_bytes()).hexdigest() for p in digests}


def test_signals_to_the_grader_are_refused(hostile, grade_run):
    body = """
import os, signal
for pid in (os.getppid(), 1):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
try:
    os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)
except OSError:
    pass
os.kill(-1, signal.SIGKILL)
"""
    data = grade_run(hostile(body), [TARGET, OTHER])
    _zero(data)
    _full(data)


# --- 3. Bounded: each limit scores 0 and is named -----------------------------------


@pytest.mark.parametrize("case, body, limits, message", [
    ("memory", "import numpy\nhog = numpy.ones(400 * 2**20)\n" + WRONG.replace("0.5", "0"),
     dict(memory_mb=1200), "memory"),
    ("processes", "import subprocess\nkids = [subprocess.Popen(['sleep', '60']) for _ in range(40)]\n"
     "import time\ntime.sleep(5)\nreturn result", dict(processes=16), "processes"),
    ("bytes in many files", "for i in range(12):\n    open(f'junk{i}', 'wb').write(b'x' * 15 * 2**20)\n"
     "import time\ntime.sleep(2)\nreturn result", dict(disk_mb=100), "disk"),
    ("output", "print('x' * 2**20 * 32)\nreturn result", {}, "output"),
    ("infinite loop", "while True:\n    pass", {}, "Timed out"),
])
def test_a_limit_passed_scores_zero_and_is_named(hostile, grade_run, case, body, limits, message):
    options = {"limits": jail.Limits(**limits)} if limits else {}
    data = grade_run(hostile(body), [TARGET], timeout=20 if case == "infinite loop" else 240, **options)
    detail = _zero(data)
    assert message.lower() in detail.lower(), f"{case}: the message should name {message!r}:\n{detail}"


def test_a_test_message_saying_file_too_large_is_not_a_limit(hostile, grade_run):
    data = grade_run(hostile("raise ValueError('File too large')"), [TARGET])
    detail = _zero(data)
    assert "limit" not in detail.lower() and "File too large" in detail, detail


# --- Bad submissions: clear messages, the grader survives ---------------------------


def test_corrupt_zip_is_a_clear_message(solution_submission, tmp_path, grade_run):
    archive = tmp_path / "submission.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(solution_submission / TARGET.path, TARGET.path)
    data = bytearray(archive.read_bytes())
    middle = data.index(b"PK\x01\x02") // 2  # inside the compressed data of the first member
    data[middle : middle + 8] = b"\x00" * 8
    archive.write_bytes(bytes(data))
    result = grade_run(archive, [TARGET])
    assert result["score"] == 0 and "damaged" in result["tests"][0]["output"], result["tests"][0]


@pytest.mark.parametrize("megabytes", [3, 20])
def test_a_huge_source_file_is_parsed_by_a_limited_child(solution_submission, tmp_path, grade_run, megabytes):
    big = tmp_path / "big"
    shutil.copytree(solution_submission, big)
    path = big / TARGET.path
    padding = ("# " + "x" * 97 + "\n") * (megabytes * 2**20 // 100)
    path.write_text(path.read_text() + padding)
    data = grade_run(big, [TARGET])
    got, detail = score(data, TARGET)
    if megabytes == 3:
        assert got == pytest.approx(TARGET.points, abs=1e-6), detail
    else:  # graded, or refused with a message: never the grader's own memory
        assert got == pytest.approx(TARGET.points, abs=1e-6) or "Too large" in detail, detail


def test_a_file_saved_with_a_bom_grades_normally(solution_submission, tmp_path, grade_run):
    folder = tmp_path / "bom"
    shutil.copytree(solution_submission, folder)
    path = folder / TARGET.path
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    got, detail = score(grade_run(folder, [TARGET]), TARGET)
    assert got == pytest.approx(TARGET.points, abs=1e-6), detail
