"""Plain data across the sandbox wall: what a scenario may take and give back.

The grader's judge and the sandbox that runs student code talk through a pipe.
What comes back from the sandbox is untrusted, so it is never unpickled: a
message is a JSON tree plus the raw `.npy` bytes of its arrays, decoded with
`allow_pickle=False`. Only these kinds cross, both ways:

    None, bool, int, float, str, bytes, list, tuple, dict (str keys),
    NumPy arrays and scalars of bool/int/uint/float/complex dtype,
    tensors and Keras variables (sent as NumPy arrays).

Anything else (a layer, a model, an object with its own `__eq__` or
`__array__`) is refused with a `TypeError` naming where it was found. A student
test run and a graded run both send values through `round_trip`, so what a
scenario returns means the same thing in both.
"""

import io
import json
import math
import struct

import numpy as np

NUMERIC_KINDS = "biufc"
MAX_DEPTH = 32
MAX_BYTES = 512 * 2**20  # the largest message either side accepts
_HEADER = struct.Struct("!QQ")  # JSON length, array-bytes length


def _to_numpy(value, where):
    """`value` as a NumPy array if it is a tensor or a variable, else None."""
    kind = type(value)
    module = kind.__module__ or ""
    if not (module.startswith(("tensorflow", "keras", "tf_keras"))):
        return None
    from keras import ops

    try:
        array = np.asarray(ops.convert_to_numpy(value))
    except Exception as error:  # a symbolic tensor has no value
        raise TypeError(f"{where}: a {kind.__name__} without a value cannot be sent. Received: {value!r}") from error
    return array


def _check_array(array, where):
    if type(array) is not np.ndarray or array.dtype.kind not in NUMERIC_KINDS or array.dtype.hasobject:
        raise TypeError(f"{where}: only numeric or bool arrays can be sent. Received: dtype={array.dtype}")
    return array


def _tree(value, arrays, where="result", depth=0):
    """The JSON-able form of `value`; arrays go to `arrays`."""
    if depth > MAX_DEPTH:
        raise TypeError(f"{where}: nested more than {MAX_DEPTH} levels deep.")
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if kind is bytes:
        arrays.append(np.frombuffer(value, dtype=np.uint8).copy())
        return {"$bytes": len(arrays) - 1}
    if kind in (list, tuple):
        items = [_tree(v, arrays, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        return items if kind is list else {"$tuple": items}
    if kind is dict:
        bad = [k for k in value if type(k) is not str]
        if bad:
            raise TypeError(f"{where}: dict keys must be str. Received: {bad[0]!r}")
        return {"$dict": {k: _tree(v, arrays, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}}
    if isinstance(value, np.generic) and kind.__module__ == "numpy":
        value = np.asarray(value)
    elif kind is not np.ndarray:
        converted = _to_numpy(value, where)
        if converted is None:
            raise TypeError(
                f"{where}: a {kind.__module__}.{kind.__qualname__} cannot cross the sandbox; return plain "
                "values (NumPy arrays, numbers, strings, lists, tuples, dicts). "
                f"Received: {type(value).__name__}"
            )
        value = converted
    arrays.append(_check_array(value, where))
    return {"$array": len(arrays) - 1}


def encode(value):
    """`value` as bytes (raises TypeError for anything but plain data)."""
    arrays = []
    header = json.dumps(_tree(value, arrays), allow_nan=False).encode()
    blobs = []
    for array in arrays:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        blobs.append(buffer.getvalue())
    sizes = json.dumps([len(b) for b in blobs]).encode()
    body = struct.pack("!Q", len(sizes)) + sizes + b"".join(blobs)
    return _HEADER.pack(len(header), len(body)) + header + body


def _untree(node, arrays, depth=0):
    if depth > MAX_DEPTH:
        raise ValueError("message nested too deep")
    if node is None or type(node) in (bool, int, float, str):
        return node
    if type(node) is list:
        return [_untree(v, arrays, depth + 1) for v in node]
    if type(node) is not dict or len(node) != 1:
        raise ValueError(f"bad node in message: {str(node)[:80]}")
    (tag, inner), = node.items()
    if tag == "$tuple" and type(inner) is list:
        return tuple(_untree(v, arrays, depth + 1) for v in inner)
    if tag == "$dict" and type(inner) is dict:
        return {k: _untree(v, arrays, depth + 1) for k, v in inner.items()}
    if tag == "$float" and inner in ("nan", "inf", "-inf"):
        return float(inner)
    if tag in ("$array", "$bytes") and type(inner) is int and 0 <= inner < len(arrays):
        array = arrays[inner]
        return array.tobytes() if tag == "$bytes" else array
    raise ValueError(f"bad node in message: {str(node)[:80]}")


def decode(data):
    """The value encoded in `data`; raises ValueError for anything malformed."""
    if len(data) < _HEADER.size or len(data) > MAX_BYTES:
        raise ValueError(f"message of {len(data)} bytes")
    n_header, n_body = _HEADER.unpack_from(data)
    if _HEADER.size + n_header + n_body != len(data) or n_body < 8:
        raise ValueError("message sizes do not add up")
    header = json.loads(data[_HEADER.size : _HEADER.size + n_header])
    body = memoryview(data)[_HEADER.size + n_header :]
    (n_sizes,) = struct.unpack_from("!Q", body)
    sizes = json.loads(bytes(body[8 : 8 + n_sizes]))
    if type(sizes) is not list or not all(type(s) is int and s >= 0 for s in sizes):
        raise ValueError("bad array sizes")
    offset, arrays = 8 + n_sizes, []
    for size in sizes:
        if offset + size > len(body):
            raise ValueError("array runs past the message")
        array = np.load(io.BytesIO(bytes(body[offset : offset + size])), allow_pickle=False)
        arrays.append(_check_array(array, "message"))
        offset += size
    return _untree(header, arrays)


def round_trip(value):
    """`value` as the other side of the wall would receive it."""
    return decode(encode(value))


def write_message(stream, value):
    data = encode(value)
    stream.write(data)
    stream.flush()


def read_message(stream, max_bytes=MAX_BYTES):
    """Read one message from a binary stream; None at end of stream."""
    head = stream.read(_HEADER.size)
    if not head:
        return None
    if len(head) < _HEADER.size:
        raise ValueError("truncated message")
    n_header, n_body = _HEADER.unpack(head)
    if n_header + n_body > max_bytes:
        raise ValueError(f"message of {n_header + n_body} bytes is over the limit of {max_bytes}")
    rest = stream.read(n_header + n_body)
    if len(rest) != n_header + n_body:
        raise ValueError("truncated message")
    return decode(head + rest)
