"""Security and hostile input (issue 8): CURVE authentication through the
daemon's ZAP handler, and the limits that keep a flood of bad peers from
hurting a good one.

Everything listens on and connects to 127.0.0.1 only, on ports picked free
by the kernel.  Every wait is bounded.  "Gets no reply" is checked by
waiting NO_REPLY_S for a reply that must not come; that is an absence, not
a speed, so a slow (sanitizer) build cannot make it fail, only a broken one.

The stress test asserts behaviour only (the daemon stays up, RSS within a
bound computed from the configured limits, not one row of the legitimate
client lost) and prints the legitimate client's throughput, quiet and under
attack: wall-clock thresholds are not asserted in tests (STYLE.md).
"""
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

import isvd
from isvdd_harness import (assert_factors_match, isvdd_path, mat, pack, read_log,
                            rows_in_seq_order, run_isvdd, stop_process, unpack, yaml_config)

NO_REPLY_S = 1.5
START_S = 30


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Keys:
    """A key pair written by isvd.keygen() (the same format as `isvd keygen`)
    in d; admit_dir: a keys directory of the daemon to copy the .pub into."""

    def __init__(self, d, name, admit_dir=None):
        self.base = os.path.join(str(d), name)
        self.public = isvd.keygen(self.base).encode()
        self.key = self.base + ".key"
        self.pub = self.base + ".pub"
        self.secret = isvd.read_key_file(self.key, secret=True)
        if admit_dir is not None:
            admit(self, admit_dir)


def admit(keys, admit_dir):
    with open(keys.pub, "rb") as src, open(os.path.join(str(admit_dir), os.path.basename(keys.pub)),
                                           "wb") as dst:
        dst.write(src.read())


class SecureDaemon:
    """isvdd on three free 127.0.0.1 ports; `security` and `limits` sections
    as given.  Ready when its log says so (a plain ping would be refused)."""

    def __init__(self, d, security=None, limits=None, env=None, extra=None, wait=True):
        self.dir = str(d)
        self.ports = [free_port() for _ in range(3)]
        self.ingest, self.query, self.publish = (f"tcp://127.0.0.1:{p}" for p in self.ports)
        self.log_path = os.path.join(self.dir, "isvdd.log")
        sections = {
            "model": {"dim": 0, "rank": 4},
            "endpoints": {"ingest": self.ingest, "query": self.query, "publish": self.publish},
            "publish": {"spectrum_every_ms": 100},
            "storage": {"dir": os.path.join(self.dir, "data"), "fsync": "none"},
            "log": {"file": self.log_path, "level": "debug", "warn_every_ms": 0},
        }
        if security:
            sections["security"] = security
        if limits:
            sections["limits"] = limits
        for k, v in (extra or {}).items():
            sections.setdefault(k, {}).update(v)
        self.config = os.path.join(self.dir, "isvdd.yaml")
        with open(self.config, "w") as f:
            f.write(yaml_config(sections))
        self.proc = subprocess.Popen([isvdd_path(), "--config", self.config],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=dict(os.environ, **(env or {})))
        self.ctx = zmq.Context()
        self.socks = []
        if wait:
            self.wait_ready()

    def wait_ready(self):
        deadline = time.monotonic() + START_S
        while " ready" not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"isvdd exited with {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode()} {self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError("isvdd not ready")
            time.sleep(0.02)

    def log(self):
        return read_log(self.log_path)

    def sock(self, kind, endpoint, keys=None, server_public=None, plain=None):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDTIMEO, 1000)
        if keys is not None:
            s.curve_serverkey = server_public
            s.curve_publickey = keys.public
            s.curve_secretkey = keys.secret
        if plain:
            s.plain_username, s.plain_password = plain
        s.connect(endpoint)
        self.socks.append(s)
        return s

    def rss_kib(self):
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0])
        return out

    def sanitized(self):
        """Whether isvdd runs under AddressSanitizer (its runtime is mapped)."""
        with open(f"/proc/{self.proc.pid}/maps") as f:
            return "asan" in f.read()

    def stop(self, expect=0):
        """As Daemon.stop(): the exit status must be expect, and no
        sanitizer report may appear in stderr or the log."""
        socks, self.socks = self.socks, []
        return stop_process(self.proc, self.ctx, socks, 30, expect, self.log_path)


