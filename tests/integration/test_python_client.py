"""The Python client package `isvd` (clients/python) against the real isvdd:
every Client method, numpy in and out in the shaped binary form, exceptions
carrying the protocol's code and message, subscriptions, Factors'
transform/inverse_transform against the daemon's project/reconstruct, Lazy
Pirate retries against a SIGSTOP'd daemon (a retried push is applied once),
and the digits example as a subprocess.

Every wait is bounded: client timeouts, subprocess timeouts, and loops with
a monotonic deadline.  Only ipc:// sockets in the test's temporary directory
are used; the client's tcp defaults are checked without connecting.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import isvd
from isvd.codec import encode_matrix, pack, unpack
from isvd.errors import server_error
from isvdd_harness import Daemon, sign_normalise

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(isvd.__file__)), "..", "examples", "digits.py")
REPLY_TIMEOUT = 20.0            # seconds; generous for sanitizer builds


def client(d, **kw):
    kw.setdefault("timeout", REPLY_TIMEOUT)
    return isvd.Client(ingest=d.ingest, query=d.query, publish=d.publish, **kw)


def numpy_pca(X, center):
    mu = X.mean(axis=0) if center else np.zeros(X.shape[1])
    _, s, vt = np.linalg.svd(X - mu, full_matrices=False)
    return s, sign_normalise(vt), mu


def make_data(rng, rows, dim, scales, offset):
    basis = np.linalg.qr(rng.standard_normal((dim, len(scales))))[0].T
    return (rng.standard_normal((rows, len(scales))) * scales) @ basis + offset


# ------------------------------------------------------------ no daemon needed

def test_construction_contacts_nothing_and_reads_env(monkeypatch):
    for v in ("ISVD_INGEST", "ISVD_QUERY", "ISVD_PUBLISH"):
        monkeypatch.delenv(v, raising=False)
    with isvd.Client() as c:
        assert (c.ingest, c.query, c.publish) == ("tcp://127.0.0.1:5570", "tcp://127.0.0.1:5571",
                                                  "tcp://127.0.0.1:5572")
        assert c._socks == {"ingest": None, "query": None}      # sockets are made on first use
        assert c.client_id.startswith("py-") and c.next_batch == 1
    monkeypatch.setenv("ISVD_INGEST", "ipc:///nonexistent/i")
    monkeypatch.setenv("ISVD_QUERY", "ipc:///nonexistent/q")
    monkeypatch.setenv("ISVD_PUBLISH", "ipc:///nonexistent/p")
    a, b = isvd.Client(), isvd.Client(query="ipc:///other/q", client_id="me")
    try:
        assert (a.ingest, a.query, a.publish) == ("ipc:///nonexistent/i", "ipc:///nonexistent/q",
                                                  "ipc:///nonexistent/p")
        assert b.query == "ipc:///other/q" and b.ingest == "ipc:///nonexistent/i"
        assert b.client_id == "me" and a.client_id != isvd.Client().client_id
    finally:
        a.close()
        b.close()
    for bad in ({"client_id": ""}, {"client_id": "x" * 256}, {"client_id": "a\0b"},
                {"timeout": 0}, {"timeout": -1}, {"retries": -1}, {"retries": 1.5}):
        with pytest.raises(isvd.InputError):
            isvd.Client(**bad)
    c = isvd.Client(query="ipc:///nonexistent/q")
    c.close()
    c.close()                                                   # idempotent
    assert c.closed
    with pytest.raises(isvd.ClosedError):
        c.ping()
    with pytest.raises(isvd.ClosedError):
        c.subscribe()


def test_codec_sends_binary_matrices():
    m = encode_matrix(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert m["shape"] == [2, 3] and m["dtype"] == "f32" and bytes(m["data"]) == \
        np.arange(6, dtype="<f4").tobytes()
    m = encode_matrix(np.arange(3))                             # ints, 1-D: one f64 row
    assert m["shape"] == [1, 3] and m["dtype"] == "f64" and len(bytes(m["data"])) == 24
    m = encode_matrix(np.arange(6.0).reshape(3, 2).T)           # not contiguous, big-endian-safe
    assert np.array_equal(np.frombuffer(bytes(m["data"]), "<f8"), [0, 2, 4, 1, 3, 5])
    m = encode_matrix(np.array([[1.0, 2.0]], dtype=">f8"))
    assert np.frombuffer(bytes(m["data"]), "<f8").tolist() == [1.0, 2.0]
    body = unpack(pack({"rows": encode_matrix([[1.5, -2.0]])}))
    assert body["rows"]["data"] == bytes.fromhex("000000000000f83f00000000000000c0")
    for bad in (["a", "b"], np.zeros((2, 2, 2)), np.array([1 + 2j]), 3.0, [[1, 2], [3]]):
        with pytest.raises(isvd.InputError) as e:
            encode_matrix(bad)
        assert isinstance(e.value, ValueError) and isinstance(e.value, isvd.IsvdError)
    # an unknown error code is INTERNAL, keeping the original
    e = server_error("NEW_CODE", "later daemon", "ping")
    assert type(e) is isvd.InternalError and e.code == "INTERNAL" and e.raw_code == "NEW_CODE"
    assert isinstance(server_error("DIM_MISMATCH", "m"), isvd.DimMismatch)


def test_pandas_dataframes(tmp_path):
    """DataFrames of numeric columns (issue 21): sent as matrices (f32 when
    every column is float32), <NA> and NaN as gaps, a Series as one row, a
    non-numeric column refused before sending with its name."""
    import pandas as pd
    rng = np.random.default_rng(21)
    X = make_data(rng, 60, 4, [5.0, 3.0, 2.0, 1.0], np.arange(4.0))
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    df["d"] = np.rint(df["d"] * 10).astype(np.int64)
    X = df.to_numpy(dtype=np.float64)
    m = encode_matrix(df.astype(np.float32))
    assert m["dtype"] == "f32" and m["shape"] == [60, 4]
    assert encode_matrix(df)["dtype"] == "f64"
    with pytest.raises(isvd.InputError, match=r"columns 'e' \(object\), 'f' \(datetime64"):
        encode_matrix(df.assign(e="x", f=pd.Timestamp("2026-01-01")))
    d = Daemon(tmp_path, model={"dim": 4, "rank": 4, "center": True, "missing": "impute"})
    try:
        with client(d) as c:
            assert c.push(df[:50]).accepted == 50
            assert c.push(df.iloc[50]).accepted == 1              # a Series: one row
            gaps = df[51:].astype({"b": "Float64", "d": "Int64"})
            gaps.loc[53, "b"] = pd.NA
            gaps.loc[55, "d"] = pd.NA
            assert c.push(gaps).accepted == 9
            info = c.info()
            assert info["rows_seen"] == 60 and info["values_imputed"] == 2
            Y = X[51:].copy()
            Y[2, 1] = np.nan
            Y[4, 3] = np.nan
            got, res = c.project(gaps)
            want, wres = c.project(Y)
            assert np.array_equal(got, want) and np.array_equal(res, wres)
            assert np.array_equal(c.reconstruct(df[:5]), c.reconstruct(X[:5]))
            with pytest.raises(isvd.InputError, match="'e' \\(object\\)"):
                c.push(df.assign(e="x"))
            assert c.info()["rows_seen"] == 60
    finally:
        assert d.stop() == 0


def test_timeout_without_a_daemon(tmp_path):
    c = isvd.Client(query=f"ipc://{tmp_path}/nobody.sock", timeout=0.2, retries=2)
    t0 = time.monotonic()
    with pytest.raises(isvd.Timeout) as e:
        c.ping()
    assert time.monotonic() - t0 < 10
    assert isinstance(e.value, TimeoutError) and e.value.attempts == 3 and e.value.op == "ping"
    c.close()


# ---------------------------------------------------------------- with isvdd

def test_push_forms_factors_and_queries_match_numpy(tmp_path):
    """dim 6 = rank 6: the model is exact, so everything matches numpy to ~1e-9."""
    d = Daemon(tmp_path, model={"dim": 6, "rank": 6, "center": True})
    try:
        with client(d) as c:
            p = c.ping()
            assert p["protocol"] == 1 and re.fullmatch(r"\d+\.\d+\.\d+", p["version"])
            rng = np.random.default_rng(11)
            X = make_data(rng, 120, 6, [10.0, 7.0, 5.0, 3.0, 2.0, 1.0], np.arange(6.0) * 3)
            parts = [X[:40],                                   # float64
                     X[40:70].astype(np.float32),              # sent as f32
                     X[70],                                    # 1-D: one row
                     np.rint(X[71:76] * 100).astype(np.int64), # integers -> f64
                     X[76:120].tolist()]                       # lists of rows
            seq = 0
            for b, part in enumerate(parts, 1):
                n = np.atleast_2d(np.asarray(part)).shape[0]
                ack = c.push(part)
                seq += n
                assert ack == isvd.Ack(n, seq, False, c.client_id, b, 1), ack
                assert ack.accepted == n and ack.seq == seq and ack.duplicate is False
            pushed = np.vstack([np.atleast_2d(np.asarray(p_, dtype=np.float64)) for p_ in parts])
            assert pushed.shape == (120, 6)

            info = c.info()
            assert info["rows_seen"] == 120 and info["seq"] == 120 and info["dim"] == 6
            assert info["rank"] == 6 and info["center"] is True
            assert isinstance(info["sigma"], np.ndarray) and info["sigma"].shape == (6,)

            s, vt, mu = numpy_pca(pushed, center=True)
            f = c.factors()
            assert isinstance(f, isvd.Factors) and f.seq == 120 and c.last_seq == 120
            assert np.max(np.abs(f.sigma - s) / s) < 1e-9
            assert np.max(np.abs(f.vt - vt)) < 1e-9
            assert np.max(np.abs(f.mean - mu)) < 1e-9
            assert np.allclose(info["sigma"], f.sigma, rtol=1e-12)
            assert f.components_ is f.vt and f.singular_values_ is f.sigma and f.mean_ is f.mean
            assert (f.n_components_, f.n_features_in_) == (6, 6)

            Y = rng.standard_normal((7, 6)) * 4
            coords, residual = c.project(Y)
            assert coords.shape == (7, 6) and residual.shape == (7,)
            assert np.allclose(coords, (Y - mu) @ vt.T, atol=1e-9, rtol=0)
            assert np.all(np.abs(residual) < 1e-9)                # full rank: nothing left over
            u, _ = c.project(Y, space="u")
            assert np.allclose(u, (Y - mu) @ vt.T / s, atol=1e-9, rtol=0)
            assert np.allclose(c.reconstruct(Y), Y, atol=1e-9, rtol=0)
            one, r1 = c.project(Y[0])                             # 1-D in: one row out
            assert one.shape == (1, 6) and np.allclose(one[0], coords[0], atol=1e-12)
            assert c.reconstruct(Y[0].astype(np.float32)).shape == (1, 6)

            cp = c.checkpoint()           # the daemon has storage: a checkpoint must succeed
            assert isinstance(cp, int) and cp == 120 == c.info()["last_checkpoint_seq"]
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("center", [True, False])
def test_factors_transform_equals_daemon_project_and_reconstruct(tmp_path, center):
    """Rank-3 data in dim 8 with model rank 3: exact, with real residuals."""
    d = Daemon(tmp_path, model={"dim": 0, "rank": 3, "center": center})
    try:
        with client(d) as c:
            rng = np.random.default_rng(12)
            X = make_data(rng, 300, 8, [9.0, 4.0, 1.5], rng.uniform(-5, 5, 8) if center else 0.0)
            for i in range(0, 300, 70):
                c.push(X[i:i + 70])
            f = c.factors()
            s, vt, mu = numpy_pca(X, center)
            assert f.seq == 300 and f.vt.shape == (3, 8)
            assert np.max(np.abs(f.sigma - s[:3]) / s[:3]) < 1e-9
            assert np.max(np.abs(f.vt - vt[:3])) < 1e-9
            if center:
                assert f.centered and np.max(np.abs(f.mean - mu)) < 1e-9
            else:
                assert f.mean is None and not f.centered and np.array_equal(f.mean_, np.zeros(8))

            Y = X[:10] + rng.standard_normal((10, 8))             # off the subspace
            coords, residual = c.project(Y)
            expect = (Y - mu) @ vt[:3].T
            assert np.allclose(coords, expect, atol=1e-9, rtol=0)
            res = np.linalg.norm((Y - mu) - expect @ vt[:3], axis=1)
            assert np.all(res > 0.1) and np.allclose(residual, res, atol=1e-9, rtol=0)
            recon = c.reconstruct(Y)
            assert np.allclose(recon, mu + expect @ vt[:3], atol=1e-9, rtol=0)
            # the offline snapshot gives the daemon's answers
            assert np.allclose(f.transform(Y), coords, atol=1e-12, rtol=1e-12)
            assert np.allclose(f.inverse_transform(coords), recon, atol=1e-12, rtol=1e-12)
            assert np.allclose(f.inverse_transform(f.transform(Y)), recon, atol=1e-12, rtol=1e-12)
            assert np.allclose(f.residual(Y), residual, atol=1e-12, rtol=1e-12)
            assert f.transform(Y[0]).shape == (1, 3)
            with pytest.raises(isvd.InputError):
                f.transform(np.ones((2, 7)))
            with pytest.raises(isvd.InputError):
                f.inverse_transform(np.ones((2, 4)))
    finally:
        assert d.stop() == 0


def test_duplicates_with_explicit_batch(tmp_path):
    d = Daemon(tmp_path, model={"dim": 3, "rank": 2})
    try:
        with client(d) as c, client(d, client_id=c.client_id) as same, client(d) as other:
            a = np.ones((4, 3))
            first = c.push(a, batch=10)
            assert (first.accepted, first.seq, first.duplicate, first.batch) == (4, 4, False, 10)
            again = c.push(a * 5, batch=10)
            assert (again.accepted, again.seq, again.duplicate) == (0, 4, True)
            assert c.next_batch == 11
            auto = c.push(a)                                      # continues after 10
            assert auto.batch == 11 and auto.seq == 8 and not auto.duplicate
            # the same client id from another Client object is the same sender
            assert same.push(a, batch=11) == isvd.Ack(0, 8, True, c.client_id, 11, 1)
            # another client id with the same batch number is not a duplicate
            o = other.push(a, batch=10)
            assert o.seq == 12 and not o.duplicate
            assert c.info()["rows_seen"] == 12
    finally:
        assert d.stop() == 0


def test_errors_are_exceptions_with_code_and_message(tmp_path):
    d = Daemon(tmp_path, model={"dim": 0, "rank": 2})
    try:
        with client(d) as c:
            for call in (c.factors, lambda: c.project([[1.0, 2.0]]), lambda: c.reconstruct([1.0])):
                with pytest.raises(isvd.NotReady) as e:
                    call()
                assert e.value.code == "NOT_READY" and "no rows" in e.value.message
            c.push(np.arange(12.0).reshape(3, 4) ** 1.5)

            with pytest.raises(isvd.ServerError) as e:
                c.push(np.ones((2, 3)))
            assert type(e.value) is isvd.DimMismatch and e.value.code == "DIM_MISMATCH"
            assert e.value.op == "push" and "3" in e.value.message and "4" in e.value.message
            assert "DIM_MISMATCH" in str(e.value)
            with pytest.raises(isvd.DimMismatch):
                c.project(np.ones(5))
            with pytest.raises(isvd.DimMismatch) as e:
                c.reconstruct(np.ones((1, 2), dtype=np.float32))
            assert e.value.op == "reconstruct"

            x = np.ones((3, 4))
            x[1, 2] = np.nan
            with pytest.raises(isvd.NonFinite) as e:
                c.push(x)
            assert e.value.code == "NON_FINITE" and "row 1, column 2" in e.value.message
            x[1, 2] = -np.inf
            with pytest.raises(isvd.NonFinite):
                c.push(x.astype(np.float32))
            with pytest.raises(isvd.NonFinite):
                c.project([1.0, np.inf, 2.0, 3.0])
            with pytest.raises(isvd.BadMatrix):   # a gap is fine, a row of gaps is not
                c.project([np.nan] * 4)
            with pytest.raises(isvd.BadMatrix) as e:
                c.push(np.empty((0, 4)))
            assert e.value.code == "BAD_MATRIX"

            # refused locally: nothing sent
            with pytest.raises(isvd.InputError):
                c.push([["a", "b", "c", "d"]])
            with pytest.raises(isvd.InputError):
                c.project(np.ones(4), space="v")
            with pytest.raises(isvd.InputError):
                c.push(np.ones(4), batch=-1)

            assert c.info()["rows_seen"] == 3                     # refusals applied nothing
            assert c.push(np.ones(4)).seq == 4                    # and the client still works
    finally:
        assert d.stop() == 0


def test_subscribe_yields_spectrum_dicts_and_factors(tmp_path):
    d = Daemon(tmp_path, model={"dim": 5, "rank": 3, "center": True},
               extra_sections={"publish": {"spectrum_every_ms": 40, "spectrum_every_rows": 100,
                                           "factors_every_ms": 100}})
    try:
        with client(d) as c:
            both = c.subscribe(["spectrum", "factors"], timeout=0.1)
            spec_only = c.subscribe("spectrum", timeout=0.1)
            rng = np.random.default_rng(13)
            spectra, factors, only = [], [], []
            deadline = time.monotonic() + 60
            while (len(spectra) < 4 or len(factors) < 2 or not only) and time.monotonic() < deadline:
                c.push(rng.standard_normal((50, 5)) @ np.diag([5.0, 3.0, 2.0, 1.0, 0.5]))
                for sub, sink in ((both, None), (spec_only, only)):
                    try:
                        snap = next(sub)
                    except isvd.Timeout:
                        continue
                    if sink is None:
                        (factors if isinstance(snap, isvd.Factors) else spectra).append(snap)
                    else:
                        sink.append(snap)
            assert len(spectra) >= 4 and len(factors) >= 2 and only, (len(spectra), len(factors))
            assert all(isinstance(s, dict) for s in only)
            for s in spectra + only:
                assert {"seq", "rows_seen", "sigma", "explained_energy_ratio", "t"} <= set(s)
                assert isinstance(s["sigma"], np.ndarray) and s["sigma"].shape == (3,)
                assert s["rows_seen"] == s["seq"] and 0 < s["explained_energy_ratio"] <= 1
            seqs = [s["seq"] for s in spectra]
            assert all(b > a for a, b in zip(seqs, seqs[1:])), seqs
            for f in factors:
                assert f.vt.shape == (3, 5) and f.mean.shape == (5,)
                assert np.allclose(f.vt @ f.vt.T, np.eye(3), atol=1e-10)
                assert f.transform(np.ones((2, 5))).shape == (2, 3)
            fseqs = [f.seq for f in factors]
            assert all(b > a for a, b in zip(fseqs, fseqs[1:])), fseqs

            # no more pushes: the daemon stops publishing, so the iterator times out
            t0 = time.monotonic()
            with pytest.raises(isvd.Timeout):
                for _ in range(100):        # bounded: at most a few late snapshots remain
                    snap = both.recv(timeout=0.5)
                    if isinstance(snap, isvd.Factors):
                        factors.append(snap)
            assert time.monotonic() - t0 < 30
            final = c.factors()
            assert factors[-1].seq <= final.seq
            if factors[-1].seq == final.seq:                      # the same model, same bytes
                assert np.array_equal(factors[-1].vt, final.vt)
                assert np.array_equal(factors[-1].sigma, final.sigma)

            with spec_only:
                pass
            assert spec_only.closed
            with pytest.raises(isvd.ClosedError):
                spec_only.recv()
            with pytest.raises(isvd.InputError):
                c.subscribe("nonsense")
        assert both.closed                                        # closed with its client
    finally:
        assert d.stop() == 0


def test_retries_against_a_stopped_daemon_apply_a_push_once(tmp_path):
    d = Daemon(tmp_path, model={"dim": 4, "rank": 2})
    timer = None
    try:
        with client(d, timeout=0.3, retries=40) as c:
            assert c.push(np.ones((1, 4))).seq == 1                # sockets connected
            assert c.info()["rows_seen"] == 1

            # The daemon stops answering; the client times out, reconnects and
            # resends the same (client, batch) until the daemon runs again.
            d.signal(signal.SIGSTOP)
            timer = threading.Timer(1.5, d.signal, (signal.SIGCONT,))
            timer.start()
            ack = c.push(np.arange(20.0).reshape(5, 4))
            timer.join(10)
            assert ack.attempts > 1, ack
            print(f"retried push: {ack}")
            # whichever attempt got through was applied; a later one is a duplicate
            if ack.duplicate:
                assert ack.accepted == 0 and ack.seq in (6, 0), ack
            else:
                assert ack.accepted == 5 and ack.seq == 6, ack
            assert ack.batch == 2

            # settle (bounded): a copy sent before SIGCONT may arrive late; it must
            # be recognised as a duplicate
            seen, deadline = -1, time.monotonic() + 5
            while time.monotonic() < deadline:
                now = c.info()["rows_seen"]
                if now == seen:
                    break
                seen = now
                time.sleep(0.3)
            assert seen == 6, seen
            assert c.push(np.ones(4)).seq == 7

            # a query is retried the same way
            d.signal(signal.SIGSTOP)
            timer = threading.Timer(1.0, d.signal, (signal.SIGCONT,))
            timer.start()
            assert c.info()["rows_seen"] == 7
            timer.join(10)

        # retries exhausted: Timeout (a TimeoutError), after retries + 1 attempts
        with client(d, timeout=0.2, retries=2) as c:
            d.signal(signal.SIGSTOP)
            t0 = time.monotonic()
            with pytest.raises(isvd.Timeout) as e:
                c.ping()
            assert isinstance(e.value, TimeoutError) and e.value.attempts == 3
            assert time.monotonic() - t0 < 10
            d.signal(signal.SIGCONT)
            assert c.ping()["protocol"] == 1                      # a fresh socket works
            assert c.info()["rows_seen"] == 7
    finally:
        if timer is not None:
            timer.cancel()
        d.signal(signal.SIGCONT)
        assert d.stop() == 0


def test_push_many_pipelines_and_survives_a_stall(tmp_path):
    rng = np.random.default_rng(11)
    d = Daemon(tmp_path, model={"dim": 5, "rank": 5})
    timer = None
    try:
        with client(d, timeout=0.3, retries=40) as c:
            X = rng.standard_normal((1000, 5)) * np.arange(1.0, 6.0)
            acks = c.push_many(X, rows_per_push=37, window=8)
            assert len(acks) == 28 and [a.batch for a in acks] == list(range(1, 29))
            # every row once, in order: the pushes' seqs tile 1..1000
            assert [a.seq for a in acks] == [min(37 * (i + 1), 1000) for i in range(28)]
            assert all(a.accepted == (37 if i < 27 else 1000 - 27 * 37) for i, a in enumerate(acks))
            f = c.factors()
            s_ref = np.linalg.svd(X, compute_uv=False)
            assert np.allclose(f.sigma, s_ref, rtol=1e-10)

            # a stall: the window is resent on a fresh socket, nothing doubled
            Y = rng.standard_normal((400, 5))
            d.signal(signal.SIGSTOP)
            timer = threading.Timer(1.0, d.signal, (signal.SIGCONT,))
            timer.start()
            acks = c.push_many([Y[i:i + 50] for i in range(0, 400, 50)], window=4)
            timer.join(10)
            assert len(acks) == 8 and max(a.attempts for a in acks) > 1
            seen, deadline = -1, time.monotonic() + 5
            while time.monotonic() < deadline:      # late copies settle as duplicates
                now = c.info()["rows_seen"]
                if now == seen:
                    break
                seen = now
                time.sleep(0.3)
            assert seen == 1400
            s_ref = np.linalg.svd(np.vstack([X, Y]), compute_uv=False)
            assert np.allclose(c.factors().sigma, s_ref, rtol=1e-10)

            # a refused push stops the stream; the error carries what was acked
            Z = rng.standard_normal((100, 5))
            Z[55, 2] = np.nan
            with pytest.raises(isvd.ServerError) as e:
                c.push_many(Z, rows_per_push=10, window=1)
            assert e.value.code == "NON_FINITE" and len(e.value.acks) == 5
            assert c.info()["rows_seen"] == 1450
            with pytest.raises(isvd.InputError):
                c.push_many(Z, window=0)
    finally:
        if timer is not None:
            timer.cancel()
        d.signal(signal.SIGCONT)
        assert d.stop() == 0


def run_example(*args, env=None, timeout=120):
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, EXAMPLE, *args], capture_output=True, text=True,
                          timeout=timeout, env=e)


def test_digits_example(tmp_path):
    pytest.importorskip("sklearn")
    r = run_example("--help")
    assert r.returncode == 0 and "usage" in r.stdout and "--ingest" in r.stdout
    # rank 5 + extra 59 = 64 = n: the streamed model is exact, so it must match PCA
    d = Daemon(tmp_path, model={"dim": 0, "rank": 5, "extra": 59, "center": True})
    try:
        r = run_example("--query", d.query, "--rows", "400", "--batch-rows", "64",
                        env={"ISVD_INGEST": d.ingest})
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        assert "400 images x 64 pixels" in out and "comparing k = 5" in out, out
        var = float(re.search(r"max relative variance difference: (\S+)", out).group(1))
        sine = float(re.search(r"sin of largest principal angle (\S+)", out).group(1))
        assert var < 1e-9 and sine < 1e-7, out
        assert d.info()["rows_seen"] == 400
        # the example refuses a daemon that already holds rows
        r = run_example("--ingest", d.ingest, "--query", d.query)
        assert r.returncode == 2 and "fresh daemon" in r.stderr
    finally:
        assert d.stop() == 0
