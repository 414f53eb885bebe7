"""isvdd's HTTP endpoint (http.listen): /metrics, /status and /healthz.

The daemon serves 127.0.0.1 on a port of its choosing (http.listen
127.0.0.1:0), which it logs.  Checked:
- /metrics parses with the Prometheus client's own parser
  (python3-prometheus-client), every family has HELP and TYPE, histograms
  are well formed, and after a scripted workload the counters equal what
  the test did: rows, pushes, duplicates, refusals by socket and code,
  queries by op; σ equals `info`'s;
- /status in headless Chromium (Debian's chromium, driven over the DevTools
  protocol on a pipe): no console error, exception or failed load, one bar
  per reported component with heights ordered as σ; a screenshot is kept
  under the build directory (ISVD_ARTIFACTS);
- /healthz: 503 "recovering" while recovery is held (faultfs pauses the
  lock file's creation), 200 when serving, 503 with the reason under an
  injected storage fault (faultfs), 200 again once storage heals, 503
  "stopping" while the final checkpoint is held at its rename;
- 404 for other paths, 405 for other methods, 413 for a request body, a
  bounded request size;
- with security.curve, a non-loopback http.listen is refused (--check and
  start) unless http.allow_insecure; CURVE admissions and refusals are
  counted per socket;
- no endpoint unless http.listen is set; a port in use stops the start.
"""
import base64
import fcntl
import glob
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import isvd
from isvdd_harness import FAULTFS, Daemon, faultfs_env, mat, pack, run_isvdd, unpack, yaml_config

HTTP = {"http": {"listen": "127.0.0.1:0"}}
ARTIFACTS = os.environ.get("ISVD_ARTIFACTS", tempfile.gettempdir())


def http_port(d, seconds=20):
    """The port d's log says it serves HTTP on."""
    deadline = time.monotonic() + seconds
    while True:
        m = re.search(r"http: serving .* \(port (\d+)\)", d.log())
        if m:
            return int(m.group(1))
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.05)


def get(port, path, method="GET", body=None, headers=None):
    """(status, headers, body text) of one request."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        c.close()


def scrape(port):
    """{name: family} of /metrics, checked for HELP and TYPE on every family."""
    status, headers, text = get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    helps = re.findall(r"^# HELP (\S+) \S", text, re.M)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert len(helps) == len(set(helps)) == len(types), "one HELP and one TYPE per family"
    for name, kind in types.items():
        assert name.startswith("isvd_"), name
        assert (kind == "counter") == name.endswith("_total"), f"{name}: counters end in _total"
    fams = {}
    for f in text_string_to_metric_families(text):
        assert f.documentation, f.name
        assert f.type in ("counter", "gauge", "histogram"), (f.name, f.type)
        fams[f.name] = f
    assert set(fams) == {re.sub("_total$", "", n) if types[n] == "counter" else n for n in types}
    for f in fams.values():
        if f.type == "histogram":
            check_histogram(f)
    return fams


def check_histogram(f):
    """Buckets cumulative and ending at +Inf = _count, per label set."""
    series = {}
    for s in f.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        series.setdefault(key, {"buckets": [], "count": None})
        if s.name.endswith("_bucket"):
            series[key]["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            series[key]["count"] = s.value
    for key, v in series.items():
        b = v["buckets"]
        assert b and b[-1][0] == float("inf"), (f.name, key)
        assert [x for x, _ in b] == sorted(x for x, _ in b)
        assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), (f.name, key, b)
        assert b[-1][1] == v["count"], (f.name, key)


def value(fams, family, suffix=None, **labels):
    """The one sample of family with these labels: a counter's _total, a
    gauge's value, or a histogram's family + suffix (_count, _sum)."""
    f = fams[family]
    want = {k: str(v) for k, v in labels.items()}
    found = [s.value for s in f.samples if s.labels == want and
             (s.name == f.name + suffix if suffix else
              not s.name.endswith(("_bucket", "_sum", "_count", "_created")))]
    assert len(found) == 1, (family, labels, f.samples)
    return found[0]


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path, model={"dim": 6, "rank": 4}, extra_sections=HTTP)
    d.port = http_port(d)
    yield d
    d.stop()


def spectrum_rows(n, dim, sigmas, seed):
    """n rows whose σ are close to sigmas · sqrt(n) (distinct, well apart)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, len(sigmas))))
    return (rng.standard_normal((n, len(sigmas))) * sigmas) @ q.T + 1e-3 * rng.standard_normal((n, dim))


