#!/usr/bin/python3
"""bench/kafka.py — Kafka-sourced ingest against ZeroMQ ingest, on the same
rows: how fast isvdd shards fold a topic, with 1 and 2 shards, next to one
isvdd taking the rows as pushes.

For each size (--sizes DIMxRANK) it makes --rows seeded rows (a rank-k signal
plus noise).  ZeroMQ: one isvdd (storage.fsync none and always), the rows
pushed by `isvd push` (the C client) in pushes of --per rows, 16 in flight;
rows/s acknowledged.  Kafka: a fresh mock cluster (isvd-kafka-tool mock: 3
brokers, the topic with --partitions partitions), every row produced first
as msgpack matrices of --per rows, then 1 or 2 shards started; rows/s folded,
from the moment every partition is assigned to the last row (the group's
forming is not counted), read from the shards' info every 50 ms, which they
refresh every kafka.merge_every_ms (100).
Everything runs on this machine: the mock brokers, the shards and the
clients share its cores.  The mock cluster keeps only the newest 5 MB of a
partition, so the default row count keeps under 4 MB a partition (more
partitions, more rows) and every row produced is still there to fold.

Needs the build's isvdd, isvd and isvd-kafka-tool (--build, default build/),
and Debian's python3-zmq, python3-msgpack and python3-numpy; run it with
/usr/bin/python3.  Prints numbers; asserts nothing.
"""
import argparse
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time

import msgpack
import numpy as np
import zmq

GROUP = "{session.timeout.ms: 4500, heartbeat.interval.ms: 300}"


def rows(n, dim, rank, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, rank)) @ rng.standard_normal((rank, dim)) \
        + 1e-3 * rng.standard_normal((n, dim))


class Daemon:
    """isvdd with config sections (dicts) on ipc:// endpoints in root."""

    def __init__(self, exe, root, name, sections):
        self.query = f"ipc://{root}/{name}-q"
        sections["endpoints"] = {"ingest": f"ipc://{root}/{name}-i", "query": self.query,
                                 "publish": f"ipc://{root}/{name}-p"}
        sections.setdefault("storage", {})["dir"] = f"{root}/{name}-data"
        sections.setdefault("log", {})["file"] = f"{root}/{name}.log"
        text = "".join(f"{s}:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items())
                       for s, keys in sections.items())
        path = f"{root}/{name}.yaml"
        with open(path, "w") as f:
            f.write(text)
        self.ingest = sections["endpoints"]["ingest"]
        self.proc = subprocess.Popen([exe, "--config", path])
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.RCVTIMEO, 20000)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.query)
        self.call({"op": "ping"})

    def call(self, body):
        self.sock.send(msgpack.packb(body))
        return msgpack.unpackb(self.sock.recv())

    def stop(self):
        self.sock.close()
        self.ctx.term()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def zmq_ingest(a, x, dim, rank, fsync, root):
    np.save(f"{root}/rows.npy", x)
    d = Daemon(a.isvdd, root, f"zmq-{fsync}",
               {"model": {"dim": dim, "rank": rank, "mode": a.mode},
                "storage": {"fsync": fsync, "checkpoint_every_rows": 0}})
    try:
        t0 = time.monotonic()
        subprocess.run([a.isvd, "push", "--ingest", d.ingest, "--batch", str(a.per),
                        "--in-flight", "16", f"{root}/rows.npy"], check=True,
                       stdout=subprocess.DEVNULL, env={k: v for k, v in os.environ.items()
                                                       if not k.startswith("ISVD_")})
        dt = time.monotonic() - t0
        assert d.call({"op": "info"})["rows_seen"] == len(x)
    finally:
        d.stop()
    return len(x) / dt


