"""Missing values through isvdd (model.missing: impute), its protocol and
its three clients.

Rows of exactly rank 3 make imputation checkable from outside: once the
model holds their subspace, the estimator recovers a row's gaps from its
observed values to rounding (its ridge is then the 1e-12 noise floor), so
a stream with gaps must give the factors of the complete rows, and gap
filling must give back the values that were removed.  Noisy rows at rank
3 + 1 make the factors depend on block boundaries, which is what the kill -9
test needs to show that replay reproduces the imputations bit for bit.
"""
import os
import subprocess

import numpy as np
import pytest

from isvdd_harness import Daemon, mat, pack, unmat, unpack

CLI = os.environ.get("ISVD_CLI", "")
DIM, RANK = 16, 3


def lowrank(rng, m, dim=DIM, rank=RANK):
    """m rows of exactly rank `rank` around a non-zero mean."""
    basis = rng.standard_normal((rank, dim))
    return (rng.standard_normal((m, rank)) * [5.0, 2.0, 1.0][:rank]) @ basis + np.linspace(-1, 1, dim)


def with_gaps(rng, x, frac):
    """x with frac of its values NaN, at least one observed per row."""
    y = x.copy()
    holes = rng.random(y.shape) < frac
    holes[:, 0] &= ~holes[:, 1:].all(axis=1)   # never a row of gaps only
    y[holes] = np.nan
    return y


def impute_daemon(tmp_path, mode="exact", **model):
    conf = {"rank": RANK + 1, "extra": 2, "center": True, "mode": mode, "missing": "impute"}
    conf.update(model)
    return Daemon(tmp_path, model=conf,
                  extra_sections={"batching": {"max_rows": 64, "max_delay_ms": 20},
                                  "storage": {"checkpoint_every_rows": 0, "checkpoint_every_s": 0}})


def err(r, code):
    assert not r["ok"], r
    assert r["error"]["code"] == code, r
    return r["error"]["message"]


