"""Per-pusher rate limits and connection caps (issue 22).

limits.push_rows_per_s: a pusher pushing as fast as it can gets the rate
and no more, measured as rows applied (info's per-pusher counters and
rows_seen) over 5 s, while another pusher under the rate is never refused;
a refused push is neither applied nor logged (a kill -9 and replay shows
it); the refusal carries retry_after_ms; under CURVE the bucket is the
key's, whatever client ids it uses.

limits.max_connections_per_address / limits.max_connections: 200
connections from 127.0.0.1 against a cap of 64: the first 64 handshakes
succeed, every later one is refused, the daemon's open descriptors stay
bounded by the cap, and a client from another loopback address (127.0.0.2,
libzmq's "tcp://SOURCE:0;DEST" connect syntax) is served throughout; once
the 64 leave, 127.0.0.1 is admitted again (the monitor counted the closes).

The rate assertion (1000 ± 10% rows/s) is the limiter's behaviour, which
the issue asks to pin; it holds on a slow machine too, since the pusher
needs one round trip per 20 rows to keep the bucket empty.  Everything
else waits for events with bounded timeouts.  127.0.0.1 and 127.0.0.2
only.
"""
import os
import re
import threading
import time

import numpy as np
import pytest
import zmq
import zmq.utils.monitor

import isvd
from isvdd_harness import Daemon, mat, pack, unpack
from test_security import Keys, SecureDaemon, free_port

RATE = 1000
ROWS20 = np.arange(80.0).reshape(20, 4) + 1


def pusher_counts(info, key):
    for p in info.get("pushers", []):
        if p["key"] == key:
            return p
    return {"key": key, "pushes": 0, "rows": 0, "limited_pushes": 0, "limited_rows": 0}


def test_rate_limit_holds_one_pusher_to_its_rate_and_spares_another(tmp_path):
    dm = Daemon(tmp_path, model={"dim": 4},
                extra_sections={"limits": {"push_rows_per_s": RATE, "push_burst_rows": 100},
                                "storage": {"fsync": "none"}})
    stop = threading.Event()
    steady = {"sent": 0, "accepted": 0, "refused": []}

    def steady_pusher():
        # 10 rows every 20 ms: 500 rows/s, half the limit, never catching up
        s = dm.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(dm.ingest)
        b = 0
        while not stop.is_set():
            s.send(pack({"op": "push", "rows": mat(ROWS20[:10]), "client": "steady", "batch": b}))
            assert s.poll(20000)
            r = unpack(s.recv())
            steady["sent"] += 10
            if r["ok"]:
                steady["accepted"] += r["accepted"]
            else:
                steady["refused"].append(r["error"])
            b += 1
            time.sleep(0.02)
        s.close(0)

    t = threading.Thread(target=steady_pusher)
    t.start()
    try:
        fast = dm.dealer(dm.ingest)   # closed by stop()
        accepted, limited, retry_after, b = 0, 0, [], 0

        def push_for(seconds):
            nonlocal accepted, limited, b
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                fast.send(pack({"op": "push", "rows": mat(ROWS20), "client": "fast", "batch": b}))
                assert fast.poll(20000)
                r = unpack(fast.recv())
                if r["ok"]:
                    assert not r["duplicate"]
                    accepted += r["accepted"]
                    b += 1          # a refused batch is resent under the same number
                else:
                    assert r["error"]["code"] == "RATE_LIMITED", r
                    assert "push_rows_per_s" in r["error"]["message"]
                    retry_after.append(r["error"]["retry_after_ms"])
                    limited += 1

        push_for(1.0)               # the burst is spent
        i0, t0 = dm.info(), time.monotonic()
        push_for(5.0)
        i1, t1 = dm.info(), time.monotonic()
        rate = (pusher_counts(i1, "fast")["rows"] - pusher_counts(i0, "fast")["rows"]) / (t1 - t0)
        print(f"fast pusher: {rate:.0f} rows/s let through over {t1 - t0:.2f} s; "
              f"{limited} pushes refused")
        assert 0.9 * RATE <= rate <= 1.1 * RATE
        assert limited > 0 and all(1 <= ms <= 1000 for ms in retry_after)
        # what info counts is what was applied: every row let through is in the model
        stop.set()
        t.join(30)
        info = dm.info()
        f, st = pusher_counts(info, "fast"), pusher_counts(info, "steady")
        assert f["rows"] == accepted and f["limited_pushes"] == limited
        assert f["limited_rows"] == 20 * limited
        assert steady["refused"] == [] and steady["accepted"] == steady["sent"] > 0
        assert st["rows"] == steady["sent"] and st["limited_pushes"] == 0
        assert info["rows_seen"] == accepted + steady["accepted"]
        assert "RATE_LIMITED" in dm.log()
    finally:
        stop.set()
        t.join(30)
    # nothing of a refused push was logged: the replay holds the accepted rows only
    dm.kill()
    with Daemon(tmp_path, model={"dim": 4}) as again:
        assert again.info()["rows_seen"] == accepted + steady["accepted"]


