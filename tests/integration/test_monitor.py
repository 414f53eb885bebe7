"""Monitoring through isvdd (monitor.enabled): anomaly scores at ingest and
in queries, control limits, the anomaly and drift topics, the baseline op,
and component stability — checked against numpy on the model's factors and
against the distribution the rows were drawn from.
"""
import numpy as np
import pytest

from isvdd_harness import Daemon, mat, pack, unmat, unpack

DIM, K = 16, 4


def monitor_daemon(tmp_path, mode="exact", monitor=None, model=None, name="isvdd"):
    m = {"rank": K, "extra": 4, "center": True, "mode": mode}
    m.update(model or {})
    mon = {"enabled": True, "confidence": 0.99, "warmup_rows": 500, "drift_degrees": 10}
    mon.update(monitor or {})
    return Daemon(tmp_path, model=m, name=name,
                  extra_sections={"monitor": mon,
                                  "publish": {"spectrum_every_ms": 100},
                                  "storage": {"checkpoint_every_rows": 0, "checkpoint_every_s": 0}})


def gen(rng, basis, m, noise=0.1, scale=(4.0, 3.0, 2.0, 1.5)):
    c = rng.standard_normal((m, len(scale))) * np.array(scale)
    return c @ basis + noise * rng.standard_normal((m, basis.shape[1])) + 1.0


def orth(rng, k, n):
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return q.T


def push_scored(d, x, **kw):
    r = d.call(d.i, {"op": "push", "rows": mat(x), "scores": True, **kw})
    assert r["ok"], r
    return r


def test_scores_are_those_of_the_model_before_and_limits_calibrated(tmp_path):
    """100,000 rows the model describes: each push's scores equal numpy's on
    the factors before the push; the fractions over the limits are near
    1 − confidence for SPE and T² alike."""
    rng = np.random.default_rng(1)
    basis = orth(rng, K, DIM)
    with monitor_daemon(tmp_path) as d:
        r = push_scored(d, gen(rng, basis, 600))
        assert all(np.isnan(r["spe"][:1]))                 # no model before the first row
        over_spe = over_t2 = rows = 0
        for i in range(199):
            x = gen(rng, basis, 500)
            if i % 40 == 0:                                # against numpy, now and then
                sigma, vt, mean, seq = d.factors()
                info = d.info()
                w = info["rows_seen"]
            r = push_scored(d, x)
            spe, t2 = np.array(r["spe"]), np.array(r["t2"])
            if i % 40 == 0:
                c = (x - mean) @ vt.T
                ref_spe = np.sum(((x - mean) - c @ vt) ** 2, axis=1)
                ref_t2 = np.sum(c * c / (sigma ** 2 / w), axis=1)
                assert np.allclose(spe, ref_spe, rtol=1e-8, atol=1e-12)
                assert np.allclose(t2, ref_t2, rtol=1e-8)
                assert r["spe_limit"] == pytest.approx(info["spe_limit"], rel=1e-9)
            over_spe += int(np.sum(spe > r["spe_limit"]))
            over_t2 += int(np.sum(t2 > r["t2_limit"]))
            rows += len(x)
        fs, ft = over_spe / rows, over_t2 / rows
        print(f"over the SPE limit {fs:.4f}, the T2 limit {ft:.4f} of {rows} rows")
        assert 0.005 <= fs <= 0.02 and 0.005 <= ft <= 0.02
        info = d.info()
        assert info["rows_flagged"] >= max(over_spe, over_t2)
        # project answers the same statistics for the same rows and model
        x = gen(rng, basis, 5)
        sigma, vt, mean, _ = d.factors()
        p = d.call(d.q, {"op": "project", "rows": mat(x)})
        c = (x - mean) @ vt.T
        assert np.allclose(p["spe"], np.sum(((x - mean) - c @ vt) ** 2, axis=1), rtol=1e-8)
        assert np.allclose(p["t2"], np.sum(c * c / (sigma ** 2 / info["rows_seen"]), axis=1),
                           rtol=1e-8)
        pu = d.call(d.q, {"op": "project", "rows": mat(x), "space": "u"})
        assert np.allclose(pu["t2"], p["t2"], rtol=1e-8)


