#!/usr/bin/env python3
"""tests/fuzz/make-file-seeds.py — (re)write the seed corpora of the file
readers' fuzz targets: corpus/config, corpus/wal and corpus/ckpt.

    /usr/bin/python3 tests/fuzz/make-file-seeds.py BUILDDIR/daemon/isvdd

config: the shipped configs/*.yaml and small files aimed at the loader's
branches (every section, anchors, tags, repeated keys, bad values).  wal
and ckpt: real log segments and checkpoints, written by the isvdd given
(on ipc:// sockets in a temporary directory) for a few small models,
each stored twice: with mode byte 0x01 (the target repairs the CRCs, so
mutations reach the parsers) and 0x00 (read as is).  Needs pyzmq and
msgpack (Debian's python3-zmq, python3-msgpack).
"""
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

CONFIGS = {
    "empty.yaml": "",
    "null-doc.yaml": "~\n",
    "security.yaml": "security:\n  curve: true\n  secret_key_file: /k/server.key\n"
                     "  client_keys_dir: /k/all\n  ingest_keys_dir: /k/in\n  query_keys_dir: /k/q\n",
    "http.yaml": "security:\n  curve: true\n  secret_key_file: /k/s\n  client_keys_dir: /k/a\n"
                 "http:\n  listen: '[::1]:5573'\n  allow_insecure: false\n",
    "limits.yaml": "limits:\n  max_message_bytes: 1024\n  max_pending_pushes: 1\n  handshake_ms: 0\n",
    "half-life.yaml": "model:\n  half_life: 1e-300\n",
    "both-forget.yaml": "model:\n  forget: 0.5\n  half_life: 10\n",
    "anchors.yaml": "model: &m\n  rank: &r 4\nbatching: *m\n",
    "tags.yaml": "model:\n  rank: !!int 4\n",
    "repeat.yaml": "model:\n  rank: 1\n  rank: 2\nmodel:\n  dim: 3\n",
    "nested.yaml": "model:\n  rank: [1, 2]\n  dim: {a: 1}\n",
    "endpoints.yaml": "endpoints:\n  ingest: tcp://a:1\n  query: tcp://a:1\n  publish: udp://x\n",
    "two-docs.yaml": "model:\n  rank: 3\n---\nmodel:\n  rank: 4\n",
    "flow.yaml": "{model: {rank: 3, center: true}, log: {level: debug}}\n",
    "strings.yaml": "storage:\n  dir: \"\\0x\"\nlog:\n  file: '" + "x" * 300 + "'\n",
    "numbers.yaml": "model:\n  dim: 0x10\n  forget: .nan\n  rank: -1\n  extra: 1e3\n",
    "kafka.yaml": "model:\n  dim: 4\nkafka:\n  brokers: b:1\n  topic: t\n  properties:\n"
                  "    a.b: 1\n    &x c: 'd'\n    *x : e\n    f: {g: h}\n    a.b: 2\n    i: ~\n",
    "kafka-empty.yaml": "kafka:\n",
}

MODELS = [   # name, model section, pushes of (rows, dim)
    ("plain", {"dim": 4, "rank": 2, "extra": 1}, [(3, 4), (5, 4)]),
    ("center", {"dim": 3, "rank": 2, "extra": 0, "center": "true"}, [(4, 3), (1, 3)]),
    ("forget", {"dim": 5, "rank": 1, "extra": 2, "forget": 0.9}, [(6, 5)]),
]


def pack(o):
    return msgpack.packb(o, use_bin_type=True)


def run_model(isvdd, tmp, name, model, pushes):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    lines = ["model:"] + [f"  {k}: {v}" for k, v in model.items()]
    lines += ["endpoints:", f"  ingest: ipc://{d}/i", f"  query: ipc://{d}/q", f"  publish: ipc://{d}/p",
              "storage:", f"  dir: {d}/data", "  checkpoint_every_s: 0", "  checkpoint_every_rows: 0"]
    with open(os.path.join(d, "c.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    p = subprocess.Popen([isvdd, "--config", os.path.join(d, "c.yaml")], stderr=subprocess.DEVNULL)
    ctx = zmq.Context()
    q, i = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    for s in (q, i):
        s.linger = 0
        s.rcvtimeo = 20000
    q.connect(f"ipc://{d}/q")
    i.connect(f"ipc://{d}/i")
    try:
        q.send(pack({"op": "ping"}))
        q.recv()
        seeds = {}
        for n, (rows, dim) in enumerate(pushes):
            data = [[((r * 7 + c * 3 + n) % 11) - 5.0 for c in range(dim)] for r in range(rows)]
            i.send(pack({"op": "push", "rows": data, "client": f"seed-{name}", "batch": n + 1}))
            i.recv()
            if n == 0:   # a checkpoint after the first push, the log keeps the rest
                q.send(pack({"op": "checkpoint"}))
                q.recv()
        for f in glob.glob(os.path.join(d, "data", "wal-*.log")):
            seeds["wal"] = open(f, "rb").read()
        for f in glob.glob(os.path.join(d, "data", "checkpoint-*.isvdc")):
            seeds.setdefault("ckpt", []).append(open(f, "rb").read())
    finally:
        q.close()
        i.close()
        ctx.term()
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    for f in glob.glob(os.path.join(d, "data", "checkpoint-*.isvdc")):   # the final one too
        seeds.setdefault("ckpt", []).append(open(f, "rb").read())
    return seeds


def write(kind, name, data):
    os.makedirs(os.path.join(HERE, "corpus", kind), exist_ok=True)
    with open(os.path.join(HERE, "corpus", kind, name), "wb") as f:
        f.write(data)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for name, text in CONFIGS.items():
        write("config", name, text.encode())
    for f in glob.glob(os.path.join(ROOT, "configs", "*.yaml")):
        shutil.copy(f, os.path.join(HERE, "corpus", "config", "shipped-" + os.path.basename(f)))
    tmp = tempfile.mkdtemp(prefix="isvd-seeds-")
    try:
        for name, model, pushes in MODELS:
            seeds = run_model(sys.argv[1], tmp, name, model, pushes)
            if "wal" in seeds:
                write("wal", f"{name}-fix", b"\x01" + seeds["wal"])
                write("wal", f"{name}-raw", b"\x00" + seeds["wal"])
            for n, c in enumerate(sorted(set(seeds.get("ckpt", [])), key=len)):
                write("ckpt", f"{name}-{n}-fix", b"\x01" + c)
                write("ckpt", f"{name}-{n}-raw", b"\x00" + c)
    finally:
        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