def test_a_refused_push_is_answered_whole_and_its_resend_passes(tmp_path):
    with Daemon(tmp_path, model={"dim": 4},
                extra_sections={"limits": {"push_rows_per_s": 100, "push_burst_rows": 20}}) as dm:
        assert dm.push(ROWS20[:20], client="c", batch=1)["accepted"] == 20
        r = dm.push(ROWS20[:10], client="c", batch=2)
        assert not r["ok"] and r["error"]["code"] == "RATE_LIMITED"
        wait = r["error"]["retry_after_ms"]
        assert 90 <= wait <= 110            # 10 rows at 100 rows/s
        assert dm.info()["rows_seen"] == 20
        time.sleep(wait / 1000 + 0.02)
        r = dm.push(ROWS20[:10], client="c", batch=2)
        assert r["ok"] and r["accepted"] == 10 and r["seq"] == 30
        # a resend of an applied push is a duplicate, free of charge
        r = dm.push(ROWS20[:10], client="c", batch=2)
        assert r["ok"] and r["duplicate"]
        # a push larger than the burst passes once the bucket is full
        time.sleep(0.25)
        assert dm.push(ROWS20[:20], client="big", batch=1)["accepted"] == 20
        assert dm.push(np.vstack([ROWS20, ROWS20]), client="c", batch=3)["accepted"] == 40


def test_curve_key_is_the_pusher_whatever_its_client_ids(tmp_path):
    for sub in ("all",):
        os.mkdir(tmp_path / sub)
    server = Keys(tmp_path, "server")
    a = Keys(tmp_path, "a", tmp_path / "all")
    b = Keys(tmp_path, "b", tmp_path / "all")
    dm = SecureDaemon(tmp_path, security={"curve": True, "secret_key_file": server.key,
                                          "client_keys_dir": str(tmp_path / "all")},
                      limits={"push_rows_per_s": 10, "push_burst_rows": 20})
    try:
        def sock(keys):
            return dm.sock(zmq.DEALER, dm.ingest, keys=keys, server_public=server.public)

        def push(s, client, batch, n):
            s.send(pack({"op": "push", "rows": mat(ROWS20[:n]), "client": client, "batch": batch}))
            assert s.poll(20000)
            return unpack(s.recv())

        sa, sb = sock(a), sock(b)
        assert push(sa, "one", 1, 20)["ok"]
        r = push(sa, "two", 1, 5)          # another client id, the same key: the same bucket
        assert not r["ok"] and r["error"]["code"] == "RATE_LIMITED"
        assert push(sb, "one", 1, 20)["ok"]  # another key: its own bucket
        q = dm.sock(zmq.DEALER, dm.query, keys=a, server_public=server.public)
        q.send(pack({"op": "info"}))
        assert q.poll(20000)
        info = unpack(q.recv())
        keys = {p["key"]: p for p in info["pushers"]}
        assert keys[a.public.decode()]["rows"] == 20 and keys[a.public.decode()]["limited_rows"] == 5
        assert keys[b.public.decode()]["rows"] == 20
    finally:
        assert dm.stop() == 0


# ------------------------------------------------------------ connection caps

