"""isvd.StreamingPCA against scikit-learn's IncrementalPCA and PCA.

Run with the INSTALLED package (tests/integration/test_python_package.py
pip-installs it into a venv and runs this file with the venv's python from
outside the source tree); the source tree alone has no engine extension.

Tolerances: against PCA, tight (exact mode folds every row exactly, so the
two agree to rounding); against IncrementalPCA, the ones scikit-learn's own
tests (sklearn/decomposition/tests/test_incremental_pca.py) hold
IncrementalPCA to against PCA, since IncrementalPCA truncates to k after
every batch and is itself only that close.
"""
import os
import pickle
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_almost_equal, assert_array_almost_equal
from sklearn.datasets import load_digits, load_iris, make_low_rank_matrix
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import isvd
from isvd import StreamingPCA


def low_rank(seed=0):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((40, 5)))[0].T
    X = (rng.standard_normal((600, 5)) * [10, 5, 3, 2, 1]) @ basis
    return X + 1e-3 * rng.standard_normal(X.shape) + rng.standard_normal(40) * 5


DATASETS = {
    "iris": lambda: load_iris().data,
    "digits": lambda: load_digits().data,
    "lowrank": low_rank,
}


def align(a, ref):
    """a's rows (or columns for scores: pass .T) flipped to agree in sign with ref's."""
    s = np.sign(np.sum(a * ref, axis=1))
    s[s == 0] = 1
    return a * s[:, None]


# ----------------------------------------------------------------- installed

def test_installed_package_not_the_source_tree():
    root = os.environ.get("ISVD_SOURCE_ROOT")
    here = os.path.realpath(isvd.__file__)
    assert root and not here.startswith(os.path.realpath(root) + os.sep), here
    from isvd import _engine
    assert isvd.__version__ == _engine.__version__
    with open(os.path.join(root, "meson.build"), encoding="utf-8") as f:
        assert re.search(r"version\s*:\s*'%s'" % re.escape(isvd.__version__), f.read())


# ----------------------------------------------------------------- accuracy

@pytest.mark.parametrize("name,k", [("iris", 2), ("iris", 4), ("digits", 10), ("digits", 40),
                                    ("lowrank", 5)])
def test_against_pca_exact(name, k):
    X = DATASETS[name]()
    s = StreamingPCA(n_components=k, mode="exact").fit(X)
    p = PCA(n_components=k, svd_solver="full").fit(X)
    scale = p.singular_values_[0]
    assert s.components_.shape == (k, X.shape[1]) and s.n_components_ == k
    assert_allclose(align(s.components_, p.components_), p.components_, atol=1e-9)
    assert_allclose(s.singular_values_, p.singular_values_, rtol=0, atol=1e-12 * scale)
    assert_allclose(s.explained_variance_, p.explained_variance_, rtol=1e-10)
    assert_allclose(s.explained_variance_ratio_, p.explained_variance_ratio_, rtol=1e-10)
    assert_allclose(s.noise_variance_, p.noise_variance_, rtol=1e-9, atol=1e-12 * scale)
    assert_allclose(s.mean_, p.mean_, atol=1e-12 * np.abs(X).max())
    Zs, Zp = s.transform(X), p.transform(X)
    assert_allclose(align(Zs.T, Zp.T).T, Zp, atol=1e-9 * scale)
    assert_allclose(s.inverse_transform(Zs), p.inverse_transform(Zp), atol=1e-9 * scale)
    assert_allclose(s.get_covariance(), p.get_covariance(), atol=1e-9 * scale)
    assert_allclose(s.score_samples(X), p.score_samples(X), rtol=1e-6)
    assert_allclose(s.score(X), p.score(X), rtol=1e-6)
    if p.noise_variance_ > 1e-6:
        assert_allclose(s.get_precision(), p.get_precision(), rtol=1e-6, atol=1e-9)


# top: how many leading components IncrementalPCA gets right to its own
# tests' tolerance on that data (on digits it truncates a slowly decaying
# spectrum to k after every batch, and its later components drift).
@pytest.mark.parametrize("name,k,batch,top", [("iris", 2, 10, 2), ("digits", 10, None, 2),
                                              ("lowrank", 5, 50, 5)])
