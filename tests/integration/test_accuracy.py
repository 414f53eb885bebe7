"""10,000 seeded rows streamed in pushes of varied sizes; the factors the
daemon reports match numpy's SVD of the same rows (and PCA with centring):
sigma to 1e-8 relative, the subspace to 1e-6.  The data have rank 12 in
dimension 40, so rank 8 + extra 10 loses nothing to truncation."""
import numpy as np
import pytest

from isvdd_harness import Daemon, mat, sign_normalise, unmat

N, DIM, TRUE_RANK, K = 10_000, 40, 12, 8


def data(center):
    rng = np.random.default_rng(20261123)
    basis = np.linalg.qr(rng.standard_normal((DIM, TRUE_RANK)))[0].T       # 12 x 40
    scales = np.geomspace(50.0, 1.0, TRUE_RANK)
    X = (rng.standard_normal((N, TRUE_RANK)) * scales) @ basis
    if center:
        X += rng.uniform(-20, 20, DIM)
    return X


@pytest.mark.parametrize("center,max_rows", [(False, 1024), (True, 100)])
def test_factors_match_numpy(tmp_path, center, max_rows):
    X = data(center)
    d = Daemon(tmp_path, model={"dim": 0, "rank": K, "extra": 10, "center": center},
               extra_sections={"batching": {"max_rows": max_rows}})
    try:
        rng = np.random.default_rng(7)
        at, pushes = 0, 0
        while at < N:
            n = int(rng.choice([1, 2, 7, 33, 100, 257, 900]))
            r = d.push(X[at:at + n])
            assert r["ok"] and r["accepted"] == min(n, N - at) and r["seq"] == min(at + n, N), r
            at += n
            pushes += 1
        sigma, vt, mean, seq = d.factors()
        assert seq == N and d.info()["rows_seen"] == N
    finally:
        assert d.stop() == 0

    mu = X.mean(axis=0) if center else np.zeros(DIM)
    _, s, vtn = np.linalg.svd(X - mu, full_matrices=False)
    assert sigma.shape == (K,) and vt.shape == (K, DIM)
    rel = np.max(np.abs(sigma - s[:K]) / s[:K])
    assert rel < 1e-8, rel
    # subspace: the projectors agree, and so do the sign-normalised vectors
    P = vt.T @ vt - vtn[:K].T @ vtn[:K]
    assert np.linalg.norm(P, 2) < 1e-6
    assert np.max(np.abs(vt - sign_normalise(vtn[:K]))) < 1e-6
    assert np.array_equal(vt, sign_normalise(vt))
    if center:
        assert np.max(np.abs(mean - mu)) < 1e-9 * np.max(np.abs(mu))
    else:
        assert mean is None
    print(f"center={center} pushes={pushes} max rel sigma err {rel:.2e} "
          f"projector err {np.linalg.norm(P, 2):.2e}")


def test_projection_matches_numpy(tmp_path):
    X = data(True)[:3000]
    d = Daemon(tmp_path, model={"dim": DIM, "rank": K, "extra": 10, "center": True})
    try:
        for i in range(0, len(X), 500):
            assert d.push(X[i:i + 500])["ok"]
        sigma, vt, mean, _ = d.factors()
        Y = X[:10] * 1.01
        r = d.call(d.q, {"op": "project", "rows": mat(Y)})
        assert r["seq"] == 3000
    finally:
        assert d.stop() == 0
    mu = X.mean(axis=0)
    vtn = sign_normalise(np.linalg.svd(X - mu, full_matrices=False)[2][:K])
    want = (Y - mu) @ vtn.T
    assert np.max(np.abs(unmat(r["coords"]) - want)) < 1e-6 * np.max(np.abs(want))
