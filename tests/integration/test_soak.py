"""test_soak — three minutes of bench/soak in the suite: mixed load (one-row
and 256-row pushers, queriers, a subscriber) under chaos (hostile peers, a
checkpoint storm, disk-full episodes through faultfs, kill -9 and restarts),
then the soak's own proof: every acknowledged row in the daemon exactly once
(seqs tile 1..N, rows_seen = N, σ of exact mode equal to the acknowledged
rows' to 1e-9·σ₁), no daemon life ending any other way than the soak ended
it (no sanitizer report), and RSS, fds, threads and storage flat.  The soak
decides pass or fail; this test also checks that the chaos happened, so a
run that never killed the daemon or filled its disk cannot pass."""
import json
import os
import subprocess
import sys

from isvdd_harness import FAULTFS, REPO, isvdd_path

SOAK = os.path.join(REPO, "bench", "soak")
SECONDS = 180


def test_three_minute_soak(tmp_path):
    p = subprocess.run([sys.executable, SOAK, "--seconds", str(SECONDS), "--json",
                        "--isvdd", isvdd_path(), "--faultfs", FAULTFS, "--tmp", str(tmp_path)],
                       capture_output=True, text=True, timeout=SECONDS + 600)
    assert p.stdout.strip(), f"soak printed nothing (status {p.returncode}): {p.stderr[-3000:]}"
    r = json.loads(p.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in r.items() if k != "samples"}, indent=1))
    assert r["passed"] and p.returncode == 0, r["failures"]
    c = r["counts"]
    assert c.get("kill -9", 0) >= 3 and r["lives"] == c["kill -9"] + 1
    assert c.get("disk-full episodes", 0) >= 3
    assert c.get("push refused: UNAVAILABLE", 0) > 0          # the disk was full for pushes
    assert c.get("hostile messages/connections", 0) > 1000
    assert c.get("spectrum snapshots received", 0) > 0
    assert r["rows_acknowledged"] == r["rows_seen"] > 10000
    for op in ("push1", "push256", "project", "info", "factors", "checkpoint"):
        assert r["latency"][op]["count"] > 0, op
    assert any("BAD_REQUEST" in k for k in r["refusals"])     # the hostile peers were refused
    assert len(r["samples"]) >= 20
