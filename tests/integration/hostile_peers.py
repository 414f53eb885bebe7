"""hostile_peers — the hostile half of test_security.py's stress test, run as
its own process so that its threads do not compete with the legitimate
client for the test's interpreter lock:

    python3 hostile_peers.py SECONDS SEED zmq|raw N ENDPOINT_OR_PORT...

starts N threads for SECONDS, each a hostile peer of the kind given, on
the endpoints (zmq: tcp://127.0.0.1:PORT) or ports (raw) round-robin.  It
prints "started" once every thread runs, and at the end one JSON line:
{"sent": [messages each thread sent (raw: connections it wrote to)],
"errors": [what any thread raised]}.  Exits 0 when no thread raised and
every thread finished, 1 otherwise; the caller judges the counts.  Only
127.0.0.1 is ever contacted.
"""
import json
import random
import socket
import struct
import sys
import threading

import msgpack
import numpy as np
import zmq

MAX_MSG = 1 << 20


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def mat(a):
    a = np.ascontiguousarray(np.atleast_2d(np.asarray(a, dtype="<f8")))
    return {"shape": [a.shape[0], a.shape[1]], "dtype": "f64", "data": a.tobytes()}


def zmtp_greeting():
    """A ZMTP 3.0 NULL greeting and a READY for a DEALER (RFC 23)."""
    greeting = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31
    prop = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    body = b"\x05READY" + prop
    return greeting + b"\x04" + bytes([len(body)]) + body


def hostile_raw(port, stop, rng, tally):
    """Raw TCP: garbage, frames declaring huge sizes, truncated frames;
    tally[0] counts the connections written to."""
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            kind = rng.randrange(4)
            if kind == 0:
                s.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))))
            elif kind == 1:      # a message frame declaring 2^40 bytes
                s.sendall(zmtp_greeting() + b"\x02" + struct.pack(">Q", 1 << 40) + b"x" * 100)
            elif kind == 2:      # truncated: declares 500 kB, sends 1 kB, then stalls briefly
                s.sendall(zmtp_greeting() + b"\x02" + struct.pack(">Q", 500000) + b"y" * 1000)
                stop.wait(0.2)
            else:                # a short frame of malformed msgpack
                junk = b"\xdd\xff\xff\xff\xff" + b"\x00" * 20
                s.sendall(zmtp_greeting() + b"\x00" + bytes([len(junk)]) + junk)
            s.close()
            tally[0] += 1
        except OSError:       # the daemon hung up on us: expected
            stop.wait(0.01)


def hostile_zmq(ctx, endpoint, stop, rng, tally):
    """A DEALER that never reads replies and sends oversized, slightly
    oversized, truncated and malformed requests, and too many frames;
    tally[0] counts the messages zmq took."""
    big = b"\x92" + b"\0" * (2 * MAX_MSG)                      # far over: zmq drops the peer
    over = pack({"op": "push", "rows": {"shape": [1, 8], "dtype": "f64",
                                        "data": b"\0" * (MAX_MSG + 1000)}})
    good = pack({"op": "push", "rows": mat(np.ones((2, 8))), "client": "h", "batch": 1})
    bodies = [
        over,
        good[:len(good) // 2],                                       # truncated msgpack
        b"\xc1\xc1\xc1",                                             # never-used msgpack bytes
        pack({"op": "push", "rows": {"shape": [1 << 30, 1 << 30], "dtype": "f64", "data": b""}}),
        pack({"op": "push", "rows": mat(np.ones((2, 9)))}),          # wrong dimension
        pack({"op": "push", "rows": [[float("nan")] * 8]}),
        b"\xdf\xff\xff\xff\xff",                                     # map32 claiming 4G pairs
        pack([1, 2, 3]),
    ]
    s = None
    while not stop.is_set():
        if s is None or rng.random() < 0.02:
            if s is not None:
                s.close(0)
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 50)
            s.connect(endpoint)
        try:
            r = rng.random()
            if r < 0.05:
                s.send(big, zmq.DONTWAIT)
            elif r < 0.1:
                s.send_multipart([b"x"] * 12, zmq.DONTWAIT)
            else:
                s.send(rng.choice(bodies), zmq.DONTWAIT)
            tally[0] += 1
        except zmq.Again:
            stop.wait(0.001)
    if s is not None:
        s.close(0)


def main():
    seconds, seed, kind, n = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    targets = sys.argv[5:]
    stop = threading.Event()
    ctx = zmq.Context()
    threads, tallies, errors = [], [], []

    def run(fn, *args):
        try:
            fn(*args)
        except Exception as e:      # reported, and the exit status says so
            errors.append(f"{fn.__name__}: {e!r}")

    for h in range(n):
        rng = random.Random(seed * 1000 + h)
        t = targets[h % len(targets)]
        tally = [0]
        if kind == "raw":
            th = threading.Thread(target=run, args=(hostile_raw, int(t), stop, rng, tally))
        else:
            th = threading.Thread(target=run, args=(hostile_zmq, ctx, t, stop, rng, tally))
        th.daemon = True
        th.start()
        threads.append(th)
        tallies.append(tally)
    print("started", flush=True)
    stop.wait(seconds)
    stop.set()
    for th in threads:
        th.join(30)
    hung = sum(th.is_alive() for th in threads)
    if hung:
        errors.append(f"{hung} threads did not finish")
    else:
        ctx.term()
    print(json.dumps({"sent": [t[0] for t in tallies], "errors": errors}), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