def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def handshake(ctx, endpoint, timeout_s=20):
    """A DEALER that connects once (no reconnection) and the outcome of its
    handshake: 'ok', or 'refused' (the server sent an ERROR or closed)."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RECONNECT_IVL, -1)
    mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH |
                               zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_DISCONNECTED)
    s.connect(endpoint)
    outcome = None
    if mon.poll(timeout_s * 1000):
        ev = zmq.utils.monitor.recv_monitor_message(mon)
        outcome = "ok" if ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED else "refused"
    s.disable_monitor()
    mon.close(0)
    return s, outcome


def served(sock):
    sock.send(pack({"op": "ping"}))
    if not sock.poll(20000):
        return False
    return unpack(sock.recv())["ok"]


def test_connection_cap_per_address(tmp_path):
    dm = SecureDaemon(tmp_path, limits={"max_connections_per_address": 64, "handshake_ms": 5000})
    ctx = zmq.Context()
    socks = []
    try:

        other = ctx.socket(zmq.DEALER)
        other.setsockopt(zmq.LINGER, 0)
        port = dm.query.rsplit(":", 1)[1]
        other.connect(f"tcp://127.0.0.2:0;127.0.0.1:{port}")
        socks.append(other)
        assert served(other)
        base = open_fds(dm.proc.pid)
        outcomes, most = [], base
        for n in range(200):
            s, outcome = handshake(ctx, dm.query)
            socks.append(s)
            outcomes.append(outcome)
            most = max(most, open_fds(dm.proc.pid))
            if n % 20 == 19:
                assert served(other), f"the client on 127.0.0.2 was not served after {n + 1}"
        assert outcomes[:64] == ["ok"] * 64
        assert outcomes[64:] == ["refused"] * 136
        # a refused connection is closed at once: a few may still be closing at a sample
        print(f"daemon descriptors: {base} before, at most {most} during, cap 64")
        assert most <= base + 64 + 16
        deadline = time.monotonic() + 20
        while open_fds(dm.proc.pid) > base + 64:
            assert time.monotonic() < deadline, "refused connections were not closed"
            time.sleep(0.05)
        assert open_fds(dm.proc.pid) >= base + 64   # the admitted 64 stay open
        assert all(served(s) for s in socks[1:65])
        assert served(other)
        log = dm.log()
        assert "limits.max_connections_per_address" in log
        # refusals are logged rate-limited like every refusal: far fewer lines than refusals
        # (the daemon here logs every one: warn_every_ms 0); the summary counts them all
        for s in socks[1:]:
            s.close(0)
        socks[1:] = []
        deadline = time.monotonic() + 30
        while True:   # the monitor saw the 64 leave: 127.0.0.1 is admitted again
            s, outcome = handshake(ctx, dm.query)
            socks.append(s)
            if outcome == "ok":
                break
            assert time.monotonic() < deadline, "127.0.0.1 still refused after its clients left"
            s.close(0)
            socks.pop()
            time.sleep(0.1)
        assert served(socks[-1])
        for s in socks:
            s.close(0)
        socks = []
        assert dm.stop() == 0
        m = re.search(r"(\d+) handshakes refused by the connection caps \((\d+) per address, "
                      r"0 in total\)", dm.log())
        assert m and int(m.group(1)) == int(m.group(2)) >= 136
    finally:
        for s in socks:
            s.close(0)
        ctx.term()
        if dm.proc.poll() is None:
            dm.stop(expect=None)


def test_connection_cap_in_total(tmp_path):
    dm = SecureDaemon(tmp_path, limits={"max_connections_per_address": 0, "max_connections": 5},
                      extra={"log": {"warn_every_ms": 1000}})
    ctx = zmq.Context()
    socks = []
    try:

        outcomes = []
        for _ in range(8):
            s, outcome = handshake(ctx, dm.ingest)
            socks.append(s)
            outcomes.append(outcome)
        assert outcomes == ["ok"] * 5 + ["refused"] * 3
        assert "limits.max_connections allows" in dm.log()
        # rate-limited logging: 3 refusals within a second, one line
        assert dm.log().count("than limits.max_connections allows") == 1
    finally:
        for s in socks:
            s.close(0)
        ctx.term()
        assert dm.stop() == 0


# ------------------------------------------------------- the clients back off

LIMITED = {"limits": {"push_rows_per_s": 200, "push_burst_rows": 40}, "storage": {"fsync": "none"}}


def test_python_client_waits_out_the_limit_and_resends(tmp_path):
    X = np.arange(4000.0).reshape(1000, 4) ** 0.5
    with Daemon(tmp_path, model={"dim": 4}, extra_sections=LIMITED) as dm:
        with isvd.Client(dm.ingest, dm.query, timeout=10, retries=3, client_id="py") as c:
            acks = [c.push(X[i:i + 40]) for i in range(0, 200, 40)]
            assert [a.accepted for a in acks] == [40] * 5
            assert max(a.attempts for a in acks) > 1       # refused, waited, resent
            assert not any(a.duplicate for a in acks)
            # push_many: a window of 8 against the limit, every row once, in order
            many = c.push_many(X[200:600], rows_per_push=20, window=8)
            assert [a.accepted for a in many] == [20] * 20
            assert [a.seq for a in many] == list(range(220, 601, 20))
            info = c.info()
            assert info["rows_seen"] == 600
            (p,) = [p for p in info["pushers"] if p["key"] == "py"]
            assert p["rows"] == 600 and p["limited_pushes"] > 0
        # retries=0: the refusal reaches the caller, with the daemon's wait
        with isvd.Client(dm.ingest, dm.query, timeout=10, retries=0, client_id="py0") as c:
            c.push(X[:40])
            with pytest.raises(isvd.RateLimited) as e:
                c.push(X[:40])
            assert e.value.code == "RATE_LIMITED" and 150 <= e.value.retry_after_ms <= 250
            assert c.info()["rows_seen"] == 640
        # the Producer delivers everything through the limit
        with isvd.Client(dm.ingest, dm.query, timeout=10, retries=1, client_id="prod") as c:
            with isvd.Producer(c, linger_ms=5, max_rows=50) as prod:
                prod.push_rows(X[600:800])
            assert prod.errors == [] and prod.stats()["rows_accepted"] == 200
            assert c.info()["rows_seen"] == 840


CLI = os.environ.get("ISVD_CLI", "")


@pytest.mark.skipif(not CLI, reason="ISVD_CLI is not set (meson test sets it)")
def test_cli_and_libisvd_wait_out_the_limit_and_show_the_pushers(tmp_path):
    import json
    import subprocess
    X = np.arange(2000.0).reshape(500, 4) ** 0.5
    f = tmp_path / "x.csv"
    np.savetxt(f, X, delimiter=",")
    with Daemon(tmp_path, model={"dim": 4}, extra_sections=LIMITED) as dm:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ISVD_")}
        ends = ["--ingest", dm.ingest, "--query", dm.query]
        # 500 rows in pushes of 40, up to 16 in flight, at 200 rows/s: libisvd
        # holds them back and resends the refused ones (3 retries each)
        p = subprocess.run([CLI, "push", str(f), "--batch", "40", "--client", "cli", *ends],
                           capture_output=True, text=True, timeout=120, env=env)
        assert p.returncode == 0, p.stderr
        p = subprocess.run([CLI, "info", "--json", *ends], capture_output=True, text=True,
                           timeout=60, env=env)
        assert p.returncode == 0, p.stderr
        info = json.loads(p.stdout)
        assert info["rows_seen"] == 500
        (cli,) = [q for q in info["pushers"] if q["key"] == "cli"]
        assert cli["rows"] == 500 and cli["pushes"] == 13 and cli["limited_pushes"] > 0
        p = subprocess.run([CLI, "info", *ends], capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode == 0 and "pushers" in p.stdout and "cli" in p.stdout
        # --retries 0: the refusal is the push's failure, with the daemon's message
        p = subprocess.run([CLI, "push", str(f), "--batch", "200", "--client", "cli0",
                            "--retries", "0", *ends], capture_output=True, text=True, timeout=60,
                           env=env)
        assert p.returncode == 1 and "RATE_LIMITED" in p.stderr and "push_rows_per_s" in p.stderr, \
            p.stderr


def test_metrics_show_pushers_and_connections(tmp_path):
    from test_http import http_port, scrape
    with Daemon(tmp_path, model={"dim": 4},
                extra_sections={"limits": {"push_rows_per_s": 100, "push_burst_rows": 20},
                                "http": {"listen": "127.0.0.1:0"}}) as dm:
        odd = 'a"b\\c\nd'            # a client id is any bytes but NUL: escaped as a label
        assert dm.push(ROWS20, client=odd, batch=1)["ok"]
        assert not dm.push(ROWS20[:5], client=odd, batch=2)["ok"]
        assert dm.push(ROWS20[:5])["ok"]          # no client id: pusher "-"
        fams = scrape(http_port(dm))

        def value(name, **labels):
            fam = fams[re.sub("_total$", "", name)]
            (v,) = [s.value for s in fam.samples if s.name == name and s.labels == labels]
            return v

        assert value("isvd_pusher_rows_total", pusher=odd) == 20
        assert value("isvd_pusher_pushes_total", pusher=odd) == 1
        assert value("isvd_pusher_limited_pushes_total", pusher=odd) == 1
        assert value("isvd_pusher_limited_rows_total", pusher=odd) == 5
        assert value("isvd_pusher_rows_total", pusher="-") == 5
        assert value("isvd_connections_open") >= 2      # the harness's two DEALERs (ipc)
        assert value("isvd_connections_refused_total", cap="per_address") == 0
        assert value("isvd_refusals_total", socket="ingest", code="RATE_LIMITED") == 1


@pytest.mark.skipif(not CLI, reason="ISVD_CLI is not set (meson test sets it)")
def test_c_producer_resends_rate_limited_batches_until_delivered(tmp_path):
    import subprocess
    X = np.arange(1200.0).reshape(300, 4) ** 0.5
    text = "\n".join(",".join(repr(v) for v in row) for row in X) + "\n"
    with Daemon(tmp_path, model={"dim": 4}, extra_sections=LIMITED) as dm:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ISVD_")}
        # --retries 0: every refusal goes back to the producer (isvd push --follow),
        # which resends the batch, the client holding it for the wait the daemon asked
        p = subprocess.run([CLI, "push", "--follow", "-", "--batch", "40", "--client", "follow",
                            "--retries", "0", "--ingest", dm.ingest, "--query", dm.query],
                           input=text, capture_output=True, text=True, timeout=120, env=env)
        assert p.returncode == 0, p.stderr
        info = dm.info()
        assert info["rows_seen"] == 300
        (f,) = [q for q in info["pushers"] if q["key"] == "follow"]
        assert f["rows"] == 300 and f["limited_pushes"] > 0
        sigma, _, _, _ = dm.factors()
        assert np.allclose(sigma, np.linalg.svd(X, compute_uv=False)[:len(sigma)], rtol=1e-9)