# ------------------------------------------------------------------ /metrics

def test_metrics_count_what_the_workload_did(daemon):
    d = daemon
    # the harness pinged until the daemon answered: queries count from here
    base = scrape(d.port)
    assert value(base, "isvd_queries", op="ping") >= 1
    X = spectrum_rows(600, 6, [50.0, 20.0, 5.0, 1.0], seed=1)
    rows = pushes = 0
    for b in range(6):                                  # 6 pushes of 100 rows
        r = d.push(X[100 * b:100 * (b + 1)], client="w", batch=b)
        assert r["ok"] and not r["duplicate"], r
        rows, pushes = rows + 100, pushes + 1
    assert d.push(X[:100], client="w", batch=0)["duplicate"]   # a resend
    pushes += 1
    refused = {"DIM_MISMATCH": 2, "NON_FINITE": 1, "BAD_REQUEST": 1, "UNKNOWN_OP": 1}
    for _ in range(2):
        assert d.push(np.ones((2, 5)))["error"]["code"] == "DIM_MISMATCH"
    assert d.push(np.array([[1, 2, np.inf, 4, 5, 6.0]]))["error"]["code"] == "NON_FINITE"
    assert unpack(d.call_raw(d.i, [b"\xc1 not msgpack"])[-1])["error"]["code"] == "BAD_REQUEST"
    assert d.call(d.i, {"op": "info"})["error"]["code"] == "UNKNOWN_OP"
    pushes += 5
    queries = {"ping": 2, "info": 3, "project": 2, "factors": 1}
    for _ in range(2):
        assert d.call(d.q, {"op": "ping"})["ok"]
    for _ in range(2):
        assert d.call(d.q, {"op": "info"})["ok"]
    assert d.call(d.q, {"op": "project", "rows": mat(X[:3])})["ok"]
    r = d.call(d.q, {"op": "project", "rows": mat(np.ones((1, 5)))})
    assert r["error"]["code"] == "DIM_MISMATCH"
    assert d.call(d.q, {"op": "factors"})["ok"]
    info = d.info()

    fams = scrape(d.port)
    assert value(fams, "isvd_rows_ingested") == rows
    assert value(fams, "isvd_pushes") == pushes
    assert value(fams, "isvd_push_duplicates") == 1
    for code in ("BAD_REQUEST", "UNKNOWN_OP", "BAD_MATRIX", "DIM_MISMATCH", "NON_FINITE",
                 "TOO_LARGE", "NOT_READY", "UNAVAILABLE", "UNAUTHORIZED", "INTERNAL"):
        assert value(fams, "isvd_refusals", socket="ingest", code=code) == refused.get(code, 0), code
        assert value(fams, "isvd_refusals", socket="query", code=code) == \
            (1 if code == "DIM_MISMATCH" else 0), code
    for op in ("ping", "info", "project", "reconstruct", "factors", "checkpoint"):
        n = value(base, "isvd_queries", op=op) + queries.get(op, 0)
        assert value(fams, "isvd_queries", op=op) == n, op
        assert value(fams, "isvd_query_duration_seconds", "_count", op=op) == n, op
    blocks = value(fams, "isvd_block_rows", "_count")
    assert 1 <= blocks <= 6 and value(fams, "isvd_block_rows", "_sum") == rows
    assert value(fams, "isvd_fold_duration_seconds", "_count") == blocks
    # the model's figures are those `info` reports
    assert value(fams, "isvd_model_rows") == info["rows_seen"] == rows
    assert value(fams, "isvd_model_dimension") == 6
    assert value(fams, "isvd_model_components") == len(info["sigma"]) == 4
    for i, s in enumerate(info["sigma"]):
        assert value(fams, "isvd_sigma", component=i + 1) == s
    assert value(fams, "isvd_explained_energy_ratio") == info["explained_energy_ratio"]
    assert value(fams, "isvd_condition_number") == info["condition_number"]
    assert value(fams, "isvd_orthogonality_error") >= 0
    # storage: fsync always, one fsync per block at least, nothing failed
    assert value(fams, "isvd_fsync_duration_seconds", "_count") >= blocks
    assert value(fams, "isvd_log_segments") >= 1 and value(fams, "isvd_log_bytes") > 48 * rows
    assert value(fams, "isvd_storage_failed") == 0 and value(fams, "isvd_storage_failures") == 0
    assert value(fams, "isvd_recovering") == 0
    for s in ("ingest", "query", "publish"):
        assert value(fams, "isvd_curve_admitted", socket=s) == 0
    assert value(fams, "isvd_build_info", version="0.1.0", protocol=1, mode=info["mode"]) == 1
    # a checkpoint is counted, and the next scrape sees it
    assert d.call(d.q, {"op": "checkpoint"})["ok"]
    fams = scrape(d.port)
    assert value(fams, "isvd_queries", op="checkpoint") == 1
    assert value(fams, "isvd_checkpoint_rows") == rows
    assert value(fams, "isvd_checkpoint_age_seconds") >= 0


