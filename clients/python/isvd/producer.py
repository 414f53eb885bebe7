"""isvd.producer — Producer: one-row pushes batched on the client side.

A sensor loop that pushes each reading as it comes pays one request, one log
record and one ack per row.  A Producer collects rows and sends them in
batches, as Kafka's producers do (linger.ms, batch.size):

    with isvd.Producer(client, linger_ms=5, max_rows=1024) as p:
        for x in readings():
            p.push_row(x)                  # copies x into the batch, returns at once
    # leaving the block flushes: every row sent and acknowledged
    print(p.stats())

DESIGN
    push_row() / push_rows() copy rows into the open batch under a lock and
    return.  One background thread, the only user of the client from then
    on, seals the open batch when it holds max_rows rows or linger_ms after
    its first row, and pushes sealed batches one at a time, in order.

        push_row ──► open batch ──(max_rows | linger_ms)──► sealed queue
                                                               │ thread
        ack ◄── client.push(rows, batch=b) ◄───────────────────┘
             └─ Timeout ─► same (client, b) again, until delivery_timeout
             └─ RateLimited (the client's own retries spent) ─► wait the
                retry_after_ms asked, same (client, b) again, until
                delivery_timeout

    Every batch gets its batch number once, before its first send, and every
    resend uses it again, so a batch is applied at most once however often
    the daemon restarts or replies are lost (the daemon remembers applied
    (client, batch) pairs across restarts; a resent batch it has applied
    answers duplicate, and its rows count as delivered).  A batch the
    daemon refuses (ServerError), or that finds no daemon within
    delivery_timeout seconds of its first send, is reported as a
    BatchError with its rows' range (row numbers count push_row calls from
    0) and the next batch goes on.

    A push whose rows have another number of values than the open batch's
    seals it and opens a new one: the daemon, which knows the model's
    dimension, judges each batch (a wrong one is a BatchError with its
    rows).  Memory is bounded: while max_batches sealed batches wait,
    push_row blocks until one is sent.

    Thread-safe: push_row, push_rows, flush and stats may be called from
    any thread.  The client given must not be used elsewhere meanwhile
    (ZeroMQ sockets are not thread-safe); close() returns it unused.

    libisvd's producer (clients/c/include/isvd/producer.h) has the same
    defaults (linger_ms 5, max_rows 1024, max_batches 64, delivery timeout
    120 s), the same counts and the same row numbering; it keeps up to 8
    batches in flight where this one sends one at a time.
"""
import collections
import threading
import time
from typing import NamedTuple

import numpy as np

from .codec import as_rows
from .errors import ClosedError, InputError, IsvdError, RateLimited, ServerError, Timeout

__all__ = ["Producer", "BatchError", "ProducerError"]


class BatchError(NamedTuple):
    """A batch that was not delivered: rows first..last (inclusive, counted
    from 0 over the producer's rows), its batch number and the exception."""
    first: int
    last: int
    batch: int
    error: Exception


class ProducerError(IsvdError):
    """Raised by close() / leaving the with block when batches failed and no
    on_error callback was given; .errors lists them (BatchError)."""

    def __init__(self, errors):
        self.errors = list(errors)
        e = self.errors[0]
        super().__init__(f"{len(self.errors)} batch(es) not delivered; the first: rows "
                         f"{e.first}..{e.last} (batch {e.batch}): {e.error}")


