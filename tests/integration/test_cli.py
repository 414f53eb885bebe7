"""The `isvd` command-line tool (clients/c, ISVD_CLI) against the real isvdd:
every subcommand and option, input formats and their errors, and values
checked against numpy's SVD of the rows pushed (model rank >= dim, so the
model is exact).  Every wait is bounded."""
import json
import os
import pty
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from isvdd_harness import Daemon, sign_normalise

CLI = os.environ.get("ISVD_CLI", "")
pytestmark = pytest.mark.skipif(not CLI or not os.access(CLI, os.X_OK),
                                reason="ISVD_CLI is not set (meson test sets it)")
COMMANDS = ["push", "info", "project", "reconstruct", "factors", "subscribe", "checkpoint", "ping"]


def run(d, *args, input=None, env_endpoints=False, timeout=60, extra_env=None):
    """Runs isvd; endpoints as flags (default) or through the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISVD_") or k in ("ISVD_CLI",)}
    argv = [CLI, *args]
    if d is not None:
        if env_endpoints:
            env.update(ISVD_INGEST=d.ingest, ISVD_QUERY=d.query, ISVD_PUBLISH=d.publish)
        elif args and not args[0].startswith("-"):
            argv += ["--ingest", d.ingest, "--query", d.query, "--publish", d.publish]
    env.update(extra_env or {})
    return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=env)


def ok(p):
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p


def info(d):
    return d.info()


def svd_of(x, center=False):
    x = np.asarray(x, dtype=float)
    mu = x.mean(axis=0) if center else np.zeros(x.shape[1])
    _, s, vt = np.linalg.svd(x - mu, full_matrices=False)
    return s, sign_normalise(vt), mu


def write_csv(path, x, header=None, sep=","):
    with open(path, "w") as f:
        if header:
            f.write(sep.join(header) + "\n")
        for row in x:
            f.write(sep.join(repr(float(v)) for v in row) + "\n")


@pytest.fixture
def rng():
    return np.random.default_rng(11)


# ------------------------------------------------------------------- help

def test_help_version_and_usage_errors():
    p = ok(run(None, "--help"))
    for c in COMMANDS:
        assert c in p.stdout
    assert "--ingest" in p.stdout and "ISVD_QUERY" in p.stdout
    assert re.match(r"isvd \d+\.\d+\.\d+", ok(run(None, "--version")).stdout)
    for c in COMMANDS:
        h = ok(run(None, c, "--help"))
        assert h.stdout.startswith(f"usage: isvd {c}"), h.stdout
        assert "--timeout" in h.stdout and "--retries" in h.stdout
    assert run(None).returncode == 2
    p = run(None, "frobnicate")
    assert p.returncode == 2 and "unknown command" in p.stderr
    assert run(None, "info", "--bogus").returncode == 2
    p = run(None, "info", "--dim", "3")
    assert p.returncode == 2 and "does not apply" in p.stderr
    assert run(None, "push").returncode == 2                       # no FILE
    assert run(None, "push", "--format", "xml", "x").returncode == 2
    assert run(None, "project", "--space", "v", "x").returncode == 2
    assert run(None, "factors", "--format", "npy").returncode == 2  # npy needs -o
    assert run(None, "subscribe", "gossip").returncode == 2
    assert run(None, "ping", "--timeout", "-1").returncode == 2
    assert run(None, "ping", "--retries", "x").returncode == 2


# ------------------------------------------------------------------- push

def test_push_text_formats_and_stdin(tmp_path, rng):
    dim = 4
    blocks = [rng.standard_normal((n, dim)) for n in (23, 17, 11, 9, 5)]
    with Daemon(tmp_path, model={"dim": dim, "rank": 8}) as d:
        f1 = tmp_path / "with_header.csv"
        write_csv(f1, blocks[0], header=["a", "b", "c", "d"])
        p = ok(run(d, "push", str(f1), "--batch", "5"))
        assert p.stdout.startswith("pushed 23 rows in 5 batches (0 duplicates), seq 23"), p.stdout
        assert p.stderr == ""                                   # not a terminal: no progress bar
        f2 = tmp_path / "no_header.csv"
        write_csv(f2, blocks[1])
        ok(run(d, "push", str(f2), "-b", "100", "--in-flight", "1"))
        f3 = tmp_path / "rows.tsv"
        write_csv(f3, blocks[2], header=["a", "b", "c", "d"], sep="\t")
        ok(run(d, "push", "--format", "tsv", str(f3)))
        text = "# a comment\n\n" + "\n".join("  ".join(repr(float(v)) for v in r) + "  " for r in blocks[3])
        ok(run(d, "push", "-", input=text + "\n"))               # whitespace text on stdin
        f5 = tmp_path / "quoted.csv"
        f5.write_text('"x","y, z","w","v"\n' + "\n".join(",".join(f'"{v!r}"' for v in r) for r in blocks[4]))
        ok(run(d, "push", "-f", "csv", "--client", "cli-test", str(f5)))
        assert info(d)["rows_seen"] == 65
        s, _, _, _ = d.factors()
        assert np.allclose(s, svd_of(np.vstack(blocks))[0], rtol=1e-10)
        assert d.stop() == 0


def test_push_raw_f64_and_f32(tmp_path, rng):
    dim = 3
    x64 = rng.standard_normal((40, dim))
    x32 = rng.standard_normal((25, dim)).astype("<f4")
    with Daemon(tmp_path, model={"dim": dim, "rank": 8}) as d:
        (tmp_path / "x.f64").write_bytes(x64.astype("<f8").tobytes())
        (tmp_path / "x.f32").write_bytes(x32.tobytes())
        p = ok(run(d, "push", "--format", "f64", "--dim", "3", "--batch", "16", str(tmp_path / "x.f64")))
        assert "pushed 40 rows in 3 batches" in p.stdout
        ok(run(d, "push", "-f", "f32", "-d", "3", str(tmp_path / "x.f32")))
        assert info(d)["rows_seen"] == 65
        s, _, _, _ = d.factors()
        assert np.allclose(s, svd_of(np.vstack([x64, x32.astype(float)]))[0], rtol=1e-10)
        # a truncated row, a missing --dim
        (tmp_path / "bad.f64").write_bytes(x64[:2].astype("<f8").tobytes() + b"\0" * 12)
        p = run(d, "push", "-f", "f64", "-d", "3", str(tmp_path / "bad.f64"))
        assert p.returncode == 1 and "bad.f64: row 3: the input ends 12 bytes into a row of 24 bytes" in p.stderr and "--dim" in p.stderr, p.stderr
        p = run(d, "push", "-f", "f32", str(tmp_path / "x.f32"))
        assert p.returncode == 1 and "needs --dim" in p.stderr
        assert d.stop() == 0


def test_npy_input(tmp_path, rng):
    """.npy files (issue 21): detected by their magic (files and pipes) or
    --format npy; float64, float32, integers, either byte order, C and
    Fortran order, shape (N, M) and (M,); NaN a missing value."""
    dim = 4
    x = rng.standard_normal((60, dim)) * [3, 2, 1, 0.5] + 1.0
    y = rng.standard_normal((25, dim))
    z = rng.integers(-50, 50, size=(30, dim)).astype(np.int32)
    w = rng.standard_normal((10, dim)).astype(">f4")           # big-endian float32
    u = rng.integers(0, 255, size=(5, dim)).astype(np.uint8)
    with Daemon(tmp_path, model={"dim": dim, "rank": 8, "center": True}) as d:
        np.save(tmp_path / "x.npy", x)
        p = ok(run(d, "push", "--batch", "16", str(tmp_path / "x.npy")))
        assert p.stdout.startswith("pushed 60 rows in 4 batches"), p.stdout
        np.save(tmp_path / "y.npy", np.asfortranarray(y))
        assert np.load(tmp_path / "y.npy").flags.f_contiguous
        ok(run(d, "push", "-b", "7", str(tmp_path / "y.npy")))
        np.save(tmp_path / "z.npy", z)
        p = subprocess.run([CLI, "push", "-", "--ingest", d.ingest, "--query", d.query],
                           input=(tmp_path / "z.npy").read_bytes(), capture_output=True, timeout=60)
        assert p.returncode == 0 and p.stdout.startswith(b"pushed 30 rows"), (p.stdout, p.stderr)
        np.save(tmp_path / "w.npy", w)
        ok(run(d, "push", "--format", "npy", "--dim", str(dim), str(tmp_path / "w.npy")))
        np.save(tmp_path / "u.npy", u)
        ok(run(d, "push", str(tmp_path / "u.npy")))
        assert info(d)["rows_seen"] == 130
        s, vt, _, _ = d.factors()
        all_rows = np.vstack([x, y, z.astype(float), w.astype(float), u.astype(float)])
        s_ref, vt_ref, mu = svd_of(all_rows, center=True)
        assert np.allclose(s, s_ref, rtol=1e-10)

        # project / reconstruct: a gap (NaN) in an .npy is a missing value, as an empty CSV field
        q = y[:6].copy()
        q[1, 2] = np.nan
        np.save(tmp_path / "q.npy", q)
        with open(tmp_path / "q.csv", "w") as f:
            for row in q:
                f.write(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n")
        a = ok(run(d, "project", str(tmp_path / "q.npy"))).stdout
        b = ok(run(d, "project", str(tmp_path / "q.csv"))).stdout
        assert a == b and "observed" in a.splitlines()[0]
        a = ok(run(d, "reconstruct", "--fill", str(tmp_path / "q.npy"))).stdout
        b = ok(run(d, "reconstruct", "--fill", str(tmp_path / "q.csv"))).stdout
        assert a == b
        np.save(tmp_path / "one.npy", y[0])                      # shape (4,): one row
        got = np.loadtxt(ok(run(d, "project", str(tmp_path / "one.npy"))).stdout.splitlines()[1:],
                         delimiter=",", ndmin=2)
        assert got.shape == (1, dim + 1)
        assert np.allclose(np.abs(got[0, :dim]), np.abs((y[0] - mu) @ vt_ref.T), atol=1e-8)

        # refusals name the file and what is wrong
        np.save(tmp_path / "c.npy", y.astype(complex))
        np.save(tmp_path / "t.npy", np.zeros((2, 2, 2)))
        (tmp_path / "cut.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:-12])
        for args, msg in [
            (["c.npy"], "c.npy: .npy dtype '<c16' is not supported (float64, float32 or integers)"),
            (["t.npy"], "t.npy: the .npy array has more than 2 dimensions"),
            (["cut.npy"], "cut.npy: the .npy data ends in row 60 of 60"),
            (["--dim", "3", "x.npy"], "x.npy: the .npy array has rows of 4 values; --dim is 3"),
            (["--format", "npy", "q.csv"], "q.csv: not a .npy file"),
        ]:
            p = run(d, "push", *[str(tmp_path / a) if a.endswith((".npy", ".csv")) else a
                                 for a in args])
            assert p.returncode == 1 and msg in p.stderr, (args, p.stderr)
        p = run(d, "push", "--format", "npz", str(tmp_path / "x.npy"))
        assert p.returncode == 2 and "f64, f32 or npy" in p.stderr
        assert info(d)["rows_seen"] == 130    # the cut file failed inside its first batch, unsent
        assert d.stop() == 0


def wait_rows(d, want, proc, timeout=30.0):
    """Waits (bounded) until the daemon holds `want` rows; proc must still run meanwhile."""
    deadline = time.monotonic() + timeout
    while info(d)["rows_seen"] != want:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"rows_seen {info(d)['rows_seen']}, want {want}"
        time.sleep(0.02)


def test_push_follow_sends_lines_as_they_arrive(tmp_path, rng):
    """push --follow (issue 21): `tail -F FILE | isvd push --follow -` pushes
    rows appended to FILE while it runs, a batch once --linger-ms has passed
    since its first row (or once it holds --batch rows), and ends at end of
    input or on SIGTERM, sending what it holds."""
    dim = 3
    x = rng.standard_normal((21, dim))
    with Daemon(tmp_path, model={"dim": dim, "rank": 4}) as d:
        f = tmp_path / "sensor.csv"
        with open(f, "w") as out:
            out.write("a,b,c\n")
            for row in x[:5]:
                out.write(",".join(repr(float(v)) for v in row) + "\n")
        tail = subprocess.Popen(["tail", "-n", "+1", "-F", str(f)], stdout=subprocess.PIPE)
        p = subprocess.Popen([CLI, "push", "--follow", "--linger-ms", "50", "-",
                              "--ingest", d.ingest, "--query", d.query],
                             stdin=tail.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        tail.stdout.close()
        try:
            wait_rows(d, 5, p)                     # the file's rows, pushed with no end of input
            for i in range(5, 12):                 # appended one at a time while it follows
                with open(f, "a") as out:
                    out.write(",".join(repr(float(v)) for v in x[i]) + "\n")
                wait_rows(d, i + 1, p)
        finally:
            tail.terminate()
            tail.wait(timeout=10)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert out.startswith("pushed 12 rows in "), out
        s, _, _, _ = d.factors()
        assert np.allclose(s, svd_of(x[:12])[0][:len(s)], rtol=1e-10)

        # --batch sends full batches at once; SIGTERM sends the one held
        p = subprocess.Popen([CLI, "push", "--follow", "--batch", "4", "--linger-ms", "3600000",
                              "-", "--ingest", d.ingest, "--query", d.query],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        p.stdin.write("".join(",".join(repr(float(v)) for v in row) + "\n" for row in x[12:21]))
        p.stdin.flush()
        wait_rows(d, 20, p)                        # two batches of 4; the 9th row waits
        time.sleep(0.2)
        assert info(d)["rows_seen"] == 20 and p.poll() is None
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        p.stdin.close()
        assert p.returncode == 0, err
        assert out.startswith("pushed 9 rows in 3 batches") and "stopped by a signal" in out, out
        assert info(d)["rows_seen"] == 21

        # a bad line stops it with the line number; the rows before it were pushed
        p = run(d, "push", "--follow", "--linger-ms", "0", "-", input="1,2,3\n4,x,6\n")
        assert p.returncode == 1, p.stderr
        assert "<stdin>:2: column 2: cannot parse 'x' as a number" in p.stderr
        assert "1 rows before it were pushed" in p.stderr
        assert info(d)["rows_seen"] == 22
        for args in (["--follow", str(f)], ["--linger-ms", "5", str(f)],
                     ["--follow", "--format", "npy", "-"]):
            assert run(d, "push", *args).returncode == 2, args
        # a batch the daemon refuses is named by its first line (after the header)
        p = run(d, "push", "--follow", "-", input="a,b,c,d\n\n1,2,3,4\n5,6,7,8\n")
        assert p.returncode == 1, p.stderr
        assert "<stdin>:3: batch starting here: DIM_MISMATCH" in p.stderr, p.stderr
        assert info(d)["rows_seen"] == 22
        assert d.stop() == 0


def test_push_parse_errors_name_file_and_line(tmp_path):
    with Daemon(tmp_path, model={"dim": 3, "rank": 4}) as d:
        bad = tmp_path / "bad.csv"
        bad.write_text("a,b,c\n1,2,3\n4,5,6\n7,x8,9\n10,11,12\n")
        p = run(d, "push", str(bad), "--batch", "1")
        assert p.returncode == 1
        assert f"{bad}:4: column 2: cannot parse 'x8' as a number" in p.stderr, p.stderr
        ragged = tmp_path / "ragged.txt"
        ragged.write_text("1 2 3\n4 5 6\n\n7 8\n")
        p = run(d, "push", str(ragged))
        assert p.returncode == 1 and f"{ragged}:4: row has 2 values; expected 3 (as on line 1)" in p.stderr
        p = run(d, "push", "--dim", "4", str(ragged))
        assert p.returncode == 1 and f"{ragged}:1: row has 3 values; --dim is 4" in p.stderr
        p = run(d, "push", str(tmp_path / "missing.csv"))
        assert p.returncode == 1 and "No such file" in p.stderr
        # the daemon's refusal: rows of the wrong length for the model
        wide = tmp_path / "wide.csv"
        wide.write_text("1,2,3,4\n")
        p = run(d, "push", str(wide))
        assert p.returncode == 1 and "DIM_MISMATCH" in p.stderr and f"{wide}:1" in p.stderr, p.stderr
        rows_seen = info(d)["rows_seen"]
        assert rows_seen == 2                     # bad.csv's first two batches of one row each
        assert d.stop() == 0


def test_push_progress_bar_on_a_terminal(tmp_path, rng):
    f = tmp_path / "x.csv"
    write_csv(f, rng.standard_normal((500, 4)))
    with Daemon(tmp_path, model={"dim": 4, "rank": 4}) as d:
        master, slave = pty.openpty()
        try:
            p = subprocess.run([CLI, "push", str(f), "--batch", "50", "--ingest", d.ingest],
                               stdout=subprocess.PIPE, stderr=slave, timeout=60, text=True)
            os.close(slave)
            slave = None
            err = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                err += chunk
        finally:
            if slave is not None:
                os.close(slave)
            os.close(master)
        assert p.returncode == 0
        text = err.decode()
        assert "\r" in text and "500 rows" in text and "rows/s" in text and "100%" in text, text
        assert "pushed 500 rows" in p.stdout
        assert d.stop() == 0


# ------------------------------------------------------------------- info

def test_info_text_and_json(tmp_path, rng):
    x = rng.standard_normal((60, 5)) * np.array([5.0, 3, 2, 1, 0.5])
    with Daemon(tmp_path, model={"dim": 5, "rank": 8, "center": True}) as d:
        p = ok(run(d, "info"))
        assert "no components yet" in p.stdout
        f = tmp_path / "x.csv"
        write_csv(f, x)
        ok(run(d, "push", str(f)))
        j = json.loads(ok(run(d, "info", "--json")).stdout)
        raw = d.info()
        for k in ("dim", "rank", "rank_max", "rows_seen", "seq", "center", "forget", "last_checkpoint_seq",
                  "explained_energy_ratio", "condition_number", "orthogonality_error", "mode"):
            assert j[k] == raw[k], k
        assert j["ok"] is True and j["rows_seen"] == 60 and j["center"] is True
        s, _, _ = svd_of(x, center=True)
        assert np.allclose(j["sigma"], s, rtol=1e-10)
        assert abs(j["condition_number"] - s[0] / s[-1]) < 1e-8 * s[0] / s[-1]
        text = ok(run(d, "info", env_endpoints=True)).stdout       # endpoints from the environment
        assert "dim 5, rank 5 of 5, centred" in text and "60 seen" in text
        assert raw["mode"] == "exact" and ", mode exact" in text       # auto picks exact at n = 5
        m = re.search(r"condition number ([0-9.e+]+)", text)
        assert m and abs(float(m.group(1)) - s[0] / s[-1]) < 1e-4 * s[0] / s[-1]
        lines = [ln for ln in text.splitlines() if re.match(r"\s+\d+\s", ln)]
        assert len(lines) == 5
        share = s ** 2 / np.sum(s ** 2) * j["explained_energy_ratio"] * 100
        for i, ln in enumerate(lines):
            fields = ln.split()
            assert int(fields[0]) == i + 1 and abs(float(fields[1]) - s[i]) < 1e-4 * s[i]
            assert abs(float(fields[2].rstrip("%")) - share[i]) < 0.006
            assert abs(float(fields[3].rstrip("%")) - np.sum(share[:i + 1])) < 0.006
            assert fields[4].startswith("#")
        assert lines[0].count("#") == 40 and lines[-1].count("#") < 40
        assert d.stop() == 0


# ----------------------------------------------------- project/reconstruct

def test_project_and_reconstruct_match_numpy(tmp_path, rng):
    dim = 5
    x = rng.standard_normal((80, dim)) @ rng.standard_normal((dim, dim)) + 3.0
    y = rng.standard_normal((12, dim)) * 2 + 1
    s, vt, mu = svd_of(x, center=True)
    with Daemon(tmp_path, model={"dim": dim, "rank": 8, "center": True}) as d:
        fx = tmp_path / "x.csv"
        write_csv(fx, x)
        ok(run(d, "push", str(fx)))
        fy = tmp_path / "y.csv"
        write_csv(fy, y, header=["p", "q", "r", "s", "t"])

        p = ok(run(d, "project", str(fy)))
        lines = p.stdout.splitlines()
        assert lines[0] == "score1,score2,score3,score4,score5,residual"
        got = np.loadtxt(lines[1:], delimiter=",")
        assert got.shape == (12, dim + 1)
        assert np.allclose(got[:, :dim], (y - mu) @ vt.T, atol=1e-8)
        assert np.all(np.abs(got[:, dim]) < 1e-8)               # exact model: nothing left over

        out = tmp_path / "u.csv"
        ok(run(d, "project", "--space", "u", "-o", str(out), "--batch", "5", str(fy)))
        text = out.read_text().splitlines()
        assert text[0].startswith("u1,u2")
        got_u = np.loadtxt(text[1:], delimiter=",")
        assert np.allclose(got_u[:, :dim], (y - mu) @ vt.T / s, atol=1e-8)

        raw = tmp_path / "y.f64"
        raw.write_bytes(y.astype("<f8").tobytes())
        p = ok(run(d, "project", "-s", "scores", "-f", "f64", "-d", str(dim), str(raw)))
        assert np.allclose(np.loadtxt(p.stdout.splitlines()[1:], delimiter=",")[:, :dim],
                           (y - mu) @ vt.T, atol=1e-8)

        p = ok(run(d, "reconstruct", str(fy)))
        lines = p.stdout.splitlines()
        assert lines[0] == "p,q,r,s,t"                           # the input's header
        assert np.allclose(np.loadtxt(lines[1:], delimiter=","), y, atol=1e-8)
        out = tmp_path / "rec.csv"
        fy2 = tmp_path / "y.txt"
        write_csv(fy2, y, sep=" ")
        ok(run(d, "reconstruct", "-o", str(out), "--batch", "4", "--format", "text", "-", input=fy2.read_text()))
        assert np.allclose(np.loadtxt(out, delimiter=","), y, atol=1e-8)

        wrong = tmp_path / "wrong.csv"
        write_csv(wrong, y[:, :3])
        p = run(d, "project", str(wrong))
        assert p.returncode == 1 and "DIM_MISMATCH" in p.stderr
        p = run(d, "reconstruct", "-d", "3", str(fy))
        assert p.returncode == 1 and "the header has 5 names; --dim is 3" in p.stderr
        assert d.stop() == 0


def test_project_before_any_row_is_not_ready(tmp_path):
    with Daemon(tmp_path, model={"dim": 2, "rank": 2}) as d:
        p = run(d, "project", "-", input="1,2\n")
        assert p.returncode == 1 and "NOT_READY" in p.stderr
        p = run(d, "factors")
        assert p.returncode == 1 and "NOT_READY" in p.stderr
        assert d.stop() == 0


# ---------------------------------------------------------------- factors

def test_factors_csv_and_npy(tmp_path, rng):
    dim = 6
    x = rng.standard_normal((50, dim)) @ rng.standard_normal((dim, dim))
    with Daemon(tmp_path, model={"dim": dim, "rank": 8, "center": True}) as d:
        f = tmp_path / "x.csv"
        write_csv(f, x)
        ok(run(d, "push", str(f)))
        s, vt, mu = svd_of(x, center=True)

        pre = str(tmp_path / "model")
        p = ok(run(d, "factors", "--format", "npy", "-o", pre))
        assert "wrote " + pre + "_sigma.npy" in p.stdout
        sig, v, m = (np.load(pre + suffix) for suffix in ("_sigma.npy", "_vt.npy", "_mean.npy"))
        assert sig.dtype == np.float64 and sig.shape == (dim,) and v.shape == (dim, dim) and m.shape == (dim,)
        assert np.allclose(sig, s, rtol=1e-10) and np.allclose(v, vt, atol=1e-8) and np.allclose(m, mu)
        ds, dvt, dmu, _ = d.factors()
        assert np.array_equal(sig, ds) and np.array_equal(v, dvt) and np.array_equal(m, dmu)

        pre2 = str(tmp_path / "csvmodel")
        ok(run(d, "factors", "-f", "csv", "--output", pre2))
        assert np.array_equal(np.loadtxt(pre2 + "_sigma.csv", delimiter=","), ds)
        assert np.array_equal(np.loadtxt(pre2 + "_vt.csv", delimiter=","), dvt)
        assert np.array_equal(np.loadtxt(pre2 + "_mean.csv", delimiter=","), dmu)

        lines = ok(run(d, "factors")).stdout.splitlines()       # labelled CSV on stdout
        assert [ln.split(",")[0] for ln in lines] == ["sigma"] + [f"vt{i}" for i in range(1, dim + 1)] + ["mean"]
        assert np.array_equal(np.array(lines[0].split(",")[1:], dtype=float), ds)
        assert np.array_equal(np.array([ln.split(",")[1:] for ln in lines[1:-1]], dtype=float), dvt)
        assert d.stop() == 0


def test_factors_of_an_uncentred_model_have_no_mean(tmp_path, rng):
    with Daemon(tmp_path, model={"dim": 3, "rank": 2}) as d:
        ok(run(d, "push", "-", input="\n".join(",".join(map(str, r)) for r in rng.standard_normal((9, 3)))))
        pre = str(tmp_path / "m")
        p = ok(run(d, "factors", "--format", "npy", "-o", pre))
        assert "mean no" in p.stdout
        assert np.load(pre + "_vt.npy").shape == (2, 3)
        assert not os.path.exists(pre + "_mean.npy")
        assert "mean" not in ok(run(d, "factors")).stdout
        assert d.stop() == 0


# -------------------------------------------------------------- subscribe

def test_subscribe_prints_snapshots(tmp_path, rng):
    with Daemon(tmp_path, model={"dim": 4, "rank": 3},
                extra_sections={"publish": {"spectrum_every_ms": 20, "factors_every_ms": 40}}) as d:
        def listen(*args):
            p = subprocess.Popen([CLI, "subscribe", *args, "--publish", d.publish],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 30
            while p.poll() is None and time.monotonic() < deadline:
                d.push(rng.standard_normal((20, 4)))
                time.sleep(0.02)
            out, err = p.communicate(timeout=30)
            return p.returncode, out, err

        rc, out, err = listen("spectrum", "--count", "3", "--timeout", "30")
        assert rc == 0, err
        lines = out.splitlines()
        assert len(lines) == 3 and all(ln.startswith("spectrum seq=") and "sigma=[" in ln for ln in lines)

        rc, out, err = listen("factors", "--json", "-n", "2", "--timeout", "30")
        assert rc == 0, err
        snaps = [json.loads(ln) for ln in out.splitlines()]
        assert len(snaps) == 2 and all(s["topic"] == "factors" for s in snaps)
        assert np.array(snaps[0]["vt"]).shape == (3, 4) and snaps[0]["mean"] is None
        assert snaps[1]["seq"] > snaps[0]["seq"]

        rc, out, err = listen("--count", "4", "--json", "--timeout", "30")        # both topics
        assert rc == 0 and len(out.splitlines()) == 4
        assert {json.loads(ln)["topic"] for ln in out.splitlines()} <= {"spectrum", "factors"}

        assert d.stop() == 0
    # nothing published: --timeout ends it; status 1 only when --count was not reached
    (tmp_path / "quiet").mkdir()
    with Daemon(tmp_path / "quiet") as q:
        p = ok(run(q, "subscribe", "--timeout", "0.3"))
        assert p.stdout == ""
        p = run(q, "subscribe", "--count", "1", "--timeout", "0.3")
        assert p.returncode == 1 and "fewer than 1 snapshots" in p.stderr
        assert q.stop() == 0


# ------------------------------------------------------- ping, checkpoint

def test_ping(tmp_path):
    with Daemon(tmp_path) as d:
        p = ok(run(d, "ping"))
        assert re.match(r"isvdd \d+\.\d+\.\d+, protocol 1, ipc://", p.stdout), p.stdout
        ok(run(d, "ping", env_endpoints=True))
        # flags win over the environment
        p = ok(run(None, "ping", "--query", d.query, extra_env={"ISVD_QUERY": f"ipc://{tmp_path}/nobody"}))
        assert d.query in p.stdout
        assert d.stop() == 0


def test_no_daemon_times_out_after_the_retries(tmp_path):
    t0 = time.monotonic()
    p = run(None, "ping", "--query", f"ipc://{tmp_path}/nobody", "--timeout", "0.2", "--retries", "2")
    assert p.returncode == 1 and "TIMEOUT" in p.stderr and "3 attempts of 200 ms" in p.stderr, p.stderr
    assert time.monotonic() - t0 < 20
    # the environment names the endpoint when no flag does
    p = run(None, "info", "--timeout", "0.1", "--retries", "0",
            extra_env={"ISVD_QUERY": f"ipc://{tmp_path}/from-env"})
    assert p.returncode == 1 and f"ipc://{tmp_path}/from-env" in p.stderr, p.stderr


def test_checkpoint(tmp_path, rng):
    with Daemon(tmp_path, model={"dim": 3, "rank": 3}) as d:
        ok(run(d, "push", "-", input="\n".join(",".join(map(str, r)) for r in rng.standard_normal((7, 3)))))
        p = run(d, "checkpoint")
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == "checkpoint seq 7"
        assert d.info()["last_checkpoint_seq"] == 7
        assert d.stop() == 0


@pytest.mark.skipif(not os.path.exists(os.environ.get("ISVD_FAULTFS", "")), reason="ISVD_FAULTFS not built")
def test_checkpoint_failure_shows_the_daemons_reason(tmp_path):
    ctl = tmp_path / "faults"
    ctl.write_text("rename EIO\n")
    env = {"LD_PRELOAD": os.environ["ISVD_FAULTFS"], "ISVD_FAULT_CTL": str(ctl),
           "ISVD_FAULT_DIR": str(tmp_path / "data"),
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    with Daemon(tmp_path, model={"dim": 3, "rank": 3}, env=env) as d:
        ok(run(d, "push", "-", input="1,2,3\n4,5,6\n"))
        p = run(d, "checkpoint")
        assert p.returncode == 1, p.stdout
        assert "isvd: checkpoint: UNAVAILABLE: " in p.stderr and "Input/output error" in p.stderr, p.stderr
        d.kill()
