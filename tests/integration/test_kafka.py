"""isvdd on Kafka, against librdkafka's in-process mock cluster (isvd-kafka-tool
mock: 3 brokers, the rows topic with 4 partitions, its changelog and a
dead-letter topic; no broker to install).  Two shards and a merger; a
producer writes seeded rows in each kafka.format, undecodable messages among
them; the merger's total must reach exactly the rows produced and its
factors equal LAPACK's SVD of every row (exact mode), or stay within twice
a single daemon's error (truncated).  Then the hard cases: a shard killed
with SIGKILL mid-stream (its partitions move, nothing lost or doubled), a
third shard joining mid-stream (a rebalance), a merger restarted
mid-stream (it rebuilds the same model as one that ran throughout).

Every wait is bounded.  Daemons listen on ipc:// endpoints in the test's
directory; the mock cluster on 127.0.0.1."""
import json
import os
import select
import signal
import struct
import subprocess
import time

import msgpack
import numpy as np
import pytest

from isvdd_harness import Daemon, assert_factors_match, run_isvdd

TOOL = os.environ.get("ISVD_KAFKA_TOOL", "")
CLI = os.environ.get("ISVD_CLI", "")
pytestmark = pytest.mark.skipif(not TOOL or not os.access(TOOL, os.X_OK),
                                reason="ISVD_KAFKA_TOOL is not set (meson test sets it when "
                                       "isvdd is built with Kafka)")

PARTS = 4
DIM = 8
ROWS = 100_000
PER = 100                # rows per message
WAIT_S = 90              # the longest wait for the merger to catch up
EXACT = {"dim": DIM, "rank": DIM, "extra": 0, "mode": "exact", "center": True}
# A fast group: a dead shard's partitions move after ~11 s.  Not shorter: the
# mock cluster holds a first JoinGroup for 3 s (group.initial.rebalance.delay)
# and drops a member whose session times out meanwhile.
GROUP = "{session.timeout.ms: 6000, heartbeat.interval.ms: 300}"


# ----------------------------------------------------------------- cluster

