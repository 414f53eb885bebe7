#!/usr/bin/python3
"""compare.py — isvd against scikit-learn's IncrementalPCA on the same data.

For each (n, k) this generates seeded low-rank-plus-noise rows with numpy
(rank-k signal with spectrum s_j = 10^(-j/k) along a random orthonormal basis,
Gaussian noise of standard deviation 1e-3, and a random mean offset so that
centring matters), writes them to a temporary raw little-endian float64 file,
and in the same run:

  * streams them through isvd (`isvd-bench --input FILE --center`) in each
    of its two modes, truncated (Brand's update) and exact (the stream's
    triangular factor; for n <= 2048), each reporting its rows/s (engine
    time, plus the one SVD of R exact mode pays when factors are read) and
    saving its factors;
  * fits sklearn.decomposition.IncrementalPCA at batch size k, and at a
    handful of other batch sizes to find its fastest;
  * scores every method against numpy's exact SVD of the centred full matrix:
    σ error max_i |σ_i − σ̂_i| / σ_1 over the top k, and the sine of the
    largest principal angle between the estimated and exact top-k right
    singular vectors.

Like is compared with like: IncrementalPCA always centres, so isvd runs with
mean-centring on and both are PCA of the same rows.  IncrementalPCA is timed
the way its own fit() runs it: the data is copied once (untimed), then
partial_fit(check_input=False) on consecutive batches (a short tail is merged
into the last batch, as sklearn's gen_batches does).  Its best batch size is
searched among k, 2k, 5k, 10k, 500 and 2000, keeping at least two batches.

It prints numbers, asserts nothing, and needs Debian's numpy and scikit-learn:
run it with /usr/bin/python3.

Usage: bench/compare.py [--quick] [--sizes 64x8,1000x50] [--bench PATH] ...
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    from sklearn.decomposition import IncrementalPCA
    from sklearn.utils import gen_batches
    import sklearn
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit("compare.py: %s; run it with /usr/bin/python3 (Debian's python3-numpy "
             "and python3-sklearn)" % e)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BENCH = os.path.join(HERE, "..", "build", "bench", "isvd-bench")

# (n, k) -> rows: IncrementalPCA does ~1700 rows/s at (1000, 50) batch 50 on
# two cores, so these keep the whole run to a few minutes.
DEFAULT_ROWS = {(64, 8): 20000, (1000, 50): 8000, (10000, 100): 3000}
QUICK_ROWS = {(64, 8): 5000, (1000, 50): 2000, (10000, 100): 1000}
NOISE = 1e-3


def parse_sizes(text):
    sizes = []
    for item in text.split(","):
        item = item.strip()
        try:
            n, k = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                "bad size %r: expected NxK, e.g. 1000x50" % item) from None
        if n < 1 or k < 1 or k > n:
            raise argparse.ArgumentTypeError(
                "bad size %r: need 1 <= k <= n (IncrementalPCA needs k <= n)" % item)
        sizes.append((n, k))
    if not sizes:
        raise argparse.ArgumentTypeError("--sizes is empty")
    return sizes


def positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
    if v < 1:
        raise argparse.ArgumentTypeError("%r must be >= 1" % text)
    return v


def generate(n, k, rows, seed):
    """Seeded rank-k signal + noise + mean offset, rows × n float64."""
    rng = np.random.default_rng([seed, n, k])
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    s = 10.0 ** (-np.arange(k) / k)
    x = (rng.standard_normal((rows, k)) * s) @ q.T
    x += NOISE * rng.standard_normal((rows, n))
    x += rng.standard_normal(n)  # mean offset: only centring removes it
    return np.ascontiguousarray(x, dtype=np.float64)


def scores(sigma_ref, vt_ref, sigma, vt):
    """σ relative error and largest principal-angle sine against the reference."""
    k = vt_ref.shape[0]
    sig = np.zeros(k)
    m = min(k, len(sigma))
    sig[:m] = sigma[:m]
    sigma_err = float(np.max(np.abs(sigma_ref[:k] - sig)) / sigma_ref[0])
    if vt.shape[0] < k:
        return sigma_err, 1.0
    # ‖(I − VVᵀ)V̂‖₂ is accurate for tiny angles, unlike sqrt(1 − cos²).
    r = vt[:k].T - vt_ref.T @ (vt_ref @ vt[:k].T)
    return sigma_err, float(np.linalg.norm(r, 2))


EXACT_MAX_DIM = 2048   # exact mode's n×n factor: isvd-bench's own limit for "both"


def run_isvd(bench, path, n, k, rows, block, repeat, tmpdir, mode):
    fpath = os.path.join(tmpdir, "factors.f64")
    cmd = [bench, "--input", path, "--dim", str(n), "--rank", str(k), "--center",
           "--json", "--no-exact", "--save-factors", fpath, "--repeat", str(repeat),
           "--mode", mode]
    if block:
        cmd += ["--block", str(block)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit("compare.py: %s failed (exit %d):\n%s"
                 % (" ".join(cmd), proc.returncode, proc.stderr))
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if res["rows"] != rows:
        sys.exit("compare.py: isvd-bench streamed %s rows, expected %d" % (res["rows"], rows))
    f = np.fromfile(fpath, dtype="<f8")
    kk = min(k, n)
    return res, f[:kk], f[kk:].reshape(kk, n)


def run_ipca(x, k, batch, repeat, clock):
    """Times IncrementalPCA like its fit(): one untimed copy, then batches.
    The fastest of `repeat` fits is reported."""
    best = None
    for _ in range(repeat):
        xw = x.copy()
        ipca = IncrementalPCA(n_components=k, batch_size=batch)
        t0 = clock()
        for sl in gen_batches(xw.shape[0], batch, min_batch_size=k):
            ipca.partial_fit(xw[sl], check_input=False)
        seconds = clock() - t0
        best = seconds if best is None else min(best, seconds)
    return x.shape[0] / best, ipca.singular_values_, ipca.components_


def batch_candidates(k, rows):
    """k, 2k, 5k, 10k, 500, 2000 — each leaving at least two batches, since one
    batch of all rows would be plain batch PCA, not streaming."""
    cands = sorted({k, 2 * k, 5 * k, 10 * k, 500, 2000})
    return [b for b in cands if b == k or b <= rows // 2]


def fmt_rate(v):
    return "%.0f" % v


def fmt_err(v):
    return "%.1e" % v


def main():
    ap = argparse.ArgumentParser(
        description="isvd (isvd-bench) against scikit-learn IncrementalPCA on the same "
                    "seeded data: rows/s, accuracy against the exact centred SVD, ratios.")
    ap.add_argument("--quick", action="store_true",
                    help="smaller row counts for a fast look")
    ap.add_argument("--sizes", type=parse_sizes, default=None, metavar="NxK[,NxK...]",
                    help="configurations (default 64x8,1000x50,10000x100)")
    ap.add_argument("--rows", type=positive_int, default=None,
                    help="rows for every size (default: 20000 / 8000 / 3000 for n = "
                         "64 / 1000 / 10000, else 5000; --quick: 5000 / 2000 / 1000, else 1250)")
    ap.add_argument("--bench", default=None, metavar="PATH",
                    help="isvd-bench binary (default build/bench/isvd-bench)")
    ap.add_argument("--block", type=positive_int, default=None,
                    help="isvd rows per update call and max_block (default: the engine's "
                         "default max_block)")
    ap.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="rate every method by process CPU seconds (all threads) instead "
                         "of wall time: steadier on a busy machine, most meaningful with "
                         "OPENBLAS_NUM_THREADS=1")
    ap.add_argument("--repeat", type=positive_int, default=1,
                    help="time every method this many times and keep the fastest "
                         "(for a busy machine; default 1)")
    args = ap.parse_args()

    bench = os.path.normpath(args.bench or DEFAULT_BENCH)
    if not (os.path.isfile(bench) and os.access(bench, os.X_OK)):
        sys.exit("compare.py: no isvd-bench at %s; build it (ninja -C build) or pass "
                 "--bench PATH" % bench)
    sizes = args.sizes or list(DEFAULT_ROWS)
    clock = time.process_time if args.cpu_time else time.perf_counter

    print("compare.py: isvd (--center) vs scikit-learn %s IncrementalPCA, numpy %s, seed %d"
          % (sklearn.__version__, np.__version__, args.seed))
    print("data: rank-k signal, s_j = 10^(-j/k), noise %g, random mean offset; errors vs "
          "numpy's exact SVD of the centred matrix" % NOISE)
    print("rows/s: rows per %s of update/partial_fit only%s; ratio = isvd rows/s / IPCA "
          "rows/s; OPENBLAS_NUM_THREADS=%s"
          % ("CPU second (all threads)" if args.cpu_time else "wall-clock second",
             ", fastest of %d" % args.repeat if args.repeat > 1 else "",
             os.environ.get("OPENBLAS_NUM_THREADS", "unset")))
    print(flush=True)

    table = []
    searches = []
    with tempfile.TemporaryDirectory(prefix="isvd-compare-") as tmpdir:
        for n, k in sizes:
            table_rows = args.rows or (QUICK_ROWS if args.quick else DEFAULT_ROWS).get(
                (n, k), 1250 if args.quick else 5000)
            rows = max(table_rows, k)
            x = generate(n, k, rows, args.seed)
            path = os.path.join(tmpdir, "rows-%dx%d.f64" % (n, k))
            x.astype("<f8").tofile(path)

            xc = x - x.mean(axis=0)
            _, s_ref, vt_ref = np.linalg.svd(xc, full_matrices=False)
            del xc
            s_ref, vt_ref = s_ref[:k], vt_ref[:k]

            isvd = {}
            for mode in ("truncated", "exact"):
                if mode == "exact" and n > EXACT_MAX_DIM:
                    continue
                res, s_i, vt_i = run_isvd(bench, path, n, k, rows, args.block, args.repeat,
                                          tmpdir, mode)
                rate = rows / res["cpu_seconds"] if args.cpu_time else res["rows_per_s"]
                isvd[mode] = (res["block"], (rate,) + scores(s_ref, vt_ref, s_i, vt_i))

            ipca = {}
            for b in batch_candidates(k, rows):
                rate, s_p, vt_p = run_ipca(x, k, b, args.repeat, clock)
                ipca[b] = (rate,) + scores(s_ref, vt_ref, s_p, vt_p)
                print("  %dx%d IPCA batch %-5d %9.0f rows/s" % (n, k, b, rate),
                      file=sys.stderr, flush=True)
            best = max(ipca, key=lambda b: ipca[b][0])
            table.append((n, k, rows, isvd, ipca[k], best, ipca[best]))
            searches.append((n, k, ipca, best))
            os.unlink(path)

    print("| n | k | rows | method | block / batch | rows/s | σ err | sin θ "
          "| vs IPCA b=k | vs IPCA best |")
    print("|---:|---:|---:|:---|---:|---:|---:|---:|---:|---:|")
    for n, k, rows, isvd, pk, best, pb in table:
        lines = [("isvd " + mode, block, v) for mode, (block, v) in isvd.items()]
        lines += [("IncrementalPCA", k, pk), ("IncrementalPCA (fastest)", best, pb)]
        for name, b, v in lines:
            print("| %d | %d | %d | %s | %d | %s | %s | %s | %.1f× | %.1f× |"
                  % (n, k, rows, name, b, fmt_rate(v[0]), fmt_err(v[1]), fmt_err(v[2]),
                     v[0] / pk[0], v[0] / pb[0]))
        if "exact" not in isvd:
            print("| %d | %d | %d | isvd exact | – | not run: n > %d | | | | |"
                  % (n, k, rows, EXACT_MAX_DIM))
    print()
    print("IncrementalPCA batch-size search (rows/s; * = fastest):")
    print()
    print("| n | k | " + " | ".join(["batch: rows/s, σ err, sin θ"]) + " |")
    print("|---:|---:|:---|")
    for n, k, ipca, best in searches:
        cells = ["%d%s: %s, %s, %s" % (b, "*" if b == best else "", fmt_rate(v[0]),
                                        fmt_err(v[1]), fmt_err(v[2]))
                 for b, v in sorted(ipca.items())]
        print("| %d | %d | %s |" % (n, k, "; ".join(cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
