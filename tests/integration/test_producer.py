"""isvd.Producer (clients/python/isvd/producer.py) against the real isvdd:
one-row pushes batched on the client side by size and by linger, thread
safety, per-batch errors with the rows' range, and 100,000 single-row
pushes across a daemon killed with SIGKILL and restarted mid-stream (down
longer than the client's own retries last, so the producer resends), after
which every row is in the model exactly once (exact mode: σ equal numpy's
of the rows sent) and the producer's counts add up.  Every wait is bounded.
"""
import threading
import time

import numpy as np
import pytest

import isvd
from isvdd_harness import Daemon

REPLY_TIMEOUT = 20.0


def client(d, **kw):
    kw.setdefault("timeout", REPLY_TIMEOUT)
    return isvd.Client(ingest=d.ingest, query=d.query, publish=d.publish, **kw)


def wait_for(cond, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def sigma_of(X):
    return np.linalg.svd(X, compute_uv=False)


def test_batches_by_size_and_by_linger(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2501, 5))
    with Daemon(tmp_path, model={"dim": 5, "rank": 5}) as d, client(d) as c:
        p = isvd.Producer(c, linger_ms=600000, max_rows=1000)
        for x in X[:2500]:
            p.push_row(x)
        wait_for(lambda: p.stats()["batches"] == 2, "two full batches sent")
        time.sleep(0.2)
        s = p.stats()               # the third batch is open, lingering
        assert s["rows_accepted"] == 2000 and s["rows_pending"] == 500 and s["batches"] == 2
        assert p.flush(timeout=30) is True
        s = p.stats()
        assert s["rows_accepted"] == 2500 and s["rows_pending"] == 0 and s["batches"] == 3
        p.close()
        assert d.info()["rows_seen"] == 2500
        with pytest.raises(isvd.ClosedError):
            p.push_row(X[0])

    with Daemon(tmp_path, model={"dim": 5, "rank": 5}, name="b") as d, client(d) as c:
        p = isvd.Producer(c, linger_ms=20, max_rows=1000)
        p.push_row(X[2500])
        wait_for(lambda: p.stats()["rows_accepted"] == 1, "a lone row sent after its linger")
        p.close()
        assert d.info()["rows_seen"] == 1


