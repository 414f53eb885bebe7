"""isvd.client — the Client and Subscription classes: protocol v1 over ZeroMQ.

A Client talks to one isvdd: DEALER sockets to its ingest (push) and query
(everything else) ROUTERs, and a SUB socket per subscription to its
publisher.  Matrices travel as numpy arrays in the shaped binary form.

DESIGN
    Requests (Lazy Pirate).  Every request gets an `id` (an integer counting
    up per client) and waits at most `timeout` seconds for the reply with
    that id; replies with another id are stale and dropped.  When the wait
    runs out, the socket is closed (linger 0, so nothing queued is sent
    later) and a fresh one connected — a DEALER cannot otherwise tell a slow
    daemon from a lost message — and the same body is sent again, up to
    `retries` times; then Timeout is raised.

        send ──reply with our id──► return / raise ServerError
          │
          └─timeout─► close + reconnect ─► send again (≤ retries) ─► Timeout

    Resending is safe: queries change nothing, and every push carries this
    client's id and a batch number, so the daemon applies a resent push at
    most once (PROTOCOL.md §5, push) and answers `duplicate: true` with the
    original seq if an earlier attempt got through.

    Rate limits.  A push refused RATE_LIMITED (its pusher over the daemon's
    limits.push_rows_per_s; nothing of it applied) is sent again, same
    client and batch, after the retry_after_ms the daemon gave, up to
    `retries` times per push; then RateLimited is raised.  push_many()
    holds its later pushes back meanwhile and sends the waiting ones one at
    a time, so that a full window does not spend its retries refused
    together.

    Batch numbers.  The daemon remembers each client's last 8 applied
    batches and answers a batch number older than all of them as a
    duplicate (seq 0, unknown) rather than risk applying it twice, so
    automatic numbers start at 1 and only go up; an explicit `batch=` moves
    the counter past it.  A refused push (an error reply) still uses up its
    number, which is harmless.

    CURVE.  With server_key and client_key (key files from `isvd keygen`)
    every socket, subscriptions included, is a CurveZMQ client: encrypted,
    and authenticated by the daemon's ZAP handler.  A key the daemon does not
    admit on a socket gets no reply at all, so it shows as Timeout.

    Sockets are created on first use, so constructing a Client contacts
    nothing.  A Client and its subscriptions are not thread-safe (ZeroMQ
    sockets are not): use one Client per thread.
"""
import collections
import math
import os
import time
import uuid
from typing import NamedTuple

import numpy as np
import zmq
from zmq.utils import z85 as _z85

from .codec import decode_matrix, decode_vector, encode_matrix, pack, unpack
from .errors import ClosedError, InputError, ProtocolError, Timeout, retry_after_ms, server_error
from .factors import Factors

__all__ = ["Client", "Ack", "Subscription", "DEFAULT_ENDPOINTS", "TOPICS", "read_key_file",
           "keygen"]

DEFAULT_ENDPOINTS = {
    "ingest": "tcp://127.0.0.1:5570",
    "query": "tcp://127.0.0.1:5571",
    "publish": "tcp://127.0.0.1:5572",
}
TOPICS = ("spectrum", "factors", "anomaly", "drift")
_SPACES = ("scores", "u")


class Ack(NamedTuple):
    """The daemon's answer to a push.

    Fields:
        accepted: rows applied by this push (0 for a duplicate).
        seq: sequence number of the push's last row (rows count from 1). For
            a duplicate, the original push's seq, or 0 when the daemon no
            longer remembers it.
        duplicate: the daemon had already applied this (client, batch) and
            applied nothing now.  After a retry (``attempts > 1``) this means
            an earlier attempt got through: the rows are in the model once.
        client: the client id the push was sent with.
        batch: the batch number the push was sent with.
        attempts: how many times the request was sent (1 = no retry).
        spe, t2: with ``push(..., scores=True)`` on a daemon with
            ``monitor.enabled``: each row's SPE and Hotelling's T² against the
            model before it (float64 arrays); else None.
        spe_limit, t2_limit: the control limits those rows were held to
            (inf during warm-up), or None.
    """
    accepted: int
    seq: int
    duplicate: bool
    client: str
    batch: int
    attempts: int = 1
    spe: object = None
    t2: object = None
    spe_limit: object = None
    t2_limit: object = None