def test_against_incremental_pca(name, k, batch, top):
    X = DATASETS[name]()
    s = StreamingPCA(n_components=k, batch_size=batch).fit(X)
    i = IncrementalPCA(n_components=k, batch_size=batch).fit(X)
    # the attributes IncrementalPCA computes exactly
    assert s.n_samples_seen_ == i.n_samples_seen_ == X.shape[0]
    assert s.batch_size_ == i.batch_size_ and s.n_features_in_ == i.n_features_in_
    assert_allclose(s.mean_, i.mean_, atol=1e-12 * np.abs(X).max())
    assert_allclose(s.var_, i.var_, rtol=1e-10, atol=1e-12)
    # test_incremental_pca_against_pca_iris / _random_data: decimal 1 on
    # |scores| of iris, whose scores reach about 4: 0.04 of the largest score
    Zs, Zi = np.abs(s.transform(X))[:, :top], np.abs(i.transform(X))[:, :top]
    assert_allclose(Zs, Zi, rtol=0, atol=0.04 * Zi[:, 0].max())
    # test_explained_variances: decimal 3 on ratios (and variances relative)
    assert_array_almost_equal(s.explained_variance_ratio_, i.explained_variance_ratio_, 3)
    assert_allclose(s.explained_variance_, i.explained_variance_, rtol=0.05)
    # test_singular_values: decimal 2 relative to the scale
    assert_array_almost_equal(s.singular_values_ / s.singular_values_[0],
                              i.singular_values_ / s.singular_values_[0], 2)
    # the same sign convention (svd_flip with u_based_decision=False) where
    # IncrementalPCA's component is accurate
    cos = np.sum(s.components_ * i.components_, axis=1)
    assert np.all(cos[np.abs(cos) > 0.99] > 0)
    if top == k:
        assert_almost_equal(s.inverse_transform(s.transform(X)),
                            i.inverse_transform(i.transform(X)), 0)


def test_truncated_mode_close_to_pca():
    X = load_digits().data
    s = StreamingPCA(n_components=10, mode="truncated", batch_size=100).fit(X)
    assert s._model.info()["mode"] == "truncated"
    p = PCA(n_components=10, svd_solver="full").fit(X)
    assert_allclose(s.explained_variance_, p.explained_variance_, rtol=5e-3)
    assert_allclose(np.abs(np.sum(s.components_ * p.components_, axis=1)), 1, atol=2e-3)


def test_one_row_at_a_time_equals_fit_and_n_components_none():
    X = low_rank(1)[:120]
    s = StreamingPCA(n_components=None)
    s.partial_fit(X[:10])                     # None: min(first batch, n_features) = 10
    assert s.n_components_ == 10
    for row in X[10:]:
        s.partial_fit(row[None, :])
    f = StreamingPCA(n_components=10, batch_size=10, mode="exact").fit(X)
    assert s.n_samples_seen_ == f.n_samples_seen_ == 120
    assert_allclose(s.components_[:5], f.components_[:5], atol=1e-8)
    assert_allclose(s.explained_variance_, f.explained_variance_, rtol=1e-9, atol=1e-12)
    assert_allclose(s.var_, X.var(axis=0), rtol=1e-10)
    assert_allclose(s.mean_, X.mean(axis=0), atol=1e-10)


def test_whiten():
    X = load_iris().data
    s = StreamingPCA(n_components=3, whiten=True).fit(X)
    p = PCA(n_components=3, whiten=True, svd_solver="full").fit(X)
    Z = s.transform(X)
    assert_allclose(Z.var(axis=0, ddof=1), 1, rtol=1e-9)
    assert_allclose(np.abs(Z), np.abs(p.transform(X)), atol=1e-9)
    assert_allclose(s.inverse_transform(Z), p.inverse_transform(p.transform(X)), atol=1e-9)
    assert_allclose(s.get_covariance(), p.get_covariance(), atol=1e-9)


