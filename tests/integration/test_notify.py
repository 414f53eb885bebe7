"""isvdd under a service manager's eyes: the sd_notify datagrams it sends
(daemon/notify.c) to a NOTIFY_SOCKET this test binds itself, as systemd
would for a Type=notify unit.

- the life cycle, on an abstract socket (@name) with WATCHDOG_USEC and
  WATCHDOG_PID set to the daemon's own pid (as systemd sets them):
  STATUS=recovering before READY=1, READY=1 with STATUS=serving once the
  query socket answers, WATCHDOG=1 pings, STATUS following the rows pushed,
  RELOADING=1 with MONOTONIC_USEC on SIGHUP then READY=1 again, STOPPING=1
  on SIGTERM and a clean exit;
- a path socket and WATCHDOG_PID naming another process: every message but
  WATCHDOG=1 (sd_watchdog_enabled()'s rule);
- STATUS says when storage has failed (faultfs), and why, until it heals;
- standard error that is the journal (JOURNAL_STREAM) gets syslog
  priority prefixes (<6>info: ...), any other keeps time and pid;
- the watchdog comes from the event loop: while a checkpoint is held at its
  rename (faultfs) the loop thread is stuck, the query thread still answers
  ping, and the pings stop; released, they resume.

Every wait is bounded; no test asserts how fast anything is.
"""
import os
import re
import select
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from isvdd_harness import Daemon, faultfs_env, isvdd_path, yaml_config

WAIT_S = 20          # the longest wait for one expected message


class Notify:
    """A datagram socket bound where NOTIFY_SOCKET will say, and the
    messages received on it, each a dict of its KEY=VALUE lines."""

    def __init__(self, address):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.seen = []

    def close(self):
        self.sock.close()

    def _recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        msg = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.seen.append(msg)
        return msg

    def expect(self, key, value=None, timeout=WAIT_S):
        """The next message holding key (=value when given); fails after
        timeout seconds without one.  Messages before it are kept in seen."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            msg = self._recv(max(left, 0.001)) if left > 0 else None
            if msg is None:
                raise AssertionError(f"no {key}={value or '*'} within {timeout} s; got {self.seen}")
            if key in msg and (value is None or msg[key] == value):
                return msg

    def quiet_for(self, quiet_s, limit_s=WAIT_S):
        """Receives until nothing came for quiet_s seconds (True), or for at
        most limit_s seconds with messages still coming (False)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self._recv(quiet_s) is None:
                return True
        return False


def keys(msgs, key):
    return [m for m in msgs if key in m]


