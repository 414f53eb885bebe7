"""isvdd under injected storage failures.

The daemon runs with tests/integration/faultfs.c preloaded (ISVD_FAULTFS,
built by meson); writing a line such as "write ENOSPC" into the control
file makes that call fail on every file under the storage directory from
then on.  Checked: no push is acknowledged unless its rows are durable as
promised, the failure is reported as UNAVAILABLE with its reason, queries
keep working, the daemon heals by itself once the fault clears, and a
restart afterwards holds every acknowledged row exactly once: the
acknowledged pushes, stacked in seq order, tile the sequence and give the
restarted daemon's factors (numpy's SVD; dim 4 at rank 4 runs in exact
mode).  Also a failed write whose rollback (ftruncate) fails too.
"""
import os
import time

import numpy as np
import pytest

from isvdd_harness import (FAULTFS, Daemon, assert_factors_match, faultfs_env, pack,
                            rows_in_seq_order, unpack)

pytestmark = pytest.mark.skipif(not os.path.exists(FAULTFS), reason="ISVD_FAULTFS not built")


class Faulty:
    """A daemon with faultfs preloaded and a control file to drive it."""

    def __init__(self, tmp_path, fsync="always", **storage):
        self.tmp = tmp_path
        self.ctl = str(tmp_path / "faults")
        open(self.ctl, "w").close()
        self.storage = {"fsync": fsync, "checkpoint_every_rows": 0, "checkpoint_every_s": 0, **storage}
        self.env = faultfs_env(self.ctl, tmp_path / "data")
        self.gen = 0
        self.acked = []        # [(batch, rows, seq)] of every push applied
        self.d = self.start()

    def start(self, faults=True):
        return Daemon(self.tmp, model={"dim": 4, "rank": 4}, extra_sections={"storage": self.storage},
                      env=self.env if faults else None)

    def fault(self, text):
        # a new mtime makes the shim re-read the file: set one that differs
        # from every earlier one (the clock's granularity could repeat it)
        with open(self.ctl, "w") as f:
            f.write(text)
        self.gen += 1
        t = (1_700_000_000 + self.gen) * 10**9
        os.utime(self.ctl, ns=(t, t))

    def push(self, d, x, **kw):
        """d.push(x, **kw), remembering the rows when they were applied."""
        r = d.push(x, **kw)
        self.applied(r, x)
        return r

    def applied(self, r, x):
        if r["ok"] and not r["duplicate"]:
            self.acked.append((len(self.acked), x, r["seq"]))

    def check(self, d):
        """d (restarted) holds every acknowledged row exactly once."""
        X, n = rows_in_seq_order(self.acked)
        assert d.info()["rows_seen"] == n
        assert_factors_match(d.factors(), X, center=False)


def rows(i, n=3):
    return np.arange(n * 4, dtype=float).reshape(n, 4) + 10.0 * i + np.eye(n, 4)


def push_until_ok(f, d, x, client, batch, seconds=10):
    """Retries one push (same client, batch) until the daemon takes it."""
    deadline = time.monotonic() + seconds
    while True:
        r = f.push(d, x, client=client, batch=batch)
        if r["ok"]:
            return r
        assert r["error"]["code"] == "UNAVAILABLE", r
        assert time.monotonic() < deadline, f"storage did not heal: {r}"
        time.sleep(0.1)


@pytest.mark.parametrize("fault,reason,fsync", [
    ("write ENOSPC", "No space left on device", "always"),
    ("fsync EIO", "Input/output error", "always"),
    ("write EIO", "Input/output error", "interval"),
    ("fsync EIO", "Input/output error", "interval"),
])
def test_log_failure_stops_acks_until_the_fault_clears(tmp_path, fault, reason, fsync):
    f = Faulty(tmp_path, fsync=fsync, fsync_interval_ms=20)
    d = f.d
    acked = []
    for i in range(3):
        r = f.push(d, rows(i), client="p", batch=i + 1)
        assert r["ok"]
        acked.append(r["seq"])
    before = d.info()
    f.fault(fault)
    if fsync == "interval" and fault.startswith("fsync"):
        # appends still succeed; the next interval fsync fails, after which
        # nothing is acknowledged: wait (bounded) until a push is refused
        deadline = time.monotonic() + 20
        for b in range(1, 1000):
            r = f.push(d, rows(3 + b), client="q", batch=b)
            if not r["ok"]:
                break
            assert time.monotonic() < deadline, "the interval fsync never failed"
            time.sleep(0.01)
        before = d.info()
    r = d.push(rows(9), client="p", batch=10)
    assert r["ok"] is False and r["error"]["code"] == "UNAVAILABLE", r
    assert reason in r["error"]["message"], r
    # nothing moved; queries are still answered, a checkpoint is refused
    after = d.info()
    assert after["rows_seen"] == before["rows_seen"]
    assert d.call(d.q, {"op": "project", "rows": [[1, 2, 3, 4]]})["ok"]
    c = d.call(d.q, {"op": "checkpoint"})
    assert c["ok"] is False and c["error"]["code"] == "UNAVAILABLE"
    # a resend of an applied push is still recognised
    r = d.push(rows(0), client="p", batch=1)
    assert r["ok"] and r["duplicate"] and r["seq"] == acked[0]
    assert "storage failed" in d.log()
    # the fault clears: the daemon heals by itself (a checkpoint) and takes the push
    f.fault("")
    r = push_until_ok(f, d, rows(9), "p", 10)
    assert r["seq"] == after["rows_seen"] + 3
    assert "storage healthy again" in d.log()
    total = r["seq"]
    d.kill()
    d = f.start(faults=False)
    f.check(d)
    r = d.push(rows(9), client="p", batch=10)
    assert r["duplicate"] and r["seq"] == total
    d.stop()


