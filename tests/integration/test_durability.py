"""Durability of isvdd: the write-ahead log, checkpoints and recovery.

Every test kills or stops the real daemon and starts it again on the same
storage directory, then checks what it recovered against what was
acknowledged: rows present exactly once, factors equal to an uninterrupted
run, files cut, refused or fallen back from exactly as README's
"Durability" section says.  ISVD_CRASH_LOOPS (default 50) sets how many
kill -9 rounds the crash loop runs.
"""
import os
import random
import shutil
import signal
import struct
import subprocess
import time

import numpy as np
import pytest
import zmq

from isvdd_harness import (Daemon, assert_factors_match, faultfs_env, isvdd_path, mat, pack,
                            rows_in_seq_order, unpack)

CRASH_LOOPS = int(os.environ.get("ISVD_CRASH_LOOPS", "50"))

# ---------------------------------------------------------------- helpers


def seg_files(data):
    return sorted(f for f in os.listdir(data) if f.startswith("wal-") and f.endswith(".log"))


def ckpt_files(data):
    return sorted(f for f in os.listdir(data) if f.startswith("checkpoint-") and f.endswith(".isvdc"))


def dir_size(data):
    """Bytes in the files of data (a file the daemon removes meanwhile counts 0)."""
    total = 0
    for f in os.listdir(data):
        try:
            total += os.path.getsize(os.path.join(data, f))
        except FileNotFoundError:
            pass
    return total


def records(path):
    """[(offset, length)] of the whole records of a log segment (daemon/wal.h)."""
    with open(path, "rb") as f:
        b = f.read()
    out, off = [], 32
    while off + 24 <= len(b):
        magic, typ, n = struct.unpack_from("<IIQ", b, off)
        assert magic == 0x31524449 and typ == 1
        if off + 24 + n > len(b):
            break
        out.append((off, 24 + n))
        off += 24 + n
    return out


def start_exit(tmp_path, *args, **kw):
    """Starts a daemon expected to refuse to start; returns (exit code, log text)."""
    d = Daemon(tmp_path, wait_ready=False, args=args, **kw)
    try:
        rc = d.proc.wait(30)
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
    log = d.log()
    d.stop(expect=rc)
    return rc, log


def factors_close(a, b, tol):
    s1, v1, m1, _ = a
    s2, v2, m2, _ = b
    assert s1.shape == s2.shape
    assert np.max(np.abs(s1 - s2)) <= tol * s1[0]
    p1, p2 = v1.T @ v1, v2.T @ v2
    assert np.max(np.abs(p1 - p2)) <= tol
    if m1 is not None:
        assert np.max(np.abs(m1 - m2)) <= tol * max(1.0, np.max(np.abs(m1)))


def push_many(d, rng, n_push, dim, client="c", batch0=1, max_rows=7, inflight=32):
    """Pipelines n_push pushes of 1..max_rows rows from one DEALER; returns
    [(batch, rows, seq)] in batch order."""
    s = d.dealer(d.ingest)
    sent, acks = {}, {}
    b = batch0
    while len(acks) < n_push:
        while b < batch0 + n_push and len(sent) - len(acks) < inflight:
            x = rng.standard_normal((int(rng.integers(1, max_rows + 1)), dim)) * np.linspace(3, 0.5, dim)
            sent[b] = x
            s.send(pack({"op": "push", "rows": mat(x), "client": client, "batch": b, "id": b}))
            b += 1
        assert s.poll(20000), "no ack"
        r = unpack(s.recv())
        assert r["ok"], r
        acks[r["id"]] = r["seq"]
    return [(k, sent[k], acks[k]) for k in sorted(sent)]


TRUNC = {"model": {"rank": 3, "extra": 1, "center": True, "mode": "truncated"},
         "storage": {"checkpoint_every_rows": 0, "checkpoint_every_s": 0},
         "batching": {"max_rows": 64, "max_delay_ms": 50}}


def daemon(tmp_path, conf=TRUNC, model=None, **kw):
    conf = {k: dict(v) for k, v in conf.items()}
    conf["model"].update(model or {})
    return Daemon(tmp_path, model=conf.get("model"),
                  extra_sections={k: v for k, v in conf.items() if k != "model"}, **kw)


# ------------------------------------------------------------------ tests