def test_forgetting_is_weighted_pca():
    X = low_rank(2)[:300]
    lam = 0.99
    s = StreamingPCA(n_components=4, forget=lam, batch_size=37, mode="exact").fit(X)
    h = StreamingPCA(n_components=4, half_life=-1.0 / np.log2(lam), batch_size=37,
                     mode="exact").fit(X)
    w = lam ** np.arange(len(X) - 1, -1, -1)
    mu = (w[:, None] * X).sum(axis=0) / w.sum()
    _, sig, vt = np.linalg.svd(np.sqrt(w)[:, None] * (X - mu), full_matrices=False)
    assert_allclose(s.mean_, mu, atol=1e-9)
    assert_allclose(s.singular_values_, sig[:4], rtol=1e-9)
    assert_allclose(np.abs(np.sum(s.components_ * vt[:4], axis=1)), 1, atol=1e-9)
    assert_allclose(s.var_, (w[:, None] * (X - mu) ** 2).sum(axis=0) / w.sum(), rtol=1e-9)
    assert_allclose(h.components_, s.components_, atol=1e-12)
    with pytest.raises(ValueError, match="forget or half_life"):
        StreamingPCA(forget=0.9, half_life=10).fit(X)


# ----------------------------------------------------------------- scikit-learn conventions

@pytest.mark.parametrize("params", [{}, {"whiten": True, "mode": "truncated"},
                                    {"missing": "impute"}])
def test_check_estimator(params):
    check_estimator(StreamingPCA(**params))


def test_pipeline_and_set_params():
    X, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), StreamingPCA(n_components=20),
                         LogisticRegression(max_iter=2000))
    ref = make_pipeline(StandardScaler(), IncrementalPCA(n_components=20),
                        LogisticRegression(max_iter=2000))
    a = pipe.fit(X, y).score(X, y)
    b = ref.fit(X, y).score(X, y)
    assert a > 0.9 and abs(a - b) < 0.03
    pipe.set_params(streamingpca__n_components=5).fit(X, y)
    assert pipe[1].components_.shape == (5, 64)
    assert list(pipe[1].get_feature_names_out()) == [f"streamingpca{i}" for i in range(5)]


def test_sparse_input_densified_per_batch():
    X = load_digits().data
    S = sp.csr_matrix(X)
    a = StreamingPCA(n_components=8, batch_size=200).fit(S)
    b = StreamingPCA(n_components=8, batch_size=200).fit(X)
    assert_allclose(a.components_, b.components_, rtol=0, atol=0)
    assert_allclose(a.transform(S), b.transform(X), atol=1e-12)
    with pytest.raises(TypeError, match="does not support sparse input"):
        StreamingPCA(n_components=8).partial_fit(S)
    with pytest.raises(TypeError, match="does not support sparse input"):
        IncrementalPCA(n_components=8).partial_fit(S)


def test_float32_in_float32_out():
    X = load_iris().data
    s = StreamingPCA(n_components=2).fit(X.astype(np.float32))
    Z = s.transform(X.astype(np.float32))
    assert Z.dtype == np.float32 and s.inverse_transform(Z).dtype == np.float32
    assert s.transform(X).dtype == np.float64


# The errors: ValueError as IncrementalPCA's, with wording close enough that
# one pattern matches both.
ERRORS = [
    (dict(n_components=0), lambda e: e.fit(np.ones((5, 4))),
     r"'n_components' parameter of \w+ must be an int in the range \[1, inf\) or None"),
    (dict(n_components="3"), lambda e: e.fit(np.ones((5, 4))),
     r"'n_components' parameter of \w+ must be an int in the range \[1, inf\) or None"),
    (dict(n_components=5), lambda e: e.fit(np.arange(40.0).reshape(10, 4)),
     r"n_components=5 invalid for n_features=4"),
    (dict(n_components=2), lambda e: e.fit(np.random.rand(10, 4)).transform(np.ones((2, 3))),
     r"X has 3 features, but \w+ is expecting 4 features as input"),
    (dict(n_components=2), lambda e: e.partial_fit(np.random.rand(10, 4)).partial_fit(
        np.ones((3, 5))), r"X has 5 features, but \w+ is expecting 4 features as input"),
    (dict(n_components=2), lambda e: e.fit(np.array([[1.0, np.nan], [2.0, 3.0], [4, 5]])),
     r"Input X contains NaN"),
    (dict(n_components=2), lambda e: e.fit(np.array([[1.0, np.inf], [2.0, 3.0], [4, 5]])),
     r"Input X contains infinity"),
    (dict(), lambda e: e.fit(np.ones((0, 3))), r"Found array with 0 sample\(s\)"),
    (dict(), lambda e: e.fit(np.ones(3)), r"Expected 2D array, got 1D array instead"),
]


