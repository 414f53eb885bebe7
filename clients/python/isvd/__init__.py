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

Contents: Client (requests with safe retries), Subscription (published
snapshots), Factors (offline transform/inverse_transform), Ack (push
replies) and the exception hierarchy rooted at IsvdError (ServerError
carries the protocol's code and message; Timeout is also a TimeoutError).
Only the ZeroMQ (pyzmq), msgpack and numpy packages are needed.
"""
from .client import DEFAULT_ENDPOINTS, TOPICS, Ack, Client, Subscription, keygen, read_key_file
from .codec import as_rows, decode_matrix, encode_matrix
from .errors import (BadMatrix, BadRequest, ClosedError, DimMismatch, InputError, InternalError,
                     IsvdError, NonFinite, NotReady, ProtocolError, ServerError, Timeout,
                     TooLarge, Unauthorized, Unavailable, UnknownOp)
from .factors import Factors

__version__ = "0.1.0"
PROTOCOL_VERSION = 1

__all__ = [
    "Client", "Subscription", "Factors", "Ack", "DEFAULT_ENDPOINTS", "TOPICS", "keygen",
    "read_key_file",
    "as_rows", "encode_matrix", "decode_matrix",
    "IsvdError", "ServerError", "BadRequest", "UnknownOp", "BadMatrix", "DimMismatch",
    "NonFinite", "TooLarge", "NotReady", "Unavailable", "Unauthorized", "InternalError",
    "Timeout", "ProtocolError", "InputError", "ClosedError",
    "PROTOCOL_VERSION", "__version__",
]