def test_log_size_follows_the_files(tmp_path):
    """isvd_log_bytes and isvd_log_segments are what storage.dir holds,
    across segment rolls and the pruning after a checkpoint."""
    d = Daemon(tmp_path, model={"dim": 8, "rank": 2},
               extra_sections={**HTTP, "storage": {"segment_bytes": 65536}})
    try:
        port = http_port(d)

        def on_disk():
            files = glob.glob(os.path.join(d.data, "wal-*.log"))
            return sum(os.path.getsize(f) for f in files), len(files)

        rng = np.random.default_rng(3)
        for _ in range(30):   # 30 × 100 rows × 64 bytes: several 64 KiB segments
            assert d.push(rng.standard_normal((100, 8)))["ok"]
        fams = scrape(port)
        size, n = on_disk()
        assert n >= 3
        assert (value(fams, "isvd_log_bytes"), value(fams, "isvd_log_segments")) == (size, n)
        for _ in range(2):   # the second checkpoint prunes what the first covers
            assert d.call(d.q, {"op": "checkpoint"})["ok"]
            assert d.push(rng.standard_normal((3, 8)))["ok"]
        fams = scrape(port)
        size2, n2 = on_disk()
        assert n2 < n
        assert (value(fams, "isvd_log_bytes"), value(fams, "isvd_log_segments")) == (size2, n2)
    finally:
        d.stop()


def test_metrics_before_the_first_row(daemon):
    """No model yet: the model's families are there, without samples."""
    fams = scrape(daemon.port)
    assert value(fams, "isvd_rows_ingested") == 0
    assert value(fams, "isvd_model_rows") == 0
    assert fams["isvd_sigma"].samples == []
    assert value(fams, "isvd_build_info", version="0.1.0", protocol=1, mode="exact") == 1


# -------------------------------------------------------------- the methods

def test_unknown_paths_other_methods_and_bodies(daemon):
    p = daemon.port
    for path in ("/", "/metrics/", "/status.html", "/healthz?x", "/../etc/passwd"):
        status, _, body = get(p, path)
        expect = 200 if path == "/healthz?x" else 404   # a query string is not part of the path
        assert status == expect, (path, status, body)
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, headers, _ = get(p, "/metrics", method=method)
        assert status == 405, method
        assert headers["Allow"] == "GET, HEAD"
    status, headers, body = get(p, "/metrics", method="HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 1000
    status, _, _ = get(p, "/status", body=b"x" * 100)
    assert status == 413
    # a request larger than the per-connection bound is refused, not buffered
    status, _, _ = get(p, "/metrics", headers={"X-Big": "a" * 20000})
    assert status in (413, 414, 431), status
    # and the endpoint still serves
    assert get(p, "/healthz")[:1] == (200,)


def test_connection_count_is_bounded(daemon):
    """More idle connections than HTTP_MAX_CONNECTIONS: the excess are
    closed at once, and once they go a request is served again."""
    socks = []
    try:
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
            socks.append(s)
        closed = 0
        for s in socks:
            r, _, _ = select.select([s], [], [], 2 if closed == 0 else 0.2)
            if r and s.recv(1) == b"":
                closed += 1
        assert closed >= 40 - 32, closed
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 20
    while True:
        try:
            if get(daemon.port, "/healthz")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)