@pytest.mark.parametrize("params,call,pattern", ERRORS)
def test_errors_match_incremental_pca(params, call, pattern):
    for cls in (StreamingPCA, IncrementalPCA):
        with pytest.raises(ValueError, match=pattern):
            call(cls(**params))


def test_not_fitted():
    with pytest.raises(NotFittedError):
        StreamingPCA().transform(np.ones((2, 3)))


# ----------------------------------------------------------------- missing values

def test_missing_impute():
    X = low_rank(3)
    rng = np.random.default_rng(3)
    Y = X.copy()
    # gaps after a warm-up: in the engine's first block gaps can only take
    # the running mean (0 before any row; update/missing.c), which biases
    # what follows, so a stream with gaps should start with complete rows
    Y[200:][rng.random(Y[200:].shape) < 0.05] = np.nan
    s = StreamingPCA(n_components=5, missing="impute").fit(Y)
    info = s._model.info()
    assert info["rows_with_gaps"] > 0 and info["values_imputed"] == np.isnan(Y).sum()
    full = StreamingPCA(n_components=5).fit(X)
    assert_allclose(np.abs(np.sum(s.components_ * full.components_, axis=1)), 1, atol=1e-3)
    # var_ covers the observed values
    assert_allclose(s.var_, np.nanvar(Y, axis=0), rtol=1e-9)
    # transform completes a row with gaps by the engine's estimator first
    filled = np.frombuffer(s._model.impute(np.ascontiguousarray(Y[:20]))).reshape(20, -1)
    assert not np.isnan(filled).any()
    assert_allclose(s.transform(Y[:20]), s.transform(filled), atol=1e-12)
    assert_allclose(s.transform(Y[:20]), full.transform(X[:20]), atol=0.05 * np.abs(X).max())
    with pytest.raises(ValueError, match="no observed value"):
        s.partial_fit(np.full((1, X.shape[1]), np.nan))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        StreamingPCA(n_components=5).fit(Y)


def test_engine_magnitude_limit_is_a_value_error():
    X = np.random.default_rng(0).random((10, 3))
    X[2, 1] = 1e200
    with pytest.raises(ValueError, match="engine refuses"):
        StreamingPCA(n_components=2).fit(X)


# ----------------------------------------------------------------- persistence

def fitted(**kw):
    X = DATASETS["digits"]()
    return StreamingPCA(n_components=6, **kw).fit(X[:1000]), X


def same_fit(a, b):
    for name in ("components_", "explained_variance_", "explained_variance_ratio_",
                 "singular_values_", "mean_", "var_"):
        assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=0, err_msg=name)
    assert a.noise_variance_ == b.noise_variance_
    assert a.n_samples_seen_ == b.n_samples_seen_ and a.n_components_ == b.n_components_


def test_save_load_and_continue(tmp_path):
    a, X = fitted(missing="impute", extra=3)
    path = tmp_path / "m.isvd"
    a.save(path)
    b = StreamingPCA.load(path)
    assert b.get_params() == a.get_params()
    same_fit(a, b)
    a.partial_fit(X[1000:])
    b.partial_fit(X[1000:])
    same_fit(a, b)                                    # bit-identical continuation
    # a bare engine image (what isvd_model_save writes) loads too; var_ unknown
    bare = tmp_path / "bare.img"
    bare.write_bytes(a._model.save())
    c = StreamingPCA.load(bare)
    assert_allclose(c.components_, a.components_, rtol=0, atol=0)
    assert np.isnan(c.var_).all() and c.n_components_ == 6
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not an isvd model image"):
        StreamingPCA.load(path)


def test_pickle_and_continue():
    a, X = fitted(whiten=True)
    b = pickle.loads(pickle.dumps(a))
    same_fit(a, b)
    assert_allclose(a.transform(X), b.transform(X), rtol=0, atol=0)
    a.partial_fit(X[1000:])
    b.partial_fit(X[1000:])
    same_fit(a, b)


