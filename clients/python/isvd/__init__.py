"""isvd — Python client for isvdd, the streaming SVD daemon (protocol v1).

isvdd keeps a truncated SVD (optionally a PCA: with centring) of every row
pushed to it.  This package speaks its wire protocol (ZeroMQ + MessagePack,
protocol/PROTOCOL.md) with numpy arrays in and out:

    import numpy as np, isvd

    X = np.random.rand(100, 64)
    with isvd.Client() as c:                  # endpoints from ISVD_* or defaults
        ack = c.push(X)                       # Ack(accepted=100, seq=100, ...)
        coords, residual = c.project(X[:3])
        f = c.factors()                       # a Factors snapshot
        scores = f.transform(X)               # offline, like scikit-learn's PCA
        for snap in c.subscribe("spectrum", timeout=10):
            print(snap["seq"], snap["sigma"])

In process, without a daemon, StreamingPCA is scikit-learn's
IncrementalPCA on isvd's engine (the compiled extension isvd._engine):

    pca = isvd.StreamingPCA(n_components=10).fit(X)
    Z = pca.transform(X)

Contents: StreamingPCA and EngineError (the engine), Producer (one-row
pushes batched client-side, with BatchError and ProducerError), Client (requests with safe retries), Subscription (published
snapshots), Factors (offline transform/inverse_transform), Ack (push
replies) and the exception hierarchy rooted at IsvdError (ServerError
carries the protocol's code and message; Timeout is also a TimeoutError).
Only the ZeroMQ (pyzmq), msgpack and numpy packages are needed;
scikit-learn is optional (StreamingPCA is then a plain class).

The version is the meson project's (meson.build), compiled into the
extension; run from the source tree without the extension (PYTHONPATH=
clients/python, the daemon client only) it is read from meson.build.
"""
from .client import DEFAULT_ENDPOINTS, TOPICS, Ack, Client, Subscription, keygen, read_key_file
from .codec import as_rows, decode_matrix, encode_matrix
from .errors import (BadMatrix, BadRequest, ClosedError, DimMismatch, InputError, InternalError,
                     IsvdError, NonFinite, NotReady, ProtocolError, RateLimited, ServerError,
                     Timeout, TooLarge, Unauthorized, Unavailable, UnknownOp)
from .factors import Factors
from .producer import BatchError, Producer, ProducerError

try:
    from ._engine import EngineError, __version__
except ImportError:          # the source tree, not built: the client works, StreamingPCA says why not
    import os as _os
    import re as _re

    class EngineError(ValueError):
        """The engine refused a call (raised by the compiled extension isvd._engine)."""

    def _source_version():
        path = _os.path.join(_os.path.dirname(__file__), "..", "..", "..", "meson.build")
        try:
            with open(path, encoding="utf-8") as f:
                m = _re.search(r"version\s*:\s*'([^']+)'", f.read())
        except OSError:
            m = None
        return m.group(1) if m else "unknown"

    __version__ = _source_version()
PROTOCOL_VERSION = 1


def __getattr__(name):
    # StreamingPCA is imported on first use: it imports scikit-learn when
    # present, which a daemon client alone should not pay for.
    if name == "StreamingPCA":
        from .pca import StreamingPCA
        return StreamingPCA
    raise AttributeError(f"module 'isvd' has no attribute {name!r}")

__all__ = [
    "StreamingPCA", "EngineError", "Producer", "BatchError", "ProducerError",
    "Client", "Subscription", "Factors", "Ack", "DEFAULT_ENDPOINTS", "TOPICS", "keygen",
    "read_key_file",
    "as_rows", "encode_matrix", "decode_matrix",
    "IsvdError", "ServerError", "BadRequest", "UnknownOp", "BadMatrix", "DimMismatch",
    "NonFinite", "TooLarge", "NotReady", "Unavailable", "Unauthorized", "RateLimited",
    "InternalError",
    "Timeout", "ProtocolError", "InputError", "ClosedError",
    "PROTOCOL_VERSION", "__version__",
]
