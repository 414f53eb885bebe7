"""Every operation and every error code the daemon can produce, on the wire;
envelopes echoed; refused pushes change nothing; dim 0; duplicates."""
import json
import math
import time

import msgpack
import numpy as np
import pytest
import zmq

from isvdd_harness import Daemon, mat, pack, unmat, unpack


@pytest.fixture
def d(tmp_path):
    dm = Daemon(tmp_path, model={"dim": 0, "rank": 3, "center": True},
                extra_sections={"limits": {"max_rows_per_push": 100, "max_message_bytes": 65536}})
    yield dm
    assert dm.stop() == 0


def deep(n):
    v = 1
    for _ in range(n):
        v = [v]
    return v


def err(reply, code):
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] == code, reply
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    return reply["error"]["message"]


def test_ping_and_envelopes(d):
    r = d.call(d.q, {"op": "ping", "id": 7})
    assert r == {"ok": True, "id": 7, "version": r["version"], "protocol": 1}
    # DEALER frames before the body come back unchanged, in front of the reply
    frames = d.call_raw(d.q, [b"a", b"", b"xyz", pack({"op": "ping", "id": "s"})])
    assert frames[:3] == [b"a", b"", b"xyz"]
    assert unpack(frames[3])["id"] == "s"
    # a REQ client (empty delimiter added and stripped by zmq)
    req = d.ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 10000)
    req.connect(d.query)
    req.send(pack({"op": "ping", "id": {"nested": [1, 2]}}))
    assert unpack(req.recv())["id"] == {"nested": [1, 2]}
    req.close(0)


def test_not_ready_then_dim_zero_takes_first_push(d):
    info = d.info()
    assert info["dim"] == 0 and info["rows_seen"] == 0 and info["seq"] == 0 and info["sigma"] == []
    for op in ("project", "reconstruct"):
        err(d.call(d.q, {"op": op, "rows": [[1.0, 2.0]]}), "NOT_READY")
    err(d.call(d.q, {"op": "factors"}), "NOT_READY")
    # a refused first push does not fix the dimension
    err(d.push([[1.0, float("nan"), 3.0, 4.0, 5.0]]), "NON_FINITE")
    assert d.info()["dim"] == 0
    r = d.push(np.arange(15.0).reshape(3, 5) ** 1.5)
    assert r == {"ok": True, "accepted": 3, "seq": 3, "duplicate": False}
    info = d.info()
    assert info["dim"] == 5 and info["rows_seen"] == 3 and info["seq"] == 3
    msg = err(d.push(np.ones((2, 4))), "DIM_MISMATCH")
    assert "4" in msg and "5" in msg


