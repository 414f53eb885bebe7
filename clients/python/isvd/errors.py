"""isvd.errors — the client's one exception hierarchy.

Everything the client raises on purpose derives from IsvdError:

    IsvdError
    ├── ServerError            the daemon answered ok: false; .code, .message
    │   ├── BadRequest         BAD_REQUEST
    │   ├── UnknownOp          UNKNOWN_OP
    │   ├── BadMatrix          BAD_MATRIX
    │   ├── DimMismatch        DIM_MISMATCH
    │   ├── NonFinite          NON_FINITE
    │   ├── TooLarge           TOO_LARGE
    │   ├── NotReady           NOT_READY
    │   ├── Unavailable        UNAVAILABLE
    │   ├── Unauthorized       UNAUTHORIZED
    │   ├── RateLimited        RATE_LIMITED (.retry_after_ms), after the client's own retries
    │   └── InternalError      INTERNAL, and any code this client does not know
    ├── Timeout                no reply after every retry (also a TimeoutError)
    ├── ProtocolError          a reply that does not follow protocol v1
    ├── InputError             refused locally before sending (also a ValueError)
    └── ClosedError            the client or subscription was closed

Catch ServerError and look at .code for the protocol's error code (one of
the strings of PROTOCOL.md §2), or catch the subclass you care about.
"""

__all__ = [
    "IsvdError", "ServerError", "BadRequest", "UnknownOp", "BadMatrix",
    "DimMismatch", "NonFinite", "TooLarge", "NotReady", "Unavailable",
    "Unauthorized", "RateLimited", "InternalError", "Timeout", "ProtocolError",
    "InputError", "ClosedError", "server_error",
]


class IsvdError(Exception):
    """Base class of every exception the isvd client raises on purpose."""


class ServerError(IsvdError):
    """The daemon refused a request (a reply with ``ok: false``).

    Attributes:
        code: the protocol error code, e.g. ``"DIM_MISMATCH"``; a code this
            client does not know is reported as ``"INTERNAL"`` (PROTOCOL.md
            §2 asks clients to treat it so) and kept in ``raw_code``.
        message: the daemon's human-readable explanation, e.g.
            ``"rows: rows have 5 values; the model's dimension is 6"``.
        op: the operation that was refused (``"push"``, ``"project"``…).
        raw_code: the code exactly as received.
    """

    code = None     # set per subclass; instances set their own

    def __init__(self, code, message, op=None, raw_code=None):
        """code and message as the daemon sent them; op the refused operation."""
        self.code = code
        self.message = message
        self.op = op
        self.raw_code = raw_code if raw_code is not None else code
        where = f"{op}: " if op else ""
        super().__init__(f"{where}{code}: {message}")


class BadRequest(ServerError):
    """BAD_REQUEST: the body was not a valid request (a client bug)."""


class UnknownOp(ServerError):
    """UNKNOWN_OP: the operation does not exist on that socket."""


class BadMatrix(ServerError):
    """BAD_MATRIX: a matrix was malformed (e.g. empty, or data size wrong)."""


class DimMismatch(ServerError):
    """DIM_MISMATCH: the rows' length is not the model's dimension."""


class NonFinite(ServerError):
    """NON_FINITE: a value was +inf/-inf, or missing (NaN) where not allowed."""


class TooLarge(ServerError):
    """TOO_LARGE: the message or a matrix exceeds the daemon's limits."""


class NotReady(ServerError):
    """NOT_READY: the model has seen no rows yet."""


class Unavailable(ServerError):
    """UNAVAILABLE: the daemon cannot serve this now (e.g. storage failing)."""


class Unauthorized(ServerError):
    """UNAUTHORIZED: the client is not allowed to do this."""


class RateLimited(ServerError):
    """RATE_LIMITED: the push was over its pusher's rate limit (nothing of it
    was applied), and still was after the client's retries.

    Attributes:
        retry_after_ms: the wait the daemon asked for before a resend.
    """

    def __init__(self, code, message, op=None, raw_code=None, retry_after_ms=0):
        """As ServerError, plus the daemon's retry_after_ms."""
        super().__init__(code, message, op, raw_code)
        self.retry_after_ms = retry_after_ms


class InternalError(ServerError):
    """INTERNAL: a daemon-side failure, or an error code this client does not know."""


class Timeout(IsvdError, TimeoutError):
    """No reply arrived within the timeout, after every retry.

    Attributes:
        op: the operation, or None for a subscription.
        endpoint: the endpoint that did not answer.
        attempts: how many times the request was sent.
    """

    def __init__(self, message, op=None, endpoint=None, attempts=0):
        """message for people; op, endpoint and attempts as described above."""
        self.op = op
        self.endpoint = endpoint
        self.attempts = attempts
        super().__init__(message)


class ProtocolError(IsvdError):
    """A reply or snapshot that does not follow protocol v1."""


class InputError(IsvdError, ValueError):
    """An argument refused locally, before anything was sent (e.g. a matrix of strings)."""


class ClosedError(IsvdError):
    """The client (or subscription) has been closed."""


_BY_CODE = {
    "BAD_REQUEST": BadRequest,
    "UNKNOWN_OP": UnknownOp,
    "BAD_MATRIX": BadMatrix,
    "DIM_MISMATCH": DimMismatch,
    "NON_FINITE": NonFinite,
    "TOO_LARGE": TooLarge,
    "NOT_READY": NotReady,
    "UNAVAILABLE": Unavailable,
    "UNAUTHORIZED": Unauthorized,
    "RATE_LIMITED": RateLimited,
    "INTERNAL": InternalError,
}


def retry_after_ms(err):
    """The error map's retry_after_ms as a non-negative int (0 when absent or malformed)."""
    v = err.get("retry_after_ms") if isinstance(err, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def server_error(code, message, op=None, err=None):
    """The ServerError subclass instance for a protocol error code.

    An unknown (or non-string) code becomes InternalError with code
    "INTERNAL" and the received code in ``raw_code``.  err: the reply's
    error map, for the keys some codes carry (RATE_LIMITED: retry_after_ms).
    """
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        return InternalError("INTERNAL", f"{message} (unknown error code {code!r})", op, raw_code=code)
    if cls is RateLimited:
        return cls(code, message, op, retry_after_ms=retry_after_ms(err))
    return cls(code, message, op)