def test_replay_reproduces_timing_dependent_blocks_exactly(tmp_path):
    """Rank 3 + 1 on full-rank data: the factors depend on the block
    boundaries, which depend on timing; a restart must reproduce them."""
    rng = np.random.default_rng(1)
    d = daemon(tmp_path)
    pushed = push_many(d, rng, 300, 12)
    live = d.factors()
    X, n = rows_in_seq_order(pushed)
    assert d.info()["rows_seen"] == n
    # the boundaries matter here: the exact SVD differs from the streamed one
    exact = np.linalg.svd(X - X.mean(0), compute_uv=False)[:3]
    assert np.max(np.abs(exact - live[0]) / exact) > 1e-6
    d.kill()

    d = daemon(tmp_path)                       # log only
    assert "replayed" in d.log()
    factors_close(live, d.factors(), 1e-12)
    assert d.info()["rows_seen"] == n
    assert d.call(d.q, {"op": "checkpoint"})["seq"] == n
    more = push_many(d, rng, 100, 12, batch0=1000)
    live2 = d.factors()
    n2 = d.info()["rows_seen"]
    d.kill()

    d = daemon(tmp_path)                       # checkpoint + log after it
    factors_close(live2, d.factors(), 1e-12)
    assert d.info()["rows_seen"] == n2 == n + sum(len(p[1]) for p in more)
    assert d.info()["last_checkpoint_seq"] == n
    d.stop()


def test_sigterm_checkpoints_and_restart_replays_nothing(tmp_path):
    rng = np.random.default_rng(2)
    d = daemon(tmp_path)
    push_many(d, rng, 50, 5)
    live = d.factors()
    assert d.stop() == 0
    assert "checkpoint" in d.log() and len(ckpt_files(d.data)) == 1
    d = daemon(tmp_path)
    assert "replayed 0 log records" in d.log().split("starting")[-1]
    factors_close(live, d.factors(), 0)
    assert d.info()["last_checkpoint_seq"] == live[3]
    d.stop()


def test_idle_restarts_fresh_checkpoint_only_and_log_only(tmp_path):
    d = daemon(tmp_path)                       # nothing ever pushed
    assert d.stop() == 0
    d = daemon(tmp_path)
    assert d.info()["rows_seen"] == 0
    r = d.call(d.q, {"op": "checkpoint"})
    assert r["ok"] and r["seq"] == 0
    d.push(np.ones((3, 4)))
    d.call(d.q, {"op": "checkpoint"})
    d.kill()
    # checkpoint only: the segment after it holds no record
    assert all(records(os.path.join(d.data, f)) == [] for f in seg_files(d.data)[-1:])
    d = daemon(tmp_path)
    assert d.info()["rows_seen"] == 3
    d.kill()
    # log only: remove every checkpoint; the log still starts at record 1
    for f in ckpt_files(d.data):
        os.remove(os.path.join(d.data, f))
    d = daemon(tmp_path)
    assert d.info()["rows_seen"] == 3
    d.stop()


def test_duplicates_are_recognised_across_restarts(tmp_path):
    rng = np.random.default_rng(3)
    d = daemon(tmp_path)
    pushed = push_many(d, rng, 12, 4, client="pipe-7")
    d.kill()
    d = daemon(tmp_path)                       # table rebuilt from the log
    for batch, x, seq in pushed[-8:]:
        r = d.push(x, client="pipe-7", batch=batch)
        assert r["duplicate"] is True and r["seq"] == seq and r["accepted"] == 0
    total = pushed[-1][2]
    assert d.info()["rows_seen"] == total
    d.call(d.q, {"op": "checkpoint"})
    d.kill()
    d = daemon(tmp_path)                       # table from the checkpoint
    batch, x, seq = pushed[-1]
    r = d.push(x, client="pipe-7", batch=batch)
    assert r["duplicate"] is True and r["seq"] == seq
    # older than everything remembered: refused as a duplicate of unknown seq
    r = d.push(pushed[0][1], client="pipe-7", batch=pushed[0][0])
    assert r["duplicate"] is True and r["seq"] == 0
    assert d.info()["rows_seen"] == total
    d.stop()