def test_disk_full_in_the_middle_of_a_record_leaves_no_partial_record(tmp_path):
    """A push of more than 64 KiB of rows is written from the batch, after
    the record's headers: the disk fills up after the headers and part of
    the rows (a short write, then ENOSPC).  The record is cut off whole, the
    push is refused, and the log holds only whole records."""
    f = Faulty(tmp_path, fsync="always")
    d = f.d
    assert f.push(d, rows(0), client="p", batch=1)["ok"]
    big = np.random.default_rng(5).standard_normal((3000, 4))      # 96,000 bytes of rows
    f.fault("write ENOSPC 200")     # the headers (~90 bytes) and ~110 bytes of rows get through
    r = d.push(big, client="p", batch=2)
    assert r["ok"] is False and r["error"]["code"] == "UNAVAILABLE", r
    assert "No space left on device" in r["error"]["message"]
    assert d.info()["rows_seen"] == 3
    data = tmp_path / "data"
    segs = sorted(p for p in os.listdir(data) if p.startswith("wal-"))
    seg = (data / segs[-1]).read_bytes()
    off, whole = 32, []
    while off + 24 <= len(seg):
        (n,) = np.frombuffer(seg[off + 8:off + 16], "<u8")
        whole.append(int(n))
        off += 24 + int(n)
    assert off == len(seg), "a partial record was left in the log"
    f.fault("")
    r = push_until_ok(f, d, big, "p", 2)
    assert r["seq"] == 3003
    d.kill()
    d = f.start(faults=False)
    log = d.log().split("starting")[-1]
    assert "torn" not in log
    f.check(d)
    d.stop()


def test_failed_checkpoint_keeps_the_previous_one(tmp_path):
    f = Faulty(tmp_path)
    d = f.d
    assert f.push(d, rows(0))["ok"]
    c1 = d.call(d.q, {"op": "checkpoint"})
    assert c1["ok"]
    assert f.push(d, rows(1))["ok"]
    for fault in ("rename EIO", "open ENOSPC", "fsync EIO"):
        f.fault(fault)
        c = d.call(d.q, {"op": "checkpoint"})
        assert c["ok"] is False and c["error"]["code"] == "UNAVAILABLE", (fault, c)
        files = sorted(os.listdir(d.data))
        assert "checkpoint.tmp" not in files, files
        assert len([x for x in files if x.endswith(".isvdc")]) == 1, files
        assert f.push(d, rows(2))["error"]["code"] == "UNAVAILABLE"
        f.fault("")
        assert d.call(d.q, {"op": "checkpoint"})["ok"]
        assert f.push(d, rows(3 + len(f.acked)))["ok"]
    n = d.info()["rows_seen"]
    assert n == 3 * 5
    d.kill()
    d = f.start(faults=False)
    f.check(d)
    d.stop()


def test_sigterm_with_failing_storage_exits_nonzero_and_loses_no_ack(tmp_path):
    f = Faulty(tmp_path)
    d = f.d
    assert f.push(d, rows(0))["ok"]
    f.fault("write ENOSPC")
    assert f.push(d, rows(1))["error"]["code"] == "UNAVAILABLE"
    assert d.stop(expect=1) == 1
    assert "checkpoint" in d.log()
    d = f.start(faults=False)
    f.check(d)
    d.stop()


def test_a_failed_write_whose_rollback_fails_too(tmp_path):
    """The disk fills up in the middle of a record and the ftruncate() that
    would cut the partial record off fails as well: the push is refused
    with both reasons, nothing is acknowledged until the fault clears, the
    daemon heals by itself, and a restart holds every acknowledged row
    exactly once (the partial record left behind is not replayed)."""
    f = Faulty(tmp_path, fsync="always")
    d = f.d
    assert f.push(d, rows(0), client="p", batch=1)["ok"]
    big = np.random.default_rng(6).standard_normal((3000, 4))
    f.fault("write ENOSPC 200\ntruncate EIO")
    r = f.push(d, big, client="p", batch=2)
    assert r["ok"] is False and r["error"]["code"] == "UNAVAILABLE", r
    assert "No space left on device" in r["error"]["message"], r
    assert "cutting the partial record off failed too" in d.log(), d.log()[-2000:]
    assert d.info()["rows_seen"] == 3
    assert f.push(d, rows(1), client="p", batch=3)["error"]["code"] == "UNAVAILABLE"
    f.fault("")
    r = push_until_ok(f, d, big, "p", 2)
    assert r["seq"] == 3003
    assert f.push(d, rows(2), client="p", batch=4)["ok"]
    d.kill()
    d = f.start(faults=False)
    f.check(d)
    d.stop()


def test_new_clients_connect_while_a_checkpoint_hangs(tmp_path):
    """The loop thread writes checkpoints; while one hangs (its rename held
    by faultfs), a client that connects only now is still admitted (the
    connection caps' ZAP handler runs on a thread of its own, gate.c) and
    its query answered from the model in memory."""
    f = Faulty(tmp_path)
    d = f.d
    assert f.push(d, rows(0), client="p", batch=1)["ok"]
    f.fault("rename PAUSE\n")
    d.q.send(pack({"op": "checkpoint"}))
    deadline = time.monotonic() + 20
    while "checkpoint.tmp" not in os.listdir(d.data):       # held at its rename
        assert time.monotonic() < deadline, "the held checkpoint never started"
        time.sleep(0.01)
    late = d.dealer(d.query)                                 # a new connection, now
    r = d.call(late, {"op": "info"}, timeout_ms=10000)
    assert r["ok"] and r["rows_seen"] == 3, r
    f.fault("")                                              # the rename goes ahead
    assert unpack(d.q.recv())["ok"]
    d.stop()