def test_every_error_code_and_refusals_change_nothing(d):
    rng = np.random.default_rng(1)
    assert d.push(rng.standard_normal((20, 4)))["ok"]
    before = d.info()
    f_before = d.factors()

    # BAD_REQUEST: not msgpack, not a map, trailing bytes, missing op, unknown key, id too deep
    for raw in (b"\xc1", pack([1, 2]), pack({"op": "ping"}) + b"\x00", pack({"id": 1}),
                b"\xdd\x10\x00\x00\x00\x01", pack({"op": "ping", "id": deep(20)})):
        for sock in (d.q, d.i):
            err(unpack(d.call_raw(sock, [raw])[-1]), "BAD_REQUEST")
    assert "'bogus'" in err(d.call(d.q, {"op": "info", "bogus": 1}), "BAD_REQUEST")
    r = unpack(d.call_raw(d.i, [pack({"op": "push", "id": 9, "rows": [[1, 2, 3, 4]], "x": 1})])[-1])
    assert r["id"] == 9 and "'x'" in err(r, "BAD_REQUEST")
    # UNKNOWN_OP: no such op, or an op on the wrong socket
    err(d.call(d.q, {"op": "pong"}), "UNKNOWN_OP")
    err(d.call(d.q, {"op": "push", "rows": [[1, 2, 3, 4]]}), "UNKNOWN_OP")
    for op in ("ping", "info", "factors", "checkpoint"):
        err(d.call(d.i, {"op": op}), "UNKNOWN_OP")
    # BAD_MATRIX: ragged, strings, empty, bad shape
    assert "row 1" in err(d.call(d.i, {"op": "push", "rows": [[1, 2, 3, 4], [1, 2, 3]]}), "BAD_MATRIX")
    assert "column 2" in err(d.call(d.i, {"op": "push", "rows": [[1, 2, "x", 4]]}), "BAD_MATRIX")
    err(d.call(d.i, {"op": "push", "rows": []}), "BAD_MATRIX")
    err(d.call(d.i, {"op": "push", "rows": {"shape": [2, 4], "dtype": "f64", "data": b"\0" * 8}}),
        "BAD_MATRIX")
    err(d.call(d.q, {"op": "project", "rows": [["a"]]}), "BAD_MATRIX")
    # DIM_MISMATCH on every op with rows
    err(d.push(np.ones((1, 3))), "DIM_MISMATCH")
    err(d.call(d.q, {"op": "project", "rows": [[1, 2, 3]]}), "DIM_MISMATCH")
    err(d.call(d.q, {"op": "reconstruct", "rows": [[1, 2, 3, 4, 5]]}), "DIM_MISMATCH")
    # NON_FINITE: one NaN, a nil, an inf, a value beyond 1e150
    x = rng.standard_normal((50, 4))
    x[37, 2] = np.nan
    assert "row 37, column 2" in err(d.push(x), "NON_FINITE")
    err(d.call(d.i, {"op": "push", "rows": [[1, None, 3, 4]]}), "NON_FINITE")
    err(d.call(d.i, {"op": "push", "rows": [[1, math.inf, 3, 4]]}), "NON_FINITE")
    err(d.push([[1e200, 0, 0, 0]]), "NON_FINITE")
    err(d.call(d.q, {"op": "project", "rows": [[1, math.inf, 3, 4]]}), "NON_FINITE")
    # queries take gaps whatever model.missing says (test_missing.py checks the values)
    assert d.call(d.q, {"op": "project", "rows": [[1, None, 3, 4]]})["ok"]
    # TOO_LARGE: rows over limits.max_rows_per_push, a frame over max_message_bytes
    err(d.push(np.ones((101, 4))), "TOO_LARGE")
    err(d.call(d.i, {"op": "push", "rows": mat(np.ones((10, 4))), "client": "z" * 70000}), "TOO_LARGE")
    # a checkpoint changes nothing either (UNAVAILABLE, a failing disk, is
    # provoked in test_storage_faults.py)
    r = d.call(d.q, {"op": "checkpoint", "id": 3})
    assert r == {"ok": True, "id": 3, "seq": 20}, r
    assert d.info()["last_checkpoint_seq"] == 20
    # NOT_READY is covered by test_not_ready_then_dim_zero_takes_first_push.
    # UNAUTHORIZED (no authentication yet) and INTERNAL cannot be provoked from outside.

    after = d.info()
    for k in ("rows_seen", "seq", "dim", "sigma", "explained_energy_ratio"):
        assert after[k] == before[k], k
    f_after = d.factors()
    assert np.array_equal(f_after[1], f_before[1]) and np.array_equal(f_after[0], f_before[0])
    # and the daemon still serves
    assert d.push(np.ones((2, 4)))["seq"] == 22
    assert "refused" in d.log()


def test_queries(d):
    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.standard_normal((6, 2)))[0].T          # 2 x 6
    X = rng.standard_normal((200, 2)) @ (np.diag([5.0, 2.0]) @ basis) + np.arange(6.0)
    for i in range(0, 200, 37):
        assert d.push(X[i:i + 37])["ok"]
    info = d.info()
    assert info["rows_seen"] == 200 and info["seq"] == 200 and info["dim"] == 6
    assert info["rank"] == 2 and info["rank_max"] == 3 and info["center"] is True
    assert info["forget"] == 1.0 and info["last_checkpoint_seq"] == 0
    assert info["explained_energy_ratio"] > 1 - 1e-9
    assert info["orthogonality_error"] < 1e-10 and info["uptime_s"] >= 0
    assert info["ingest_rows_per_s"] >= 0
    # σ₁ / σₖ of the reported spectrum, which is numpy's of the centred rows
    s_ref = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)[:2]
    assert np.allclose(info["sigma"], s_ref, rtol=1e-10, atol=0)
    assert info["condition_number"] == pytest.approx(s_ref[0] / s_ref[1], rel=1e-10)
    sigma, vt, mean, seq = d.factors()
    assert seq == 200 and vt.shape == (2, 6) and np.allclose(mean, X.mean(axis=0))
    assert np.all(np.diff(sigma) <= 0)
    Y = X[:5] + 0.01
    r = d.call(d.q, {"op": "project", "rows": mat(Y), "id": 1})
    assert r["ok"] and r["id"] == 1 and r["seq"] == 200
    coords = unmat(r["coords"])
    assert coords.shape == (5, 2)
    assert np.allclose(coords, (Y - mean) @ vt.T, atol=1e-9)
    res = np.linalg.norm((Y - mean) - (Y - mean) @ vt.T @ vt, axis=1)
    assert np.allclose(r["residual"], res, atol=1e-9)
    ru = d.call(d.q, {"op": "project", "rows": mat(Y), "space": "u"})
    cu = unmat(ru["coords"])
    nz = sigma > 1e-9 * sigma[0]
    assert np.allclose(cu[:, nz], coords[:, nz] / sigma[nz], atol=1e-9)
    rr = d.call(d.q, {"op": "reconstruct", "rows": [list(Y[0])]})
    assert rr["ok"] and rr["seq"] == 200
    assert np.allclose(unmat(rr["rows"])[0], mean + (Y[0] - mean) @ vt.T @ vt, atol=1e-9)


