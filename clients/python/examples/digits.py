#!/usr/bin/python3
"""digits.py — stream scikit-learn's bundled digits into isvdd; compare with PCA.

Loads sklearn.datasets.load_digits() (1797 images of 8×8 pixels = 64
features, shipped with scikit-learn, no download), pushes the rows to a
running isvdd in batches, then compares what the daemon learned with
sklearn.decomposition.PCA fitted on the same rows:

  * explained variance per component (σᵢ² / (N − 1)) and its ratio,
  * the subspace: sine of the largest principal angle between the daemon's
    top-k right singular vectors and PCA's components_, and the largest
    per-component angle,
  * scores: Factors.transform(X) against PCA.transform(X), after matching
    each component's sign, and the daemon's project() against both.

The daemon must centre rows (model.center: true), have dimension 0 or 64,
and have seen no rows yet, e.g. started with

    model:     {dim: 0, rank: 10, center: true}

Endpoints come from --ingest/--query or ISVD_INGEST/ISVD_QUERY (defaults
tcp://127.0.0.1:5570/5571).  Exit status: 0 on success, 1 when the daemon
fails, 2 on a usage problem (e.g. a daemon that already holds rows).
"""
import argparse
import os
import sys
import time

import numpy as np

try:
    import isvd
except ImportError:     # run from a source tree: clients/python is the parent of examples/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import isvd


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Stream scikit-learn's digits data set into isvdd and compare the "
                    "daemon's factors with sklearn.decomposition.PCA.",
        epilog="The daemon must run with model.center: true and hold no rows yet.")
    p.add_argument("--ingest", default=None,
                   help="ingest endpoint (default: $ISVD_INGEST or tcp://127.0.0.1:5570)")
    p.add_argument("--query", default=None,
                   help="query endpoint (default: $ISVD_QUERY or tcp://127.0.0.1:5571)")
    p.add_argument("--batch-rows", type=int, default=100, metavar="R",
                   help="rows per push (default 100)")
    p.add_argument("--rows", type=int, default=0, metavar="N",
                   help="stream only the first N images (default: all 1797)")
    p.add_argument("--components", type=int, default=0, metavar="K",
                   help="components to compare (default: the daemon's rank)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for each reply (default 10)")
    a = p.parse_args(argv)
    if a.batch_rows < 1 or a.rows < 0 or a.components < 0 or a.timeout <= 0:
        p.error("--batch-rows and --timeout must be positive, --rows and --components >= 0")
    return a


def principal_sines(A, B):
    """Sines of the principal angles between the row spaces of A and B (orthonormal
    rows of equal count): the singular values of A's rows minus their projection on
    B's (accurate for small angles, unlike sqrt(1 - cos^2))."""
    return np.linalg.svd(A - (A @ B.T) @ B, compute_uv=False)


def main(argv=None):
    a = parse_args(argv)
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    X = load_digits().data                     # (1797, 64) float64, pixel values 0..16
    if a.rows:
        X = X[:a.rows]
    N, n = X.shape

    with isvd.Client(ingest=a.ingest, query=a.query, timeout=a.timeout) as c:
        try:
            info = c.info()
        except isvd.Timeout as e:
            print(f"digits: no answer from isvdd at {c.query}: {e}", file=sys.stderr)
            return 1
        if not info["center"] or info["rows_seen"] or info["dim"] not in (0, n):
            print(f"digits: need a fresh daemon with model.center: true and dim 0 or {n}; "
                  f"this one has center={info['center']}, dim={info['dim']}, "
                  f"rows_seen={info['rows_seen']}", file=sys.stderr)
            return 2
        k = min(a.components or info["rank_max"] or 10, n, N - 1)

        t0 = time.perf_counter()
        for i in range(0, N, a.batch_rows):
            ack = c.push(X[i:i + a.batch_rows])
        t_push = time.perf_counter() - t0
        f = c.factors()
        info = c.info()
        coords, residual = c.project(X)
        recon = c.reconstruct(X[:5])

    if f.seq != N or ack.seq != N:
        print(f"digits: the daemon reports seq {f.seq}, {N} rows were pushed", file=sys.stderr)
        return 1
    k = min(k, f.n_components_)
    pca = PCA(n_components=k, svd_solver="full").fit(X)

    ev_isvd = f.sigma[:k] ** 2 / (N - 1)
    ev_pca = pca.explained_variance_
    total_var = X.var(axis=0, ddof=1).sum()
    sines = principal_sines(f.vt[:k], pca.components_)
    # per component: align signs, then compare vectors and scores
    signs = np.sign(np.sum(f.vt[:k] * pca.components_, axis=1))
    comp_err = np.abs(f.vt[:k] - signs[:, None] * pca.components_).max(axis=1)
    z_isvd = f.transform(X)[:, :k]
    z_pca = pca.transform(X) * signs
    score_err = np.abs(z_isvd - z_pca).max() / np.abs(z_pca).max()
    proj_err = np.abs(coords[:, :k] - z_isvd).max() / np.abs(z_isvd).max()
    recon_err = np.abs(recon - f.inverse_transform(f.transform(X[:5]))).max()

    print(f"digits: {N} images x {n} pixels streamed in pushes of {a.batch_rows} rows "
          f"({t_push * 1e3:.0f} ms, seq {ack.seq}); daemon rank {info['rank']}, comparing k = {k}")
    print(f"{'i':>3} {'isvd var':>12} {'PCA var':>12} {'rel diff':>9} {'isvd ratio':>11} "
          f"{'PCA ratio':>10} {'|v - v_pca|':>12}")
    for i in range(k):
        print(f"{i + 1:>3} {ev_isvd[i]:>12.6f} {ev_pca[i]:>12.6f} "
              f"{abs(ev_isvd[i] - ev_pca[i]) / ev_pca[i]:>9.1e} {ev_isvd[i] / total_var:>11.6f} "
              f"{pca.explained_variance_ratio_[i]:>10.6f} {comp_err[i]:>12.1e}")
    print(f"explained variance ratio, top {k}: isvd {ev_isvd.sum() / total_var:.6f}  "
          f"PCA {pca.explained_variance_ratio_.sum():.6f}")
    print(f"daemon explained_energy_ratio (top {info['rank']} of the model): "
          f"{info['explained_energy_ratio']:.6f}")
    print(f"max relative variance difference: {np.max(np.abs(ev_isvd - ev_pca) / ev_pca):.2e}")
    print(f"subspace: sin of largest principal angle {sines.max():.2e}")
    print(f"scores: Factors.transform vs PCA.transform, max rel diff {score_err:.2e}; "
          f"daemon project vs Factors.transform {proj_err:.2e}")
    print(f"reconstruct vs Factors.inverse_transform(transform): max abs diff {recon_err:.2e}; "
          f"mean residual {residual.mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
