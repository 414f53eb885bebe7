#!/usr/bin/python3
"""compare.py — isvd against IncrementalPCA, gensim and LAPACK on the same data.

For each (n, k) this generates seeded low-rank-plus-noise rows with numpy
(rank-k signal with spectrum s_j = 10^(-j/k) along a random orthonormal basis,
Gaussian noise of standard deviation 1e-3, and a random mean offset so that
centring matters), writes them to a temporary raw little-endian float64 file,
and in the same run:

  * streams them through isvd (`isvd-bench --input FILE --center`, whose
    BLAS runs one thread while the engine splits its n-sized products over
    its own threads, up to 2) in each of its two modes, truncated (Brand's update) and exact (the stream's
    triangular factor; for n <= 2048), each reporting its rows/s (engine
    time, plus the one SVD of R exact mode pays when factors are read) and
    saving its factors;
  * streams them through the daemon isvdd with the Python client (isvd
    package, clients/python): isvdd on tcp://127.0.0.1 (free ports, its
    storage in the temporary directory), centring on, mode auto, fsync
    interval (its default), pushes of 256 rows with 16 in
    flight (Client.push_many); rows/s = rows / wall time
    from the first push to the last ack; then its factors over the query
    socket;
  * fits isvd.StreamingPCA (the engine in process through the Python
    package's extension, IncrementalPCA's API) the way IncrementalPCA is
    timed below, on the batches its own fit() uses (5 n rows), with
    numpy's BLAS at 1 and 2 threads, keeping the faster; it needs the
    package installed (pip install --no-build-isolation . in a venv with
    --system-site-packages; run compare.py with that venv's python), and is
    skipped with a note otherwise;
  * fits sklearn.decomposition.IncrementalPCA at batch size k, and at a
    handful of other batch sizes to find its fastest, each with its BLAS
    (numpy's OpenBLAS) limited to 1 and to 2 threads through threadpoolctl,
    keeping the faster: the peer at its best batch size and thread count;
  * fits gensim's LsiModel (streaming randomized SVD with merges, Řehůřek
    2011) chunk by chunk with add_documents(), at chunk sizes 256 and 2000;
  * computes one full LAPACK SVD of all rows (numpy.linalg.svd of the
    centred matrix, centring included in the time): the batch alternative,
    which needs every row in memory at once.  It is also the reference, so
    its errors are 0 by definition;
  * scores every method against numpy's exact SVD of the centred full matrix:
    σ error max_i |σ_i − σ̂_i| / σ_1 over the top k, and the sine of the
    largest principal angle between the estimated and exact top-k right
    singular vectors.

Like is compared with like: IncrementalPCA always centres, so isvd runs with
mean-centring on and both are PCA of the same rows.  gensim centres nothing
(LSI is an SVD of the raw term-document matrix), so it is given the rows
minus the TRUE column mean of all rows, computed before it starts.  That is
an advantage no streaming method has (isvd and IncrementalPCA learn the mean
as rows arrive, and isvd's mean-correction row makes that exact); it makes
gensim's figures a best case.  gensim is also handed each chunk already as
the scipy CSC matrix (terms × documents) it works on, converted untimed, so
its time is its update and merge only, not the conversion of a dense corpus
into (id, value) pairs that its usual iterable API would cost.  IncrementalPCA is timed
the way its own fit() runs it: the data is copied once (untimed), then
partial_fit(check_input=False) on consecutive batches (a short tail is merged
into the last batch, as sklearn's gen_batches does).  Its best batch size is
searched among k, 2k, 5k, 10k, 500 and 2000, keeping at least two batches.

It prints numbers, asserts nothing, and needs Debian's numpy and scikit-learn
(and python3-gensim, python3-zmq, python3-msgpack for the gensim and daemon
columns, which are skipped with a note when missing): run it with
/usr/bin/python3.  --skip leaves out slow methods.

Usage: bench/compare.py [--quick] [--sizes 64x8,1000x50] [--bench PATH]
                        [--isvdd PATH] [--skip gensim,daemon,...] ...
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits
    from sklearn.decomposition import IncrementalPCA
    from sklearn.utils import gen_batches
    import sklearn
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit("compare.py: %s; run it with /usr/bin/python3 (Debian's python3-numpy "
             "and python3-sklearn)" % e)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BENCH = os.path.join(HERE, "..", "build", "bench", "isvd-bench")
DEFAULT_ISVDD = os.path.join(HERE, "..", "build", "daemon", "isvdd")

# Optional peers: a missing one is skipped with a note, never an error.
try:
    import scipy.sparse
    from gensim.models import LsiModel
    import gensim
except ImportError as e:  # pragma: no cover - environment problem
    LsiModel = None
    GENSIM_MISSING = str(e)
# The isvd package: an installed one first (pip install --no-build-isolation
# . into a venv, then run compare.py with that venv's python), whose engine
# extension gives the StreamingPCA row; else the source tree's, which has the
# daemon client only.
try:
    import isvd as isvd_client
except ImportError:
    try:
        sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))
        import isvd as isvd_client
    except ImportError as e:  # pragma: no cover - environment problem
        isvd_client = None
        CLIENT_MISSING = str(e)
try:
    from isvd import _engine as _isvd_engine  # noqa: F401  (present when installed)
    from isvd import StreamingPCA
except ImportError as e:
    StreamingPCA = None
    SPCA_MISSING = ("the isvd package with its engine extension is not installed for %s (%s); "
                    "pip install --no-build-isolation . into a venv and run compare.py with "
                    "its python" % (sys.executable, e))

SKIPPABLE = ("exact", "ipca-search", "daemon", "streamingpca", "gensim", "lapack")
DAEMON_PUSH_ROWS = 256
GENSIM_CHUNKS = (256, 2000)

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


def parse_skip(text):
    items = [t.strip() for t in text.split(",") if t.strip()]
    for t in items:
        if t not in SKIPPABLE:
            raise argparse.ArgumentTypeError("--skip: unknown method %r (one of %s)"
                                             % (t, ", ".join(SKIPPABLE)))
    return tuple(items)


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


def run_isvd(bench, path, n, k, rows, block, repeat, tmpdir, mode, extra):
    fpath = os.path.join(tmpdir, "factors.f64")
    cmd = [bench, "--input", path, "--dim", str(n), "--rank", str(k), "--center",
           "--json", "--no-exact", "--save-factors", fpath, "--repeat", str(repeat),
           "--mode", mode]
    if block:
        cmd += ["--block", str(block)]
    if extra is not None:
        cmd += ["--extra", str(extra)]
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


def run_ipca(x, k, batch, repeat, clock, threads):
    """Times IncrementalPCA like its fit(): one untimed copy, then batches,
    with its BLAS limited to `threads` threads (threadpoolctl).  The fastest
    of `repeat` fits is reported."""
    best = None
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(repeat):
            xw = x.copy()
            ipca = IncrementalPCA(n_components=k, batch_size=batch)
            t0 = clock()
            for sl in gen_batches(xw.shape[0], batch, min_batch_size=k):
                ipca.partial_fit(xw[sl], check_input=False)
            seconds = clock() - t0
            best = seconds if best is None else min(best, seconds)
    return x.shape[0] / best, ipca.singular_values_, ipca.components_


def run_streaming_pca(x, k, repeat, clock, threads, extra):
    """Times isvd.StreamingPCA (the engine in process, from Python) the way
    run_ipca times IncrementalPCA: one untimed copy, then
    partial_fit(check_input=False) on the batches its own fit() uses
    (batch_size_ = 5 n, the engine splitting them into its max_block),
    numpy's BLAS limited to `threads` (the engine, created inside the limit,
    then splits its own products when the BLAS runs one thread).  Returns
    (rows/s, batch, mode, sigma, vt) of the fastest of `repeat` fits."""
    best = None
    n = x.shape[1]
    batch = 5 * n
    kw = {} if extra is None else {"extra": extra}
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(repeat):
            xw = x.copy()
            spca = StreamingPCA(n_components=k, **kw)
            t0 = clock()
            for sl in gen_batches(xw.shape[0], batch, min_batch_size=k):
                spca.partial_fit(xw[sl], check_input=False)
            seconds = clock() - t0
            best = seconds if best is None else min(best, seconds)
    mode = spca._model.options()["mode"]
    return x.shape[0] / best, batch, mode, spca.singular_values_, spca.components_


def blas_description():
    """numpy's BLAS as threadpoolctl sees it: 'OpenBLAS 0.3.21 (Haswell, 2 threads)'."""
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            return "%s %s (%s kernel, %d threads by default)" % (
                lib.get("internal_api"), lib.get("version"), lib.get("architecture", "?"),
                lib.get("num_threads", 0))
    return "unknown"