def test_duplicates(d):
    a = np.ones((3, 2))
    r1 = d.push(a, client="c1", batch=1)
    assert r1 == {"ok": True, "accepted": 3, "seq": 3, "duplicate": False}
    r2 = d.push(a * 2, client="c1", batch=2)
    assert r2["seq"] == 6
    other = d.push(a, client="c2", batch=1)
    assert other["seq"] == 9 and not other["duplicate"]
    again = d.push(a, client="c1", batch=1)
    assert again == {"ok": True, "accepted": 0, "seq": 3, "duplicate": True}
    assert d.push(a * 2, client="c1", batch=2)["seq"] == 6
    assert d.info()["rows_seen"] == 9
    # a duplicate inside one pipelined burst
    body = pack({"op": "push", "rows": mat(a), "client": "c3", "batch": 7})
    d.i.send_multipart([body])
    d.i.send_multipart([body])
    replies = [unpack(d.i.recv_multipart()[-1]) for _ in range(2)]
    assert sorted(r["duplicate"] for r in replies) == [False, True]
    assert replies[0]["seq"] == replies[1]["seq"] == 12
    assert d.info()["rows_seen"] == 12
    # pushes without client/batch are never duplicates
    assert d.push(a)["seq"] == 15 and d.push(a)["seq"] == 18


def test_a_resend_of_a_push_still_in_the_engine_is_a_duplicate(tmp_path):
    """A push of batching.max_rows or more goes to the engine thread at
    once; its resend, arriving while the engine still applies it, must wait
    for it and be answered as a duplicate, not applied twice."""
    d = Daemon(tmp_path, model={"dim": 200, "rank": 4},
               extra_sections={"batching": {"max_rows": 64, "max_delay_ms": 2}})
    try:
        rng = np.random.default_rng(4)
        body = pack({"op": "push", "rows": mat(rng.standard_normal((20000, 200))), "client": "r",
                     "batch": 1})
        for _ in range(3):
            d.i.send_multipart([body])
        replies = [unpack(d.i.recv_multipart()[-1]) for _ in range(3)]
        assert [r["duplicate"] for r in replies] == [False, True, True], replies
        assert {r["seq"] for r in replies} == {20000}
        assert d.info()["rows_seen"] == 20000
    finally:
        assert d.stop() == 0


def test_refused_warnings_are_rate_limited_and_json_logs(tmp_path):
    d = Daemon(tmp_path, extra_sections={"log": {"format": "json", "warn_every_ms": 400}})
    try:
        assert d.push([[1.0, 2.0]])["ok"]
        for _ in range(10):
            err(d.push([[1.0, float("nan")]]), "NON_FINITE")
        # refuse DIM_MISMATCH pushes until one is logged (the window has
        # passed): a hang is bounded by the deadline, not a measured delay
        refused, deadline = 10, time.monotonic() + 20
        while not any("DIM_MISMATCH" in w for w in warnings(d.log())):
            assert time.monotonic() < deadline, "no DIM_MISMATCH warning within 20 s"
            err(d.push([[1.0, 2.0, 3.0]]), "DIM_MISMATCH")
            refused += 1
            time.sleep(0.01)
        assert d.info()["rows_seen"] == 1
    finally:
        assert d.stop() == 0
    lines = [json.loads(l) for l in d.log().splitlines()]
    assert all(set(l) == {"t", "pid", "level", "msg"} for l in lines)
    warns = warnings(d.log())
    assert "NON_FINITE" in warns[0] and "DIM_MISMATCH" in warns[-1]
    # every refusal is either logged or counted in the next logged line
    untold = [int(w.split("and ")[1].split(" more")[0]) for w in warns if " more refused" in w]
    assert len(warns) + sum(untold) == refused, (refused, warns)
    assert len(warns) < refused                   # something was held back
    assert sum("starting" in l["msg"] for l in lines) == 1


def warnings(log):
    """The messages of the warn lines of a JSON log (whole lines only: the
    daemon may be writing the last one)."""
    whole = log[:log.rfind("\n") + 1]
    return [l["msg"] for l in map(json.loads, whole.splitlines()) if l["level"] == "warn"]


def test_a_peer_that_leaves_mid_request_disturbs_no_one(d):
    rng = np.random.default_rng(5)
    for _ in range(20):
        s = d.dealer(d.ingest)
        s.send(pack({"op": "push", "rows": mat(rng.standard_normal((50, 3)))}))
        s.close(0)                    # gone before its reply
        q = d.dealer(d.query)
        q.send(pack({"op": "info"}))
        q.close(0)
    r = d.push(np.ones((1, 3)))
    assert r["ok"] and r["seq"] % 50 == 1
    # A departed peer's push may still be in flight behind ours (ZeroMQ
    # orders messages per peer, not across peers), so no moment is "after
    # all of them"; but a push is applied whole or not at all, so whatever
    # the daemon holds at any read is whole pushes of 50 rows plus our one.
    for _ in range(10):
        seen = d.info()["rows_seen"]
        assert seen >= r["seq"] and seen % 50 == 1 and seen <= 20 * 50 + 1, seen