# ------------------------------------------------------------------ /healthz

@pytest.mark.skipif(not os.path.exists(FAULTFS), reason="ISVD_FAULTFS not built")
def test_healthz_recovering_then_fault_and_back(tmp_path):
    ctl = tmp_path / "faults"
    gen = [0]

    def fault(text):
        ctl.write_text(text)
        gen[0] += 1
        t = (1_700_000_000 + gen[0]) * 10**9   # a new mtime: the shim re-reads the file
        os.utime(ctl, ns=(t, t))

    fault("open PAUSE\n")   # holds storage's LOCK creation: the daemon stays in recovery
    d = Daemon(tmp_path, model={"dim": 4, "rank": 4}, wait_ready=False,
               extra_sections={**HTTP, "storage": {"checkpoint_every_rows": 0, "checkpoint_every_s": 0}},
               env=faultfs_env(ctl, tmp_path / "data"))
    try:
        port = http_port(d)
        status, _, body = get(port, "/healthz")
        assert (status, body) == (503, "recovering: replaying storage.dir\n")
        assert value(scrape(port), "isvd_recovering") == 1
        fault("")
        deadline = time.monotonic() + 30
        while get(port, "/healthz")[0] != 200:
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.05)
        assert get(port, "/healthz")[2] == "ok\n"
        d.q, d.i = d.dealer(d.query), d.dealer(d.ingest)
        assert d.push(np.arange(12.0).reshape(3, 4) + np.eye(3, 4))["ok"]
        fault("write ENOSPC\n")
        r = d.push(np.ones((2, 4)), client="h", batch=1)
        assert r["error"]["code"] == "UNAVAILABLE", r
        status, _, body = get(port, "/healthz")
        assert status == 503
        assert body.startswith("storage failed: log: ") and "No space left on device" in body, body
        fams = scrape(port)
        assert value(fams, "isvd_storage_failed") == 1
        assert value(fams, "isvd_storage_failures") == 1
        assert value(fams, "isvd_refusals", socket="ingest", code="UNAVAILABLE") == 1
        fault("")   # the checkpoint retried every second heals storage
        deadline = time.monotonic() + 30
        while get(port, "/healthz")[0] != 200:
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.1)
        fams = scrape(port)
        assert value(fams, "isvd_storage_failed") == 0
        assert value(fams, "isvd_storage_failures") == 1
        assert d.push(np.ones((2, 4)), client="h", batch=1)["accepted"] == 2
    finally:
        d.stop()


@pytest.mark.skipif(not os.path.exists(FAULTFS), reason="ISVD_FAULTFS not built")
def test_healthz_says_stopping_during_the_final_checkpoint(tmp_path):
    ctl = tmp_path / "faults"
    ctl.write_text("")
    d = Daemon(tmp_path, model={"dim": 4, "rank": 4},
               extra_sections={**HTTP, "storage": {"checkpoint_every_rows": 0, "checkpoint_every_s": 0}},
               env=faultfs_env(ctl, tmp_path / "data"))
    try:
        port = http_port(d)
        assert d.push(np.arange(12.0).reshape(3, 4) + np.eye(3, 4))["ok"]
        ctl.write_text("rename PAUSE\n")   # holds the final checkpoint at its rename
        t = 1_700_000_001 * 10**9
        os.utime(ctl, ns=(t, t))
        d.signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:
            status, _, body = get(port, "/healthz")
            if status == 503:
                break
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.05)
        assert body == "stopping\n"
        assert "stopping: 3 rows in the model" in d.log()
        ctl.write_text("")
        t += 10**9
        os.utime(ctl, ns=(t, t))
    finally:
        d.stop()   # exit status 0: the checkpoint went through