class Producer:
    """Client-side batching of one-row (or few-row) pushes.

    Args:
        client: an isvd.Client, used only by the producer's thread.
        linger_ms: the longest a row waits for its batch to fill (default 5).
        max_rows: rows per batch (default 1024).
        max_batches: sealed batches held before push_row blocks (default 64).
        delivery_timeout: seconds a batch is resent, with the same batch
            number, before it is given up (default 120): covers daemon
            restarts.  Each attempt waits the client's timeout × retries.
        on_error: called with a BatchError, on the producer's thread, for
            each batch not delivered; without it close() raises
            ProducerError.
    """

    def __init__(self, client, *, linger_ms=5, max_rows=1024, max_batches=64,
                 delivery_timeout=120.0, on_error=None):
        if not (isinstance(max_rows, int) and max_rows >= 1):
            raise InputError(f"max_rows must be an int >= 1, got {max_rows!r}")
        if not (isinstance(max_batches, int) and max_batches >= 1):
            raise InputError(f"max_batches must be an int >= 1, got {max_batches!r}")
        if not (linger_ms >= 0 and delivery_timeout > 0):
            raise InputError("linger_ms must be >= 0 and delivery_timeout > 0")
        self._client = client
        self._linger = float(linger_ms) / 1000.0
        self._max_rows = max_rows
        self._max_batches = max_batches
        self._delivery_timeout = float(delivery_timeout)
        self._on_error = on_error
        self._cv = threading.Condition()
        self._dim = None
        self._open = []              # rows (1-D float arrays) of the open batch
        self._open_first = 0         # row number of its first row
        self._open_since = 0.0       # monotonic time of its first row
        self._sealed = collections.deque()    # (first row number, rows array)
        self._busy = False           # the thread is sending a batch
        self._closed = False
        self._rows_in = 0
        self._counts = collections.Counter()
        self.errors = []
        self._thread = threading.Thread(target=self._run, name="isvd-producer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ producing

    def push_row(self, x):
        """Copies one row (1-D, or a 2-D array of one row) into the open batch."""
        a = as_rows(x, "row").astype(np.float64, copy=False)
        if a.shape[0] != 1:
            raise InputError(f"row: push_row takes one row, got {a.shape[0]}; use push_rows")
        self._append(a)

    def push_rows(self, X):
        """Copies rows (2-D) into the open batch, sealing batches as they fill."""
        self._append(as_rows(X, "rows").astype(np.float64, copy=False))

    def _append(self, a):
        with self._cv:
            if self._closed:
                raise ClosedError("the producer is closed")
            if a.shape[1] != self._dim:
                self._seal()                     # the daemon judges each dimension's batch
                self._dim = a.shape[1]
            for row in a:
                if not self._open:
                    self._open_first = self._rows_in
                    self._open_since = time.monotonic()
                    self._cv.notify_all()        # the thread starts the linger clock
                self._open.append(row.copy())
                self._rows_in += 1
                if len(self._open) >= self._max_rows:
                    self._seal()

    def _seal(self, wait=True):
        """Moves the open batch to the sealed queue (lock held); a pusher
        (wait) first waits while max_batches batches are sealed."""
        if self._open:
            while wait and len(self._sealed) >= self._max_batches and self._thread.is_alive():
                self._cv.wait(0.1)
            self._sealed.append((self._open_first, np.vstack(self._open)))
            self._open = []
            self._cv.notify_all()

    # ------------------------------------------------------------ the thread

    def _run(self):
        while True:
            with self._cv:
                while True:
                    if self._open and (self._closed or self._flushing
                                       or time.monotonic() - self._open_since >= self._linger):
                        self._seal(wait=False)
                    if self._sealed:
                        first, rows = self._sealed.popleft()
                        self._busy = True
                        self._cv.notify_all()        # room for a waiting pusher
                        break
                    if self._closed and not self._open:
                        self._cv.notify_all()
                        return
                    wait = None
                    if self._open:
                        wait = max(0.0, self._open_since + self._linger - time.monotonic())
                    self._cv.wait(wait)
            self._send(first, rows)
            with self._cv:
                self._busy = False
                self._cv.notify_all()

    _flushing = False

    def _send(self, first, rows):
        c = self._client
        batch = c.next_batch                # the first push(batch=) moves the counter past it
        give_up = time.monotonic() + self._delivery_timeout
        attempts = 0
        while True:
            attempts += 1
            if attempts == 1:
                with self._cv:
                    self._counts["batches_sent"] += 1
            try:
                ack = c.push(rows, batch=batch)
            except Timeout as e:
                if time.monotonic() < give_up:
                    with self._cv:
                        self._counts["resends"] += 1
                    continue
                self._fail(first, rows, batch, e)
                return
            except RateLimited as e:        # nothing applied: the same batch, after the wait
                wait = max(e.retry_after_ms, 1) / 1000
                if time.monotonic() + wait < give_up:
                    with self._cv:
                        self._counts["resends"] += 1
                    time.sleep(wait)
                    continue
                self._fail(first, rows, batch, e)
                return
            except (ServerError, IsvdError) as e:
                self._fail(first, rows, batch, e)
                return
            with self._cv:
                self._counts["batches"] += 1
                if ack.duplicate:
                    self._counts["rows_duplicate"] += len(rows)
                    self._counts["batches_duplicate"] += 1
                else:
                    self._counts["rows_accepted"] += ack.accepted
                if ack.seq > self._counts["last_seq"]:
                    self._counts["last_seq"] = ack.seq
            return

    def _fail(self, first, rows, batch, e):
        err = BatchError(first, first + len(rows) - 1, batch, e)
        with self._cv:
            self._counts["batches_failed"] += 1
            self._counts["rows_failed"] += len(rows)
            self.errors.append(err)
        if self._on_error is not None:
            self._on_error(err)

    # ------------------------------------------------------------ control

    def flush(self, timeout=None):
        """Sends the open batch now and waits until every row pushed so far is
        delivered or failed.  Returns True, or False when timeout (seconds)
        ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            target = self._rows_in
            self._flushing = True
            self._cv.notify_all()
            try:
                while self._done() < target:
                    if not self._thread.is_alive():
                        raise ClosedError("the producer's thread has stopped")
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cv.wait(left)
            finally:
                self._flushing = False
        return True

    def _done(self):
        c = self._counts
        return c["rows_accepted"] + c["rows_duplicate"] + c["rows_failed"]

    def stats(self):
        """A dict of counts, as libisvd's struct isvd_producer_stats: rows_in
        (push_row/push_rows rows), rows_accepted, rows_duplicate (in batches
        the daemon had already applied: delivered once), rows_failed,
        rows_pending (rows_in is the sum of these four), batches (delivered),
        batches_duplicate, batches_failed, batches_sent (first sends),
        resends (sends again after the client's own retries ran out),
        last_seq."""
        with self._cv:
            s = {k: self._counts[k] for k in ("rows_accepted", "rows_duplicate", "rows_failed",
                                              "batches", "batches_duplicate", "batches_failed",
                                              "batches_sent", "resends", "last_seq")}
            s["rows_in"] = self._rows_in
            s["rows_pending"] = self._rows_in - self._done()
        return s

    def close(self):
        """Flushes, stops the thread; raises ProducerError when batches failed
        and no on_error callback was given.  Idempotent."""
        with self._cv:
            already = self._closed
            self._closed = True
            self._cv.notify_all()
        self._thread.join()
        if not already and self.errors and self._on_error is None:
            raise ProducerError(self.errors)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:                       # an exception is already on its way: do not mask it
            try:
                self.close()
            except ProducerError:
                pass