def test_spikes_are_flagged_and_published(tmp_path):
    """Rows with a spike of 5 noise standard deviations in 10 coordinates
    off the subspace: recall ≥ 99%, each on the anomaly topic with its seq."""
    rng = np.random.default_rng(2)
    basis = orth(rng, K, DIM)
    with monitor_daemon(tmp_path, monitor={"anomaly_max_per_s": 1000}) as d:
        sub = d.sub([b"anomaly"])
        push_scored(d, gen(rng, basis, 3000))
        x = gen(rng, basis, 200)
        spikes = rng.choice(200, 100, replace=False)
        for i in spikes:
            cols = rng.choice(DIM, 10, replace=False)
            x[i, cols] += 5 * 0.1 * rng.choice([-1, 1], 10)
        r = push_scored(d, x)
        first = r["seq"] - 199
        flagged = np.array(r["spe"]) > r["spe_limit"]
        recall = flagged[spikes].mean()
        print(f"recall {recall:.3f}")
        assert recall >= 0.99
        topic, body = sub.recv_multipart()
        a = unpack(body)
        assert topic == b"anomaly" and a["spe_limit"] == r["spe_limit"]
        want = sorted(first + i for i in range(200)
                      if r["spe"][i] > r["spe_limit"] or r["t2"][i] > r["t2_limit"])
        assert a["seq"] == want
        assert d.info()["anomaly_messages"] >= 1


def test_warmup_flags_nothing_and_rate_limit_counts_drops(tmp_path):
    rng = np.random.default_rng(3)
    basis = orth(rng, K, DIM)
    with monitor_daemon(tmp_path, monitor={"warmup_rows": 1000, "anomaly_max_per_s": 1}) as d:
        r = push_scored(d, gen(rng, basis, 900) + 5 * rng.standard_normal((900, DIM)))
        assert r["spe_limit"] == float("inf") and d.info()["rows_flagged"] == 0
        push_scored(d, gen(rng, basis, 2000))
        for _ in range(5):    # five blocks with outliers within a second: one message goes
            push_scored(d, np.vstack([gen(rng, basis, 20), 50 + np.zeros((1, DIM))]))
        info = d.info()
        assert info["anomaly_messages"] >= 1 and info["anomaly_messages_dropped"] >= 1
        assert info["rows_flagged"] >= 5


def drift_run(tmp_path, model, name):
    """Rows of a subspace, then of the same turned by 30°: rows until the
    drift message, and the messages seen."""
    rng = np.random.default_rng(4)
    basis = orth(rng, K, DIM)
    extra = orth(rng, 1, DIM)
    extra = extra - (extra @ basis.T) @ basis
    extra /= np.linalg.norm(extra)
    turned = basis.copy()
    th = np.radians(30)
    turned[0] = np.cos(th) * basis[0] + np.sin(th) * extra[0]
    with monitor_daemon(tmp_path, model=model, name=name,
                        monitor={"baseline_rows": 2000, "warmup_rows": 500}) as d:
        sub = d.sub([b"drift"])
        for _ in range(10):
            push_scored(d, gen(rng, basis, 400))
        d.call(d.q, {"op": "checkpoint"})      # a spectrum snapshot has gone by
        import time
        time.sleep(0.3)
        assert d.info()["baseline_seq"] >= 2000
        start = d.info()["rows_seen"]
        msgs, at = [], None
        for i in range(400):
            push_scored(d, gen(rng, turned, 100))
            time.sleep(0.005)
            if sub.poll(0):
                msgs.append(unpack(sub.recv_multipart()[1]))
                at = d.info()["rows_seen"] - start
                break
        assert msgs, "no drift message"
        m = msgs[0]
        assert m["exceeded"] is True and m["angle_deg"] > 10 and m["threshold_deg"] == 10
        assert not sub.poll(500)               # one message, not one per snapshot
        info = d.info()
        assert info["drift_baseline_deg"] > 10
        # the baseline op: the model now is the baseline, the angle back to 0
        r = d.call(d.q, {"op": "baseline", "id": 1})
        assert r["ok"] and r["seq"] == info["rows_seen"], r
        return at


def test_drift_is_published_once_past_the_threshold(tmp_path):
    rows_flat = drift_run(tmp_path, {}, "flat")
    rows_half = drift_run(tmp_path, {"half_life": 2000}, "half")
    print(f"rows to the drift message: lambda = 1: {rows_flat}; half-life 2000: {rows_half}")
    assert rows_half < rows_flat


def test_stability_of_equal_and_separated_components(tmp_path):
    """Variances 16, 4, 4, 1: components 2 and 3 span one plane (unstable),
    1 and 4 stand alone (stable) — in info, factors and the spectrum."""
    rng = np.random.default_rng(5)
    basis = orth(rng, K, DIM)
    with monitor_daemon(tmp_path) as d:
        sub = d.sub([b"spectrum"])
        for _ in range(20):
            push_scored(d, gen(rng, basis, 1000, noise=0.05, scale=(4.0, 2.0, 2.0, 1.0)))
        info = d.info()
        assert info["stable"] == [1.0, 0.0, 0.0, 1.0], info["stable"]
        assert info["gap"][1] < 0.05 and info["gap"][0] > 0.5
        f = d.call(d.q, {"op": "factors"})
        assert f["stable"] == [1.0, 0.0, 0.0, 1.0]
        for _ in range(50):
            s = unpack(sub.recv_multipart()[1])
            if s["seq"] == info["seq"]:
                break
        assert s["stable"] == [1.0, 0.0, 0.0, 1.0]


