"""isvd.codec — numpy arrays to and from protocol v1 bodies (MessagePack).

Requests carry matrices in the shaped binary form (PROTOCOL.md §3 (b)):
``{shape: [rows, cols], dtype: "f64" | "f32", data: <row-major little-endian
bytes>}`` — one bin per matrix, never one msgpack number per element.

DESIGN
    as_rows() is the single place that decides what the client accepts:
    float64 and float32 arrays are sent as they are (f32 as dtype "f32"),
    integer and bool arrays are converted to float64, a 1-D array is one
    row, other dtypes (strings, complex, objects that are not numbers) raise
    InputError.  Missing values: NaN (np.nan), None in lists, and the masked
    entries of a numpy masked array all travel as NaN, which the daemon
    reads as a gap (PROTOCOL.md §3).  ±inf is passed through untouched: the
    daemon owns that rule and answers NON_FINITE.

    pandas: a DataFrame is accepted when every column is numeric (integer,
    unsigned, float, bool, and pandas' nullable Int64/Float64/boolean, whose
    <NA> is a missing value); it travels as f32 when every column is
    float32, else f64.  A non-numeric column raises InputError naming it
    (select the numeric ones with X.select_dtypes("number")).  A Series is
    one row.  pandas is never imported here: a frame is recognised by its
    type's module.

    decode_matrix() reads what the daemon sends (form (b), always f64) but
    also f32 and form (a) arrays, so a later daemon may choose either.
"""
import msgpack
import numpy as np

from .errors import InputError, ProtocolError

__all__ = ["as_rows", "encode_matrix", "decode_matrix", "decode_vector", "pack", "unpack"]

_WIRE = {"f64": np.dtype("<f8"), "f32": np.dtype("<f4")}


def _is_pandas(X, kind):
    t = type(X)
    return t.__module__.split(".")[0] == "pandas" and any(
        c.__name__ == kind for c in t.__mro__)


def _from_pandas(X, name):
    """A DataFrame (numeric columns) or Series (one row) as a float array, <NA> as NaN."""
    if _is_pandas(X, "Series"):            # one row, e.g. df.iloc[i] of mixed dtypes
        single = getattr(X.dtype, "kind", "") == "f" and X.dtype.itemsize == 4
        try:
            values = X.to_numpy(dtype=object, na_value=np.nan)   # <NA> first, then floats
            return values.astype(np.float32 if single else np.float64)
        except (ValueError, TypeError):
            raise InputError(f"{name}: the Series holds values that are not numbers") from None
    dtypes = list(X.dtypes)
    labels = list(X.columns)
    bad = [f"{lab!r} ({dt})" for lab, dt in zip(labels, dtypes)
           if getattr(dt, "kind", "O") not in "fiub"]
    if bad:
        raise InputError(f"{name}: column{'s' if len(bad) > 1 else ''} {', '.join(bad)} "
                         "not numeric; send the numeric ones, e.g. X.select_dtypes('number')")
    single = bool(dtypes) and all(getattr(dt, "kind", "") == "f" and dt.itemsize == 4
                                  for dt in dtypes)
    return X.to_numpy(dtype=np.float32 if single else np.float64, na_value=np.nan)


def as_rows(X, name="X"):
    """X as a C-contiguous little-endian 2-D float64 or float32 array.

    Accepts anything np.asarray() understands: ndarrays, lists of rows, a
    single list (one row), pandas DataFrames of numeric columns and Series
    (one row).  float32 stays float32; float64, integer, bool and
    other real float widths become float64.  None (in lists) and masked
    entries (np.ma arrays) become NaN, a missing value.  Raises InputError
    for 0-D or more than 2-D input and for non-numeric dtypes.
    """
    if _is_pandas(X, "DataFrame") or _is_pandas(X, "Series"):
        X = _from_pandas(X, name)
    try:
        a = X if isinstance(X, np.ndarray) else np.asarray(X)
    except (ValueError, TypeError) as e:      # ragged nested lists
        raise InputError(f"{name}: not a matrix: {e}") from None
    if isinstance(a, np.ma.MaskedArray):      # masked entries are gaps
        if a.dtype.kind not in "fiub":
            raise InputError(f"{name}: dtype {a.dtype} is not a real number type")
        keep = a.dtype if a.dtype.kind == "f" and a.dtype.itemsize == 4 else np.float64
        a = np.ma.filled(a.astype(keep), np.nan)
    if a.dtype.kind == "O":                   # e.g. lists holding None
        try:
            a = a.astype(np.float64)
        except (ValueError, TypeError):
            raise InputError(f"{name}: holds values that are not numbers") from None
    kind = a.dtype.kind
    if kind == "f" and a.dtype.itemsize == 4:
        wire = _WIRE["f32"]
    elif kind in "fiub":
        wire = _WIRE["f64"]
    else:
        raise InputError(f"{name}: dtype {a.dtype} is not a real number type; "
                         "pass float64, float32 or integer values")
    if a.ndim == 1:
        a = a.reshape(1, -1)
    elif a.ndim != 2:
        raise InputError(f"{name}: expected a 1-D row or a 2-D matrix, got {a.ndim} dimensions")
    return np.ascontiguousarray(a, dtype=wire)


def encode_matrix(X, name="rows"):
    """X (see as_rows) in wire form (b): a dict ready for pack()."""
    a = as_rows(X, name)
    dtype = "f32" if a.dtype.itemsize == 4 else "f64"
    # a memoryview avoids one copy of the data; msgpack writes it as bin
    data = memoryview(a).cast("B") if a.size else b""
    return {"shape": [int(a.shape[0]), int(a.shape[1])], "dtype": dtype, "data": data}


def decode_matrix(m, name="matrix"):
    """A matrix from a reply (form (b) or (a)) as a new 2-D float64 array."""
    if isinstance(m, dict):
        try:
            rows, cols = (int(v) for v in m["shape"])
            wire = _WIRE[m["dtype"]]
            data = m["data"]
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"{name}: malformed shaped matrix ({e!r})") from None
        if rows < 0 or cols < 0 or not isinstance(data, (bytes, bytearray)) \
                or len(data) != rows * cols * wire.itemsize:
            raise ProtocolError(f"{name}: data does not match shape [{rows}, {cols}] {m['dtype']}")
        return np.frombuffer(data, dtype=wire).reshape(rows, cols).astype(np.float64)
    if isinstance(m, list):
        if not m:
            return np.empty((0, 0))
        try:
            a = np.array(m, dtype=np.float64)   # nil -> NaN
        except (ValueError, TypeError) as e:
            raise ProtocolError(f"{name}: malformed array matrix ({e})") from None
        if a.ndim == 1:
            a = a.reshape(1, -1)
        if a.ndim != 2:
            raise ProtocolError(f"{name}: not a matrix")
        return a
    raise ProtocolError(f"{name}: expected a matrix, got {type(m).__name__}")


def decode_vector(v, name="vector"):
    """A vector from a reply (an array of numbers) as a 1-D float64 array; None stays None."""
    if v is None:
        return None
    try:
        a = np.array(v, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise ProtocolError(f"{name}: not a vector of numbers ({e})") from None
    if a.ndim != 1:
        raise ProtocolError(f"{name}: not a vector")
    return a


def pack(body):
    """A request body (a dict with string keys) as msgpack bytes."""
    return msgpack.packb(body, use_bin_type=True)


def unpack(frame):
    """A reply or snapshot frame as a dict; ProtocolError unless it is one msgpack map."""
    try:
        body = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as e:   # msgpack raises several unrelated types
        raise ProtocolError(f"reply is not MessagePack: {e}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"reply is not a map but {type(body).__name__}")
    return body