# `sh -c` with `exec`: the shell's pid ($$) becomes isvdd's, as systemd's
# WATCHDOG_PID is the main process's.
OWN_PID = ("/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$0" "$@"')


def test_life_cycle_abstract_socket(tmp_path):
    n = Notify(f"@isvd-test-notify-{os.getpid()}-{tmp_path.name}")
    env = {"NOTIFY_SOCKET": n.address, "WATCHDOG_USEC": "200000"}
    try:
        d = Daemon(tmp_path, model={"dim": 4, "rank": 2}, env=env, prefix=OWN_PID,
                   wait_ready=False)
        with d:
            ready = n.expect("READY", "1")
            assert ready["STATUS"].startswith("serving: rank 2, 0 rows, dim 4"), ready
            first = n.seen[0]
            assert first.get("STATUS", "").startswith("recovering from "), n.seen
            assert "READY" not in first
            # READY=1 is sent once recovered and bound: the query socket answers
            d.q, d.i = d.dealer(d.query), d.dealer(d.ingest)
            assert d.call(d.q, {"op": "ping"})["ok"]
            for _ in range(3):
                n.expect("WATCHDOG", "1")

            rng = np.random.default_rng(1)
            assert d.push(rng.standard_normal((100, 4)))["ok"]
            st = n.expect("STATUS")
            while not st["STATUS"].startswith("serving: rank 2, 100 rows, dim 4"):
                st = n.expect("STATUS")

            before_us = time.monotonic_ns() // 1000
            d.signal(signal.SIGHUP)
            rel = n.expect("RELOADING", "1")
            after_us = time.monotonic_ns() // 1000
            # CLOCK_MONOTONIC, as systemd compares it: taken between the two readings
            assert before_us <= int(rel["MONOTONIC_USEC"]) <= after_us, rel
            again = n.expect("READY", "1")
            assert again["STATUS"].startswith("serving: rank 2, 100 rows"), again
            n.expect("WATCHDOG", "1")   # still pinging after the reload

            d.signal(signal.SIGTERM)
            stop = n.expect("STOPPING", "1")
            assert stop["STATUS"].startswith("stopping: 100 rows"), stop
            assert d.proc.wait(WAIT_S) == 0
        assert len(keys(n.seen, "READY")) == 2
    finally:
        n.close()


def test_path_socket_watchdog_for_another_pid(tmp_path):
    n = Notify(str(tmp_path / "notify.sock"))
    # WATCHDOG_PID names this test, not the daemon: the watchdog is not its
    env = {"NOTIFY_SOCKET": n.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    try:
        with Daemon(tmp_path, env=env) as d:
            n.expect("READY", "1")
            d.signal(signal.SIGHUP)
            n.expect("RELOADING", "1")
            n.expect("READY", "1")
            d.signal(signal.SIGTERM)
            n.expect("STOPPING", "1")
            assert d.proc.wait(WAIT_S) == 0
        assert not keys(n.seen, "WATCHDOG"), n.seen
    finally:
        n.close()


def test_watchdog_stops_while_the_loop_is_stuck(tmp_path):
    """The loop thread blocks in a checkpoint's rename (faultfs "rename
    PAUSE"): the pings stop although the query thread still answers; once
    the rename goes ahead they resume and the checkpoint completes."""
    n = Notify(f"@isvd-test-notify-wd-{os.getpid()}-{tmp_path.name}")
    ctl = tmp_path / "faults"
    ctl.write_text("")
    data = tmp_path / "data"
    env = {"NOTIFY_SOCKET": n.address, "WATCHDOG_USEC": "200000", **faultfs_env(ctl, data)}
    try:
        with Daemon(tmp_path, model={"dim": 4, "rank": 2}, env=env, prefix=OWN_PID,
                    extra_sections={"storage": {"checkpoint_every_rows": 50}}) as d:
            n.expect("READY", "1")
            n.expect("WATCHDOG", "1")
            ctl.write_text("rename PAUSE\n")
            time.sleep(0.05)   # faultfs re-reads the file when its mtime changes
            assert d.push(np.ones((60, 4)) + np.arange(4))["ok"]
            tmp = data / "checkpoint.tmp"
            deadline = time.monotonic() + WAIT_S
            while not tmp.exists():
                assert time.monotonic() < deadline, "no checkpoint started"
                time.sleep(0.01)
            # the loop is on its way to the held rename (pings may come
            # until it gets there): the pings must stop, for good
            assert n.quiet_for(1.0), f"WATCHDOG=1 kept coming while the loop was held: {n.seen[-5:]}"
            assert tmp.exists()
            assert d.call(d.q, {"op": "ping"})["ok"]          # the query thread is alive
            assert n.quiet_for(1.0, limit_s=1.0), n.seen[-5:]  # and keeps nothing pinging
            assert d.info()["last_checkpoint_seq"] == 0       # still held
            ctl.write_text("")
            n.expect("WATCHDOG", "1")
            deadline = time.monotonic() + WAIT_S
            while d.info()["last_checkpoint_seq"] != 60:
                assert time.monotonic() < deadline, "the checkpoint did not complete"
                time.sleep(0.05)
    finally:
        n.close()


def test_status_reports_a_storage_failure_and_its_healing(tmp_path):
    """A write that fails (faultfs "write ENOSPC") fails storage: STATUS
    says so, with the reason, until the fault clears and storage heals."""
    n = Notify(f"@isvd-test-notify-st-{os.getpid()}-{tmp_path.name}")
    ctl = tmp_path / "faults"
    ctl.write_text("")
    env = {"NOTIFY_SOCKET": n.address, **faultfs_env(ctl, tmp_path / "data")}
    try:
        with Daemon(tmp_path, model={"dim": 4, "rank": 2}, env=env) as d:
            n.expect("READY", "1")
            assert d.push(np.eye(4), client="p", batch=1)["ok"]
            ctl.write_text("write ENOSPC\n")
            time.sleep(0.05)   # faultfs re-reads the file when its mtime changes
            r = d.push(np.eye(4) * 2, client="p", batch=2)
            assert r["ok"] is False and r["error"]["code"] == "UNAVAILABLE", r
            st = n.expect("STATUS")
            while "storage failed" not in st["STATUS"]:
                st = n.expect("STATUS")
            assert st["STATUS"].startswith("serving: rank 2, 4 rows, dim 4; storage failed, pushes "
                                           "refused: "), st
            assert "No space left on device" in st["STATUS"], st
            ctl.write_text("")
            deadline = time.monotonic() + WAIT_S
            while not d.push(np.eye(4) * 2, client="p", batch=2)["ok"]:
                assert time.monotonic() < deadline, "storage did not heal"
                time.sleep(0.1)
            st = n.expect("STATUS")
            while st["STATUS"] != "serving: rank 2, 8 rows, dim 4":
                st = n.expect("STATUS")
    finally:
        n.close()


def run_logging_to_stderr(tmp_path, journal_stream_of_stderr, extra_env=None):
    """Starts isvdd logging to standard error (log.file "") connected to a
    pipe of this test's; JOURNAL_STREAM names that pipe when
    journal_stream_of_stderr, another file otherwise.  Stops it once it
    logged "ready"; returns its stderr lines."""
    conf = tmp_path / "j.yaml"
    conf.write_text(yaml_config({
        "endpoints": {n: f"ipc://{tmp_path}/j-{n}.sock" for n in ("ingest", "query", "publish")},
        "storage": {"dir": str(tmp_path / "j-data")}, "log": {"file": '""'}}))
    r, w = os.pipe()
    st = os.fstat(w) if journal_stream_of_stderr else os.stat(conf)
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}", **(extra_env or {}))
    p = subprocess.Popen([isvdd_path(), "--config", str(conf)], stderr=w, stdout=subprocess.DEVNULL,
                         env=env)
    os.close(w)
    out = b""
    try:
        deadline = time.monotonic() + WAIT_S
        while b"ready\n" not in out:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([r], [], [], left)[0], f"not ready: {out!r}"
            chunk = os.read(r, 65536)
            assert chunk, f"isvdd exited: {out!r}"
            out += chunk
        p.send_signal(signal.SIGTERM)
        assert p.wait(WAIT_S) == 0
        while chunk := os.read(r, 65536):
            out += chunk
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        os.close(r)
    return out.decode().splitlines()


def test_journal_stream_gets_syslog_priorities(tmp_path):
    """Standard error that is the journal (JOURNAL_STREAM names it): every
    line starts with its syslog priority, and leaves time and pid to the
    journal; a warning is <4>."""
    lines = run_logging_to_stderr(tmp_path, True, {"NOTIFY_SOCKET": "relative/notify.sock"})
    assert lines and all(re.match(r"<[3467]>(debug|info|warn|error): ", ln) for ln in lines), lines
    assert "<6>info: ready" in lines
    assert any(ln.startswith("<4>warn: NOTIFY_SOCKET 'relative/notify.sock'") for ln in lines), lines
    assert "<6>info: stopped" in lines


def test_other_stderr_keeps_time_and_pid(tmp_path):
    lines = run_logging_to_stderr(tmp_path, False)
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z isvdd\[\d+\] (info|warn): ", ln)
                         for ln in lines), lines


def test_unsupervised_runs_without_notify_socket(tmp_path):
    """Without NOTIFY_SOCKET (the rest of the suite too) nothing is sent and
    nothing breaks; a NOTIFY_SOCKET that is not usable is logged, not fatal."""
    with Daemon(tmp_path, env={"NOTIFY_SOCKET": "relative/notify.sock"}) as d:
        assert d.call(d.q, {"op": "ping"})["ok"]
        assert d.stop() == 0
    assert "NOTIFY_SOCKET 'relative/notify.sock' is not an absolute path" in d.log()


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))