class Cluster:
    """isvd-kafka-tool mock: the rows topic (PARTS partitions), its changelog
    (one partition) and the dead-letter topic."""

    def __init__(self):
        self.proc = subprocess.Popen([TOOL, "mock", "--topic", f"rows:{PARTS}",
                                      "--topic", "rows.isvd-models:1", "--topic", "dead:1"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else ""
        assert line.startswith("bootstrap "), (line, self.proc.poll())
        self.brokers = line.split()[1]
        self.produced = 0          # rows in decodable messages
        self.bad = 0               # undecodable messages

    def produce(self, messages, topic="rows"):
        """messages: [(partition, bytes)], produced in order with acks=all."""
        blob = b"".join(struct.pack("<III", p, 0, len(v)) + v for p, v in messages)
        r = subprocess.run([TOOL, "produce", "--brokers", self.brokers, "--topic", topic],
                           input=blob, capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        assert r.stdout.decode().strip() == f"produced {len(messages)}", r.stdout

    def consume(self, topic):
        r = subprocess.run([TOOL, "consume", "--brokers", self.brokers, "--topic", topic],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.stop()


def daemon(tmp_path, cluster, name, role="shard", model=EXACT, fmt="msgpack", **kafka):
    sections = {"kafka": {"role": role, "brokers": cluster.brokers, "topic": "rows",
                          "format": fmt, "dead_letter_topic": "dead", "image_every_ms": 200,
                          "merge_every_ms": 200, "properties": GROUP, **kafka}}
    return Daemon(tmp_path, model=model, name=name, extra_sections=sections)


def kafka_info(d):
    return d.info()["kafka"]


def wait_for(what, cond, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.2)


def wait_total(merger, rows, timeout=WAIT_S):
    """Until the merger's model holds exactly rows (it may pass through fewer,
    never more: more would be a row folded twice)."""
    def done():
        k = kafka_info(merger)
        assert k["rows"] <= rows, f"the merger holds {k['rows']} rows, more than the {rows} produced"
        return k["rows"] == rows and merger.info()["rows_seen"] == rows and k
    return wait_for(f"the merger to hold {rows} rows", done, timeout)


# ------------------------------------------------------------------- data

def seeded_rows(seed, m, n=DIM, rank=5):
    rng = np.random.default_rng(seed)
    return 2.0 + rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n)) \
        + 0.05 * rng.standard_normal((m, n))


def encode(x, fmt, i):
    """Rows x as one message in fmt; message i picks among a format's forms."""
    if fmt == "msgpack":
        if i % 2:
            return msgpack.packb(x.tolist())                       # form (a): rows
        a = np.ascontiguousarray(x, dtype="<f8")
        return msgpack.packb({"shape": list(a.shape), "dtype": "f64", "data": a.tobytes()})
    if fmt == "json":
        if len(x) == 1 and i % 2:
            return json.dumps([float(v) for v in x[0]]).encode()   # one row: a flat array
        return json.dumps(x.tolist()).encode()
    if fmt == "csv":
        sep = ", " if i % 2 else ","
        return ("\n".join(sep.join(repr(float(v)) for v in r) for r in x) + "\n").encode()
    assert fmt == "f64"
    return np.ascontiguousarray(x, dtype="<f8").tobytes()


# one message of each kind a shard must skip, per format
UNDECODABLE = {
    "msgpack": [b"\xc1 not msgpack", msgpack.packb([[1.0] * (DIM - 1)]),
                msgpack.packb({"shape": [1, DIM], "dtype": "f64",
                               "data": np.array([np.inf] * DIM, "<f8").tobytes()})],
    "json": [b"[1, 2,", json.dumps([[1.0] * (DIM + 1)]).encode(), b'[["a"' + b', 1' * (DIM - 1) + b"]]"],
    "csv": [b"1,2,x" + b",1" * (DIM - 3), b"1" + b",1" * DIM, b"inf" + b",1" * (DIM - 1)],
    "f64": [b"\x00" * 12, np.zeros(DIM - 1, "<f8").tobytes(), np.full(DIM, np.inf, "<f8").tobytes()],
}


def messages(x, fmt, start=0, per=PER):
    """x in messages of per rows, message i (numbered from start) to partition i % PARTS."""
    return [((start + j) % PARTS, encode(x[r:r + per], fmt, start + j))
            for j, r in enumerate(range(0, len(x), per))]


# ------------------------------------------------------------------ tests

def assert_exact(merger, x):
    assert_factors_match(merger.factors(), x, center=True, tol=1e-10)


@pytest.mark.parametrize("fmt", ["msgpack", "json", "csv", "f64"])
def test_two_shards_and_a_merger_fold_every_row_once(tmp_path, cluster, fmt):
    x = seeded_rows({"msgpack": 1, "json": 2, "csv": 3, "f64": 4}[fmt], ROWS)
    msgs = messages(x, fmt)
    # undecodable messages among the rows, one in each of the first partitions
    bad = UNDECODABLE[fmt]
    for j, b in enumerate(bad):
        msgs.insert(10 * j + 5, (j % PARTS, b))
    with daemon(tmp_path, cluster, "s1", fmt=fmt) as s1, \
            daemon(tmp_path, cluster, "s2", fmt=fmt) as s2, \
            daemon(tmp_path, cluster, "m", role="merge", fmt=fmt) as m:
        cluster.produce(msgs)
        k = wait_total(m, ROWS)
        assert_exact(m, x)

        assert k["role"] == "merge" and len(k["partitions"]) == PARTS, k
        assert sum(p["undecodable"] for p in k["partitions"]) == len(bad), k
        # a shard learns that an image or a dead letter is in only from its
        # delivery report, which may come after the merger has read the image
        def acknowledged():
            ks = [kafka_info(s) for s in (s1, s2)]
            return sum(s["dead_lettered"] for s in ks) == len(bad) and \
                all(p["image_offset"] == p["folded_offset"] for s in ks for p in s["partitions"])
        wait_for("every image and dead letter to be acknowledged", acknowledged)
        # each shard answers for its own partitions; together they are all
        ks = [kafka_info(s) for s in (s1, s2)]
        held = sorted(p["partition"] for s in ks for p in s["partitions"])
        assert held == list(range(PARTS)), ks
        for s, d in zip(ks, (s1, s2)):
            assert s["role"] == "shard" and "not bound" in s["ingest"], s
            assert d.info()["rows_seen"] == s["rows"] == sum(p["rows"] for p in s["partitions"])
            for p in s["partitions"]:
                assert p["lag"] == 0 and p["image_offset"] == p["folded_offset"], p
        dead = cluster.consume("dead")
        assert sorted(bytes.fromhex(d["value"]) for d in dead) == sorted(bad), dead
        assert sum(s["dead_lettered"] for s in ks) == len(bad), ks
        for d in dead:
            h = d["headers"]
            assert h["isvd-topic"] == "rows" and h["isvd-reason"], h
            assert 0 <= int(h["isvd-partition"]) < PARTS and int(h["isvd-offset"]) >= 0, h
        assert "message skipped" in s1.log() + s2.log()
        assert "is not bound: this shard folds the rows of Kafka topic rows" in s1.log()

        # a shard's checkpoint publishes its images now; a merger has none to write
        r = s1.call(s1.q, {"op": "checkpoint"})
        assert r["ok"] and r["seq"] == ks[0]["rows"], r
        r = m.call(m.q, {"op": "checkpoint"})
        assert not r["ok"] and r["error"]["code"] == "UNAVAILABLE", r

        if fmt == "msgpack" and CLI:
            # an image is a checkpoint file: `isvd inspect` reads it
            images = cluster.consume("rows.isvd-models")
            img = tmp_path / "image.isvdc"
            img.write_bytes(bytes.fromhex(images[-1]["value"]))
            env = {k: v for k, v in os.environ.items() if not k.startswith("ISVD_")}
            r = subprocess.run([CLI, "inspect", str(img)], capture_output=True, text=True,
                               timeout=60, env=env)
            assert r.returncode == 0 and "isvdd checkpoint" in r.stdout, (r.stdout, r.stderr)


def single_daemon_factors(tmp_path, x, model):
    """The factors one isvdd fed every row over ZeroMQ ends with."""
    with Daemon(tmp_path, model=model, name="single") as d:
        for i in range(0, len(x), 1000):
            assert d.push(x[i:i + 1000])["ok"]
        return d.factors()


def truncation_error(factors, x):
    """test_accuracy's measure of a truncated model: how far the projection
    error of its k components is above the optimum (Eckart–Young), relative."""
    sigma, vt, mean, _ = factors
    c = x - x.mean(axis=0)
    s = np.linalg.svd(c, compute_uv=False)
    opt = np.sqrt(np.sum(s[len(sigma):] ** 2))
    return np.linalg.norm(c - (c @ vt.T) @ vt) / opt - 1


def test_truncated_partitions_merge_within_twice_the_single_daemon_error(tmp_path, cluster):
    n, k = 32, 4
    model = {"dim": n, "rank": k, "extra": 2, "mode": "truncated", "center": True}
    rng = np.random.default_rng(7)
    # a spectrum that decays: truncation to k + extra loses something
    x = (rng.standard_normal((40_000, n)) * (0.7 ** np.arange(n))) @ \
        np.linalg.qr(rng.standard_normal((n, n)))[0]
    single = truncation_error(single_daemon_factors(tmp_path, x, model), x)
    with daemon(tmp_path, cluster, "s1", model=model) as s1, \
            daemon(tmp_path, cluster, "s2", model=model) as s2, \
            daemon(tmp_path, cluster, "m", role="merge", model=model) as m:
        cluster.produce(messages(x, "msgpack"))
        wait_total(m, len(x))
        merged = truncation_error(m.factors(), x)
    print(f"truncated: projection error over the optimum, merged {merged:.2e}, single {single:.2e}")
    assert 0 < single and -1e-12 <= merged <= 2 * single, (merged, single)


def stream(cluster, x, chunks, at=None, then=None):
    """Produces x in chunks; after chunk `at` (0-based) calls then()."""
    parts = np.array_split(np.arange(len(x)), chunks)
    start = 0
    for c, idx in enumerate(parts):
        msgs = messages(x[idx], "msgpack", start)
        cluster.produce(msgs)
        start += len(msgs)
        if c == at:
            then()


def test_a_shard_killed_mid_stream_loses_and_doubles_nothing(tmp_path, cluster):
    x = seeded_rows(11, ROWS)
    with daemon(tmp_path, cluster, "s1") as s1, daemon(tmp_path, cluster, "s2") as s2, \
            daemon(tmp_path, cluster, "m", role="merge") as m:
        def kill_one():
            # once both shards have folded rows, one dies without a word
            wait_for("both shards to fold rows",
                     lambda: all(kafka_info(s)["rows"] > 0 for s in (s1, s2)))
            s1.kill()
        stream(cluster, x, 10, at=3, then=kill_one)
        k = wait_total(m, ROWS)
        assert_exact(m, x)
        # the survivor holds every partition now
        held = sorted(p["partition"] for p in kafka_info(s2)["partitions"])
        assert held == list(range(PARTS)), k
        assert "assigned rows [" in s2.log()


def test_a_third_shard_joining_mid_stream_takes_partitions(tmp_path, cluster):
    x = seeded_rows(12, ROWS)
    joined = []
    with daemon(tmp_path, cluster, "s1") as s1, daemon(tmp_path, cluster, "s2") as s2, \
            daemon(tmp_path, cluster, "m", role="merge") as m:
        def join():
            wait_for("the shards to fold rows", lambda: kafka_info(m)["rows"] > 0)
            joined.append(daemon(tmp_path, cluster, "s3"))
        try:
            stream(cluster, x, 10, at=3, then=join)
            wait_total(m, ROWS)
            assert_exact(m, x)
            s3 = joined[0]
            wait_for("the third shard to hold partitions",
                     lambda: kafka_info(s3)["partitions"])
            held = sorted(p["partition"] for d in (s1, s2, s3) for p in kafka_info(d)["partitions"])
            assert held == list(range(PARTS)), held
            # a rebalance publishes the images of the partitions let go
            assert "released rows [" in s1.log() + s2.log()
        finally:
            for d in joined:
                d.stop()


def test_a_merger_restarted_mid_stream_rebuilds_the_same_model(tmp_path, cluster):
    x = seeded_rows(13, ROWS)
    with daemon(tmp_path, cluster, "s1") as s1, daemon(tmp_path, cluster, "s2") as s2, \
            daemon(tmp_path, cluster, "m1", role="merge") as m1:
        restarted = []   # every merger started here, stopped in the end whatever happens

        def restart():
            wait_for("the merger to see rows", lambda: kafka_info(m1)["rows"] > 0)
            restarted.append(daemon(tmp_path, cluster, "m2", role="merge"))
            wait_for("the second merger to see rows", lambda: kafka_info(restarted[0])["rows"] > 0)
            restarted.pop().kill()                      # nothing of its own to lose
            restarted.append(daemon(tmp_path, cluster, "m2", role="merge"))
        try:
            stream(cluster, x, 10, at=4, then=restart)
            m2 = restarted[0]
            wait_total(m1, ROWS)
            wait_total(m2, ROWS)
            assert_exact(m2, x)
            # the same images merged in the same order: the same model, bit for bit
            a, b = m1.factors(), m2.factors()
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), (a[0], b[0])
            k1, k2 = kafka_info(m1), kafka_info(m2)
            assert [p["folded_offset"] for p in k1["partitions"]] == \
                [p["folded_offset"] for p in k2["partitions"]]
        finally:
            for d in restarted:
                d.stop()


def test_seed_is_refused_with_a_kafka_section(tmp_path):
    cfg = tmp_path / "k.yaml"
    cfg.write_text(f"model:\n  dim: 4\nendpoints:\n  query: ipc://{tmp_path}/q\n"
                   f"  publish: ipc://{tmp_path}/p\n  ingest: ipc://{tmp_path}/i\n"
                   "kafka:\n  brokers: 127.0.0.1:1\n  topic: rows\n")
    r = run_isvdd("--config", str(cfg), "--seed", str(tmp_path / "nothing.img"))
    assert r.returncode == 1 and "starts from the images on its changelog topic" in r.stderr, \
        r.stderr
