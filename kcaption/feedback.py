"""Why a value is wrong, read off what actually came out.

`kcaption.testing.assert_close` (the tests) and `check` (the lessons' check
cells) call `diagnose` when a value does not match its reference. It looks, in
this order, for:

1. known mistakes whose output on the same inputs is what came out: `mistakes`
   maps a hint to that output (from `kcaption.mistakes`, computed by the judge,
   never by the code under test) or to a test `value -> bool`;
2. a pattern in the difference: an axis missing or extra, NaN, a constant
   factor or offset, a flipped sign, a transpose, values wrong only at masked
   positions or in one slice, float32 precision in a float64 check;
3. nothing: then it guesses nothing.

What it says is what it saw; a likely cause is asked, as a question.
"""

import itertools

import numpy as np


def diagnose(actual, expected, *, mistakes=None, atol=1e-6, rtol=1e-5, masked=None):
    """Sentences that explain why `actual` differs from `expected`.

    Args:
        actual: what the code under test returned.
        expected: the reference value.
        mistakes: optional dict, hint -> the value that mistake gives on the
            same inputs (an array, or a plain value such as a string), or a
            callable `actual -> bool` that recognises it.
        atol, rtol: the check's tolerances, as in `np.allclose`.
        masked: optional boolean array, broadcastable to `expected`, True where
            a position should be masked (padding, a future key, ...).

    Returns:
        A list of sentences: the hints of the mistakes that match `actual`;
        else what the pattern of the difference shows (if anything), then,
        when `mistakes` were given, a neutral sentence saying none of them matches.
    """
    known = [hint for hint, value in (mistakes or {}).items()
             if _is_mistake(actual, value, expected, atol, rtol)]
    if known:
        return [f"It matches a known mistake: {' Or: '.join(known)}"]
    seen = _patterns(actual, expected, atol, rtol, masked)
    return seen + (["It matches none of the known mistakes this check looks for."] if mistakes else [])


def _is_mistake(actual, value, expected, atol, rtol):
    """Whether `actual` is what the mistake `value` (an output, or a test of one) gives."""
    if callable(value):
        try:
            return bool(value(actual))
        except Exception:  # a test that cannot read this value does not recognise it
            return False
    if not _numeric(value) or not _numeric(actual):
        return _plain(actual) == _plain(value) != _plain(expected)
    actual, value = _floats(actual), _floats(value)
    if actual.shape != value.shape or not np.all(np.isfinite(value)):
        return False
    expected = _floats(expected)
    tolerance = atol + rtol * _largest(value)
    if expected.shape == value.shape:
        gap = _largest(value - expected)  # how far the mistake lands from the right answer
        if gap <= tolerance:
            return False  # on these inputs the mistake gives the right answer: it explains nothing
        tolerance = max(tolerance, 1e-3 * gap)
    else:
        tolerance = max(tolerance, 1e-6 * max(1.0, _largest(value)))  # float32 round-off at least
    return np.all(np.isfinite(actual)) and _largest(actual - value) <= tolerance


def _patterns(actual, expected, atol, rtol, masked):
    if not _numeric(actual) or not _numeric(expected):
        return _plain_patterns(_plain(actual), _plain(expected))
    in_float64 = np.asarray(expected).dtype == np.float64
    actual, expected = _floats(actual), _floats(expected)
    if actual.shape != expected.shape:
        return _shape_patterns(actual, expected, atol, rtol)
    bad = ~np.isfinite(actual)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        return [f"{int(bad.sum())} of {bad.size} values are NaN or inf, the first at index {first}."]

    def close(a, b):
        return np.allclose(a, b, atol=atol, rtol=rtol)

    seen = []
    if actual.size > 1 and not np.any(actual):
        seen.append("Every value is 0.")
    elif close(actual, -expected) and np.any(expected):
        seen.append("It is the expected value with the sign flipped.")
    elif actual.size > 1:
        seen += _scale_or_shift(actual, expected, close)
        if not seen and actual.ndim >= 2 and actual.shape[-1] == actual.shape[-2] > 1 \
                and close(actual, np.swapaxes(expected, -1, -2)):
            seen.append("It equals the expected value transposed (its last two axes swapped).")
    if not seen and in_float64:
        seen += _float32_precision(actual, expected)
    if not seen and actual.size > 1:
        wrong = ~np.isclose(actual, expected, atol=atol, rtol=rtol)
        seen += _where_wrong(actual, expected, wrong, masked, close)
    return seen