def ask(sock, body, wait_s=NO_REPLY_S):
    """Sends body; the decoded reply, or None when none came within wait_s."""
    try:
        sock.send(pack(body), zmq.DONTWAIT)
    except zmq.Again:
        pass   # not even connected: certainly no reply
    if not sock.poll(int(wait_s * 1000)):
        return None
    return unpack(sock.recv_multipart()[-1])


ROWS = np.arange(12.0).reshape(3, 4) + 1


# ------------------------------------------------------------ the matrix

@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A CURVE daemon with a full-access key, an ingest-only key and a
    query-only key (each in its own directory)."""
    d = tmp_path_factory.mktemp("secured")
    for sub in ("all", "ingest", "query"):
        os.mkdir(d / sub)
    server = Keys(d, "server")
    full = Keys(d, "full", d / "all")
    pusher = Keys(d, "pusher", d / "ingest")
    reader = Keys(d, "reader", d / "query")
    dm = SecureDaemon(d, security={
        "curve": True, "secret_key_file": server.key, "client_keys_dir": str(d / "all"),
        "ingest_keys_dir": str(d / "ingest"), "query_keys_dir": str(d / "query")})
    dm.keys = {"server": server, "full": full, "pusher": pusher, "reader": reader}
    dm.tmp = d
    yield dm
    assert dm.stop() == 0


def full_client(dm, **kw):
    k = dm.keys
    return isvd.Client(dm.ingest, dm.query, dm.publish, timeout=10, retries=0,
                       server_key=k["server"].pub, client_key=k["full"].key, **kw)


def rows_in_model(dm):
    with full_client(dm) as c:
        return c.info()["rows_seen"]


def refused_everywhere(dm, **sockargs):
    """Neither a ping on query nor a push on ingest gets a reply, and the
    model does not move."""
    before = rows_in_model(dm)
    q = dm.sock(zmq.DEALER, dm.query, **sockargs)
    i = dm.sock(zmq.DEALER, dm.ingest, **sockargs)
    assert ask(q, {"op": "ping"}) is None
    assert ask(i, {"op": "push", "rows": mat(ROWS), "client": "intruder", "batch": 1}) is None
    assert rows_in_model(dm) == before


def test_authorized_key_pushes_queries_and_subscribes(secured):
    with full_client(secured) as c:
        before = c.info()["rows_seen"]
        ack = c.push(ROWS)
        assert ack.accepted == 3 and ack.seq == before + 3
        assert c.ping()
        sub = c.subscribe("spectrum", timeout=20)
        c.push(ROWS)
        snap = next(sub)
        assert snap["seq"] >= before + 3


def test_client_ids_are_scoped_by_key(secured):
    """Two admitted keys push with the same client id and batch numbers:
    both pushes are applied (one key cannot make the other's look like
    duplicates), and each key's own resend is still a duplicate."""
    k = secured.keys
    socks = {}
    for name in ("full", "pusher"):
        socks[name] = secured.sock(zmq.DEALER, secured.ingest, keys=k[name],
                                   server_public=k["server"].public)
    before = rows_in_model(secured)
    body = {"op": "push", "rows": mat(ROWS), "client": "shared-id", "batch": 7}
    first = ask(socks["full"], body, wait_s=10)
    second = ask(socks["pusher"], body, wait_s=10)
    assert first["ok"] and not first["duplicate"] and first["accepted"] == 3, first
    assert second["ok"] and not second["duplicate"] and second["accepted"] == 3, second
    assert rows_in_model(secured) == before + 6
    for name, orig in (("full", first), ("pusher", second)):
        again = ask(socks[name], body, wait_s=10)
        assert again["ok"] and again["duplicate"] and again["seq"] == orig["seq"], again
    assert rows_in_model(secured) == before + 6


