"""The sandbox worker: runs test scenarios on a student's code, as an unprivileged user.

Started by `kcaption.grading.sandbox.SandboxRunner` (never by hand) as

    python -m kcaption.grading.worker FD_IN FD_OUT

inside the step's private folder, with `kcaption/` there holding the student's
file. It reads requests from FD_IN and answers on FD_OUT, one `wire` message
each:

    {"op": "setup", "solutions": {relative path: marshalled code}}   (first, once)
    {"op": "load", "module": name, "filename": ..., "code": marshalled code}
    {"op": "run", "module": name, "function": name, "args": [...], "kwargs": {...}}

and answers `{"ok": result}` or `{"error": {"type", "builtin", "message", "frames"}}`.
The worker holds no source of the references or the hidden tests: the judge
sends them compiled, and only the references of the other steps. Whatever it
answers is only a claim about what the student's code returned; the judge
decides.
"""

import marshal
import os
import sys
import traceback
import types

from kcaption.grading import wire

MAX_MESSAGE = 1000  # characters of an exception message sent back


def _error(error):
    frames = [(f.filename, f.lineno or 0, f.name) for f in traceback.extract_tb(error.__traceback__)]
    kind = type(error)
    return {"error": {
        "type": kind.__name__,
        "builtin": kind.__module__ == "builtins",
        "message": str(error)[:MAX_MESSAGE],
        "frames": frames[-20:],
    }}


def _answer(request, modules):
    op = request.get("op")
    if op == "setup":
        from kcaption import steps

        steps.use_compiled_solutions({k: marshal.loads(v) for k, v in request["solutions"].items()})
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        return {"ok": None}
    if op == "load":
        module = types.ModuleType(request["module"])
        module.__file__ = request["filename"]
        sys.modules[request["module"]] = module
        exec(marshal.loads(request["code"]), module.__dict__)
        modules[request["module"]] = module
        return {"ok": None}
    if op == "run":
        from kcaption.grading.sandbox import seed_everything

        function = getattr(modules[request["module"]], request["function"])
        seed_everything()
        return {"ok": function(*request["args"], **request["kwargs"])}
    raise ValueError(f"unknown request {op!r}")


def serve(fd_in, fd_out):
    requests, answers = os.fdopen(fd_in, "rb"), os.fdopen(fd_out, "wb")
    modules = {}
    while True:
        request = wire.read_message(requests)
        if request is None:
            return
        try:
            answer = _answer(request, modules)
            data = wire.encode(answer)
        except BaseException as error:  # everything goes back to the judge, even SystemExit
            data = wire.encode(_error(error))
        answers.write(data)
        answers.flush()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
