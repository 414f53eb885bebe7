"""Merging models end to end: two isvdd each get half of the rows, `isvd
checkpoint` on both, `isvd merge` of their newest checkpoints, `isvdd
--seed` of the result, and its factors against numpy's SVD of every row
(exact mode).  Plus `isvd inspect`, the refusals of `isvd merge` (corrupt,
truncated and foreign files, mismatched models, usage) and of `isvdd
--seed` (a directory that holds a model, a damaged or mismatched image).
Daemons run on ipc:// endpoints in the test's directory; every wait is
bounded (the harness's timeouts, subprocess timeouts)."""
import os
import subprocess

import numpy as np
import pytest

from isvdd_harness import Daemon, assert_factors_match, read_log, run_isvdd

CLI = os.environ.get("ISVD_CLI", "")
pytestmark = pytest.mark.skipif(not CLI or not os.access(CLI, os.X_OK),
                                reason="ISVD_CLI is not set (meson test sets it)")

N = 16
EXACT = {"dim": N, "rank": N, "extra": 0, "mode": "exact", "center": True}


def isvd(*args, d=None, timeout=60):
    """Runs the isvd CLI (with d's endpoints when d is given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISVD_")}
    argv = [CLI, *args]
    if d is not None:
        argv += ["--ingest", d.ingest, "--query", d.query, "--publish", d.publish]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def ok(p):
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p


def rows(seed, m, n=N):
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((5, n))
    return 3.0 + rng.standard_normal((m, 5)) @ basis + 0.05 * rng.standard_normal((m, n))


def push_all(d, x, per=100):
    for i in range(0, len(x), per):
        r = d.push(x[i:i + per], client="t", batch=i // per + 1)
        assert r["ok"], r


def newest_checkpoint(d):
    names = sorted(f for f in os.listdir(d.data) if f.startswith("checkpoint-") and f.endswith(".isvdc"))
    assert names, os.listdir(d.data)
    return os.path.join(d.data, names[-1])


def checkpointed(tmp_path, name, x, model=EXACT):
    """A daemon named name fed x, checkpointed through the CLI and stopped;
    returns the path of its newest checkpoint."""
    with Daemon(tmp_path, model=model, name=name) as d:
        push_all(d, x)
        out = ok(isvd("checkpoint", d=d)).stdout
        assert str(len(x)) in out, out
        path = newest_checkpoint(d)
    return path


def test_two_daemons_merged_and_seeded_equal_the_svd_of_all_rows(tmp_path):
    x = rows(1, 1200)
    ca = checkpointed(tmp_path, "a", x[:600])
    cb = checkpointed(tmp_path, "b", x[600:])
    merged = str(tmp_path / "merged.img")
    out = ok(isvd("merge", "-o", merged, ca, cb)).stdout
    assert "merged 2 models (1200 rows, dim 16" in out and "exact" in out, out

    shown = ok(isvd("inspect", merged)).stdout
    assert "isvd model image" in shown and "rows        1200" in shown, shown
    assert "mode        exact" in shown and "dim         16" in shown, shown
    shown = ok(isvd("inspect", ca)).stdout
    assert "isvdd checkpoint, seq 600" in shown and "rows        600" in shown, shown

    with Daemon(tmp_path, model=EXACT, name="c", args=("--seed", merged)) as d:
        info = d.info()
        assert info["rows_seen"] == 1200 and info["seq"] == 1200, info
        assert_factors_match(d.factors(), x, center=True)
        assert "seeded storage.dir" in d.log()
        # the seed is a checkpoint: the log after it continues its numbering
        y = rows(2, 300)
        r = d.push(y, client="t", batch=1)
        assert r["ok"] and r["seq"] == 1500, r
        assert_factors_match(d.factors(), np.vstack([x, y]), center=True)
    # restarted without --seed, it recovers the seeded model and the rows after it
    with Daemon(tmp_path, model=EXACT, name="c") as d:
        assert d.info()["rows_seen"] == 1500
        assert_factors_match(d.factors(), np.vstack([x, y]), center=True)
    # --seed on a directory that holds a model: refused, with the reason
    d = Daemon(tmp_path, model=EXACT, name="c", args=("--seed", merged), wait_ready=False)
    rc = d.proc.wait(30)
    d.stop(expect=None)
    assert rc == 1, rc
    assert "already holds a model (1500 rows)" in read_log(d.log_path), read_log(d.log_path)


def test_merge_of_three_equals_merge_of_merges(tmp_path):
    """Associativity through files: merge(a, b, c) and merge(merge(a, b), c)
    both give the SVD of every row."""
    x = rows(3, 900)
    cs = [checkpointed(tmp_path, f"p{i}", x[i * 300:(i + 1) * 300]) for i in range(3)]
    abc, ab, ab_c = (str(tmp_path / f) for f in ("abc.img", "ab.img", "ab_c.img"))
    ok(isvd("merge", "-o", abc, *cs))
    ok(isvd("merge", "-o", ab, cs[0], cs[1]))
    ok(isvd("merge", "--output", ab_c, ab, cs[2]))
    for img, name in ((abc, "s1"), (ab_c, "s2")):
        with Daemon(tmp_path, model=EXACT, name=name, args=("--seed", img)) as d:
            assert_factors_match(d.factors(), x, center=True)


def test_merge_refuses_damaged_foreign_and_mismatched_files(tmp_path):
    x = rows(4, 400)
    ca = checkpointed(tmp_path, "a", x[:200])
    cb = checkpointed(tmp_path, "b", x[200:])
    out = str(tmp_path / "out.img")
    blob = open(ca, "rb").read()

    corrupt = tmp_path / "corrupt.isvdc"
    corrupt.write_bytes(blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
    p = isvd("merge", "-o", out, str(corrupt), cb)
    assert p.returncode == 1 and str(corrupt) in p.stderr and "checksum mismatch" in p.stderr, p.stderr

    cut = tmp_path / "cut.isvdc"
    cut.write_bytes(blob[:len(blob) // 2])
    p = isvd("merge", "-o", out, ca, str(cut))
    assert p.returncode == 1 and str(cut) in p.stderr and "truncated" in p.stderr, p.stderr

    ok(isvd("merge", "-o", out, ca))             # one input: the checkpoint's model as an image
    img = open(out, "rb").read()
    cut_img = tmp_path / "cut.img"
    cut_img.write_bytes(img[:-10])
    p = isvd("merge", "-o", str(tmp_path / "o2.img"), str(cut_img))
    assert p.returncode == 1 and str(cut_img) in p.stderr and "truncated" in p.stderr, p.stderr
    p = isvd("inspect", str(cut_img))
    assert p.returncode == 1 and str(cut_img) in p.stderr and "truncated" in p.stderr, p.stderr
    bad_img = tmp_path / "bad.img"
    bad_img.write_bytes(img[:200] + bytes([img[200] ^ 1]) + img[201:])
    p = isvd("inspect", str(bad_img))
    assert p.returncode == 1 and str(bad_img) in p.stderr and "corrupt" in p.stderr, p.stderr

    text = tmp_path / "rows.csv"
    text.write_text("1,2,3\n")
    p = isvd("merge", "-o", out, ca, str(text))
    assert p.returncode == 1 and str(text) in p.stderr and "neither" in p.stderr, p.stderr
    p = isvd("merge", "-o", out, ca, str(tmp_path / "missing.isvdc"))
    assert p.returncode == 1 and "missing.isvdc" in p.stderr and "No such file" in p.stderr, p.stderr

    # another rank: refused, naming both files and the setting
    other = checkpointed(tmp_path, "r", x[:200], model=dict(EXACT, rank=8))
    p = isvd("merge", "-o", out, ca, other)
    assert p.returncode == 1 and "differ in rank (16 and 8)" in p.stderr and other in p.stderr, p.stderr
    # another mode
    trunc = checkpointed(tmp_path, "t", x[:200], model=dict(EXACT, mode="truncated"))
    p = isvd("merge", "-o", out, ca, trunc)
    assert p.returncode == 1 and "differ in mode (exact and truncated)" in p.stderr, p.stderr
    assert not os.path.exists(str(tmp_path / "o2.img"))

    # usage
    assert isvd("merge", ca).returncode == 2
    assert isvd("merge", "-o", out).returncode == 2
    assert isvd("merge", "--bogus", "-o", out, ca).returncode == 2
    assert isvd("inspect").returncode == 2
    for cmd in ("merge", "inspect"):
        p = ok(isvd(cmd, "--help"))
        assert p.stdout.startswith(f"usage: isvd {cmd}"), p.stdout
    assert "merge" in ok(isvd("--help")).stdout


def test_seed_refusals(tmp_path):
    x = rows(5, 300)
    ca = checkpointed(tmp_path, "a", x)

    def refused(name, seed, model, needle):
        d = Daemon(tmp_path, model=model, name=name, args=("--seed", seed), wait_ready=False)
        rc = d.proc.wait(30)
        d.stop(expect=None)
        log = read_log(d.log_path)
        assert rc == 1 and needle in log, (rc, log)

    refused("m1", str(tmp_path / "nothing.img"), EXACT, "nothing.img: cannot open")
    blob = open(ca, "rb").read()
    bad = tmp_path / "bad.isvdc"
    bad.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    refused("m2", str(bad), EXACT, "checksum mismatch")
    refused("m3", ca, dict(EXACT, rank=8), "model.rank")
    # a checkpoint file seeds too (its duplicate table is not kept)
    with Daemon(tmp_path, model=EXACT, name="m4", args=("--seed", ca)) as d:
        assert d.info()["rows_seen"] == 300
        assert_factors_match(d.factors(), x, center=True)


def test_isvdd_help_documents_seed():
    p = run_isvdd("--help")
    assert p.returncode == 0 and "--seed IMAGE" in p.stdout, p.stdout


def test_a_checkpoint_without_a_model(tmp_path):
    """A daemon that never learned its dimension checkpoints no model:
    `inspect` says so, `merge` refuses it by name, and its directory may
    still be seeded (it holds no rows)."""
    x = rows(6, 200)
    ca = checkpointed(tmp_path, "a", x)
    with Daemon(tmp_path, model={"dim": 0, "rank": N, "extra": 0, "mode": "exact",
                                 "center": True}, name="e") as d:
        ok(isvd("checkpoint", d=d))
        empty = newest_checkpoint(d)
    shown = ok(isvd("inspect", empty)).stdout
    assert "isvdd checkpoint, seq 0" in shown and "none yet" in shown, shown
    p = isvd("merge", "-o", str(tmp_path / "o.img"), ca, empty)
    assert p.returncode == 1 and empty in p.stderr and "no model" in p.stderr, p.stderr
    with Daemon(tmp_path, model={"dim": 0, "rank": N, "extra": 0, "mode": "exact", "center": True},
                name="e", args=("--seed", ca)) as d:
        assert d.info()["rows_seen"] == 200
        assert_factors_match(d.factors(), x, center=True)