def test_gil_released_during_fold():
    """Another Python thread runs while the engine folds: the main thread's
    loop leaves time stamps in the middle third of the fold's span.  Were
    the GIL held, none could fall there (at most a switch interval's worth
    right after the fold thread's first stamp, before the C call)."""
    from isvd import _engine
    rows = np.ascontiguousarray(np.random.default_rng(5).standard_normal((3000, 200)))
    model = _engine.Model(200, 20, mode="exact")
    span = {}

    def fold():
        span["a"] = time.perf_counter()
        model.update(rows)
        span["b"] = time.perf_counter()

    t = threading.Thread(target=fold)
    stamps = []
    t.start()
    while t.is_alive():
        stamps.append(time.perf_counter())
        time.sleep(0.0005)
    t.join()
    a, b = span["a"], span["b"]
    third = (b - a) / 3
    assert model.rows_seen == 3000
    assert any(a + third < s < b - third for s in stamps), (a, b, len(stamps))


def test_one_model_shared_by_threads_takes_turns():
    """Threads folding into and reading one Model are serialised by its lock:
    every row is folded once (exact mode: σ equal numpy's, uncentred) and
    every read sees a consistent model."""
    from isvd import _engine
    X = np.random.default_rng(6).standard_normal((4000, 12)) * np.linspace(4, 1, 12)
    model = _engine.Model(12, 12, mode="exact", center=False)
    model.update(np.ascontiguousarray(X[:10]))
    errors = []

    def fold(part):
        for i in range(0, len(part), 50):
            model.update(np.ascontiguousarray(part[i:i + 50]))

    def read():
        try:
            for _ in range(200):
                coords, residual, r = model.project(np.ascontiguousarray(X[:3]))
                assert len(coords) == 3 * r * 8 and len(residual) == 3 * 8
                _engine.load(model.save())
        except Exception as e:            # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=fold, args=(p,)) for p in np.array_split(X[10:], 3)]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert model.rows_seen == 4000
    sigma = np.frombuffer(model.factors()[0])
    assert_allclose(sigma, np.linalg.svd(X, compute_uv=False), rtol=1e-9)


# ----------------------------------------------------------------- without scikit-learn

PLAIN = r"""
import sys, json
sys.modules["sklearn"] = None             # import sklearn now fails
import numpy as np, isvd, isvd.pca
assert not isvd.pca._SKLEARN
X = np.load(sys.argv[1])
s = isvd.StreamingPCA(n_components=3, whiten=True)
assert s.get_params()["n_components"] == 3 and s.set_params(whiten=False) is s
try:
    s.transform(X)
except isvd.pca.NotFittedError:
    pass
s.fit(X)
np.savez(sys.argv[2], c=s.components_, z=s.transform(X[:5]))
errors = []
for call in (lambda: isvd.StreamingPCA(n_components=0).fit(X),
             lambda: isvd.StreamingPCA(n_components=99).fit(X),
             lambda: s.transform(X[:, :2]),
             lambda: isvd.StreamingPCA().fit(np.where(X > 7, np.nan, X)),
             lambda: isvd.StreamingPCA().fit(np.ones(4))):
    try:
        call()
    except ValueError as e:
        errors.append(str(e))
print(json.dumps({"names": list(s.get_feature_names_out()), "errors": errors}))
"""


def test_without_sklearn(tmp_path):
    X = load_iris().data
    np.save(tmp_path / "x.npy", X)
    r = subprocess.run([sys.executable, "-c", PLAIN, str(tmp_path / "x.npy"),
                        str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json
    out = json.loads(r.stdout)
    ref = StreamingPCA(n_components=3).fit(X)
    got = np.load(tmp_path / "out.npz")
    assert_allclose(got["c"], ref.components_, rtol=0, atol=0)
    assert_allclose(got["z"], ref.transform(X[:5]), rtol=0, atol=0)
    assert out["names"] == ["streamingpca0", "streamingpca1", "streamingpca2"]
    patterns = [r"'n_components' parameter of StreamingPCA must be an int in the range",
                r"n_components=99 invalid for n_features=4",
                r"X has 2 features, but StreamingPCA is expecting 4 features as input",
                r"Input X contains NaN", r"Expected 2D array, got 1D array instead"]
    assert len(out["errors"]) == len(patterns)
    for msg, pat in zip(out["errors"], patterns):
        assert re.search(pat, msg), (pat, msg)