def test_thread_safe_and_counts(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((8000, 6))
    with Daemon(tmp_path, model={"dim": 6, "rank": 6}) as d, client(d) as c:
        with isvd.Producer(c, linger_ms=2, max_rows=256) as p:
            def feed(part):
                for i, x in enumerate(part):
                    if i % 100 == 0:
                        p.push_rows(part[i:i + 3])          # a few rows at once, too
                    p.push_row(x)
            parts = np.array_split(X, 4)
            threads = [threading.Thread(target=feed, args=(part,)) for part in parts]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        extra = sum(len(part[i:i + 3]) for part in parts for i in range(0, len(part), 100))
        s = p.stats()
        assert s["rows_in"] == 8000 + extra == s["rows_accepted"]
        assert s["rows_pending"] == 0 and s["rows_failed"] == 0 and not p.errors
        assert d.info()["rows_seen"] == 8000 + extra


def test_refused_batch_is_reported_with_its_rows(tmp_path):
    X = np.ones((30, 3))
    X[12, 1] = np.nan                       # the daemon (missing: reject) refuses its batch
    with Daemon(tmp_path, model={"dim": 3, "rank": 3}) as d, client(d) as c:
        p = isvd.Producer(c, linger_ms=600000, max_rows=10)
        p.push_rows(X)
        with pytest.raises(isvd.ProducerError) as e:
            p.close()
        (err,) = e.value.errors
        assert (err.first, err.last) == (10, 19) and isinstance(err.error, isvd.NonFinite)
        s = p.stats()
        assert s["rows_accepted"] == 20 and s["rows_failed"] == 10 and s["batches_failed"] == 1
        assert d.info()["rows_seen"] == 20
        seen = []
        with isvd.Producer(c, max_rows=10, on_error=seen.append) as p:    # a callback: no raise
            p.push_rows(X)
        assert [(b.first, b.last) for b in seen] == [(10, 19)]
        # a row of another dimension goes in a batch of its own, which the
        # daemon refuses; the rows around it are applied (as libisvd's producer)
        seen = []
        with isvd.Producer(c, linger_ms=600000, on_error=seen.append) as q:
            q.push_row(np.ones(3))
            q.push_row(np.ones(2))
            q.push_rows(np.ones((2, 3)))
        assert [(b.first, b.last) for b in seen] == [(1, 1)]
        assert isinstance(seen[0].error, isvd.DimMismatch)
        s = q.stats()
        assert s["rows_accepted"] == 3 and s["rows_failed"] == 1 and s["batches_sent"] == 3
        assert d.info()["rows_seen"] == 20 + 20 + 3


def test_100k_single_rows_across_a_kill_9(tmp_path):
    rng = np.random.default_rng(21)
    n, dim = 100_000, 8
    X = rng.standard_normal((n, dim)) * np.linspace(3.0, 0.5, dim)
    model = {"dim": dim, "rank": dim, "mode": "exact"}
    d = Daemon(tmp_path, model=model)
    c = client(d, timeout=0.5, retries=1)
    p = isvd.Producer(c, linger_ms=5, max_rows=1024, delivery_timeout=120)
    try:
        for i in range(n):
            p.push_row(X[i])
            if i == 40_000:
                wait_for(lambda: p.stats()["rows_accepted"] > 20_000, "rows acked before the kill")
                assert d.kill() == -9
                # down for longer than the client's timeout × (retries + 1),
                # so the producer itself resends the batch, same number
                time.sleep(3.0)
                d = Daemon(tmp_path, model=model)         # a restart: same storage
        p.close()
        s = p.stats()
        print(s)
        assert s["rows_in"] == n and s["rows_failed"] == 0 and s["rows_pending"] == 0
        assert s["rows_accepted"] + s["rows_duplicate"] == n and s["resends"] >= 1
        info = d.info()
        assert info["rows_seen"] == n                     # every row once: none lost, none doubled
        sigma, _, _, seq = d.factors()
        assert seq == n and s["last_seq"] <= n
        assert np.allclose(sigma, sigma_of(X), rtol=1e-9, atol=0)
    finally:
        c.close()
        d.stop()


# ---------------------------------------------------------------- libisvd's producer
# isvd-producer-check (clients/c/tests/producer_check.c) drives
# include/isvd/producer.h; it checks its own side and prints its counts.

import json
import os
import select
import subprocess

CHECK = os.environ.get("ISVD_PRODUCER_CHECK", "")
needs_check = pytest.mark.skipif(not CHECK or not os.access(CHECK, os.X_OK),
                                 reason="ISVD_PRODUCER_CHECK is not set (meson test sets it)")
DURABLE = {"storage": {"fsync": "always"}}


def check_args(d, *args):
    return [CHECK, *args, "--ingest", d.ingest, "--query", d.query, "--publish", d.publish]


def run_check(d, *args, timeout=120):
    p = subprocess.run(check_args(d, *args), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr, d.log()[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def expected_rows(n, dim):
    """The rows isvd-producer-check sends: value j of row g is sin(0.37 g (j+1) + j)."""
    g = np.arange(1, n + 1, dtype=float)[:, None]
    j = np.arange(dim, dtype=float)[None, :]
    return np.sin(0.37 * g * (j + 1) + j)


@needs_check
def test_c_producer_100k_single_rows_across_a_kill_9(tmp_path):
    n, dim = 100_000, 8
    model = {"dim": dim, "rank": dim, "mode": "exact"}
    d = Daemon(tmp_path, model=model, extra_sections=DURABLE)
    # the client gives up after 300 ms × 2 attempts, far less than the
    # daemon stays down: the producer itself resends, same batch numbers
    p = subprocess.Popen(check_args(d, "stream", "--rows", str(n), "--dim", str(dim),
                                    "--pause-at", "40000", "--timeout-ms", "300", "--retries", "1"),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 120)
        assert ready, "isvd-producer-check did not pause"
        line = p.stdout.readline()
        assert line.strip() == "paused", (line, p.stderr.read() if p.poll() is not None else "")
        assert d.kill() == -9                 # batches may be in flight: none is lost
        p.stdin.write("go\n")                 # the other 60,000 rows go to a dead daemon
        p.stdin.flush()
        time.sleep(3.0)
        d = Daemon(tmp_path, model=model, extra_sections=DURABLE)    # same storage
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, (p.returncode, out, err, d.log()[-3000:])
        s = json.loads(out.strip().splitlines()[-1])
        print(s)
        assert s["failures"] == 0
        assert s["rows_in"] == n and s["rows_failed"] == 0 and s["rows_pending"] == 0
        assert s["rows_accepted"] + s["rows_duplicate"] == n
        assert s["batches"] == s["batches_sent"] and s["batches_failed"] == 0
        assert s["resends"] >= 1                   # the producer resent what the client gave up
        info = d.info()
        assert info["rows_seen"] == n              # every row once: none lost, none doubled
        sigma, _, _, seq = d.factors()
        assert seq == n and s["last_seq"] == n
        assert np.allclose(sigma, sigma_of(expected_rows(n, dim)), rtol=1e-9, atol=0)
        d.stop()
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=10)
        if d.proc.poll() is None:
            d.stop(expect=None)


@needs_check
def test_c_producer_reports_refused_batches_with_their_rows(tmp_path):
    with Daemon(tmp_path, model={"dim": 8, "rank": 8}) as d:
        s = run_check(d, "errors")
        assert s["failures"] == 0 and s["rows_failed"] == 11 and s["batches_failed"] == 2
        # rows 0..9 and 21..24 of the 25 (numbered from 0) are in the model
        X = expected_rows(25, 8)
        assert d.info()["rows_seen"] == 14
        sigma, _, _, _ = d.factors()
        assert np.allclose(sigma, sigma_of(np.vstack([X[:10], X[21:]])), rtol=1e-9, atol=1e-12)


@needs_check
def test_c_producer_flush_and_linger(tmp_path):
    with Daemon(tmp_path, model={"dim": 5, "rank": 5}) as d:
        s = run_check(d, "flush")
        assert s["failures"] == 0 and s["batches"] == 3 and s["rows_accepted"] == 2500
        assert d.info()["rows_seen"] == 2500
    with Daemon(tmp_path, model={"dim": 5, "rank": 5}, name="b") as d:
        s = run_check(d, "linger", "--linger-ms", "50")
        assert s["failures"] == 0 and s["rows_accepted"] == 1 and s["batches"] == 1
        assert d.info()["rows_seen"] == 1


@needs_check
def test_c_producer_threads(tmp_path):
    with Daemon(tmp_path, model={"dim": 6, "rank": 6}) as d:
        s = run_check(d, "threads", "--rows", "8000", "--dim", "6")
        assert s["failures"] == 0 and s["rows_in"] == 8012 == s["rows_accepted"]
        assert d.info()["rows_seen"] == 8012