def test_unknown_key_is_refused_and_logged(secured):
    stranger = Keys(secured.tmp, "stranger")
    refused_everywhere(secured, keys=stranger, server_public=secured.keys["server"].public)
    wait_for_log(secured, f"CURVE client {stranger.public.decode()} refused on the query socket")
    wait_for_log(secured, f"CURVE client {stranger.public.decode()} refused on the ingest socket")


def wait_for_log(dm, text, seconds=20):
    """Waits (bounded) until the daemon's log holds text."""
    deadline = time.monotonic() + seconds
    while text not in dm.log():
        assert time.monotonic() < deadline, f"not logged within {seconds} s: {text}"
        time.sleep(0.02)


def test_no_key_null_mechanism_is_refused(secured):
    refused_everywhere(secured)


def test_plain_mechanism_is_refused(secured):
    refused_everywhere(secured, plain=(b"admin", b"secret"))


def test_wrong_server_key_is_refused(secured):
    # an authorised client key, but the handshake is addressed to another server
    wrong = Keys(secured.tmp, "not-the-server")
    refused_everywhere(secured, keys=secured.keys["full"], server_public=wrong.public)


def test_garbage_on_the_raw_port_gets_nothing(secured):
    before = rows_in_model(secured)
    rng = random.Random(8)
    for port in secured.ports:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(bytes(rng.randrange(256) for _ in range(4096)))
            s.settimeout(NO_REPLY_S)
            got = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break   # the daemon hung up: good
                    got += chunk
            except socket.timeout:
                pass
            except ConnectionResetError:
                pass
            s.close()
            # at most the daemon's own ZMTP greeting, never a reply
            assert len(got) <= 64
    assert rows_in_model(secured) == before
    assert secured.proc.poll() is None


def test_ingest_only_key_cannot_query(secured):
    k = secured.keys
    with isvd.Client(secured.ingest, secured.query, secured.publish, timeout=NO_REPLY_S, retries=0,
                     server_key=k["server"].pub, client_key=k["pusher"].key) as c:
        ack = c.push(ROWS)
        assert ack.accepted == 3
        with pytest.raises(isvd.Timeout):
            c.info()
        with pytest.raises(isvd.Timeout):
            next(c.subscribe("spectrum", timeout=NO_REPLY_S))


def test_query_only_key_cannot_push(secured):
    k = secured.keys
    before = rows_in_model(secured)
    with isvd.Client(secured.ingest, secured.query, secured.publish, timeout=NO_REPLY_S, retries=0,
                     server_key=k["server"].pub, client_key=k["reader"].key) as c:
        assert c.info()["rows_seen"] == before
        with pytest.raises(isvd.Timeout):
            c.push(ROWS)
    assert rows_in_model(secured) == before


def test_sighup_reloads_the_keys(secured):
    late = Keys(secured.tmp, "late")
    srv = secured.keys["server"]
    q = secured.sock(zmq.DEALER, secured.query, keys=late, server_public=srv.public)
    assert ask(q, {"op": "ping"}) is None      # not admitted yet
    admit(late, secured.tmp / "all")
    secured.proc.send_signal(signal.SIGHUP)
    wait_for_log(secured, "keys reloaded")
    q2 = secured.sock(zmq.DEALER, secured.query, keys=late, server_public=srv.public)
    assert ask(q2, {"op": "ping"}, wait_s=20)["ok"]