def _scale_or_shift(actual, expected, close):
    seen = []
    norm = float(np.sum(expected * expected))
    factor = float(np.sum(actual * expected)) / norm if norm else 0.0
    if factor and not np.isclose(factor, 1.0, rtol=1e-6) and close(actual, factor * expected):
        seen.append(f"Every value is {factor:.4g}{_name_of(factor)} times the expected one: a scale factor "
                    "missing or extra?")
    shift = float(np.mean(actual - expected))
    if not seen and close(actual, expected + shift):
        seen.append(f"Every value is off by the same {shift:+.4g}: a constant term missing or extra?")
    return seen


def _name_of(factor):
    """' (about sqrt(8))' when the factor is the square root of a small integer, or its inverse."""
    for k in range(2, 1025):
        for value, name in ((k**0.5, f"sqrt({k})"), (k**-0.5, f"1/sqrt({k})")):
            if np.isclose(factor, value, rtol=1e-4) and not float(k**0.5).is_integer():
                return f" (about {name})"
    return ""


def _float32_precision(actual, expected):
    if actual.size == 0:
        return []
    relative = _largest(actual - expected) / max(_largest(expected), 1e-30)
    if relative < 1e-6:
        return [f"It agrees with the expected value to about float32 precision only (relative difference "
                f"{relative:.1e}): a float32 step in a float64 computation?"]
    return []


def _where_wrong(actual, expected, wrong, masked, close):
    """Where the wrong values are: all at masked positions, in one slice, or copies of other positions."""
    count = f"{int(wrong.sum())} of {wrong.size} values differ"
    if masked is not None:
        masked = np.broadcast_to(np.asarray(masked, bool), wrong.shape)
        if not (wrong & ~masked).any():
            return [f"{count}, all at masked positions (the others are right): is the mask applied?"]
    for axis in np.argsort([np.mean(wrong.any(axis=tuple(a for a in range(wrong.ndim) if a != k)))
                            for k in range(wrong.ndim)]):
        rows = np.flatnonzero(wrong.any(axis=tuple(a for a in range(wrong.ndim) if a != axis)))
        if len(rows) == wrong.shape[axis]:
            continue
        names = ", ".join(str(i) for i in rows[:6]) + (", ..." if len(rows) > 6 else "")
        where = f"{count}, all at index {names} of axis {axis} (the other indices are right)"
        copies = [f"{i} holds the expected value of index {j}" for i in rows[:3]
                  for j in range(actual.shape[axis])
                  if j != i and close(np.take(actual, i, axis), np.take(expected, j, axis))][:3]
        return [f"{where}; along that axis, index {'; index '.join(copies)}." if copies else f"{where}."]
    return [f"{count}."]


def _shape_patterns(actual, expected, atol, rtol):
    got, want = actual.shape, expected.shape
    if len(got) == len(want) - 1:
        missing = [k for k in range(len(want)) if want[:k] + want[k + 1:] == got]
        if missing:
            return [f"Axis {missing[0]} of the expected shape (size {want[missing[0]]}) is missing."]
    if len(got) == len(want) + 1:
        extra = [k for k in range(len(got)) if got[:k] + got[k + 1:] == want]
        if extra:
            return [f"There is an extra axis {extra[0]} of size {got[extra[0]]}."]
    if len(got) == len(want):
        differ = [k for k in range(len(want)) if got[k] != want[k]]
        if sorted(got) == sorted(want) and len(want) <= 5:
            for order in itertools.permutations(range(len(want))):
                moved = np.transpose(expected, order)
                if moved.shape == got and np.allclose(actual, moved, atol=atol, rtol=rtol):
                    return [f"It is the expected value with its axes in the order {order}: transposed?"]
            return ["It has the expected axes in another order: transposed?"]
        if len(differ) == 1:
            k = differ[0]
            return [f"Axis {k} has {got[k]} entries instead of {want[k]}."]
    return []


def _plain_patterns(actual, expected):
    if type(actual) is not type(expected):
        return [f"It is a {type(actual).__name__}, not a {type(expected).__name__}."]
    if isinstance(actual, (list, tuple)):
        if len(actual) != len(expected):
            return [f"It has {len(actual)} items instead of {len(expected)}."]
        wrong = [i for i, (a, e) in enumerate(zip(actual, expected)) if a != e]
        return [f"Item {i} is {actual[i]!r} instead of {expected[i]!r}." for i in wrong[:3]]
    return []


def _numeric(value):
    if isinstance(value, (str, bytes)):
        return False
    try:
        return np.asarray(value).dtype.kind in "biuf"
    except (ValueError, TypeError):  # ragged lists
        return False


def _floats(value):
    return np.asarray(value).astype(np.float64)


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value.item() if isinstance(value, np.generic) else value


def _largest(value):
    value = np.abs(np.asarray(value, dtype=np.float64))
    return float(value.max()) if value.size else 0.0