def test_a_push_the_engine_refuses_after_it_was_logged_replays_alike(tmp_path):
    """Energy overflow is found by the engine only, after the push was
    logged; and the block after it is logged while the engine still has it
    (the engine thread), so the log's row numbers run ahead of the model's.
    A restart must replay the refusal and the rows after it: same rows, same
    factors.  (Needs ~1.5e7 values of 1e150 before energy can overflow.)"""
    dim = 100
    conf = {"model": {"rank": 3, "extra": 1, "mode": "truncated"},
            "storage": {"checkpoint_every_rows": 0, "checkpoint_every_s": 0},
            "batching": {"max_rows": 1024, "max_delay_ms": 5},
            "limits": {"max_message_bytes": 100 << 20, "max_rows_per_push": 200000}}
    rng = np.random.default_rng(9)

    def huge(rows):   # |x| = 1e150, the largest the daemon admits
        return np.where(rng.random((rows, dim)) < 0.5, -1e150, 1e150)

    d = daemon(tmp_path, conf)
    r = d.push(huge(100000))            # energy 1e307 of DBL_MAX/4 = 4.49e307
    assert r["ok"] and r["seq"] == 100000, r
    s = d.dealer(d.ingest)
    small = rng.standard_normal((10, dim))
    s.send(pack({"op": "push", "rows": mat(huge(90000)), "id": 1}))   # would need 3.6e307 more
    s.send(pack({"op": "push", "rows": mat(small), "id": 2}))
    replies = {}
    for _ in range(2):
        assert s.poll(60000), "no reply"
        r = unpack(s.recv())
        replies[r["id"]] = r
    assert replies[1]["ok"] is False and replies[1]["error"]["code"] == "NON_FINITE", replies[1]
    assert replies[2]["ok"] and replies[2]["seq"] == 100010, replies[2]
    live = d.factors()
    assert live[3] == 100010
    d.kill()
    # the refused push is logged (one segment per record here: they are big),
    # and first_seq counts logged rows (daemon/wal.h): 1, 100001, 190001
    first = []
    for f in seg_files(d.data):
        with open(os.path.join(d.data, f), "rb") as fh:
            b = fh.read()
        first += [struct.unpack_from("<Q", b, off + 24 + 8)[0] for off, _ in records(os.path.join(d.data, f))]
    assert first == [1, 100001, 190001]

    d = daemon(tmp_path, conf)
    assert "replayed 3 log records" in d.log().split("starting")[-1]
    assert d.info()["rows_seen"] == 100010
    factors_close(live, d.factors(), 0)
    r = d.push(small)
    assert r["ok"] and r["seq"] == 100020, r
    d.stop()


def test_torn_tail_is_cut_at_every_offset_of_the_last_record(tmp_path):
    d = daemon(tmp_path, model={"dim": 3})
    seqs = [d.push(np.full((1, 3), float(i + 1)))["seq"] for i in range(4)]
    d.kill()
    seg = os.path.join(d.data, seg_files(d.data)[-1])
    recs = records(seg)
    assert len(recs) == 4
    last_off, last_len = recs[-1]
    pristine = str(tmp_path / "pristine")
    shutil.copytree(d.data, pristine)
    for cut in range(last_off, last_off + last_len):
        shutil.rmtree(d.data)
        shutil.copytree(pristine, d.data)
        with open(seg, "r+b") as f:
            f.truncate(cut)
        d = daemon(tmp_path, model={"dim": 3})
        assert d.info()["rows_seen"] == seqs[-2], cut
        log = d.log()
        if cut > last_off:
            assert f"cutting the log at offset {last_off}" in log, (cut, log)
        assert os.path.getsize(seg) == last_off
        d.kill()
    # after the cut the log takes new records where the torn one was
    d = daemon(tmp_path, model={"dim": 3})
    assert d.push(np.ones((1, 3)))["seq"] == seqs[-2] + 1
    d.kill()
    d = daemon(tmp_path, model={"dim": 3})
    assert d.info()["rows_seen"] == seqs[-2] + 1
    d.stop()