# ------------------------------------------------------------------- /status

CHROMIUM = shutil.which("chromium")


class DevTools:
    """Chromium on the DevTools protocol over a pipe (--remote-debugging-pipe:
    commands on its fd 3, replies and events on its fd 4, NUL-separated JSON)."""

    def __init__(self, profile):
        cmd_r, self.cmd_w = os.pipe()
        self.ev_r, ev_w = os.pipe()
        # the child's ends above 4 first, so that moving them to 3 and 4
        # cannot overwrite one with the other
        hi = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_r, ev_w)]
        for fd in (cmd_r, ev_w):
            os.close(fd)
        cmd_r, ev_w = hi

        def fds():
            os.dup2(cmd_r, 3)
            os.dup2(ev_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1200,1400",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, pass_fds=(3, 4))
        os.close(cmd_r)
        os.close(ev_w)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def send(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self.read(timeout)
            if m.get("id") == self.next_id:
                assert "error" not in m, (method, m)
                return m["result"]

    def read(self, timeout):
        """The next message; events are also kept in self.events."""
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, "no answer from chromium"
            r, _, _ = select.select([self.ev_r], [], [], left)
            if r:
                chunk = os.read(self.ev_r, 1 << 20)
                assert chunk, "chromium closed its pipe"
                self.buf += chunk
        line, self.buf = self.buf.split(b"\0", 1)
        m = json.loads(line)
        if "method" in m:
            self.events.append(m)
        return m

    def wait_event(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["method"] == method:
                    self.events.remove(e)
                    return e
            self.read(max(0.1, deadline - time.monotonic()))

    def close(self):
        try:
            os.write(self.cmd_w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.cmd_w)
        os.close(self.ev_r)


def problems(events):
    """Console errors, exceptions, failed loads and CSP violations among events."""
    out = []
    for e in events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(p["exceptionDetails"].get("text"))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            out.append(p)
        elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(p["entry"])
        elif m == "Network.loadingFailed":
            out.append(p)
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/deps)")
def test_status_page_in_chromium(daemon, tmp_path):
    d = daemon
    X = spectrum_rows(2000, 6, [300.0, 60.0, 8.0, 0.5], seed=2)
    for b in range(4):
        assert d.push(X[500 * b:500 * (b + 1)])["ok"]
    sigma = d.info()["sigma"]
    assert len(sigma) == 4 and all(sigma[i] > 1.5 * sigma[i + 1] for i in range(3))
    b = DevTools(tmp_path / "chromium")
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        b.session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            b.send(f"{domain}.enable")
        b.events.clear()
        nav = b.send("Page.navigate", {"url": f"http://127.0.0.1:{d.port}/status"})
        assert "errorText" not in nav, nav
        b.wait_event("Page.loadEventFired")
        bars = b.send("Runtime.evaluate", {"returnByValue": True, "expression": """
            Array.from(document.querySelectorAll('svg rect.bar')).map(r => ({
                component: +r.dataset.component, sigma: +r.dataset.sigma,
                height: r.getBoundingClientRect().height}))"""})["result"]["value"]
        state = b.send("Runtime.evaluate", {"returnByValue": True,
                                            "expression": "document.getElementById('state').textContent"})
        shot = b.send("Page.captureScreenshot", {"format": "png"})["data"]
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, "status.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot))
        time.sleep(0.3)   # late console messages
        while True:
            try:
                b.read(0.2)
            except AssertionError:
                break
        found = problems(b.events)
    finally:
        b.close()
    assert found == [], found
    assert state["result"]["value"] == "serving"
    assert [x["component"] for x in bars] == [1, 2, 3, 4]
    assert [x["sigma"] for x in bars] == sigma
    heights = [x["height"] for x in bars]
    assert all(h > 0 for h in heights), heights
    assert all(heights[i] > heights[i + 1] for i in range(3)), (heights, sigma)
    assert os.path.getsize(path) > 10000


# -------------------------------------------------------- curve, loopback

def curve_config(tmp_path, http):
    os.makedirs(tmp_path / "keys", exist_ok=True)
    if not os.path.exists(tmp_path / "server.key"):
        isvd.keygen(str(tmp_path / "server"))
        isvd.keygen(str(tmp_path / "keys" / "client"))
        os.unlink(tmp_path / "keys" / "client.key")
    path = tmp_path / "c.yaml"
    path.write_text(yaml_config({
        "endpoints": {"ingest": f"ipc://{tmp_path}/i", "query": f"ipc://{tmp_path}/q",
                      "publish": f"ipc://{tmp_path}/p"},
        "storage": {"dir": str(tmp_path / "data")},
        "security": {"curve": True, "secret_key_file": str(tmp_path / "server.key"),
                     "client_keys_dir": str(tmp_path / "keys")},
        "http": http}))
    return str(path)


def test_curve_refuses_a_non_loopback_listen(tmp_path):
    cfg = curve_config(tmp_path, {"listen": "0.0.0.0:0"})
    for args in (("--check", "--config", cfg), ("--config", cfg)):
        r = run_isvdd(*args)
        assert r.returncode == 1, r
        assert "http.listen 0.0.0.0:0 is not a loopback address and security.curve is true" in r.stderr
        assert "http.allow_insecure" in r.stderr
    assert not os.path.exists(tmp_path / "data")   # refused before touching storage
    r = run_isvdd("--check", "--config", curve_config(tmp_path, {"listen": "0.0.0.0:0",
                                                                 "allow_insecure": True}))
    assert r.returncode == 0, r.stderr
    r = run_isvdd("--check", "--config", curve_config(tmp_path, {"listen": "127.0.0.1:5573"}))
    assert r.returncode == 0, r.stderr


def test_off_unless_configured_and_a_busy_port_is_refused(tmp_path):
    os.makedirs(tmp_path / "a")
    with Daemon(tmp_path / "a") as d:
        assert "http:" not in d.log()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        port = s.getsockname()[1]
        os.makedirs(tmp_path / "b")
        d = Daemon(tmp_path / "b", extra_sections={"http": {"listen": f"127.0.0.1:{port}"}},
                   wait_ready=False)
        assert d.proc.wait(30) == 1
        assert f"cannot serve http.listen 127.0.0.1:{port}" in d.log()
        d.stop(expect=1)
    finally:
        s.close()


def test_curve_admissions_and_refusals_are_counted(tmp_path):
    """The ZAP handler's verdicts per socket, on a CURVE daemon whose
    HTTP endpoint is on loopback (allowed without allow_insecure)."""
    os.makedirs(tmp_path / "keys")
    for name in ("server", "good", "stranger"):
        isvd.keygen(str(tmp_path / name))
    shutil.copy(tmp_path / "good.pub", tmp_path / "keys" / "good.pub")
    d = Daemon(tmp_path, wait_ready=False, extra_sections={
        **HTTP, "security": {"curve": True, "secret_key_file": str(tmp_path / "server.key"),
                             "client_keys_dir": str(tmp_path / "keys")}})
    try:
        port = http_port(d)
        deadline = time.monotonic() + 30
        while get(port, "/healthz")[0] != 200:
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.05)
        keys = {"server_key": str(tmp_path / "server.pub")}
        with isvd.Client(d.ingest, d.query, d.publish, timeout=20, retries=0,
                         client_key=str(tmp_path / "good.key"), **keys) as c:
            c.ping()
            c.push(np.ones((2, 3)))
        with isvd.Client(d.ingest, d.query, d.publish, timeout=1, retries=0,
                         client_key=str(tmp_path / "stranger.key"), **keys) as c:
            with pytest.raises(isvd.Timeout):
                c.ping()
        fams = scrape(port)
        assert value(fams, "isvd_curve_admitted", socket="query") == 1
        assert value(fams, "isvd_curve_admitted", socket="ingest") == 1
        assert value(fams, "isvd_curve_refused", socket="query") >= 1   # it may have retried
        assert value(fams, "isvd_curve_refused", socket="ingest") == 0
        assert value(fams, "isvd_curve_admitted", socket="publish") == 0
        assert value(fams, "isvd_rows_ingested") == 2
    finally:
        d.stop()
