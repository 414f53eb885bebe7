"""libisvd (clients/c) against the real isvdd: isvd-client-check (ISVD_CLIENT_CHECK)
exercises the whole API, pipelines pushes and retries across a stalled and a
restarted daemon; these tests start the daemon, drive the program and check
what the daemon ended up with.  Every wait is bounded."""
import json
import os
import select
import signal
import subprocess
import time

import numpy as np
import pytest

from isvdd_harness import Daemon, assert_factors_match

CHECK = os.environ.get("ISVD_CLIENT_CHECK", "")
pytestmark = pytest.mark.skipif(not CHECK or not os.access(CHECK, os.X_OK),
                                reason="ISVD_CLIENT_CHECK is not set (meson test sets it)")
DURABLE = {"storage": {"fsync": "always"}}


def endpoints(d):
    return ["--ingest", d.ingest, "--query", d.query, "--publish", d.publish]


def run_check(d, *args, timeout=120):
    p = subprocess.run([CHECK, *args, *endpoints(d)], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr, d.log()[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def expected_rows(first, n, dim):
    """The rows isvd-client-check sends: value j of row g is sin(0.37 g (j+1) + j)."""
    g = np.arange(first, first + n, dtype=float)[:, None]
    j = np.arange(dim, dtype=float)[None, :]
    return np.sin(0.37 * g * (j + 1) + j)


class Paused:
    """isvd-client-check running with --pause-after: wait() until it says
    "paused", go() lets it continue, finish() collects its summary."""

    def __init__(self, d, *args):
        self.p = subprocess.Popen([CHECK, *args, *endpoints(d)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self, timeout=60):
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        assert ready, "isvd-client-check did not pause"
        line = self.p.stdout.readline()
        assert line.strip() == "paused", (line, self.p.stderr.read() if self.p.poll() is not None else "")

    def go(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def finish(self, timeout=120):
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate(timeout=10)
            raise AssertionError(f"isvd-client-check hung: {err}")
        assert self.p.returncode == 0, (self.p.returncode, out, err)
        return json.loads(out.strip().splitlines()[-1])

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.communicate(timeout=10)


def test_api_end_to_end(tmp_path):
    with Daemon(tmp_path, model={"rank": 8},
                extra_sections={"publish": {"spectrum_every_ms": 20, "factors_every_ms": 40}}) as d:
        out = run_check(d, "api", "--dim", "8")
        assert out["failures"] == 0 and out["resends"] == 0
        assert d.stop() == 0


@pytest.mark.parametrize("mode", ["recv", "callback"])
def test_pipelined_push_counts_every_ack(tmp_path, mode):
    batches, rows, dim = 400, 7, 6
    with Daemon(tmp_path, model={"dim": dim, "rank": 6}) as d:
        args = ["pipeline", "--batches", str(batches), "--rows", str(rows), "--dim", str(dim),
                "--in-flight", "32"]
        if mode == "callback":
            args.append("--callback")
        out = run_check(d, *args)
        assert out["ack_count"] == batches and out["acks"] == batches and out["errors"] == 0
        assert out["rows_acked"] == batches * rows == out["rows_seen"] == out["max_seq"]
        assert out["duplicates"] == 0 and out["resends"] == 0
        assert 1 < out["max_in_flight"] <= 32
        # what arrived is what was sent: the model is exact (rank = dim)
        sent = expected_rows(1, batches * rows, dim)
        sigma, _, _, seq = d.factors()
        assert seq == batches * rows
        assert np.allclose(sigma, np.linalg.svd(sent, compute_uv=False), rtol=1e-9)
        assert d.stop() == 0


@pytest.mark.parametrize("mode", ["push", "pipeline"])
def test_retry_across_a_stalled_daemon_loses_and_doubles_nothing(tmp_path, mode):
    batches, rows, dim = 30, 5, 4
    with Daemon(tmp_path, model={"dim": dim, "rank": 4}) as d:
        c = Paused(d, mode, "--batches", str(batches), "--rows", str(rows), "--dim", str(dim),
                   "--pause-after", "10", "--timeout-ms", "200", "--retries", "100",
                   "--in-flight", "8")
        try:
            c.wait()
            d.signal(signal.SIGSTOP)
            try:
                c.go()
                time.sleep(1.5)        # several timeouts and resends while stopped
            finally:
                d.signal(signal.SIGCONT)
            out = c.finish()
        finally:
            c.kill()
        assert out["failures"] == 0 and out["errors"] == 0
        assert out["resends"] >= 1 and out["reconnects"] >= 1
        info = d.info()
        assert info["rows_seen"] == batches * rows, (info["rows_seen"], out)
        sigma, _, _, _ = d.factors()
        assert np.allclose(sigma, np.linalg.svd(expected_rows(1, batches * rows, dim),
                                                compute_uv=False), rtol=1e-9)
        assert d.stop() == 0


def test_timeout_is_reported_when_no_daemon_answers(tmp_path):
    d_ep = f"ipc://{tmp_path}/nobody"
    t0 = time.monotonic()
    p = subprocess.run([CHECK, "push", "--batches", "1", "--timeout-ms", "100", "--retries", "2",
                        "--ingest", d_ep + "-i", "--query", d_ep + "-q", "--publish", d_ep + "-p"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "TIMEOUT" in p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["resends"] == 2 and out["reconnects"] == 2 and out["errors"] == 1
    assert time.monotonic() - t0 < 20


# With durable storage a restarted daemon remembers which (client, batch) it
# applied, so a client's retries across the restart neither lose nor double.


def test_retry_across_a_daemon_restart_loses_and_doubles_nothing(tmp_path):
    batches, rows, dim = 30, 5, 4
    model = {"dim": dim, "rank": 4}
    d = Daemon(tmp_path, model=model, extra_sections=DURABLE)
    d2 = None
    c = Paused(d, "push", "--batches", str(batches), "--rows", str(rows), "--dim", str(dim),
               "--pause-after", "10", "--timeout-ms", "300", "--retries", "200")
    try:
        c.wait()
        d.signal(signal.SIGSTOP)
        c.go()
        time.sleep(0.5)                # the push is sent and retried while stopped
        d.kill()
        d2 = Daemon(tmp_path, model=model, extra_sections=DURABLE)   # same endpoints and dir
        out = c.finish()
        assert out["errors"] == 0 and out["resends"] >= 1
        assert d2.info()["rows_seen"] == batches * rows
        # a lost batch and a doubled one would cancel out in the count, not here
        assert_factors_match(d2.factors(), expected_rows(1, batches * rows, dim), center=False)
        assert d2.stop() == 0
    finally:
        c.kill()
        d.stop() if d.proc.poll() is None else None
        if d2 is not None and d2.proc.poll() is None:
            d2.stop()


def test_batches_applied_before_a_restart_are_duplicates_after_it(tmp_path):
    rows, dim = 5, 4
    model = {"dim": dim, "rank": 4}
    common = ["--rows", str(rows), "--dim", str(dim), "--client", "restart-test", "--first-batch", "1"]
    with Daemon(tmp_path, model=model, extra_sections=DURABLE) as d:
        out = run_check(d, "push", "--batches", "6", *common)
        assert out["rows_acked"] == 6 * rows
        d.kill()
    with Daemon(tmp_path, model=model, extra_sections=DURABLE) as d:
        out = run_check(d, "push", "--batches", "10", *common)   # batches 1..6 again, then 7..10
        assert out["dup_acks"] == 6 and out["rows_acked"] == 4 * rows
        assert d.info()["rows_seen"] == 10 * rows
        assert_factors_match(d.factors(), expected_rows(1, 10 * rows, dim), center=False)
        assert d.stop() == 0
