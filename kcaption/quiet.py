"""Import TensorFlow without its C++ start-up lines.

TensorFlow 2.21 writes 9 lines to stderr when it starts on a CPU machine:
absl's "WARNING: All log messages before absl::InitializeLog() is called are
written to STDERR", oneDNN's notice (port.cc), "Could not find cuda drivers"
(cudart_stub.cc), each twice (two shared libraries load them), the two
lines of cpu_feature_guard.cc, and "failed call to cuInit" (cuda_platform.cc)
when it looks for devices. Setting TF_CPP_MIN_LOG_LEVEL=3 before the import
still leaves 6 of them: the lines written before absl's logging is
initialised ignore it. TF_ENABLE_ONEDNN_OPTS=0 removes oneDNN's notice only
by turning oneDNN off, and nothing removes the cudart_stub lines.

So `quiet_tensorflow()` imports TensorFlow and lists its devices while file
descriptor 2 points to a temporary file, then writes back to stderr every line
that is not a start-up line: Python warnings and real errors still show. It
also sets TF_CPP_MIN_LOG_LEVEL=3 (unless it is set): TensorFlow's later C++
log lines are not shown either. On a CPU they are notices, not failures:
"XLA service ... initialized", "Compiled cluster using XLA!", and the
ERROR-level "oneDNN supports DT_BOOL only on platforms with AVX-512" that
every masked RNN prints once (Keras transposes its boolean mask); a real
failure raises a Python exception, which still shows.
Set ``KCAPTION_TF_LOGS=1`` (or run `kcaption --debug ...`) to see everything.
"""

import contextlib
import os
import re
import sys
import tempfile

TF_LOGS_ENV = "KCAPTION_TF_LOGS"

# A C++ log line: severity, date, time, thread, file:line], e.g. "I0000 00:00:1796128331.905581   22981 port.cc:153] ".
_LOG_PREFIX = r"[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] "
STARTUP_LINES = [
    re.compile(pattern)
    for pattern in (
        r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
        r"[IW]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] ",  # every INFO and WARNING line at start-up
        _LOG_PREFIX + r"failed call to cuInit",
        _LOG_PREFIX + r"Unable to register cu\w+ factory",  # GPU builds: cuDNN, cuFFT, cuBLAS
        _LOG_PREFIX + r"computation placer already registered",
        r"To enable the following instructions: .* rebuild TensorFlow",  # cpu_feature_guard's 2nd line
    )
]


def is_startup_line(line):
    """Whether `line` is one of TensorFlow's start-up lines (see the module docstring)."""
    return any(pattern.match(line) for pattern in STARTUP_LINES)


def quiet_tensorflow():
    """Import TensorFlow now, without its C++ start-up lines on stderr.

    Call it before anything imports TensorFlow (first in a notebook, in a
    conftest); once TensorFlow is imported it does nothing, and with
    ``KCAPTION_TF_LOGS=1`` it imports TensorFlow and shows every line.
    It only lists the devices, so device settings
    (`tf.config.set_logical_device_configuration`, ...) can still be made.
    """
    if "tensorflow" in sys.modules:
        return
    if os.environ.get(TF_LOGS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # read once, when TensorFlow's C++ library loads
    with _stderr_without_startup_lines():
        import tensorflow as tf

        tf.config.list_physical_devices()  # where TensorFlow looks for GPUs (the cuInit line)


@contextlib.contextmanager
def _stderr_without_startup_lines():
    """Send file descriptor 2 to a temporary file; afterwards, write back what is not a start-up line."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect
        yield
        return
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not is_startup_line(line)))
            sys.stderr.flush()