def mock(a):
    p = subprocess.Popen([a.tool, "mock", "--topic", f"rows:{a.partitions}",
                          "--topic", "rows.isvd-models:1"], stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([p.stdout], [], [], 20)
    line = p.stdout.readline() if ready else ""
    if not line.startswith("bootstrap "):
        sys.exit(f"bench/kafka.py: the mock cluster did not start: {line!r}")
    return p, line.split()[1]


def kafka_ingest(a, x, dim, rank, shards, root):
    cluster, brokers = mock(a)
    daemons = []
    try:
        blob = bytearray()
        for j, i in enumerate(range(0, len(x), a.per)):
            m = np.ascontiguousarray(x[i:i + a.per], dtype="<f8")
            v = msgpack.packb({"shape": list(m.shape), "dtype": "f64", "data": m.tobytes()})
            blob += struct.pack("<III", j % a.partitions, 0, len(v)) + v
        subprocess.run([a.tool, "produce", "--brokers", brokers, "--topic", "rows"],
                       input=bytes(blob), check=True, stdout=subprocess.DEVNULL)
        for s in range(shards):
            daemons.append(Daemon(a.isvdd, root, f"shard{shards}-{s}", {
                "model": {"dim": dim, "rank": rank, "mode": a.mode},
                "kafka": {"brokers": brokers, "topic": "rows", "merge_every_ms": 100,
                          "image_every_ms": 1000, "properties": GROUP}}))
        t0 = r0 = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            now = time.monotonic()
            infos = [d.call({"op": "info"})["kafka"] for d in daemons]
            got = sum(k["rows"] for k in infos)
            if t0 is None and sum(len(k["partitions"]) for k in infos) == a.partitions:
                t0, r0 = now, got          # every partition assigned: the clock starts
            if t0 is not None and got >= len(x):
                return (got - r0) / (now - t0) if now > t0 else float("nan")
            time.sleep(0.05)
        return float("nan")
    finally:
        for d in daemons:
            d.stop()
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="the build directory (default build)")
    ap.add_argument("--sizes", default="64x8,256x16", help="DIMxRANK,... (default 64x8,256x16)")
    ap.add_argument("--rows", type=int, default=0,
                    help="rows per size (default: as many as keep under 4 MB a partition, "
                         "at most 1,000,000)")
    ap.add_argument("--per", type=int, default=256, help="rows per push and per message (256)")
    ap.add_argument("--partitions", type=int, default=32, help="partitions of the topic (32)")
    ap.add_argument("--mode", default="auto", help="model.mode (auto)")
    a = ap.parse_args()
    a.isvdd = os.path.join(a.build, "daemon", "isvdd")
    a.isvd = os.path.join(a.build, "clients", "c", "isvd")
    a.tool = os.path.join(a.build, "tests", "kafka", "isvd-kafka-tool")
    for exe in (a.isvdd, a.isvd, a.tool):
        if not os.access(exe, os.X_OK):
            sys.exit(f"bench/kafka.py: {exe} is not built")
    print(f"bench/kafka.py: {os.cpu_count()} CPUs; {a.per} rows per push or message; "
          f"{a.partitions} partitions; mode {a.mode}; mock cluster of 3 brokers on this machine")
    print(f"{'dim':>6} {'rank':>5} {'rows':>9}  {'ingest':<28} {'rows/s':>10}")
    for size in a.sizes.split(","):
        dim, rank = (int(v) for v in size.split("x"))
        n = a.rows or min(1_000_000, int(a.partitions * 4e6 / (8 * dim)) // a.per * a.per)
        if n * 8 * dim / a.partitions > 4.5e6:
            print(f"bench/kafka.py: {n} rows are more than the mock cluster keeps of "
                  f"{a.partitions} partitions; the Kafka runs would not see them all")
        x = rows(n, dim, rank)
        for how, run in (("ZeroMQ push, fsync none", lambda r: zmq_ingest(a, x, dim, rank, "none", r)),
                         ("ZeroMQ push, fsync always", lambda r: zmq_ingest(a, x, dim, rank, "always", r)),
                         ("Kafka, 1 shard", lambda r: kafka_ingest(a, x, dim, rank, 1, r)),
                         ("Kafka, 2 shards", lambda r: kafka_ingest(a, x, dim, rank, 2, r))):
            with tempfile.TemporaryDirectory(prefix="isvd-bench-kafka-") as root:
                print(f"{dim:>6} {rank:>5} {n:>9}  {how:<28} {run(root):>10.0f}", flush=True)


if __name__ == "__main__":
    main()
