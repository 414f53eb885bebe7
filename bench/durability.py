#!/usr/bin/python3
"""bench/durability.py — what durability costs: ingest rate per fsync policy,
and how fast a log replays after kill -9.

For each storage.fsync policy it starts isvdd on ipc:// endpoints in a
temporary directory (storage there too, so the disk under /tmp is what is
measured), pushes seeded rows in pushes of --push-rows rows from --pushers
DEALER sockets each keeping --inflight pushes in flight, and prints rows/s
acknowledged.  Then it streams --replay-rows rows with checkpoints off,
kills the daemon with SIGKILL, restarts it and prints how fast the log
replayed (from the daemon's own "replayed N log records in T s" line).

Needs Debian's python3-zmq, python3-msgpack and python3-numpy; run it with
/usr/bin/python3.  Prints numbers; asserts nothing.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import numpy as np
import zmq


def mat(a):
    a = np.ascontiguousarray(a, dtype="<f8")
    return {"shape": list(a.shape), "dtype": "f64", "data": a.tobytes()}


class Isvdd:
    def __init__(self, exe, root, dim, rank, fsync, ckpt_rows, name="bench"):
        self.root = root
        self.ingest = f"ipc://{root}/{name}-ingest.sock"
        self.query = f"ipc://{root}/{name}-query.sock"
        self.log_path = os.path.join(root, f"{name}.log")
        cfg = os.path.join(root, f"{name}.yaml")
        with open(cfg, "w") as f:
            f.write(f"""model:
  dim: {dim}
  rank: {rank}
endpoints:
  ingest: {self.ingest}
  query: {self.query}
  publish: ipc://{root}/{name}-publish.sock
batching:
  max_rows: 1024
storage:
  dir: {root}/data
  fsync: {fsync}
  checkpoint_every_rows: {ckpt_rows}
  checkpoint_every_s: 0
publish:
  spectrum_every_ms: 0
  factors_every_ms: 0
log:
  file: {self.log_path}
  level: info
""")
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        self.proc = subprocess.Popen([exe, "--config", cfg], env=env)
        self.ctx = zmq.Context()
        q = self.ctx.socket(zmq.REQ)
        q.setsockopt(zmq.LINGER, 0)
        q.connect(self.query)
        q.send(msgpack.packb({"op": "ping"}))
        if not q.poll(600000):
            raise SystemExit("isvdd did not answer ping")
        q.recv()
        self.t_ready = time.monotonic()
        q.close()

    def push_rate(self, rows, push_rows, pushers, inflight):
        socks = []
        for _ in range(pushers):
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(self.ingest)
            socks.append(s)
        n_push = len(rows) // push_rows
        bodies = [msgpack.packb({"op": "push", "rows": mat(rows[i * push_rows:(i + 1) * push_rows])},
                                use_bin_type=True) for i in range(n_push)]
        sent = [0] * pushers
        done = 0
        nxt = 0
        poller = zmq.Poller()
        for s in socks:
            poller.register(s, zmq.POLLIN)
        t0 = time.perf_counter()
        for k, s in enumerate(socks):
            while sent[k] < inflight and nxt < n_push:
                s.send(bodies[nxt])
                nxt += 1
                sent[k] += 1
        while done < n_push:
            ev = dict(poller.poll(60000))
            if not ev:
                raise SystemExit("timed out waiting for acks")
            for k, s in enumerate(socks):
                while s in ev and s.poll(0):
                    r = msgpack.unpackb(s.recv(), raw=False)
                    if not r["ok"]:
                        raise SystemExit(f"push refused: {r}")
                    done += 1
                    sent[k] -= 1
                    if nxt < n_push:
                        s.send(bodies[nxt])
                        nxt += 1
                        sent[k] += 1
        dt = time.perf_counter() - t0
        for s in socks:
            s.close()
        return n_push * push_rows / dt

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.ctx.term()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        self.ctx.term()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isvdd", default=os.path.join(os.path.dirname(__file__), "..", "build", "daemon", "isvdd"),
                    help="the isvdd binary (default: build/daemon/isvdd)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--rows", type=int, default=200000, help="rows per fsync policy (default 200000)")
    ap.add_argument("--push-rows", type=int, default=256, help="rows per push (default 256)")
    ap.add_argument("--pushers", type=int, default=8, help="concurrent DEALER sockets (default 8)")
    ap.add_argument("--inflight", type=int, default=4, help="pushes in flight per socket (default 4)")
    ap.add_argument("--replay-rows", type=int, default=1000000, help="rows in the replayed log (default 10^6)")
    ap.add_argument("--dir", default=None, help="where to put the storage (default: a new temp dir)")
    a = ap.parse_args()
    exe = os.path.abspath(a.isvdd)
    if not os.access(exe, os.X_OK):
        sys.exit(f"{exe}: not an executable; build first (scripts/build) or pass --isvdd")
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((a.rows, a.dim)) * np.linspace(4, 0.1, a.dim)
    print(f"# isvdd durability benchmark: n={a.dim}, k={a.rank}, pushes of {a.push_rows} rows, "
          f"{a.pushers} pushers x {a.inflight} in flight, {os.cpu_count()} CPUs")
    print(f"{'fsync':>10} {'rows':>10} {'rows/s':>12}")
    for policy in ("none", "interval", "always"):
        root = tempfile.mkdtemp(prefix="isvd-bench-", dir=a.dir)
        try:
            d = Isvdd(exe, root, a.dim, a.rank, policy, 0)
            rate = d.push_rate(rows, a.push_rows, a.pushers, a.inflight)
            d.stop()
            print(f"{policy:>10} {a.rows:>10} {rate:>12.0f}", flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    root = tempfile.mkdtemp(prefix="isvd-bench-", dir=a.dir)
    try:
        d = Isvdd(exe, root, a.dim, a.rank, "none", 0)
        left = a.replay_rows
        while left > 0:
            n = min(left, len(rows))
            d.push_rate(rows[:n], a.push_rows, a.pushers, a.inflight)
            left -= n
        d.kill()
        size = sum(os.path.getsize(os.path.join(root, "data", f)) for f in os.listdir(os.path.join(root, "data")))
        t0 = time.monotonic()
        d = Isvdd(exe, root, a.dim, a.rank, "none", 0, name="bench2")
        wall = d.t_ready - t0
        d.stop()
        with open(d.log_path) as f:
            m = re.search(r"replayed (\d+) log records in ([0-9.]+) s", f.read())
        replay_s = float(m.group(2)) if m else wall
        print(f"# replay after kill -9: {a.replay_rows} rows ({size / 2**20:.0f} MiB of log) in "
              f"{replay_s:.2f} s = {a.replay_rows / replay_s:.0f} rows/s (start to ready {wall:.2f} s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