def test_cli_keygen_and_curve_options(secured, tmp_path):
    cli = os.environ.get("ISVD_CLI")
    if not cli:
        pytest.skip("ISVD_CLI not set")
    r = subprocess.run([cli, "keygen", str(tmp_path / "me")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert os.stat(tmp_path / "me.key").st_mode & 0o777 == 0o600
    assert r.stdout.strip() == isvd.read_key_file(str(tmp_path / "me.pub")).decode()
    # never overwrites
    assert subprocess.run([cli, "keygen", str(tmp_path / "me")], capture_output=True,
                          timeout=30).returncode == 1
    k = secured.keys
    env = dict(os.environ, ISVD_QUERY=secured.query, ISVD_INGEST=secured.ingest)
    r = subprocess.run([cli, "ping", "--timeout", "10", "--retries", "0", "--server-key", k["server"].pub,
                        "--client-key", k["full"].key], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    # the same through the environment
    env.update(ISVD_SERVER_KEY=k["server"].pub, ISVD_CLIENT_KEY=k["full"].key)
    r = subprocess.run([cli, "info", "--timeout", "10", "--retries", "0"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    # an ingest-only key pushes; libisvd never presents it to the query socket
    refusal = f"{k['pusher'].public.decode()} refused on the query socket"
    seen = secured.log().count(refusal)
    rows = tmp_path / "rows.csv"
    rows.write_text("1,2,3,4\n5,6,7,8\n")
    r = subprocess.run([cli, "push", "--timeout", "10", "--retries", "0", "--server-key", k["server"].pub,
                        "--client-key", k["pusher"].key, str(rows)], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    # a stranger's refusal, logged after any the CLI's connections caused
    marker = Keys(tmp_path, "marker")
    q = secured.sock(zmq.DEALER, secured.query, keys=marker, server_public=k["server"].public)
    assert ask(q, {"op": "ping"}) is None
    wait_for_log(secured, f"{marker.public.decode()} refused on the query socket")
    assert secured.log().count(refusal) == seen
    # a key the daemon does not know: no reply
    env.update(ISVD_CLIENT_KEY=str(tmp_path / "me.key"))
    r = subprocess.run([cli, "ping", "--timeout", str(NO_REPLY_S), "--retries", "0"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "TIMEOUT" in r.stderr and "CURVE" in r.stderr
    # the secret file where the public one belongs
    env.update(ISVD_SERVER_KEY=k["server"].key, ISVD_CLIENT_KEY=k["full"].key)
    r = subprocess.run([cli, "ping"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "secret key file" in r.stderr


def test_zap_handler_stopped_fails_closed(tmp_path):
    """With the handler not running, even an authorised key gets nothing:
    ZMQ_ZAP_ENFORCE_DOMAIN.  ISVDD_TEST_NO_ZAP=1 leaves the handler unbound
    (it can only refuse; see daemon/security.c)."""
    os.mkdir(tmp_path / "all")
    server = Keys(tmp_path, "server")
    full = Keys(tmp_path, "full", tmp_path / "all")
    dm = SecureDaemon(tmp_path, env={"ISVDD_TEST_NO_ZAP": "1"}, security={
        "curve": True, "secret_key_file": server.key, "client_keys_dir": str(tmp_path / "all")})
    try:
        q = dm.sock(zmq.DEALER, dm.query, keys=full, server_public=server.public)
        i = dm.sock(zmq.DEALER, dm.ingest, keys=full, server_public=server.public)
        assert ask(q, {"op": "ping"}) is None
        assert ask(i, {"op": "push", "rows": mat(ROWS)}) is None
        assert "ZAP handler is not started" in dm.log()
    finally:
        assert dm.stop() == 0
    # the model did not move: the final checkpoint holds no rows
    assert "stopping: 0 rows in the model" in dm.log()


# -------------------------------------------------------- refusing to start

def secured_config(tmp_path, **security):
    sec = {"curve": True, "secret_key_file": str(tmp_path / "server.key"),
           "client_keys_dir": str(tmp_path / "keys")}
    sec.update(security)
    path = tmp_path / "c.yaml"
    path.write_text(yaml_config({
        "endpoints": {"ingest": f"ipc://{tmp_path}/i", "query": f"ipc://{tmp_path}/q",
                      "publish": f"ipc://{tmp_path}/p"},
        "storage": {"dir": str(tmp_path / "data")}, "security": sec}))
    return str(path)


def test_refuses_a_readable_or_missing_secret_key(tmp_path):
    os.mkdir(tmp_path / "keys")
    cfg = secured_config(tmp_path)
    r = run_isvdd("--config", cfg)
    assert r.returncode == 1 and "server.key: cannot open" in r.stderr
    Keys(tmp_path, "server")
    os.chmod(tmp_path / "server.key", 0o640)
    for args in (("--check", "--config", cfg), ("--config", cfg)):
        r = run_isvdd(*args)
        assert r.returncode == 1, r.stdout
        assert "must not be accessible by group or others (mode 0640)" in r.stderr
    os.chmod(tmp_path / "server.key", 0o600)
    r = run_isvdd("--check", "--config", cfg)
    assert r.returncode == 0, r.stderr


def test_refuses_bad_key_directories(tmp_path):
    os.mkdir(tmp_path / "keys")
    Keys(tmp_path, "server")
    Keys(tmp_path, "ok", tmp_path / "keys")
    (tmp_path / "keys" / "junk.pub").write_text("not a key\n")
    r = run_isvdd("--check", "--config", secured_config(tmp_path))
    assert r.returncode == 1 and "junk.pub" in r.stderr
    os.unlink(tmp_path / "keys" / "junk.pub")
    # a secret key copied into the public keys directory
    Keys(tmp_path, "oops")
    os.rename(tmp_path / "oops.key", tmp_path / "keys" / "oops.key")
    r = run_isvdd("--check", "--config", secured_config(tmp_path))
    assert r.returncode == 1 and "oops.key: this is a secret key file" in r.stderr
    r = run_isvdd("--check", "--config", secured_config(tmp_path, client_keys_dir=str(tmp_path / "nope")))
    assert r.returncode == 1 and "cannot open directory" in r.stderr


def test_curve_needs_keys_configured(tmp_path):
    r = run_isvdd("--check", "--config", secured_config(tmp_path, client_keys_dir='""',
                                                         secret_key_file='""'))
    assert r.returncode == 1
    assert "secret_key_file is not set" in r.stderr and "no keys directory is set" in r.stderr


# ------------------------------------------------------------------ stress

MAX_MSG = 1 << 20
HOSTILE = 20
IDLE = 100
RECV_HWM = 10
ATTACK_S = 4.0


def legit_pushes(c, seconds, dim, tally):
    """Pushes 50-row batches for `seconds`, checking every ack; queries
    every tenth push.  Returns rows per second."""
    rng = np.random.default_rng(1)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        X = rng.standard_normal((50, dim))
        ack = c.push(X)
        assert ack.accepted == 50 and not ack.duplicate
        tally["pushes"].append((len(tally["pushes"]), X, ack.seq))
        n += 1
        if n % 10 == 0:
            coords, resid = c.project(X[:2])
            assert coords.shape[0] == 2
    return n * 50 / (time.monotonic() - t0)


def test_hostile_flood_leaves_legitimate_client_whole(tmp_path):
    dim = 8
    dm = SecureDaemon(tmp_path, limits={
        "max_message_bytes": MAX_MSG, "max_rows_per_push": 1000, "recv_hwm": RECV_HWM,
        "send_hwm": 100, "handshake_ms": 1000, "max_pending_pushes": 64},
        extra={"log": {"level": "info", "warn_every_ms": 1000}},
        # under AddressSanitizer: a smaller quarantine of freed memory (no effect otherwise)
        env={"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=64"})
    idle, procs = [], []
    try:
        base = dm.rss_kib()
        c = isvd.Client(dm.ingest, dm.query, dm.publish, timeout=30, retries=5)
        tally = {"pushes": []}
        quiet = legit_pushes(c, 1.5, dim, tally)

        for _ in range(IDLE):        # idle raw TCP connections, held throughout
            idle.append(socket.create_connection(("127.0.0.1", random.choice(dm.ports[:2])), timeout=5))
        # HOSTILE peers in two processes: half raw TCP, half zmq DEALERs.
        # They run at the lowest CPU priority: a real attacker's CPU is on
        # its own machine, so here it should take only what the daemon and
        # the legitimate client leave (2 cores shared by all of them).
        helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_peers.py")
        procs.append(subprocess.Popen([sys.executable, helper, str(ATTACK_S), "1", "raw",
                                       str(HOSTILE // 2), *map(str, dm.ports)],
                                      stdout=subprocess.PIPE, text=True,
                                      preexec_fn=lambda: os.nice(19)))
        procs.append(subprocess.Popen([sys.executable, helper, str(ATTACK_S), "2", "zmq",
                                       str(HOSTILE - HOSTILE // 2), dm.ingest, dm.query],
                                      stdout=subprocess.PIPE, text=True,
                                      preexec_fn=lambda: os.nice(19)))
        for p in procs:              # every hostile thread runs
            assert select.select([p.stdout], [], [], 60)[0], "hostile_peers.py did not start"
            assert p.stdout.readline().strip() == "started"
        loud = legit_pushes(c, ATTACK_S - 0.5, dim, tally)
        for p in procs:
            out, _ = p.communicate(timeout=60)
            report = json.loads(out.strip().splitlines()[-1])
            print(f"hostile peers: {report}")
            assert p.returncode == 0 and not report["errors"], report
            # each hostile peer really attacked, more than once
            assert min(report["sent"]) >= 2, report
        assert dm.proc.poll() is None, "the daemon died under the flood"
        rss = dm.rss_kib()

        # not one row lost or doubled: the acks tile the sequence, and the
        # model is numpy's SVD of the acknowledged rows
        info = c.info()
        X, n = rows_in_seq_order(tally["pushes"])
        assert info["rows_seen"] == n
        f = c.factors()
        assert_factors_match((f.sigma, f.vt, f.mean, f.seq), X, center=False)
        c.close()

        # RSS bound from the limits: per hostile peer, RECV_HWM queued
        # messages plus one being read, each at most MAX_MSG + 64 KiB; plus
        # 64 MiB for everything else (idle connections, zmq, the model);
        # plus ASan's quarantine in a sanitizer build
        bound_kib = base["VmHWM"] + 64 * 1024 + HOSTILE * (RECV_HWM + 1) * (MAX_MSG + 65536) // 1024
        if dm.sanitized():   # AddressSanitizer's quarantine (64 MiB above) and redzones
            bound_kib += 256 * 1024
        print(f"\nlegitimate client: {quiet:.0f} rows/s quiet, {loud:.0f} rows/s under attack "
              f"(ratio {quiet / max(loud, 1e-9):.2f}); {n} rows, none lost")
        print(f"isvdd RSS: start {base['VmRSS']} KiB, peak {rss['VmHWM']} KiB, now {rss['VmRSS']} KiB; "
              f"bound {bound_kib} KiB")
        assert rss["VmHWM"] < bound_kib
        # the idle connections were dropped by the handshake timeout
        dropped = 0
        for s in idle:
            s.settimeout(0.5)
            try:
                if s.recv(4096, socket.MSG_PEEK) == b"":
                    dropped += 1
                else:
                    s.recv(65536)   # the daemon's greeting
                    if s.recv(1) == b"":
                        dropped += 1
            except (socket.timeout, ConnectionResetError):
                pass
        print(f"idle connections closed by the daemon (limits.handshake_ms): {dropped} of {IDLE}")
        assert dropped == IDLE
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for s in idle:
            s.close()
        rc = dm.stop()
    assert rc == 0
    summary = [ln for ln in dm.log().splitlines() if "refusals since start" in ln]
    print(summary[-1])
    # the hostile peers were heard, and refused
    assert int(summary[-1].split("refusals since start: ")[1].split()[0]) > 0