@pytest.mark.parametrize("mode", ["exact", "truncated"])
def test_a_stream_with_gaps_learns_the_complete_rows(tmp_path, mode):
    """Gaps in both matrix forms: binary (NaN) and arrays (nil; f32 binary
    in test_refusals_apply_nothing, whose rows need not be exact).
    After a gap-free warm-up the gaps are recovered exactly, so the factors
    are numpy's SVD of the complete rows; info and the spectrum snapshot
    count what was imputed; queries take gaps."""
    rng = np.random.default_rng(16)
    truth = lowrank(rng, 900)
    gapped = np.vstack([truth[:300], with_gaps(rng, truth[300:], 0.25)])
    with impute_daemon(tmp_path, mode) as d:
        sub = d.sub([b"spectrum"])
        seq = 0
        for i in range(0, 900, 50):
            x = gapped[i:i + 50]
            form = (i // 50) % 3
            if form == 0:
                r = d.push(x)
            elif form == 1:   # array form: nil
                r = d.call(d.i, {"op": "push", "rows": [[None if np.isnan(v) else float(v) for v in row]
                                                        for row in x]})
            else:
                r = d.call(d.i, {"op": "push", "rows": [[None if np.isnan(v) else float(v) for v in row]
                                                        for row in x], "client": "c", "batch": i})
            assert r["ok"], r
            seq += len(x)
            assert r["seq"] == seq and r["accepted"] == len(x)
        info = d.info()
        gaps = np.isnan(gapped)
        assert info["missing"] == "impute"
        assert info["rows_with_gaps"] == int(gaps.any(axis=1).sum())
        assert info["values_imputed"] == int(gaps.sum())
        sigma, vt, mean, _ = d.factors()
        mu = truth.mean(axis=0)
        _, s_ref, vt_ref = np.linalg.svd(truth - mu, full_matrices=False)
        assert np.max(np.abs(sigma[:RANK] - s_ref[:RANK])) <= 1e-7 * s_ref[0], (sigma, s_ref[:RANK])
        p = vt[:RANK].T @ vt[:RANK] - vt_ref[:RANK].T @ vt_ref[:RANK]
        assert np.max(np.abs(p)) <= 1e-7
        assert np.max(np.abs(mean - mu)) <= 1e-7 * np.max(np.abs(truth))
        # the spectrum snapshot counts the same (it is published on a timer)
        for _ in range(50):
            topic, body = sub.recv_multipart()
            s = unpack(body)
            if s["seq"] == seq:
                break
        assert s["seq"] == seq and s["rows_with_gaps"] == info["rows_with_gaps"]
        assert s["values_imputed"] == info["values_imputed"]

        # queries: fresh rows of the same subspace, with gaps
        q_truth = truth[:8] * 0.5 + truth[8:16] * 0.5              # in the same affine span
        q = with_gaps(rng, q_truth, 0.3)
        q[1] = q_truth[1]                                          # one row without gaps
        r = d.call(d.q, {"op": "reconstruct", "rows": mat(q), "fill": True})
        filled = unmat(r["rows"])
        obs = ~np.isnan(q)
        assert np.array_equal(filled[obs], q[obs])                 # observed values bit for bit
        assert np.max(np.abs(filled - q_truth)) <= 1e-6 * np.max(np.abs(q_truth))
        full = unmat(d.call(d.q, {"op": "reconstruct", "rows": mat(q)})["rows"])
        assert np.max(np.abs(full - q_truth)) <= 1e-6 * np.max(np.abs(q_truth))
        r = d.call(d.q, {"op": "project", "rows": mat(q)})
        assert r["ok"], r
        assert r["observed"] == [float(c) for c in obs.sum(axis=1)]
        assert max(r["residual"]) <= 1e-6 * np.max(np.abs(q_truth))
        ref = d.call(d.q, {"op": "project", "rows": mat(q_truth)})
        assert "observed" not in ref                               # no gaps, no key
        c1, c2 = unmat(r["coords"]), unmat(ref["coords"])
        assert np.max(np.abs(c1[:, :RANK] - c2[:, :RANK])) <= 1e-6 * np.max(np.abs(c2))


def test_refusals_apply_nothing(tmp_path):
    rng = np.random.default_rng(17)
    with impute_daemon(tmp_path, "truncated") as d:
        assert d.push(lowrank(rng, 40))["ok"]
        before = d.info()
        x = lowrank(rng, 5)
        x[1, 3] = np.nan
        x[2, :] = np.nan                           # a row of gaps only
        msg = err(d.push(x), "BAD_MATRIX")
        assert "row 2" in msg and "no observed value" in msg, msg
        msg = err(d.call(d.i, {"op": "push", "rows": [[1.0] * DIM, [None] * DIM]}), "BAD_MATRIX")
        assert "row 1" in msg, msg
        x = lowrank(rng, 3)
        x[0, 0] = np.nan
        x[2, 5] = np.inf                           # an infinite reading is a fault, not a gap
        assert "row 2, column 5" in err(d.push(x), "NON_FINITE")
        x[2, 5] = 1e200
        err(d.push(x), "NON_FINITE")
        err(d.call(d.q, {"op": "project", "rows": [[None] * DIM]}), "BAD_MATRIX")
        err(d.call(d.q, {"op": "reconstruct", "rows": [[None] * DIM], "fill": True}), "BAD_MATRIX")
        after = d.info()
        for k in ("rows_seen", "seq", "sigma", "rows_with_gaps", "values_imputed"):
            assert after[k] == before[k], k
        # f32 binary: NaN is a gap there too
        x = lowrank(rng, 2).astype("<f4")
        x[0, 1] = np.nan
        r = d.call(d.i, {"op": "push", "rows": {"shape": [2, DIM], "dtype": "f32",
                                                "data": x.tobytes()}})
        assert r["ok"] and r["seq"] == before["seq"] + 2, r
        after = d.info()
        assert after["rows_with_gaps"] == before["rows_with_gaps"] + 1
        assert after["values_imputed"] == before["values_imputed"] + 1


def test_reject_refuses_gaps_in_pushes_but_queries_take_them(tmp_path):
    rng = np.random.default_rng(18)
    with Daemon(tmp_path, model={"rank": RANK, "center": True}) as d:
        assert d.push(lowrank(rng, 40))["ok"]
        x = lowrank(rng, 4)
        x[3, 7] = np.nan
        assert "row 3, column 7" in err(d.push(x), "NON_FINITE")
        err(d.call(d.i, {"op": "push", "rows": [[1.0] + [None] * (DIM - 1)]}), "NON_FINITE")
        info = d.info()
        assert info["rows_seen"] == 40 and info["missing"] == "reject"
        assert info["rows_with_gaps"] == 0 and info["values_imputed"] == 0
        r = d.call(d.q, {"op": "project", "rows": mat(x)})
        assert r["ok"] and r["observed"] == [16.0, 16.0, 16.0, 15.0], r


def push_gapped_many(d, rng, n_push, noise=0.3, inflight=24):
    """Pipelines n_push pushes of 1..7 noisy rows with 15% gaps; returns the
    number of rows acknowledged."""
    s = d.dealer(d.ingest)
    basis = rng.standard_normal((RANK, DIM))
    sent = acked = 0
    rows = 0
    while acked < n_push:
        while sent < n_push and sent - acked < inflight:
            m = int(rng.integers(1, 8))
            x = rng.standard_normal((m, RANK)) @ basis + noise * rng.standard_normal((m, DIM))
            if sent > 20:
                x = with_gaps(rng, x, 0.15)
            sent += 1
            s.send(pack({"op": "push", "rows": mat(x), "client": "g", "batch": sent}))
        assert s.poll(20000), "no ack"
        r = unpack(s.recv())
        assert r["ok"], r
        acked += 1
        rows = max(rows, r["seq"])
    return rows


def test_kill_9_replays_the_imputations_bit_for_bit(tmp_path):
    """Rank 3 + 1 on noisy rows: the factors depend on block boundaries and
    on every imputation; the log replays both exactly.  A restart under
    model.missing: reject still replays the logged gaps (and says so), then
    refuses new ones."""
    rng = np.random.default_rng(19)
    d = impute_daemon(tmp_path, "truncated", rank=RANK, extra=1)
    n = push_gapped_many(d, rng, 300)
    live = d.factors()
    info = d.info()
    assert info["rows_seen"] == n and info["rows_with_gaps"] > 100
    d.kill()

    d = impute_daemon(tmp_path, "truncated", rank=RANK, extra=1)
    assert "replayed" in d.log()
    got = d.factors()
    assert np.array_equal(got[0], live[0]) and np.array_equal(got[1], live[1])
    assert np.array_equal(got[2], live[2])
    # counted since start: the replayed rows are not this run's
    assert d.info()["rows_seen"] == n and d.info()["rows_with_gaps"] == 0
    d.kill()

    d = impute_daemon(tmp_path, "truncated", rank=RANK, extra=1, missing="reject")
    got = d.factors()
    assert np.array_equal(got[0], live[0]) and np.array_equal(got[1], live[1])
    assert "replayed with imputation" in d.log()
    x = np.ones((1, DIM))
    x[0, 4] = np.nan
    err(d.push(x), "NON_FINITE")
    d.stop()


# ------------------------------------------------------------------ clients


def test_python_client_passes_nan_masked_arrays_and_fill(tmp_path):
    import isvd
    rng = np.random.default_rng(20)
    truth = lowrank(rng, 400)
    with impute_daemon(tmp_path, "exact") as d, \
            isvd.Client(ingest=d.ingest, query=d.query, publish=d.publish) as c:
        c.push(truth[:200])
        g = with_gaps(rng, truth[200:300], 0.2)
        c.push(g)                                              # np.nan
        masked = np.ma.masked_array(truth[300:], mask=rng.random((100, DIM)) < 0.2)
        masked.mask[:, 0] &= ~masked.mask[:, 1:].all(axis=1)
        c.push(masked)                                         # masked entries
        c.push([[float(v) for v in truth[0][:-1]] + [None]])   # a list with None
        info = c.info()
        assert info["rows_with_gaps"] == int(np.isnan(g).any(axis=1).sum()) \
            + int(masked.mask.any(axis=1).sum()) + 1
        q = with_gaps(rng, truth[:10], 0.3)
        filled = c.reconstruct(q, fill=True)
        assert np.array_equal(filled[~np.isnan(q)], q[~np.isnan(q)])
        assert np.max(np.abs(filled - truth[:10])) <= 1e-6 * np.max(np.abs(truth))
        qm = np.ma.masked_invalid(q)
        assert np.array_equal(c.reconstruct(qm, fill=True), filled)
        coords, resid, observed = c.project(q, return_observed=True)
        assert list(observed) == list((~np.isnan(q)).sum(axis=1))
        assert coords.shape == (10, RANK + 1) and np.max(resid) <= 1e-6 * np.max(np.abs(truth))
        _, _, observed = c.project(truth[:2], return_observed=True)
        assert list(observed) == [DIM, DIM]


@pytest.mark.skipif(not CLI, reason="ISVD_CLI is not set (meson test sets it)")
def test_cli_reads_gaps_from_csv_and_fills_them(tmp_path):
    rng = np.random.default_rng(21)
    truth = lowrank(rng, 300)
    markers = ["", "NA", "NaN", "nan", "na", "NAN"]
    lines = []
    holes = np.zeros(truth.shape, bool)
    for i, row in enumerate(truth):
        fields = []
        for j, v in enumerate(row):
            if i >= 100 and (i * 7 + j * 3) % 11 == 0:
                fields.append(markers[(i + j) % len(markers)])
                holes[i, j] = True
            else:
                fields.append(repr(float(v)))
        lines.append(",".join(fields))
    src = tmp_path / "gaps.csv"
    src.write_text("\n".join(lines) + "\n")
    with impute_daemon(tmp_path, "exact") as d:
        ends = ["--ingest", d.ingest, "--query", d.query, "--publish", d.publish]
        p = subprocess.run([CLI, "push", str(src), "--batch", "64", *ends],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        info = d.info()
        assert info["rows_seen"] == 300
        assert info["values_imputed"] == int(holes.sum())
        q = tmp_path / "q.csv"
        q.write_text("\n".join(lines[100:110]) + "\n")
        p = subprocess.run([CLI, "reconstruct", "--fill", str(q), *ends],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        got = np.loadtxt(p.stdout.splitlines(), delimiter=",")
        assert np.max(np.abs(got - truth[100:110])) <= 1e-6 * np.max(np.abs(truth))
        p = subprocess.run([CLI, "project", str(q), *ends], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        out = p.stdout.splitlines()
        assert out[0].endswith(",residual,observed"), out[0]
        obs = [int(line.rsplit(",", 1)[1]) for line in out[1:]]
        assert obs == list(DIM - holes[100:110].sum(axis=1))
        p = subprocess.run([CLI, "info", "--json", *ends], capture_output=True, text=True,
                           timeout=60)
        assert '"missing":"impute"' in p.stdout and '"rows_with_gaps":' in p.stdout, p.stdout
        p = subprocess.run([CLI, "subscribe", "spectrum", "--count", "1", "--json", "--timeout",
                            "20", *ends], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert f'"values_imputed":{int(holes.sum())}' in p.stdout, p.stdout
