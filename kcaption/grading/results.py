"""Gradescope's results.json: build, check and write it.

The schema (https://gradescope-autograders.readthedocs.io, "Specifications"):

    {"score": 7.5, "execution_time": 42, "output": "...", "stdout_visibility": "hidden",
     "tests": [{"name": "...", "score": 1.5, "max_score": 1.5, "output": "...",
                "visibility": "visible"}, ...]}

`visibility` is one of "visible", "hidden", "after_due_date", "after_published".
"""

import json
import math
import os
from pathlib import Path

VISIBILITIES = {"visible", "hidden", "after_due_date", "after_published"}
MAX_OUTPUT = 4000  # characters per test output, and for the top-level output


def truncate(text, limit=MAX_OUTPUT):
    """`text` cut to `limit` characters, keeping its end (where errors are), and saying so."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


def test_entry(name, score, max_score, output, visibility="visible"):
    return {
        "name": name,
        "score": round(float(score), 4),
        "max_score": round(float(max_score), 4),
        "output": truncate(output),
        "visibility": visibility,
    }


def results(tests, score, output="", execution_time=0.0):
    return {
        "score": round(float(score), 4),
        "execution_time": round(float(execution_time), 1),
        "output": truncate(output, 4 * MAX_OUTPUT),
        "stdout_visibility": "hidden",
        "tests": list(tests),
    }


def validate(data):
    """Raise ValueError if `data` is not a valid results.json document."""
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise ValueError(f"results.json must be an object with a `tests` list. Received: {type(data).__name__}")
    numbers = [("score", data.get("score"))]
    for i, test in enumerate(data["tests"]):
        missing = {"name", "score", "max_score", "output", "visibility"} - set(test)
        if missing:
            raise ValueError(f"results.json tests[{i}] lacks {sorted(missing)}. Received: {test!r}")
        if test["visibility"] not in VISIBILITIES:
            raise ValueError(f"results.json tests[{i}]: bad visibility. Received: visibility={test['visibility']!r}")
        if not isinstance(test["name"], str) or not isinstance(test["output"], str):
            raise ValueError(f"results.json tests[{i}]: name and output must be strings. Received: {test!r}")
        numbers += [(f"tests[{i}].score", test["score"]), (f"tests[{i}].max_score", test["max_score"])]
    for where, value in numbers:
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"results.json {where} must be a finite number >= 0. Received: {where}={value!r}")


def write(data, path):
    """Check `data`, then write it to `path` atomically (never a half-written file)."""
    validate(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, allow_nan=False))
    os.replace(partial, path)