def test_off_by_default_and_baseline_refused(tmp_path):
    with Daemon(tmp_path, model={"rank": K}) as d:
        r = d.push(np.ones((3, DIM)) * np.arange(3)[:, None])
        assert r["ok"] and "spe" not in r
        r = d.call(d.i, {"op": "push", "rows": mat(np.ones((1, DIM))), "scores": True})
        assert r["ok"] and "spe" not in r           # nothing scored when off
        assert "rows_flagged" not in d.info()
        r = d.call(d.q, {"op": "baseline"})
        assert not r["ok"] and "monitor.enabled" in r["error"]["message"]


def test_clients_show_monitoring(tmp_path):
    """The CLI subscribes to anomaly and drift and shows drift and stability
    in info; the Python client gets scores in its Ack and anomaly dicts."""
    import os
    import subprocess
    import isvd
    cli = os.environ.get("ISVD_CLI", "")
    if not cli:
        pytest.skip("ISVD_CLI is not set (meson test sets it)")
    rng = np.random.default_rng(6)
    basis = orth(rng, K, DIM)
    with monitor_daemon(tmp_path, monitor={"anomaly_max_per_s": 1000}) as d, \
            isvd.Client(ingest=d.ingest, query=d.query, publish=d.publish) as c:
        ends = ["--ingest", d.ingest, "--query", d.query, "--publish", d.publish]
        ack = c.push(gen(rng, basis, 3000, scale=(4.0, 2.0, 2.0, 1.0)), scores=True)
        assert ack.spe is not None and len(ack.spe) == 3000 and ack.spe_limit == float("inf")
        sub = c.subscribe("anomaly", timeout=20)
        p = subprocess.Popen([cli, "subscribe", "anomaly", "--count", "1", "--json",
                              "--timeout", "20", *ends], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        import time
        time.sleep(0.5)                                   # both subscribers connected
        x = gen(rng, basis, 50)
        x[10] += 3.0                                       # far off the model
        ack = c.push(x, scores=True)
        assert ack.spe[10] > ack.spe_limit and np.isfinite(ack.spe_limit)
        a = sub.recv()
        assert a["topic"] == "anomaly" and ack.seq - 39 in a["seq"]
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert '"topic":"anomaly"' in out and f"{ack.seq - 39}" in out, out
        info = subprocess.run([cli, "info", *ends], capture_output=True, text=True, timeout=30)
        assert info.returncode == 0, info.stderr
        assert "monitor    limits SPE" in info.stdout and "unstable" in info.stdout, info.stdout
        j = subprocess.run([cli, "info", "--json", *ends], capture_output=True, text=True,
                           timeout=30)
        assert '"stable":[1,0,0,1]' in j.stdout.replace(" ", ""), j.stdout
        assert c.info()["stable"] == [1.0, 0.0, 0.0, 1.0]


def test_metrics_and_status_carry_the_monitor(tmp_path):
    """/metrics has the monitor's families (equal to info's counts) and the
    status page its drift row."""
    import http.client
    import re
    import time
    rng = np.random.default_rng(7)
    basis = orth(rng, K, DIM)
    d = Daemon(tmp_path, model={"rank": K, "extra": 4, "center": True, "mode": "exact"},
               extra_sections={"monitor": {"enabled": True, "warmup_rows": 500,
                                           "anomaly_max_per_s": 1000},
                               "publish": {"spectrum_every_ms": 100},
                               "http": {"listen": "127.0.0.1:0"}})
    with d:
        push_scored(d, gen(rng, basis, 2000))
        x = gen(rng, basis, 20)
        x[3] += 3.0
        push_scored(d, x)
        port = int(re.search(r"http: serving .* \(port (\d+)\)", d.log())[1])
        info = d.info()

        def get(path):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            c.request("GET", path)
            r = c.getresponse()
            body = r.read().decode()
            c.close()
            return r.status, body
        status, text = get("/metrics")
        assert status == 200
        flagged = re.search(r"^isvd_monitor_rows_flagged_total (\S+)$", text, re.M)
        assert flagged and int(float(flagged[1])) == info["rows_flagged"] >= 1, text[-2000:]
        assert re.search(r'^isvd_monitor_anomaly_messages_total\{result="sent"\} [1-9]', text, re.M)
        time.sleep(0.5)                        # a spectrum snapshot measured the drift
        status, page = get("/status")
        assert status == 200 and ("from the baseline" in page or "no baseline yet" in page)