def ipca_thread_counts():
    """1 up to the BLAS's default thread count, at most 2 (the machine's cores)."""
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            return list(range(1, min(lib.get("num_threads", 1), 2) + 1))
    return [1]


def free_ports(count):
    """`count` distinct TCP ports on 127.0.0.1 that nothing listens on right
    now (all held open until all are chosen, so none is handed out twice)."""
    socks = []
    try:
        for _ in range(count):
            sk = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sk)
            sk.bind(("127.0.0.1", 0))
        return [sk.getsockname()[1] for sk in socks]
    finally:
        for sk in socks:
            sk.close()


class Daemon:
    """isvdd on tcp://127.0.0.1 (free ports), storage in tmpdir: centring on,
    mode auto, fsync interval.  Killed (SIGKILL) by stop(), also when
    anything failed on the way."""

    def __init__(self, exe, tmpdir, n, k, extra):
        self.root = tempfile.mkdtemp(prefix="isvdd-", dir=tmpdir)
        ep = {w: "tcp://127.0.0.1:%d" % p
              for w, p in zip(("ingest", "query", "publish"), free_ports(3))}
        self.endpoints = ep
        self.log = os.path.join(self.root, "isvdd.log")
        cfg = os.path.join(self.root, "isvdd.yaml")
        with open(cfg, "w") as f:
            f.write("model:\n  dim: %d\n  rank: %d\n  center: true\n  mode: auto\n%s"
                    "endpoints:\n  ingest: %s\n  query: %s\n  publish: %s\n"
                    "storage:\n  dir: %s/data\n  fsync: interval\n"
                    "log:\n  file: %s\n  level: info\n"
                    % (n, k, "" if extra is None else "  extra: %d\n" % extra,
                       ep["ingest"], ep["query"], ep["publish"], self.root, self.log))
        self.proc = subprocess.Popen([exe, "--config", cfg], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        self.client = None
        try:
            self.client = isvd_client.Client(ingest=ep["ingest"], query=ep["query"],
                                             publish=ep["publish"], timeout=60.0, retries=0)
            t0 = time.monotonic()
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("isvdd exited with status %d; see %s"
                                       % (self.proc.returncode, self.log))
                try:
                    probe = isvd_client.Client(query=ep["query"], timeout=0.2, retries=0)
                    probe.ping()
                    probe.close()
                    break
                except isvd_client.Timeout:
                    probe.close()
                if time.monotonic() - t0 > 60:
                    raise RuntimeError("isvdd did not answer ping within 60 s")
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def run_daemon(exe, tmpdir, x, k, extra):
    """Pushes x through isvdd with the Python client in pushes of
    DAEMON_PUSH_ROWS, 16 in flight (Client.push_many); returns (rows/s,
    mode, sigma, vt)."""
    n = x.shape[1]
    d = Daemon(exe, tmpdir, n, k, extra)
    try:
        c = d.client
        t0 = time.perf_counter()
        c.push_many(x, rows_per_push=DAEMON_PUSH_ROWS, window=16)
        seconds = time.perf_counter() - t0
        f = c.factors()
        mode = c.info().get("mode", "?")
        if f.seq != x.shape[0]:
            sys.exit("compare.py: the daemon holds %d rows, expected %d" % (f.seq, x.shape[0]))
        return x.shape[0] / seconds, mode, f.sigma, f.vt
    finally:
        d.stop()


def run_gensim(xc, k, chunk, repeat, clock, seed):
    """gensim LsiModel fed chunk by chunk (add_documents of a CSC terms × docs
    matrix, converted untimed) on rows already centred on the true mean.
    The fastest of `repeat` fits is reported."""
    n = xc.shape[1]
    chunks = [scipy.sparse.csc_matrix(xc[i:i + chunk].T) for i in range(0, xc.shape[0], chunk)]
    id2word = {i: str(i) for i in range(n)}
    best = None
    for _ in range(repeat):
        lsi = LsiModel(num_topics=k, id2word=id2word, chunksize=chunk, random_seed=seed)
        t0 = clock()
        for c in chunks:
            lsi.add_documents(c)
        seconds = clock() - t0
        best = seconds if best is None else min(best, seconds)
    u = lsi.projection.u          # n × k, columns = right singular vectors of rows
    return xc.shape[0] / best, np.asarray(lsi.projection.s), np.asarray(u).T.copy()


def run_lapack(x, repeat, clock):
    """One LAPACK SVD of the centred matrix (centring timed): rows/s and the
    factors, which are the reference."""
    best = None
    for _ in range(repeat):
        t0 = clock()
        xc = x - x.mean(axis=0)
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        seconds = clock() - t0
        del xc
        best = seconds if best is None else min(best, seconds)
    return x.shape[0] / best, s, vt


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
        description="isvd (isvd-bench, and isvdd through the Python client) against "
                    "scikit-learn IncrementalPCA, gensim LsiModel and one LAPACK SVD on the "
                    "same seeded data: rows/s, accuracy against the exact centred SVD, ratios.")
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
    ap.add_argument("--extra", type=int, default=None, metavar="P",
                    help="isvd's extra components, engine and daemon (default: the engine's, 10)")
    ap.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="rate every method by process CPU seconds (all threads) instead "
                         "of wall time: steadier on a busy machine, most meaningful with "
                         "OPENBLAS_NUM_THREADS=1")
    ap.add_argument("--repeat", type=positive_int, default=1,
                    help="time every method this many times and keep the fastest "
                         "(for a busy machine; default 1)")
    ap.add_argument("--isvdd", default=None, metavar="PATH",
                    help="isvdd binary for the daemon column (default build/daemon/isvdd)")
    ap.add_argument("--skip", type=parse_skip, default=(), metavar="LIST",
                    help="methods to leave out, comma list of: %s (ipca-search: only "
                         "IncrementalPCA at batch k)" % ", ".join(SKIPPABLE))
    args = ap.parse_args()

    bench = os.path.normpath(args.bench or DEFAULT_BENCH)
    if not (os.path.isfile(bench) and os.access(bench, os.X_OK)):
        sys.exit("compare.py: no isvd-bench at %s; build it (ninja -C build) or pass "
                 "--bench PATH" % bench)
    sizes = args.sizes or list(DEFAULT_ROWS)
    clock = time.process_time if args.cpu_time else time.perf_counter
    skip = set(args.skip)
    isvdd = os.path.normpath(args.isvdd or DEFAULT_ISVDD)
    notes = []
    if "daemon" not in skip:
        if isvd_client is None:
            notes.append("daemon column skipped: the isvd Python client does not import (%s)"
                         % CLIENT_MISSING)
            skip.add("daemon")
        elif not (os.path.isfile(isvdd) and os.access(isvdd, os.X_OK)):
            notes.append("daemon column skipped: no isvdd at %s (build it or pass --isvdd)"
                         % isvdd)
            skip.add("daemon")
    if "streamingpca" not in skip and StreamingPCA is None:
        notes.append("StreamingPCA row skipped: " + SPCA_MISSING)
        skip.add("streamingpca")
    if "gensim" not in skip and LsiModel is None:
        notes.append("gensim column skipped: %s (apt-get install python3-gensim)" % GENSIM_MISSING)
        skip.add("gensim")

    print("compare.py: isvd (--center) vs scikit-learn %s IncrementalPCA, gensim %s LsiModel, "
          "numpy %s LAPACK SVD, seed %d"
          % (sklearn.__version__, gensim.__version__ if LsiModel else "(missing)",
             np.__version__, args.seed))
    for note in notes:
        print("note: " + note)
    print("isvd daemon: isvdd over tcp on 127.0.0.1 through the Python client, centring on, "
          "mode auto, fsync interval, pushes of %d rows, 16 in flight (push_many); rows/s = rows / wall time "
          "from the first push to the last ack (client, protocol, log and engine)"
          % DAEMON_PUSH_ROWS)
    print("gensim: fed rows minus the TRUE mean of all rows (a head start no streaming method "
          "has), chunk by chunk as CSC matrices converted untimed; LAPACK: one "
          "numpy.linalg.svd of all rows, centring included, and the reference (errors 0)")
    print("data: rank-k signal, s_j = 10^(-j/k), noise %g, random mean offset; errors vs "
          "numpy's exact SVD of the centred matrix" % NOISE)
    print("rows/s: rows per %s of update/partial_fit only%s; ratio = isvd rows/s / IPCA "
          "rows/s; OPENBLAS_NUM_THREADS=%s, OPENBLAS_CORETYPE=%s"
          % ("CPU second (all threads)" if args.cpu_time else "wall-clock second",
             ", fastest of %d" % args.repeat if args.repeat > 1 else "",
             os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
             os.environ.get("OPENBLAS_CORETYPE", "unset")))
    print("numpy/scikit-learn BLAS: %s; IncrementalPCA is timed at every batch size with "
          "%s BLAS thread(s) (threadpoolctl) and its fastest count is kept"
          % (blas_description(), " and ".join(str(t) for t in ipca_thread_counts())))
    print(flush=True)

    table = []
    searches = []
    blas_noted = False
    with tempfile.TemporaryDirectory(prefix="isvd-compare-") as tmpdir:
        for n, k in sizes:
            table_rows = args.rows or (QUICK_ROWS if args.quick else DEFAULT_ROWS).get(
                (n, k), 1250 if args.quick else 5000)
            rows = max(table_rows, k)
            x = generate(n, k, rows, args.seed)
            path = os.path.join(tmpdir, "rows-%dx%d.f64" % (n, k))
            x.astype("<f8").tofile(path)

            lapack_rate, s_ref, vt_ref = run_lapack(x, args.repeat, clock)
            s_ref, vt_ref = s_ref[:k], vt_ref[:k]

            isvd = {}
            for mode in ("truncated", "exact"):
                if mode == "exact" and (n > EXACT_MAX_DIM or "exact" in skip):
                    continue
                res, s_i, vt_i = run_isvd(bench, path, n, k, rows, args.block, args.repeat,
                                          tmpdir, mode, args.extra)
                rate = rows / res["cpu_seconds"] if args.cpu_time else res["rows_per_s"]
                isvd[mode] = ("%s, %d thr" % (res["block"], res.get("threads", 1)),
                              (rate,) + scores(s_ref, vt_ref, s_i, vt_i))
                if not blas_noted:
                    print("isvd-bench BLAS: %s kernel, %d thread(s); the engine splits its own "
                          "products over the threads shown with its block"
                          % (res.get("blas_core", "?"), res.get("blas_threads", 0)), flush=True)
                    blas_noted = True

            others = []    # (name, block/batch label, (rows/s, σ err, sin θ))
            if "daemon" not in skip:
                rate, dmode, s_d, vt_d = run_daemon(isvdd, tmpdir, x, k, args.extra)
                others.append(("isvd daemon, Python client (%s)" % dmode, str(DAEMON_PUSH_ROWS),
                               (rate,) + scores(s_ref, vt_ref, s_d, vt_d)))
                print("  %dx%d isvd daemon        %9.0f rows/s" % (n, k, rate),
                      file=sys.stderr, flush=True)
            if "streamingpca" not in skip:
                sbest = None
                for th in ipca_thread_counts():
                    rate, sb, smode, s_s, vt_s = run_streaming_pca(x, k, args.repeat, clock, th,
                                                                   args.extra)
                    print("  %dx%d StreamingPCA (%s) BLAS threads %d %9.0f rows/s"
                          % (n, k, smode, th, rate), file=sys.stderr, flush=True)
                    if sbest is None or rate > sbest[2][0]:
                        sbest = ("isvd.StreamingPCA, in process (%s)" % smode,
                                 "%d, %d thr" % (sb, th),
                                 (rate,) + scores(s_ref, vt_ref, s_s, vt_s))
                others.insert(0, sbest)
            gens, gcomp = {}, {}
            if "gensim" not in skip:
                xc = x - x.mean(axis=0)
                for c in [c for c in GENSIM_CHUNKS if c <= max(rows // 2, GENSIM_CHUNKS[0])]:
                    rate, s_g, vt_g = run_gensim(xc, k, c, args.repeat, clock, args.seed)
                    gens[c] = (rate,) + scores(s_ref, vt_ref, s_g, vt_g)
                    gcomp[c] = len(s_g)
                    print("  %dx%d gensim chunk %-5d %9.0f rows/s" % (n, k, c, rate),
                          file=sys.stderr, flush=True)
                del xc
            if "lapack" not in skip:
                others.append(("LAPACK SVD of all rows (batch)", "all", (lapack_rate, 0.0, 0.0)))

            ipca = {}      # batch -> (rows/s, σ err, sin θ, threads) at its best thread count
            cands = batch_candidates(k, rows)
            if "ipca-search" in skip:
                cands = [k]
            for b in cands:
                for th in ipca_thread_counts():
                    rate, s_p, vt_p = run_ipca(x, k, b, args.repeat, clock, th)
                    print("  %dx%d IPCA batch %-5d threads %d %9.0f rows/s" % (n, k, b, th, rate),
                          file=sys.stderr, flush=True)
                    if b not in ipca or rate > ipca[b][0]:
                        ipca[b] = (rate,) + scores(s_ref, vt_ref, s_p, vt_p) + (th,)
            best = max(ipca, key=lambda b: ipca[b][0])
            gbest = max(gens, key=lambda c: gens[c][0]) if gens else None
            table.append((n, k, rows, isvd, ipca[k], best, ipca[best], others, gens, gbest, gcomp))
            searches.append((n, k, ipca, best, gens, gbest))
            os.unlink(path)

    print("| n | k | rows | method | block / batch | rows/s | σ err | sin θ "
          "| vs IPCA b=k | vs IPCA best | vs gensim best |")
    print("|---:|---:|---:|:---|---:|---:|---:|---:|---:|---:|---:|")
    for n, k, rows, isvd, pk, best, pb, others, gens, gbest, gcomp in table:
        lines = [("isvd " + mode, block, v) for mode, (block, v) in isvd.items()]
        lines += others
        lines += [("IncrementalPCA", "%d, %d thr" % (k, pk[3]), pk)]
        if best != k:
            lines += [("IncrementalPCA (fastest)", "%d, %d thr" % (best, pb[3]), pb)]
        lines += [("gensim LsiModel%s%s" % (" (fastest)" if c == gbest and len(gens) > 1 else "",
                                             "" if gcomp[c] >= k else
                                             ", %d of %d components" % (gcomp[c], k)),
                   c, v) for c, v in sorted(gens.items())]
        for name, b, v in lines:
            vs_g = "%.1f×" % (v[0] / gens[gbest][0]) if gens else "–"
            print("| %d | %d | %d | %s | %s | %s | %s | %s | %.1f× | %.1f× | %s |"
                  % (n, k, rows, name, b, fmt_rate(v[0]), fmt_err(v[1]), fmt_err(v[2]),
                     v[0] / pk[0], v[0] / pb[0], vs_g))
        if "exact" not in isvd:
            print("| %d | %d | %d | isvd exact | – | not run: %s | | | | | |"
                  % (n, k, rows, "skipped" if "exact" in skip else "n > %d" % EXACT_MAX_DIM))
    if any(c < k for row in table for c in row[10].values() for k in [row[1]]):
        print()
        print("gensim returns fewer than k components when the last ones hold less than 0.1% "
              "of the energy (its clip_spectrum); a missing component counts as sin θ = 1 and "
              "σ̂ = 0, as for every method.")
    print()
    print("IncrementalPCA batch-size search (rows/s at the faster BLAS thread count; "
          "* = fastest):")
    print()
    print("| n | k | " + " | ".join(["batch: rows/s, σ err, sin θ"]) + " |")
    print("|---:|---:|:---|")
    for n, k, ipca, best, _, _ in searches:
        cells = ["%d%s: %s (%d thr), %s, %s" % (b, "*" if b == best else "", fmt_rate(v[0]),
                                                 v[3], fmt_err(v[1]), fmt_err(v[2]))
                 for b, v in sorted(ipca.items())]
        print("| %d | %d | %s |" % (n, k, "; ".join(cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