@pytest.mark.parametrize("where", ["payload", "length"])
def test_corruption_in_the_middle_refuses_to_start_until_repair(tmp_path, where):
    d = daemon(tmp_path)
    for i in range(6):
        d.push(np.full((2, 4), float(i + 1)) + np.eye(2, 4))
    d.kill()
    seg = os.path.join(d.data, seg_files(d.data)[-1])
    recs = records(seg)
    off, n = recs[2]
    with open(seg, "r+b") as f:
        pos = off + 24 + n // 2 if where == "payload" else off + 9
        f.seek(pos)
        byte = f.read(1)
        f.seek(pos)
        f.write(bytes([byte[0] ^ 0x5A]))
    rc, log = start_exit(tmp_path)
    assert rc == 3, log
    name = os.path.basename(seg)
    assert f"{name}" in log and f"offset {off}" in log and "--repair" in log
    assert os.path.getsize(seg) == recs[-1][0] + recs[-1][1]   # nothing was cut
    d = daemon(tmp_path, args=("--repair",))
    assert d.info()["rows_seen"] == 4                           # the two records before it
    assert os.path.exists(seg + ".corrupt")
    d.stop()
    d = daemon(tmp_path)                                        # and it stays repaired
    assert d.info()["rows_seen"] == 4
    d.stop()


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
    rng = np.random.default_rng(4)
    d = daemon(tmp_path)
    push_many(d, rng, 20, 6)
    c1 = d.call(d.q, {"op": "checkpoint"})["seq"]
    push_many(d, rng, 20, 6, batch0=100)
    c2 = d.call(d.q, {"op": "checkpoint"})["seq"]
    push_many(d, rng, 20, 6, batch0=200)
    live = d.factors()
    d.kill()
    cks = ckpt_files(d.data)
    assert len(cks) == 2 and f"{c1:020d}" in cks[0] and f"{c2:020d}" in cks[1]
    newest = os.path.join(d.data, cks[1])
    with open(newest, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    d = daemon(tmp_path)
    log = d.log()
    assert "checksum mismatch" in log and "falling back to the previous checkpoint" in log
    factors_close(live, d.factors(), 1e-12)
    assert d.info()["rows_seen"] == live[3]
    d.kill()
    # both damaged, and the log no longer reaches back to record 1: refuse
    with open(os.path.join(d.data, cks[0]), "r+b") as f:
        f.truncate(60)
    rc, log = start_exit(tmp_path)
    assert rc == 3 and "no checkpoint" in log, log


def test_a_changed_model_configuration_is_refused(tmp_path):
    d = daemon(tmp_path)
    d.push(np.ones((2, 4)))
    assert d.stop() == 0
    conf = {k: dict(v) for k, v in TRUNC.items()}
    conf["model"]["rank"] = 5
    d = Daemon(tmp_path, model=conf["model"], extra_sections={k: v for k, v in conf.items() if k != "model"},
               wait_ready=False)
    rc = d.proc.wait(30)
    log = d.log()
    d.stop(expect=rc)
    assert rc == 1 and "model.rank 3, the configuration says 5" in log, log


def test_one_daemon_per_storage_directory(tmp_path):
    d = daemon(tmp_path)
    rc, log = start_exit(tmp_path, name="second", extra_sections={"storage": {"dir": d.data}})
    assert rc == 4 and "in use by another isvdd" in log and str(d.proc.pid) in log, log
    d.stop()


def test_storage_stays_bounded(tmp_path):
    conf = {"model": {"rank": 4}, "storage": {"checkpoint_every_rows": 500, "segment_bytes": 65536},
            "batching": {"max_rows": 64}}
    d = daemon(tmp_path, conf)
    rng = np.random.default_rng(5)
    sizes, cps = [], []
    for r in range(8):
        push_many(d, rng, 150, 16, batch0=1 + 1000 * r, max_rows=10)
        # no checkpoint op: the periodic checkpoint must come by itself
        # (bounded wait) within 500 rows of the end of what was pushed
        seen = d.info()["rows_seen"]
        cps.append(wait_for_checkpoint(d, seen - 500))
        sizes.append(dir_size(d.data))
        assert len(ckpt_files(d.data)) <= 2
    rows = d.info()["rows_seen"]
    assert rows > 4000
    assert all(b > a for a, b in zip(cps, cps[1:])), cps
    # a checkpoint every 500 rows of 16 values: the directory holds two
    # checkpoints plus at most ~1000 rows of log, whatever has streamed
    assert max(sizes) < 1000 * 16 * 8 + 2 * 20000 + 65536 * 2, sizes
    assert sizes[-1] < 2 * sizes[1] + 65536, sizes
    d.kill()
    d = daemon(tmp_path, conf)
    assert d.info()["rows_seen"] == rows
    d.stop()


def wait_for_checkpoint(d, after, seconds=30):
    """Polls info until last_checkpoint_seq exceeds after; returns it."""
    deadline = time.monotonic() + seconds
    while True:
        cp = d.info()["last_checkpoint_seq"]
        if cp > after:
            return cp
        assert time.monotonic() < deadline, f"no checkpoint past seq {after} within {seconds} s"
        time.sleep(0.05)


def test_checkpoint_every_s_fires_by_itself(tmp_path):
    """checkpoint_every_s alone (no row trigger, no op): last_checkpoint_seq
    catches up with what was pushed, twice."""
    conf = {"model": {"rank": 3}, "storage": {"checkpoint_every_rows": 0, "checkpoint_every_s": 1}}
    d = daemon(tmp_path, conf)
    rng = np.random.default_rng(6)
    first = max(p[2] for p in push_many(d, rng, 20, 5))
    assert wait_for_checkpoint(d, first - 1) == first
    second = max(p[2] for p in push_many(d, rng, 20, 5, batch0=100))
    assert second > first
    assert wait_for_checkpoint(d, second - 1) == second
    assert len(ckpt_files(d.data)) >= 1
    d.stop()


def test_crash_loop(tmp_path):
    """kill -9 at random moments (while pushes are in flight, during
    checkpoints, during start-up), restart, resend what was not acknowledged
    with the same (client, batch); every acknowledged row survives exactly
    once and the factors equal one uninterrupted run over the recovered
    sequence.  Every tenth round (from the third) runs with faultfs holding
    the checkpoint's rename ("rename PAUSE"), so that at least one kill
    certainly lands in the middle of a checkpoint (its temporary file
    written, not renamed); the loop counts such kills and requires one."""
    dim = 6
    conf = {"model": {"dim": dim, "rank": 6, "center": True},
            "storage": {"fsync": "always", "checkpoint_every_rows": 150},
            "batching": {"max_rows": 32, "max_delay_ms": 5}}
    rnd = random.Random(1234)
    rng = np.random.default_rng(1234)
    rows_of = {}           # batch -> rows sent
    acked = {}             # batch -> seq
    next_batch = 1
    last_acked_seq = 0
    ctl = tmp_path / "faults"
    kills_in_checkpoint = 0

    def take(r):
        """Records a push's reply (asserting it is consistent)."""
        nonlocal last_acked_seq
        assert r["ok"], r
        if r["duplicate"]:
            assert r["seq"] == 0 or r["id"] not in acked or acked[r["id"]] == r["seq"]
            if r["seq"] == 0:
                return
        acked[r["id"]] = r["seq"]
        last_acked_seq = max(last_acked_seq, r["seq"])

    for loop in range(CRASH_LOOPS):
        if loop % 5 == 4:  # kill during start-up / recovery
            d = daemon(tmp_path, conf, wait_ready=False)
            time.sleep(rnd.uniform(0, 0.03))
            d.kill()
            continue
        hold = loop % 10 == 2
        ctl.write_text("")
        d = daemon(tmp_path, conf, env=faultfs_env(ctl, tmp_path / "data") if hold else None)
        if hold:
            ctl.write_text("rename PAUSE\n")
        info = d.info()
        assert info["rows_seen"] >= last_acked_seq, (loop, info["rows_seen"], last_acked_seq)
        s = d.dealer(d.ingest)
        # resend every push not yet acknowledged, then new ones
        # New pushes only once every earlier one is acknowledged: then at
        # most 6 batches are applied after any unacknowledged one, which
        # keeps it inside the daemon's window of 8 remembered batches.
        pending = [b for b in sorted(rows_of) if b not in acked]
        for _ in range(0 if pending else rnd.randint(1, 6)):
            rows_of[next_batch] = rng.standard_normal((rnd.randint(1, 9), dim)) * np.arange(1.0, dim + 1)
            pending.append(next_batch)
            next_batch += 1
        for b in pending:
            s.send(pack({"op": "push", "rows": mat(rows_of[b]), "client": "loop", "batch": b, "id": b}))

        if hold:
            # A checkpoint with nothing new writes nothing: the pushes (on a
            # connection still handshaking) must be in first, and one of
            # them new.  So wait (bounded) for every ack — or for a
            # checkpoint already held, the one the rows triggered
            # (checkpoint_every_rows), which blocks the acks behind it — and
            # push one more batch if they were all resends of rows that a
            # checkpoint already holds.
            def held():
                return "checkpoint.tmp" in os.listdir(d.data)

            def answer(n):
                deadline = time.monotonic() + 20
                while n and not held():
                    assert time.monotonic() < deadline, "pushes unanswered, no checkpoint held"
                    if s.poll(10):
                        take(unpack(s.recv()))
                        n -= 1

            answer(len(pending))
            info = d.info()
            if not held() and info["rows_seen"] <= info["last_checkpoint_seq"]:
                rows_of[next_batch] = rng.standard_normal((2, dim)) * np.arange(1.0, dim + 1)
                s.send(pack({"op": "push", "rows": mat(rows_of[next_batch]), "client": "loop",
                             "batch": next_batch, "id": next_batch}))
                next_batch += 1
                answer(1)
        if hold or rnd.random() < 0.3:
            d.q.send(pack({"op": "checkpoint"}))
        deadline = time.monotonic() + rnd.uniform(0, 0.05)
        while time.monotonic() < deadline:
            if s.poll(1):
                take(unpack(s.recv()))
        if hold:           # the checkpoint is held at its rename: wait for it (bounded)
            deadline = time.monotonic() + 20
            while "checkpoint.tmp" not in os.listdir(d.data):
                assert time.monotonic() < deadline, "the held checkpoint never started"
                time.sleep(0.01)
        d.kill()
        kills_in_checkpoint += "checkpoint.tmp" in os.listdir(d.data)
    print(f"kills in the middle of a checkpoint: {kills_in_checkpoint}")
    assert kills_in_checkpoint >= 1

    # settle: resend everything unacknowledged, then compare
    d = daemon(tmp_path, conf)
    assert d.info()["rows_seen"] >= last_acked_seq
    for b in sorted(rows_of):
        r = d.push(rows_of[b], client="loop", batch=b)
        assert r["ok"], r
        if b in acked:
            assert r["duplicate"] and r["seq"] in (acked[b], 0), (b, r, acked[b])
        else:
            assert r["seq"] != 0, f"batch {b} older than the duplicate window: choose fewer in flight"
            acked[b] = r["seq"]
    X, n = rows_in_seq_order([(b, rows_of[b], acked[b]) for b in rows_of])
    info = d.info()
    assert info["rows_seen"] == n == len(X)
    assert_factors_match(d.factors(), X, center=True)
    d.stop()


def test_exact_mode_survives_checkpoint_and_replay(tmp_path):
    """An exact-mode model (the triangular factor R) through a checkpoint,
    a log replay after kill -9, and a refused change of model.mode."""
    conf = {"model": {"dim": 10, "rank": 4, "center": True, "mode": "exact"},
            "storage": {"checkpoint_every_rows": 0, "checkpoint_every_s": 0}}
    rng = np.random.default_rng(9)
    d = daemon(tmp_path, conf)
    a = push_many(d, rng, 40, 10)
    d.call(d.q, {"op": "checkpoint"})
    b = push_many(d, rng, 40, 10, batch0=500)
    live = d.factors()
    assert d.info()["mode"] == "exact"
    d.kill()
    d = daemon(tmp_path, conf)
    info = d.info()
    assert info["mode"] == "exact" and info["last_checkpoint_seq"] > 0
    factors_close(live, d.factors(), 1e-12)
    X, n = rows_in_seq_order(a + b)
    assert info["rows_seen"] == n
    _, s_ref, vt_ref = np.linalg.svd(X - X.mean(0), full_matrices=False)
    sigma, vt, _, _ = d.factors()
    assert np.max(np.abs(sigma - s_ref[:4])) <= 1e-12 * s_ref[0]
    assert np.max(np.abs(vt.T @ vt - vt_ref[:4].T @ vt_ref[:4])) <= 1e-10
    assert d.stop() == 0
    conf["model"]["mode"] = "truncated"
    rc, log = start_exit(tmp_path, model=conf["model"],
                         extra_sections={"storage": conf["storage"]})
    assert rc == 1 and "model.mode exact, the configuration says truncated" in log, log
