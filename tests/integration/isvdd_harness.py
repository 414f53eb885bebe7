"""isvdd_harness — start the real isvdd on ipc:// endpoints in a temporary
directory with a generated configuration, and speak protocol v1 to it.

Every wait is bounded (zmq RCVTIMEO, subprocess timeouts), nothing listens on
or connects to anything but ipc:// sockets inside the test's own directory
(or, for the bind-failure test, 127.0.0.1), and Daemon.stop() always ends the
process: SIGTERM first, SIGKILL if it does not exit in time.  stop() also
checks how it ended: the exit status must be the one expected (0 unless the
caller says otherwise; a daemon that had to be SIGKILLed fails), and neither
its stderr nor its log may hold a sanitizer report (a leak, a memory error
or UB under ISVD_SANITIZE=1), whatever the status.
"""
import os
import signal
import subprocess
import time

import msgpack
import numpy as np
import zmq

ISVDD = os.environ.get("ISVDD", "")
REPO = os.environ.get("ISVD_SOURCE_ROOT",
                      os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
TIMEOUT_MS = 20000          # generous: sanitizer builds are slow


def isvdd_path():
    if not ISVDD or not os.access(ISVDD, os.X_OK):
        raise RuntimeError("set ISVDD to the isvdd binary (meson test does)")
    return ISVDD


def yaml_config(sections):
    """{'model': {'rank': 4}} -> YAML text (values written as given)."""
    out = []
    for sec, keys in sections.items():
        out.append(f"{sec}:")
        for k, v in keys.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            out.append(f"  {k}: {v}")
    return "\n".join(out) + "\n"


def run_isvdd(*args, timeout=30):
    return subprocess.run([isvdd_path(), *args], capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ codec

def mat(a):
    """A numpy matrix in wire form (b), f64 little-endian."""
    a = np.ascontiguousarray(np.atleast_2d(np.asarray(a, dtype="<f8")))
    return {"shape": [a.shape[0], a.shape[1]], "dtype": "f64", "data": a.tobytes()}


def unmat(m):
    r, c = m["shape"]
    assert m["dtype"] == "f64"
    return np.frombuffer(m["data"], dtype="<f8").reshape(r, c).copy()


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(b):
    return msgpack.unpackb(b, raw=False, strict_map_key=False)


# ----------------------------------------------------------------- daemon

FAULTFS = os.environ.get("ISVD_FAULTFS", "")


def faultfs_env(ctl, data):
    """Environment for a daemon with tests/integration/faultfs.c preloaded
    (ISVD_FAULTFS, built by meson): the control file ctl drives the faults
    on files under data."""
    return {
        "LD_PRELOAD": FAULTFS,
        "ISVD_FAULT_CTL": str(ctl),
        "ISVD_FAULT_DIR": str(data),
        # a sanitizer build's runtime must otherwise come first
        "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0",
    }


def read_log(path):
    """The daemon's log file so far ("" before it exists)."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


# Lines that begin a sanitizer report (ASan, LSan, UBSan).
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer")


def sanitizer_report(text):
    """The first line of text that begins a sanitizer report, or None."""
    for line in text.splitlines():
        if any(m in line for m in SANITIZER_MARKS):
            return line
    return None


def stop_process(proc, ctx, socks, timeout=20, expect=0, log_path=None):
    """Closes socks, stops isvdd (SIGTERM, SIGKILL after timeout s) and ends
    ctx; returns the exit code, None when it had to be killed.  Raises
    AssertionError when the code is not expect (expect=None: any code) or
    when the process's stderr, or the log at log_path, holds a sanitizer
    report; everything is released first either way."""
    for s in socks:
        s.close(0)
    rc = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    else:
        rc = proc.returncode
    err = proc.stderr.read() if proc.stderr and not proc.stderr.closed else b""
    if isinstance(err, bytes):
        err = err.decode(errors="replace")
    for f in (proc.stdout, proc.stderr):
        if f:
            f.close()
    ctx.term()
    log = read_log(log_path) if log_path else ""
    found = sanitizer_report(err) or sanitizer_report(log)
    assert found is None, f"isvdd (pid {proc.pid}) reported: {found}\n{err[-4000:]}"
    if expect is not None:
        assert rc == expect, (f"isvdd (pid {proc.pid}) exited with {rc}, expected {expect}"
                              f" (None: killed after {timeout} s)\n{err[-4000:]}")
    return rc


class Daemon:
    """A running isvdd.  Use as a context manager or call stop()."""

    def __init__(self, tmpdir, model=None, extra_sections=None, name="isvdd", args=(), env=None,
                 wait_ready=True, prefix=()):
        """A daemon on ipc:// endpoints in tmpdir, its storage in tmpdir/data.
        A second Daemon with the same tmpdir and name is a restart of the
        first (same configuration, endpoints and storage).  args: extra
        command-line arguments; env: extra environment variables;
        wait_ready=False returns as soon as the process is started; prefix:
        a command that execs isvdd with the arguments after it (e.g. a shell
        that sets WATCHDOG_PID to its own pid first)."""
        self.dir = str(tmpdir)
        self.ingest = f"ipc://{self.dir}/{name}-ingest.sock"
        self.query = f"ipc://{self.dir}/{name}-query.sock"
        self.publish = f"ipc://{self.dir}/{name}-publish.sock"
        self.log_path = os.path.join(self.dir, f"{name}.log")
        sections = {
            "model": {"dim": 0, "rank": 8},
            "endpoints": {"ingest": self.ingest, "query": self.query, "publish": self.publish},
            "storage": {"dir": os.path.join(self.dir, "data" if name == "isvdd" else f"{name}-data")},
            "log": {"file": self.log_path, "level": "debug"},
        }
        sections["model"].update(model or {})
        for sec, keys in (extra_sections or {}).items():
            sections.setdefault(sec, {}).update(keys)
        self.config_path = os.path.join(self.dir, f"{name}.yaml")
        with open(self.config_path, "w") as f:
            f.write(yaml_config(sections))
        self.ctx = zmq.Context()
        self.data = sections["storage"]["dir"]
        penv = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen([*prefix, isvdd_path(), "--config", self.config_path, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=penv)
        self._socks = []
        if not wait_ready:
            self.q = self.i = None
            return
        self.q = self.dealer(self.query)
        self.i = self.dealer(self.ingest)
        # ready when ping answers
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"isvdd exited with {self.proc.returncode}: {self.log()}")
            try:
                r = self.call(self.q, {"op": "ping"}, timeout_ms=200)
                assert r["ok"]
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
                # the DEALER keeps the unanswered ping queued; a fresh socket is cleaner
                self.q.close(0)
                self._socks.remove(self.q)
                self.q = self.dealer(self.query)

    def dealer(self, endpoint, identity=None):
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
        s.setsockopt(zmq.SNDTIMEO, TIMEOUT_MS)
        if identity:
            s.setsockopt(zmq.IDENTITY, identity)
        s.connect(endpoint)
        self._socks.append(s)
        return s

    def sub(self, topics=(b"spectrum", b"factors")):
        s = self.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
        for t in topics:
            s.setsockopt(zmq.SUBSCRIBE, t)
        s.connect(self.publish)
        self._socks.append(s)
        return s

    def call_raw(self, sock, frames, timeout_ms=TIMEOUT_MS):
        """Sends frames (the last is the body); returns the reply frames."""
        sock.send_multipart(frames)
        if not sock.poll(timeout_ms):
            raise TimeoutError("no reply from isvdd")
        return sock.recv_multipart()

    def call(self, sock, body, timeout_ms=TIMEOUT_MS):
        return unpack(self.call_raw(sock, [pack(body)], timeout_ms)[-1])

    def push(self, rows, **kw):
        return self.call(self.i, {"op": "push", "rows": mat(rows), **kw})

    def info(self):
        r = self.call(self.q, {"op": "info"})
        assert r["ok"], r
        return r

    def factors(self):
        r = self.call(self.q, {"op": "factors"})
        assert r["ok"], r
        return np.array(r["sigma"]), unmat(r["vt"]), (None if r["mean"] is None else np.array(r["mean"])), r["seq"]

    def log(self):
        return read_log(self.log_path)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        """SIGKILL (no chance to flush or checkpoint) and release everything;
        fails as stop() does if the daemon had already exited by itself (with
        any status but the SIGKILL's) or reported a sanitizer error."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(20)
        return self.stop(expect=-signal.SIGKILL)

    def stop(self, expect=0, timeout=20):
        """SIGTERM, wait; returns the exit code.  Fails (AssertionError) when
        the code is not expect (None: any), when the daemon had to be SIGKILLed
        after timeout s, or when its stderr or log holds a sanitizer report."""
        socks, self._socks = self._socks, []
        return stop_process(self.proc, self.ctx, socks, timeout, expect, self.log_path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        # after a failure inside the block, stop without judging the exit
        # status (sanitizer reports still fail); otherwise it must be 0
        if self.proc.poll() is None or self._socks:
            self.stop(expect=0 if exc_type is None else None)


def rows_in_seq_order(pushes):
    """Stacks the rows of acknowledged pushes [(batch, rows, seq)] in seq
    order, checking that they tile 1..N exactly (every row once, no gap, no
    overlap); returns (rows, N).  A lost batch and a doubled one do not
    cancel out here, as they would in a count."""
    pushes = sorted(pushes, key=lambda p: p[2])
    at = 0
    for _, x, seq in pushes:
        assert seq - len(x) == at, f"rows {at + 1}..{seq - len(x)} missing or doubled"
        at = seq
    return np.vstack([p[1] for p in pushes]), at


def assert_factors_match(factors, X, center, tol=1e-9):
    """factors (Daemon.factors()) are numpy's SVD of the rows X (centred
    when center): σ to tol·σ₁, the subspace's projector to tol, the mean to
    tol relative.  For a daemon in exact mode, or data its rank loses
    nothing of, whose rows are exactly X."""
    sigma, vt, mean, _ = factors
    mu = X.mean(axis=0) if center else np.zeros(X.shape[1])
    _, s_ref, vt_ref = np.linalg.svd(X - mu, full_matrices=False)
    k = len(sigma)
    assert np.max(np.abs(sigma - s_ref[:k])) <= tol * s_ref[0], (sigma, s_ref[:k])
    assert np.max(np.abs(vt.T @ vt - vt_ref[:k].T @ vt_ref[:k])) <= tol
    if center:
        assert np.max(np.abs(mean - mu)) <= tol * np.max(np.abs(X))
    else:
        assert mean is None


def sign_normalise(vt):
    """Rows flipped so that the largest-magnitude entry is positive (lowest index on ties)."""
    vt = vt.copy()
    for i in range(vt.shape[0]):
        j = int(np.argmax(np.abs(vt[i])))
        if vt[i, j] < 0:
            vt[i] = -vt[i]
    return vt