def _endpoint(given, which):
    if given:
        return given
    return os.environ.get("ISVD_" + which.upper()) or DEFAULT_ENDPOINTS[which]


def read_key_file(path, secret=False):
    """The Z85 key (bytes, 40 characters) in a key file written by `isvd keygen`
    or keygen(): '#' comment lines, then one key line.  secret=False refuses a
    file whose comment marks it secret (the .key file given where the .pub
    belongs).  Raises InputError for a file that is not a key file."""
    try:
        with open(path, "rb") as f:
            text = f.read(4097)
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    if len(text) > 4096:
        raise InputError(f"{path}: larger than 4096 bytes; not a key file")
    keys, marked_secret = [], False
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith(b"#"):
            marked_secret |= b"secret" in line
            continue
        keys.append(line)
    if len(keys) != 1 or len(keys[0]) != 40:
        raise InputError(f"{path}: not a key file (one line of 40 Z85 characters expected)")
    try:
        _z85.decode(keys[0])
    except Exception:
        raise InputError(f"{path}: not a valid Z85 key") from None
    if marked_secret and not secret:
        raise InputError(f"{path}: a secret key file; the daemon's public key (.pub) is needed here")
    return keys[0]


def keygen(name):
    """Writes a new CURVE key pair, NAME.key (secret, mode 0600) and NAME.pub,
    as `isvd keygen NAME` does; never overwrites.  Returns the public key (str)."""
    public, secret = zmq.curve_keypair()
    fd = os.open(name + ".key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(b"# isvd CURVE secret key: keep it private (mode 0600)\n# public key: "
                + public + b"\n" + secret + b"\n")
    try:
        fd = os.open(name + ".pub", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(b"# isvd CURVE public key\n" + public + b"\n")
    except OSError:
        os.unlink(name + ".key")
        raise
    return public.decode()


class _Curve:
    """The CURVE client keys of a Client, applied to every socket it makes."""

    def __init__(self, server_key, client_key):
        server_key = server_key or os.environ.get("ISVD_SERVER_KEY") or None
        client_key = client_key or os.environ.get("ISVD_CLIENT_KEY") or None
        self.on = bool(server_key or client_key)
        if not self.on:
            return
        if not (server_key and client_key):
            raise InputError("CURVE needs both server_key and client_key "
                             "(or ISVD_SERVER_KEY and ISVD_CLIENT_KEY)")
        if not zmq.has("curve"):
            raise InputError("this libzmq has no CURVE support")
        self.server = read_key_file(server_key)
        self.secret = read_key_file(client_key, secret=True)
        self.public = zmq.curve_public(self.secret)

    def apply(self, sock):
        if self.on:
            sock.curve_serverkey = self.server
            sock.curve_publickey = self.public
            sock.curve_secretkey = self.secret


def _check_timeout(timeout, name="timeout"):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not timeout > 0 or math.isinf(timeout):
        raise InputError(f"{name} must be a positive number of seconds or None, got {timeout!r}")
    return float(timeout)


def _poll_ms(deadline):
    """Milliseconds left until deadline (None: wait forever), at least 0."""
    if deadline is None:
        return None
    return max(0, int(math.ceil((deadline - time.monotonic()) * 1000)))


class Client:
    """A connection to one isvdd daemon.

    Args:
        ingest, query, publish: ZeroMQ endpoints of the daemon's sockets.
            Each defaults to the environment variable ISVD_INGEST,
            ISVD_QUERY or ISVD_PUBLISH, else tcp://127.0.0.1:5570, 5571, 5572.
        timeout: seconds to wait for each reply attempt (None: wait forever,
            and never retry).  Default 5.
        retries: how many times a request that timed out is sent again (on a
            fresh socket) before Timeout is raised, and a push refused
            RATE_LIMITED is sent again (after the wait the daemon asks for)
            before RateLimited is raised.  Default 3.
        client_id: the name pushes are sent under, 1–255 bytes of UTF-8
            without NUL; it and the batch numbers make retried pushes safe.
            Default: a random unique id ("py-" + 32 hex digits).  Reuse an id
            across Client objects only if their batch numbers keep rising.
        context: a zmq.Context to use; by default the client makes its own
            and terminates it on close().
        server_key, client_key: CURVE key files (README, Security): the
            daemon's public key (its .pub) and this client's secret key (its
            .key).  Each defaults to the environment variable ISVD_SERVER_KEY
            or ISVD_CLIENT_KEY; none at all means no CURVE.  Read here, so a
            bad file raises InputError at once.

    Use as a context manager, or call close() when done::

        with isvd.Client() as c:
            c.push(np.random.rand(100, 64))
            print(c.info()["sigma"])

    Every method that talks to the daemon raises ServerError (with the
    protocol's ``code`` and ``message``) when the daemon refuses, Timeout
    when it does not answer, and InputError for arguments refused locally.
    """

    def __init__(self, ingest=None, query=None, publish=None, timeout=5.0, retries=3,
                 client_id=None, context=None, server_key=None, client_key=None):
        """Checks the arguments and records the endpoints; connects nothing yet (see the class)."""
        self.endpoints = {"ingest": _endpoint(ingest, "ingest"),
                          "query": _endpoint(query, "query"),
                          "publish": _endpoint(publish, "publish")}
        self.timeout = _check_timeout(timeout)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InputError(f"retries must be a non-negative integer, got {retries!r}")
        self.retries = retries
        if client_id is None:
            client_id = "py-" + uuid.uuid4().hex
        if not isinstance(client_id, str) or not 1 <= len(client_id.encode()) <= 255 \
                or "\0" in client_id:
            raise InputError("client_id must be a string of 1-255 UTF-8 bytes without NUL")
        self.client_id = client_id
        self._curve = _Curve(server_key, client_key)
        self.last_seq = None       #: seq of the last reply that carried one
        self._next_batch = 1
        self._next_id = 0
        self._own_ctx = context is None
        self._ctx = zmq.Context() if context is None else context
        self._socks = {"ingest": None, "query": None}
        self._subs = []
        self._closed = False

    @property
    def ingest(self):
        """The ingest endpoint (push)."""
        return self.endpoints["ingest"]

    @property
    def query(self):
        """The query endpoint (every other operation)."""
        return self.endpoints["query"]

    @property
    def publish(self):
        """The publish endpoint (subscriptions)."""
        return self.endpoints["publish"]

    @property
    def next_batch(self):
        """The batch number the next push without an explicit batch will use."""
        return self._next_batch

    # ---------------------------------------------------------- operations

    def push(self, X, batch=None, scores=False):
        """Folds rows X into the model; returns an Ack (accepted, seq, duplicate, …).

        X: an (r, n) array or a 1-D row; float32 is sent as f32, float64 and
        integers as f64, without touching the values (NaN/inf get NON_FINITE
        from the daemon).  batch: this push's batch number; by default the
        next of this client's increasing numbers.  Sending an already applied
        (client, batch) again applies nothing and returns ``duplicate=True``.

        Timeouts are retried with the same client and batch, so the rows of
        a push that returns are in the model exactly once, even when a lost
        reply made the client resend (then ``duplicate`` is True and
        ``attempts`` > 1).  scores=True asks a monitoring daemon for each
        row's anomaly statistics in the Ack (spe, t2 and the limits).
        """
        rows = encode_matrix(X, "rows")
        if batch is None:
            batch = self._next_batch
        elif isinstance(batch, (bool, np.bool_)) or not isinstance(batch, (int, np.integer)) \
                or not 0 <= int(batch) < 2 ** 64:
            raise InputError(f"batch must be an integer in [0, 2^64), got {batch!r}")
        batch = int(batch)
        self._next_batch = max(self._next_batch, batch + 1)
        body = {"op": "push", "rows": rows, "client": self.client_id, "batch": batch}
        if scores:
            body["scores"] = True
        r, attempts = self._request("ingest", body)
        try:
            extra = ()
            if "spe" in r:
                extra = (decode_vector(r["spe"], "spe"), decode_vector(r["t2"], "t2"),
                         float(r["spe_limit"]), float(r["t2_limit"]))
            return Ack(int(r["accepted"]), int(r["seq"]), bool(r["duplicate"]),
                       self.client_id, batch, attempts, *extra)
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"push: malformed reply ({e!r})") from None

    def push_many(self, X, rows_per_push=256, window=16):
        """Pushes many rows with up to `window` pushes in flight; returns their Acks.

        X: a 2-D array, sent in pushes of `rows_per_push` rows, or an
        iterable of arrays, one push each.  Each push gets the next batch
        number, as push() does.  Pipelining hides the round trip, which is
        what limits push() on small pushes.  When no reply arrives for
        `timeout` seconds, every outstanding push is resent with the same
        (client, batch) on a fresh socket (at most `retries` times in a row),
        so nothing is lost or applied twice.  If the daemon refuses a push,
        no more are sent, the ones in flight are awaited, and that push's
        ServerError is raised with ``.acks`` (those received, in batch order).
        """
        self._check_open()
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise InputError(f"window must be a positive integer, got {window!r}")
        if isinstance(X, np.ndarray) or (isinstance(X, (list, tuple)) and X and
                                         not isinstance(X[0], np.ndarray)):
            A = np.asarray(X)
            if A.ndim != 2:
                raise InputError("push_many: X must be 2-D (or an iterable of arrays)")
            if isinstance(rows_per_push, bool) or not isinstance(rows_per_push, int) \
                    or rows_per_push < 1:
                raise InputError(f"rows_per_push must be a positive integer, got {rows_per_push!r}")
            blocks = (A[i:i + rows_per_push] for i in range(0, A.shape[0], rows_per_push))
        else:
            blocks = iter(X)
        pending = {}                     # id -> [frame, batch, sends, refusals]: on the wire
        deferred = collections.OrderedDict()   # id -> the same, refused RATE_LIMITED: waiting
        hold, probe = 0.0, None          # no deferred push goes out before hold; one out at a time
        acks, failure, timeouts = {}, None, 0
        while True:
            now = time.monotonic()
            if deferred and probe is None and now >= hold:
                rid, p = deferred.popitem(last=False)
                pending[rid], probe = p, rid
                p[2] += 1
                try:
                    self._socket("ingest").send(p[0])
                except zmq.Again:
                    pass
            while failure is None and not deferred and now >= hold and \
                    len(pending) + len(deferred) < window:
                x = next(blocks, None)
                if x is None:
                    break
                batch = self._next_batch
                self._next_batch += 1
                self._next_id += 1
                frame = pack({"op": "push", "rows": encode_matrix(x, "rows"),
                              "client": self.client_id, "batch": batch, "id": self._next_id})
                pending[self._next_id] = [frame, batch, 1, 0]
                try:
                    self._socket("ingest").send(frame)
                except zmq.Again:        # high-water mark: resent below on timeout
                    pass
            if not pending and not deferred:
                break
            sock = self._socket("ingest")
            wait_ms = None if self.timeout is None else int(self.timeout * 1000)
            if deferred and probe is None:
                due_ms = max(0, int((hold - time.monotonic()) * 1000) + 1)
                wait_ms = due_ms if wait_ms is None else min(wait_ms, due_ms)
            if not sock.poll(wait_ms):
                if not pending:
                    continue             # only deferred pushes: one is due now

                timeouts += 1
                self._drop("ingest")
                if self.timeout is None or timeouts > self.retries:
                    raise Timeout(f"push: no reply from {self.ingest} for {len(pending)} "
                                  f"push(es) after {timeouts} attempt(s)", "push", self.ingest,
                                  timeouts)
                for p in pending.values():   # the Lazy Pirate, for the whole window
                    p[2] += 1
                    try:
                        self._socket("ingest").send(p[0])
                    except zmq.Again:
                        pass
                continue
            timeouts = 0
            r = unpack(sock.recv_multipart()[-1])
            rid = r.get("id")
            if rid not in pending:
                continue                 # a stale reply to a resent push
            if rid == probe:
                probe = None
            err = r.get("error")
            if r.get("ok") is False and isinstance(err, dict) and \
                    err.get("code") == "RATE_LIMITED" and pending[rid][3] < self.retries:
                pending[rid][3] += 1     # nothing applied: the same push again, later
                deferred[rid] = pending.pop(rid)   # kept in batch order
                deferred = collections.OrderedDict(sorted(deferred.items(), key=lambda kv: kv[1][1]))
                hold = max(hold, time.monotonic() + min(retry_after_ms(err), 3600000) / 1000)
                continue
            _, batch, sends, _ = pending.pop(rid)
            if r.get("ok") is True:
                try:
                    acks[batch] = Ack(int(r["accepted"]), int(r["seq"]), bool(r["duplicate"]),
                                      self.client_id, batch, sends)
                except (KeyError, TypeError, ValueError) as e:
                    raise ProtocolError(f"push: malformed reply ({e!r})") from None
                self.last_seq = acks[batch].seq
            elif failure is None:
                err = r.get("error")
                if not isinstance(err, dict):
                    raise ProtocolError("push: error reply without an error map")
                failure = server_error(err.get("code"), str(err.get("message", "")), "push", err)
        result = [acks[b] for b in sorted(acks)]
        if failure is not None:
            failure.acks = result
            raise failure
        return result

    def project(self, X, space="scores", return_observed=False):
        """Projects rows X on the model: returns (coords, residual).

        space "scores" gives Vₖᵀ(x − μ) per row, "u" gives Σₖ⁺Vₖᵀ(x − μ).
        coords is an (r, k) float64 array (a 1-D X is one row, r = 1);
        residual an (r,) array of the distances ‖(x − μ) − VₖVₖᵀ(x − μ)‖.
        Rows may have gaps (np.nan, None, masked entries): such a row is
        first completed by the estimator the daemon imputes with, then
        projected; its residual covers only its observed values.  With return_observed=True the result is (coords,
        residual, observed), observed an (r,) int array counting the values
        each residual covers.
        """
        if space not in _SPACES:
            raise InputError(f"space must be one of {_SPACES}, got {space!r}")
        body = encode_matrix(X, "rows")
        r, _ = self._request("query", {"op": "project", "rows": body, "space": space})
        try:
            coords = decode_matrix(r["coords"], "coords")
            residual = decode_vector(r["residual"], "residual")
        except KeyError as e:
            raise ProtocolError(f"project: reply lacks {e}") from None
        if not return_observed:
            return coords, residual
        if r.get("observed") is not None:
            observed = decode_vector(r["observed"], "observed").astype(np.int64)
        else:   # no row had a gap
            observed = np.full(len(residual), body["shape"][1], dtype=np.int64)
        return coords, residual, observed

    def reconstruct(self, X, fill=False):
        """Rows X rebuilt from the model: an (r, n) float64 array.

        By default the model's reconstruction μ + VₖVₖᵀ(x − μ) of every value
        (for a row with gaps, of the row completed by the imputation
        estimator).  With fill=True, gap filling: each row keeps its observed
        values and only its gaps (np.nan, None, masked entries) are filled,
        by the estimator the daemon imputes with at ingest.
        """
        body = {"op": "reconstruct", "rows": encode_matrix(X, "rows")}
        if fill:
            body["fill"] = True
        r, _ = self._request("query", body)
        try:
            return decode_matrix(r["rows"], "rows")
        except KeyError as e:
            raise ProtocolError(f"reconstruct: reply lacks {e}") from None

    def factors(self):
        """The model's current factors as a Factors snapshot (sigma, vt, mean, seq)."""
        r, _ = self._request("query", {"op": "factors"})
        return Factors.from_body(r)

    def info(self):
        """The model's state as a dict (PROTOCOL.md §5 `info`).

        Keys include dim, rank, rank_max, rows_seen, seq, sigma (a float64
        ndarray), explained_energy_ratio, condition_number,
        orthogonality_error, center, forget, last_checkpoint_seq, uptime_s,
        ingest_rows_per_s, missing ("reject" or "impute"), rows_with_gaps and
        values_imputed (since the daemon started), pushers (a list of dicts
        {key, pushes, rows, limited_pushes, limited_rows}: per pusher, what
        the daemon's rate limit let through and refused); keys a newer
        daemon adds are passed through.
        """
        r, _ = self._request("query", {"op": "info"})
        out = {k: v for k, v in r.items() if k not in ("ok", "id")}
        if "sigma" in out:
            out["sigma"] = decode_vector(out["sigma"], "sigma")
        return out

    def ping(self):
        """Checks the daemon answers: returns {"version": "x.y.z", "protocol": 1}."""
        r, _ = self._request("query", {"op": "ping"})
        return {k: v for k, v in r.items() if k not in ("ok", "id")}

    def checkpoint(self):
        """Asks the daemon for a durable checkpoint; returns the seq it covers.

        The reply comes once the checkpoint is durable.  A daemon without
        storage raises Unavailable (code "UNAVAILABLE").
        """
        r, _ = self._request("query", {"op": "checkpoint"})
        try:
            return int(r["seq"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("checkpoint: reply lacks seq") from None

    def subscribe(self, topic="spectrum", timeout=None):
        """Subscribes to published snapshots; returns a Subscription (an iterator).

        topic: "spectrum", "factors", "anomaly", "drift", or a list of them.
        Iterating yields, in arrival order, a dict per `spectrum` snapshot
        (seq, rows_seen, sigma as an ndarray, explained_energy_ratio, t, …), a
        Factors per `factors` snapshot, and from a monitoring daemon a dict
        per `anomaly` message (seq: the flagged rows' positions, spe and t2
        as ndarrays, spe_limit, t2_limit, t; topic "anomaly") and per `drift`
        message (seq, angle_deg, threshold_deg, baseline_seq, exceeded, t;
        topic "drift").  timeout: seconds to wait for each snapshot
        before Timeout is raised (None: forever).  The daemon publishes only
        when the model changed, and a new subscriber misses what was sent
        before it connected.  close() the subscription (or the client) when
        done, or use it as a context manager.
        """
        self._check_open()
        self._subs = [s for s in self._subs if not s.closed]
        sub = Subscription(self._ctx, self.endpoints["publish"], topic, timeout, _curve=self._curve)
        self._subs.append(sub)
        return sub

    # -------------------------------------------------------------- life

    def close(self):
        """Closes every socket and subscription (pending requests are dropped). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for sub in self._subs:
            sub.close()
        self._subs = []
        for which in self._socks:
            self._drop(which)
        if self._own_ctx:
            self._ctx.term()

    @property
    def closed(self):
        """Whether close() has been called."""
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else "open"
        return (f"isvd.Client(ingest={self.ingest!r}, query={self.query!r}, "
                f"publish={self.publish!r}, client_id={self.client_id!r}, {state})")

    # ---------------------------------------------------------- plumbing

    def _check_open(self):
        if self._closed:
            raise ClosedError("the client is closed")

    def _socket(self, which):
        s = self._socks[which]
        if s is None:
            s = self._ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            self._curve.apply(s)
            if self.timeout is not None:
                s.setsockopt(zmq.SNDTIMEO, int(math.ceil(self.timeout * 1000)))
            s.connect(self.endpoints[which])
            self._socks[which] = s
        return s

    def _drop(self, which):
        s = self._socks[which]
        self._socks[which] = None
        if s is not None:
            s.close(0)

    def _request(self, which, body):
        """Sends body to socket `which` with Lazy Pirate retries.

        Returns (reply dict with ok true, attempts); raises ServerError for
        ok false, Timeout when every attempt timed out, ProtocolError for a
        malformed reply.
        """
        self._check_open()
        self._next_id += 1
        rid = self._next_id
        op = body["op"]
        frame = pack(dict(body, id=rid))
        attempts, limited = 0, 0
        while True:
            attempts += 1
            sock = self._socket(which)
            reply = None
            try:
                sock.send(frame)
                deadline = None if self.timeout is None else time.monotonic() + self.timeout
                while True:
                    if not sock.poll(_poll_ms(deadline)):
                        break
                    candidate = unpack(sock.recv_multipart()[-1])
                    if candidate.get("id") == rid:
                        reply = candidate
                        break
                    # a stale reply (another id): keep waiting for ours
            except zmq.Again:        # send timed out (high-water mark reached)
                pass
            if reply is not None:
                err = reply.get("error")
                if reply.get("ok") is False and isinstance(err, dict) and \
                        err.get("code") == "RATE_LIMITED" and limited < self.retries:
                    limited += 1         # nothing applied: the same push, after the wait asked
                    time.sleep(min(retry_after_ms(err), 3600000) / 1000)
                    continue
                break
            self._drop(which)        # the Lazy Pirate: a fresh socket, then resend
            if self.timeout is None or attempts > self.retries:
                raise Timeout(f"{op}: no reply from {self.endpoints[which]} after {attempts} "
                              f"attempt(s) of {self.timeout} s", op, self.endpoints[which], attempts)
        ok = reply.get("ok")
        if ok is True:
            seq = reply.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                self.last_seq = seq
            return reply, attempts
        if ok is False:
            err = reply.get("error")
            if not isinstance(err, dict):
                raise ProtocolError(f"{op}: error reply without an error map")
            raise server_error(err.get("code"), str(err.get("message", "")), op, err)
        raise ProtocolError(f"{op}: reply has no boolean 'ok'")


class Subscription:
    """An iterator over snapshots from the daemon's publish socket.

    Made by Client.subscribe().  ``next(sub)`` / ``for snap in sub`` wait up
    to the subscription's timeout for the next snapshot and raise Timeout
    when none comes; recv(timeout) does the same with a timeout of its own.
    A snapshot is a dict for topic `spectrum` and a Factors for `factors`.
    """

    def __init__(self, ctx, endpoint, topic="spectrum", timeout=None, _curve=None):
        """Connects a SUB socket to endpoint for topic (a name or a list of names)."""
        topics = [topic] if isinstance(topic, (str, bytes)) else list(topic)
        topics = [t.decode() if isinstance(t, bytes) else t for t in topics]
        if not topics or any(t not in TOPICS for t in topics):
            raise InputError(f"topic must be one of {TOPICS} or a list of them, got {topic!r}")
        self.topics = tuple(topics)
        self.endpoint = endpoint
        self.timeout = _check_timeout(timeout)
        self._sock = ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        if _curve is not None:
            _curve.apply(self._sock)
        for t in self.topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self._sock.connect(endpoint)

    _DEFAULT = object()

    def recv(self, timeout=_DEFAULT):
        """Waits for the next snapshot (at most timeout seconds; default: the
        subscription's timeout) and returns it decoded; Timeout when none came."""
        if self._sock is None:
            raise ClosedError("the subscription is closed")
        timeout = self.timeout if timeout is Subscription._DEFAULT else _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not self._sock.poll(_poll_ms(deadline)):
                raise Timeout(f"no {'/'.join(self.topics)} snapshot from {self.endpoint} "
                              f"within {timeout} s", None, self.endpoint, 1)
            frames = self._sock.recv_multipart()
            if len(frames) != 2:
                raise ProtocolError(f"snapshot with {len(frames)} frames; 2 expected")
            topic = frames[0].decode("ascii", "replace")
            if topic not in self.topics:      # SUBSCRIBE matches prefixes
                continue
            return self.decode(topic, frames[1])

    @staticmethod
    def decode(topic, frame):
        """A snapshot body: a dict for "spectrum" (sigma as ndarray), a Factors for "factors"."""
        body = unpack(frame)
        if topic == "factors":
            return Factors.from_body(body)
        if topic in ("anomaly", "drift"):
            body["topic"] = topic
            for k in ("spe", "t2"):
                if k in body:
                    body[k] = decode_vector(body[k], k)
            return body
        if "sigma" in body:
            body["sigma"] = decode_vector(body["sigma"], "sigma")
        return body

    def __iter__(self):
        return self

    def __next__(self):
        """The next snapshot; raises Timeout after the subscription's timeout."""
        return self.recv()

    def close(self):
        """Closes the SUB socket. Idempotent."""
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    @property
    def closed(self):
        """Whether close() has been called."""
        return self._sock is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
