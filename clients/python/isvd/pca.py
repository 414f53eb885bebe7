"""isvd.pca — StreamingPCA: scikit-learn's IncrementalPCA, backed by isvd's engine in process.

    from isvd import StreamingPCA
    pca = StreamingPCA(n_components=10)
    for X in batches:
        pca.partial_fit(X)             # folded by the engine, the GIL released
    Z = pca.transform(X_new)
    pca.save("model.isvd"); pca = StreamingPCA.load("model.isvd")

The constructor parameters, methods and fitted attributes are
IncrementalPCA's (scikit-learn 1.2), plus isvd's own parameters (extra,
forget / half_life, mode, missing, reorth_every).  With scikit-learn
installed the class is a BaseEstimator and TransformerMixin (usable in a
Pipeline, passing check_estimator) and validates input with scikit-learn's
own code, so its errors are scikit-learn's; without it, it is a plain class
with the same API and errors worded the same way.

DESIGN
    The engine (isvd._engine.Model over update/isvd_model.h, centring on)
    holds the state: per block it folds rows into the SVD of the centred
    (optionally exponentially weighted) stream, exactly for every block size
    in exact mode, and to k + extra components in truncated mode
    ("auto" picks per dimension).  IncrementalPCA instead truncates to k
    after every batch, so this is at least as accurate, and in exact mode it
    equals PCA of all rows seen to rounding.

    After each fit / partial_fit the fitted attributes are read from the
    engine once (factors and info), so transform, inverse_transform and the
    covariance methods are plain numpy on those attributes, as in
    scikit-learn, and never change the object (check_dict_unchanged).

    Quantities, with W the rows' total weight (the number of rows without
    forgetting) and E the centred energy Σ w_t‖x_t − μ‖² (both exact in the
    engine):
        components_          the top k right singular vectors (sign: the
                             largest |entry| of each is positive, as
                             scikit-learn's svd_flip(u_based_decision=False));
                             padded with an orthonormal completion when the
                             data has fewer than k directions
        explained_variance_  σ²/(W − 1)   (IncrementalPCA: S²/(n − 1))
        explained_variance_ratio_  σ²/E
        noise_variance_      PCA's: the mean variance of the directions
                             beyond k, (E − Σσ²)/((W − 1)(min(N, n) − k))
        var_                 per-feature variance (ddof 0) of the observed
                             values, weighted like the rows, kept here
        n_samples_seen_      rows folded (N)
"""
import json
import math
import numbers
import os
import struct

import numpy as np

try:  # scikit-learn is optional: with it, a proper estimator
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted
    try:
        from sklearn.utils._param_validation import InvalidParameterError
    except ImportError:  # scikit-learn < 1.2
        class InvalidParameterError(ValueError, TypeError):
            """A constructor parameter has the wrong type or value."""
    _SKLEARN = True
except ImportError:
    _SKLEARN = False

    class BaseEstimator:
        """Stand-in base without scikit-learn: get_params / set_params over __init__'s names."""

        _PARAMS = ()

        def get_params(self, deep=True):
            """The constructor parameters as a dict."""
            return {name: getattr(self, name) for name in self._PARAMS}

        def set_params(self, **params):
            """Sets constructor parameters; ValueError for an unknown name."""
            for name, value in params.items():
                if name not in self._PARAMS:
                    raise ValueError(f"Invalid parameter {name!r} for estimator {self!r}. "
                                     f"Valid parameters are: {sorted(self._PARAMS)!r}.")
                setattr(self, name, value)
            return self

        def __repr__(self):
            import inspect
            defaults = inspect.signature(type(self).__init__).parameters
            changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                       if not (defaults[k].default is v or defaults[k].default == v)]
            return f"{type(self).__name__}({', '.join(changed)})"

    class TransformerMixin:
        """Stand-in: fit_transform = fit + transform."""

        def fit_transform(self, X, y=None, **fit_params):
            """Fits on X, then returns transform(X)."""
            return self.fit(X, y, **fit_params).transform(X)

    class NotFittedError(ValueError, AttributeError):
        """The estimator is used before fit (as scikit-learn's NotFittedError)."""

    class InvalidParameterError(ValueError, TypeError):
        """A constructor parameter has the wrong type or value (as scikit-learn's)."""

    def check_is_fitted(estimator, attributes=None):
        if not hasattr(estimator, "components_"):
            raise NotFittedError(
                f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator.")

__all__ = ["StreamingPCA", "NotFittedError", "InvalidParameterError"]

_PARAMS = ("n_components", "whiten", "copy", "batch_size", "extra", "forget", "half_life",
           "mode", "missing", "reorth_every")
_TRAILER = b"ISVDSPCA"          # marks StreamingPCA's state after the engine image


def _engine():
    try:
        from . import _engine as eng
    except ImportError as e:
        raise ImportError(
            "isvd's engine extension (isvd._engine) is not built: StreamingPCA needs the package "
            "installed with `pip install --no-build-isolation .` from the repository root "
            f"(README, Python) ({e})") from None
    return eng


def _gen_batches(n, batch_size, min_batch_size=0):
    """scikit-learn's gen_batches: slices of batch_size, a short tail merged into the last."""
    start = 0
    for _ in range(int(n // batch_size)):
        end = start + batch_size
        if end + min_batch_size > n:
            continue
        yield slice(start, end)
        start = end
    if start < n:
        yield slice(start, n)


def _is_sparse(X):
    try:
        import scipy.sparse as sp
    except ImportError:
        return False
    return sp.issparse(X)


def _flip_signs(vt):
    """Each row's entry of largest magnitude positive (the first wins a tie): svd_flip's rule."""
    if vt.size:
        idx = np.argmax(np.abs(vt), axis=1)
        signs = np.sign(vt[np.arange(vt.shape[0]), idx])
        signs[signs == 0] = 1.0
        vt *= signs[:, None]
    return vt


def _complete(vt, k):
    """vt (r × n, orthonormal rows) extended to k orthonormal rows (r ≤ k ≤ n)."""
    r, n = vt.shape
    if r >= k:
        return vt
    u, _, _ = np.linalg.svd(np.eye(n) - vt.T @ vt)
    extra = _flip_signs(np.ascontiguousarray(u[:, :k - r].T))
    return np.vstack([vt, extra])


class StreamingPCA(TransformerMixin, BaseEstimator):
    """Incremental PCA on isvd's engine: IncrementalPCA's API, in process.

    Parameters (IncrementalPCA's):
        n_components: int or None.  Components to keep; None keeps
            min(n_samples of the first batch, n_features).
        whiten: bool, default False.  Scale transform's output to unit
            variance per component (and inverse_transform back).
        copy: bool, default True.  Accepted for compatibility; the engine
            never writes to its input.
        batch_size: int or None.  Rows per engine call in fit; None is
            5 * n_features, as IncrementalPCA.
    isvd's own:
        extra: int, default 10.  Components kept beyond n_components while
            streaming (truncated mode); more is more accurate.
        forget: float in (0, 1], default 1.0.  Forgetting factor λ: a row
            t rows old weighs λ^t.  1 = no forgetting.
        half_life: float or None.  Alternative to forget: λ = 2^(-1/half_life).
        mode: "auto" (default), "exact" or "truncated" (update/isvd_model.h).
        missing: "reject" (default: NaN is an error, as in scikit-learn) or
            "impute" (NaN is a missing value, filled from the model before
            each block is folded; transform completes rows the same way).
        reorth_every: int, default 100000.  Truncated mode re-orthogonalises
            its basis every this many rows (0 = never).

    Fitted attributes: components_, explained_variance_,
    explained_variance_ratio_, singular_values_, mean_, var_,
    noise_variance_, n_components_, n_samples_seen_, batch_size_ (fit),
    n_features_in_, feature_names_in_ (DataFrame input with string column
    names).  See the module's docstring for their definitions.
    """

    _PARAMS = _PARAMS

    def __init__(self, n_components=None, *, whiten=False, copy=True, batch_size=None,
                 extra=10, forget=1.0, half_life=None, mode="auto", missing="reject",
                 reorth_every=100000):
        self.n_components = n_components
        self.whiten = whiten
        self.copy = copy
        self.batch_size = batch_size
        self.extra = extra
        self.forget = forget
        self.half_life = half_life
        self.mode = mode
        self.missing = missing
        self.reorth_every = reorth_every

    # ------------------------------------------------------------ parameters

    def _bad_param(self, name, expected, value):
        return InvalidParameterError(
            f"The {name!r} parameter of {type(self).__name__} must be {expected}. "
            f"Got {value!r} instead.")

    def _check_params(self):
        """Validates the constructor parameters (scikit-learn's wording); returns λ."""
        def is_int(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        def is_real(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool)

        if self.n_components is not None and not (is_int(self.n_components)
                                                  and self.n_components >= 1):
            raise self._bad_param("n_components", "an int in the range [1, inf) or None",
                                  self.n_components)
        for name in ("whiten", "copy"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise self._bad_param(name, "an instance of 'bool' or an instance of "
                                      "'numpy.bool_'", getattr(self, name))
        if self.batch_size is not None and not (is_int(self.batch_size) and self.batch_size >= 1):
            raise self._bad_param("batch_size", "an int in the range [1, inf) or None",
                                  self.batch_size)
        if not (is_int(self.extra) and self.extra >= 0):
            raise self._bad_param("extra", "an int in the range [0, inf)", self.extra)
        if not (is_real(self.forget) and 0.0 < self.forget <= 1.0):
            raise self._bad_param("forget", "a float in the range (0.0, 1.0]", self.forget)
        if self.half_life is not None and not (is_real(self.half_life) and self.half_life > 0):
            raise self._bad_param("half_life", "a float in the range (0.0, inf) or None",
                                  self.half_life)
        if self.half_life is not None and self.forget != 1.0:
            raise InvalidParameterError(
                f"{type(self).__name__}: give forget or half_life, not both "
                f"(forget={self.forget!r}, half_life={self.half_life!r})")
        if self.mode not in ("auto", "exact", "truncated"):
            raise self._bad_param("mode", "a str among {'auto', 'exact', 'truncated'}", self.mode)
        if self.missing not in ("reject", "impute"):
            raise self._bad_param("missing", "a str among {'reject', 'impute'}", self.missing)
        if not (is_int(self.reorth_every) and self.reorth_every >= 0):
            raise self._bad_param("reorth_every", "an int in the range [0, inf)",
                                  self.reorth_every)
        if self.half_life is not None:
            return 2.0 ** (-1.0 / float(self.half_life))
        return float(self.forget)

    # ------------------------------------------------------------ validation

    def _validate(self, X, *, reset, accept_sparse=False):
        """X checked and converted as scikit-learn's _validate_data would (float64/float32)."""
        allow_nan = self.missing == "impute"
        kw = dict(accept_sparse=accept_sparse, dtype=[np.float64, np.float32], reset=reset,
                  copy=False, force_all_finite="allow-nan" if allow_nan else True)
        if _SKLEARN:
            try:
                from sklearn.utils.validation import validate_data  # scikit-learn >= 1.6
            except ImportError:
                return self._validate_data(X, **kw)
            kw["ensure_all_finite"] = kw.pop("force_all_finite")
            return validate_data(self, X, **kw)
        return self._validate_plain(X, reset=reset, accept_sparse=accept_sparse,
                                    allow_nan=allow_nan)

    def _validate_plain(self, X, *, reset, accept_sparse, allow_nan):
        name = type(self).__name__
        columns = getattr(X, "columns", None)
        if _is_sparse(X):
            if not accept_sparse:
                raise TypeError("A sparse matrix was passed, but dense data is required. "
                                "Use X.toarray() to convert to a dense numpy array.")
            X = X.tocsr()
            values = X.data
        else:
            try:
                X = np.asarray(X)
            except (ValueError, TypeError) as e:
                raise ValueError(f"could not convert the input to an array: {e}") from None
            if X.dtype.kind == "c":
                raise ValueError(f"Complex data not supported\n{X}\n")
            if X.dtype.kind not in "fiub":
                try:
                    X = X.astype(np.float64)
                except (ValueError, TypeError) as e:
                    raise ValueError(f"Unable to convert array of {X.dtype} to float: {e}") from None
            if X.ndim != 2:
                raise ValueError(
                    f"Expected 2D array, got {X.ndim}D array instead:\narray={X}.\n"
                    "Reshape your data either using array.reshape(-1, 1) if your data has a "
                    "single feature or array.reshape(1, -1) if it contains a single sample.")
            if X.dtype not in (np.float64, np.float32):
                X = X.astype(np.float64)
            values = X
        n_samples, n_features = X.shape
        if n_samples < 1:
            raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum "
                             f"of 1 is required by {name}.")
        if n_features < 1:
            raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum "
                             f"of 1 is required by {name}.")
        if np.isinf(values).any() or (not allow_nan and np.isnan(values).any()):
            what = "infinity or a value too large for dtype('float64')" \
                if np.isinf(values).any() else "NaN"
            raise ValueError(f"Input X contains {what}.\n{name} does not accept missing values "
                             "encoded as NaN natively.")
        names = None
        if columns is not None and len(columns) and all(isinstance(c, str) for c in columns):
            names = np.asarray(list(columns), dtype=object)
        if reset:
            self.n_features_in_ = n_features
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        else:
            if n_features != self.n_features_in_:
                raise ValueError(f"X has {n_features} features, but {name} is expecting "
                                 f"{self.n_features_in_} features as input.")
            fitted = getattr(self, "feature_names_in_", None)
            if fitted is not None and names is not None and list(fitted) != list(names):
                raise ValueError("The feature names should match those that were passed during "
                                 "fit.")
        return X

    def _more_tags(self):
        return {"preserves_dtype": [np.float64, np.float32], "allow_nan": self.missing == "impute"}

    # ------------------------------------------------------------ fitting

    def _reset(self):
        for name in ("components_", "explained_variance_", "explained_variance_ratio_",
                     "singular_values_", "mean_", "var_", "noise_variance_", "n_components_",
                     "n_samples_seen_", "batch_size_", "_model", "_stats"):
            self.__dict__.pop(name, None)

    def fit(self, X, y=None):
        """Fits the model on X (n_samples × n_features) in batches of batch_size_ rows.

        X may be a scipy sparse matrix: each batch is densified in turn, as
        IncrementalPCA does.  Starts afresh (any earlier fit is dropped).
        Returns self.
        """
        self._check_params()
        self._reset()
        X = self._validate(X, reset=True, accept_sparse=["csr", "csc", "lil"])
        n_samples, n_features = X.shape
        self.batch_size_ = 5 * n_features if self.batch_size is None else self.batch_size
        for batch in _gen_batches(n_samples, self.batch_size_,
                                  min_batch_size=self.n_components or 0):
            X_batch = X[batch]
            if _is_sparse(X_batch):
                X_batch = X_batch.toarray()
            self._fold(X_batch)
        self._refresh()
        return self

    def partial_fit(self, X, y=None, check_input=True):
        """Folds one batch X into the model (the first call creates it).  Returns self.

        Any number of rows per call (one included): unlike IncrementalPCA,
        a batch need not hold n_components rows.  Sparse input is refused
        (TypeError), as IncrementalPCA.partial_fit does.
        """
        first_pass = not hasattr(self, "components_")
        if first_pass:
            self._check_params()
        elif getattr(self, "_model", None) is None:
            raise RuntimeError(
                f"this {type(self).__name__} was built from a daemon's factors (from_daemon) "
                "and holds no engine state to continue: push the rows to the daemon, or fit() "
                "afresh")
        if check_input:
            if _is_sparse(X):
                raise TypeError(
                    f"{type(self).__name__}.partial_fit does not support sparse input. Either "
                    f"convert data to dense or use {type(self).__name__}.fit to do so in batches.")
            X = self._validate(X, reset=first_pass)
        self._fold(X)
        self._refresh()
        return self

    def _fold(self, X):
        """Folds a dense batch; creates the engine model on the first."""
        n_samples, n_features = X.shape
        model = getattr(self, "_model", None)
        if model is None:
            lam = self._check_params()
            if self.n_components is None:
                k = min(n_samples, n_features)
            elif self.n_components > n_features:
                raise ValueError(
                    f"n_components={self.n_components!r} invalid for "
                    f"n_features={n_features}, need more rows than columns for "
                    f"{type(self).__name__} processing")
            else:
                k = self.n_components
            eng = _engine()
            model = eng.Model(n_features, k, extra=self.extra, center=True, forget=lam,
                              reorth_every=self.reorth_every, mode=self.mode,
                              missing=self.missing)
            self._model = model
            self.n_components_ = k
            self._stats = (np.zeros(n_features), np.zeros(n_features), np.zeros(n_features))
        elif self.n_components is not None and self.n_components != self.n_components_:
            raise ValueError(
                f"Number of input features has changed from {self.n_components_} to "
                f"{self.n_components} between calls to partial_fit! Try setting n_components "
                "to a fixed value.")
        rows = np.ascontiguousarray(X, dtype=np.float64)
        eng = _engine()
        try:
            model.update(rows)
        except eng.EngineError as e:
            raise ValueError(self._engine_message(e, rows)) from None
        self._stats = self._merge_stats(self._stats, rows, model.options()["forget"])

    def _engine_message(self, e, rows):
        if e.name == "GAPS":
            bad = np.flatnonzero(np.isnan(rows).all(axis=1))
            return (f"Input X has a row with no observed value (row {bad[0] if bad.size else '?'}"
                    f" is all NaN); {type(self).__name__} cannot impute it")
        if e.name == "NONFINITE":
            return (f"Input X contains a value the engine refuses: {e} (values must be finite "
                    "and at most 1e150 in magnitude)")
        return str(e)

    @staticmethod
    def _merge_stats(stats, X, lam):
        """Per-feature weighted (W, mean, M2) over observed values, X's rows merged in.

        Row i of a batch of b rows weighs λ^(b-1-i); everything before the
        batch is scaled by λ^b, as the engine weighs rows by their age.
        """
        W, mu, M2 = stats
        b = X.shape[0]
        w = lam ** np.arange(b - 1, -1, -1, dtype=np.float64) if lam != 1.0 else np.ones(b)
        obs = ~np.isnan(X)
        Xz = np.where(obs, X, 0.0)
        wo = obs * w[:, None]
        Wb = wo.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mub = np.where(Wb > 0, (wo * Xz).sum(axis=0) / Wb, 0.0)
        M2b = (wo * (Xz - mub) ** 2).sum(axis=0)
        decay = lam ** b
        W0 = W * decay
        Wn = W0 + Wb
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = mub - mu
            mun = np.where(Wn > 0, mu + delta * np.where(Wn > 0, Wb / Wn, 0.0), 0.0)
            M2n = M2 * decay + M2b + np.where(Wn > 0, delta ** 2 * W0 * Wb / Wn, 0.0)
        return Wn, mun, M2n

    def _refresh(self):
        """Reads the fitted attributes from the engine (once per fit / partial_fit)."""
        model = self._model
        sigma, vt, mean, r = model.factors()
        info = model.info()
        n = info["dim"]
        self._set_fitted(np.frombuffer(sigma), np.frombuffer(vt).reshape(r, n),
                         np.frombuffer(mean).copy(), rows=info["rows_seen"],
                         weight=info["weight_total"], energy=info["energy_total"])
        W, _, M2 = self._stats
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(W > 0, M2 / np.where(W > 0, W, 1.0), 0.0)
        var[np.isnan(W)] = np.nan          # loaded from a bare image: unknown
        self.var_ = var

    def _set_fitted(self, sigma, vt, mean, *, rows, weight, energy):
        k = self.n_components_
        n = vt.shape[1]
        sigma = np.asarray(sigma, dtype=np.float64)[:k]
        vt = np.array(vt[:k], dtype=np.float64)
        if sigma.shape[0] < k:
            sigma = np.concatenate([sigma, np.zeros(k - sigma.shape[0])])
            vt = _complete(vt, k)
        denom = weight - 1.0
        self.components_ = vt
        self.singular_values_ = sigma.copy()
        self.mean_ = mean
        self.explained_variance_ = sigma ** 2 / denom if denom > 0 else np.zeros(k)
        self.explained_variance_ratio_ = sigma ** 2 / energy if energy > 0 else np.zeros(k)
        rest = min(rows, n) - k
        if rest > 0 and denom > 0:
            self.noise_variance_ = float(max(energy - float(np.sum(sigma ** 2)), 0.0)
                                         / denom / rest)
        else:
            self.noise_variance_ = 0.0
        self.n_samples_seen_ = int(rows)

    # ------------------------------------------------------------ transforms

    def _dense_batches(self, X):
        """X's rows in batches of dense arrays (sparse: batch_size_ rows at a time)."""
        if _is_sparse(X):
            size = getattr(self, "batch_size_", None) or 5 * self.n_features_in_
            for batch in _gen_batches(X.shape[0], size, min_batch_size=self.n_components_ or 0):
                yield X[batch].toarray()
        else:
            yield X

    def _complete_rows(self, X):
        """X with gaps (NaN) completed by the engine's estimator (missing='impute')."""
        if not np.isnan(X).any():
            return X
        if getattr(self, "_model", None) is None:
            raise ValueError("Input X contains NaN, and this model (from_daemon) has no engine "
                             "to impute it locally; use the daemon's reconstruct(fill=True)")
        rows = np.ascontiguousarray(X, dtype=np.float64)
        eng = _engine()
        try:
            out = self._model.impute(rows)
        except eng.EngineError as e:
            raise ValueError(self._engine_message(e, rows)) from None
        return np.frombuffer(out).reshape(rows.shape)

    def transform(self, X):
        """Scores of X: (X − mean_) @ components_.T, divided by sqrt(explained_variance_)
        when whitening.  Sparse X is densified batch_size_ rows at a time.  With
        missing='impute', a row's NaN gaps are first filled by the engine's
        estimator."""
        check_is_fitted(self)
        X = self._validate(X, reset=False, accept_sparse=["csr", "csc"])
        out = [self._transform_dense(B) for B in self._dense_batches(X)]
        Z = out[0] if len(out) == 1 else np.vstack(out)
        return Z

    def _transform_dense(self, X):
        dtype = X.dtype if X.dtype == np.float32 else np.float64
        X = self._complete_rows(X)
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) @ self.components_.T
        if self.whiten:
            Z *= self._whiten_scale()
        return Z.astype(dtype, copy=False)

    def _whiten_scale(self):
        ev = self.explained_variance_
        with np.errstate(divide="ignore"):
            return np.where(ev > 0, 1.0 / np.sqrt(np.where(ev > 0, ev, 1.0)), 0.0)

    def inverse_transform(self, X):
        """Rows back from scores: X @ components_ + mean_ (whitening undone first)."""
        check_is_fitted(self)
        Z = np.asarray(X)
        dtype = Z.dtype if Z.dtype == np.float32 else np.float64
        Z = np.asarray(Z, dtype=np.float64)
        if self.whiten:
            return (Z @ (np.sqrt(self.explained_variance_)[:, None] * self.components_)
                    + self.mean_).astype(dtype, copy=False)
        return (Z @ self.components_ + self.mean_).astype(dtype, copy=False)

    # ------------------------------------------------------------ the model as a Gaussian

    def get_covariance(self):
        """The data covariance of the generative model: Vᵀ diag(ev − σ²ₙ) V + σ²ₙ I."""
        check_is_fitted(self)
        components_ = self.components_
        exp_var = self.explained_variance_
        if self.whiten:
            components_ = components_ * np.sqrt(exp_var[:, np.newaxis])
        exp_var_diff = np.maximum(exp_var - self.noise_variance_, 0.0)
        cov = np.dot(components_.T * exp_var_diff, components_)
        cov.flat[:: len(cov) + 1] += self.noise_variance_
        return cov

    def get_precision(self):
        """The inverse of get_covariance(), by the matrix inversion lemma."""
        check_is_fitted(self)
        n_features = self.components_.shape[1]
        if self.n_components_ == 0:
            return np.eye(n_features) / self.noise_variance_
        if np.isclose(self.noise_variance_, 0.0, atol=0.0):
            return np.linalg.inv(self.get_covariance())
        components_ = self.components_
        exp_var = self.explained_variance_
        if self.whiten:
            components_ = components_ * np.sqrt(exp_var[:, np.newaxis])
        exp_var_diff = np.maximum(exp_var - self.noise_variance_, 0.0)
        precision = np.dot(components_, components_.T) / self.noise_variance_
        precision.flat[:: len(precision) + 1] += 1.0 / exp_var_diff
        precision = np.dot(components_.T, np.dot(np.linalg.inv(precision), components_))
        precision /= -(self.noise_variance_ ** 2)
        precision.flat[:: len(precision) + 1] += 1.0 / self.noise_variance_
        return precision

    def score_samples(self, X):
        """Log-likelihood of each row under the probabilistic PCA model (as PCA.score_samples)."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        X = self._complete_rows(X)
        Xr = np.asarray(X, dtype=np.float64) - self.mean_
        n_features = X.shape[1]
        precision = self.get_precision()
        log_like = -0.5 * (Xr * (Xr @ precision)).sum(axis=1)
        sign, logdet = np.linalg.slogdet(precision)
        log_like -= 0.5 * (n_features * math.log(2.0 * math.pi) - (logdet if sign > 0 else -np.inf))
        return log_like

    def score(self, X, y=None):
        """The average log-likelihood of the rows of X (as PCA.score)."""
        return float(np.mean(self.score_samples(X)))

    # ------------------------------------------------------------ feature names

    def get_feature_names_out(self, input_features=None):
        """Output names: ["streamingpca0", "streamingpca1", …], one per component."""
        check_is_fitted(self)
        if input_features is not None:
            input_features = np.asarray(input_features, dtype=object)
            names = getattr(self, "feature_names_in_", None)
            if names is not None and not np.array_equal(names, input_features):
                raise ValueError("input_features is not equal to feature_names_in_")
            if len(input_features) != self.n_features_in_:
                raise ValueError(f"input_features should have length equal to number of "
                                 f"features ({self.n_features_in_}), got {len(input_features)}")
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.n_components_)], dtype=object)

    # ------------------------------------------------------------ persistence

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state if state is not None else self.__dict__)
        model = state.get("_model")
        if model is not None:
            state["_model"] = ("isvd-engine-image", model.save(), model.options()["missing"])
        return state

    def __setstate__(self, state):
        state = dict(state)
        model = state.get("_model")
        if isinstance(model, tuple) and model and model[0] == "isvd-engine-image":
            m = _engine().load(model[1])
            if model[2] != "reject":
                m.set_missing(model[2])
            state["_model"] = m
        if hasattr(super(), "__setstate__"):
            super().__setstate__(state)
        else:
            self.__dict__.update(state)

    def save(self, path):
        """Writes the model to path: the engine's saved image (update/image.c: magic
        "ISVDMODL", CRC32C; what isvd_model_load reads), followed by this estimator's
        parameters and var_ statistics in a trailer that load() reads back."""
        check_is_fitted(self)
        if getattr(self, "_model", None) is None:
            raise ValueError(f"this {type(self).__name__} came from from_daemon and has no engine "
                             "image to save; pickle it instead")
        W, mu, M2 = self._stats
        meta = {
            "params": self.get_params(),
            "n_components_": self.n_components_,
            "batch_size_": getattr(self, "batch_size_", None),
            "feature_names_in_": (list(self.feature_names_in_)
                                  if hasattr(self, "feature_names_in_") else None),
            "stats": [W.tobytes().hex(), mu.tobytes().hex(), M2.tobytes().hex()],
        }
        blob = json.dumps(meta).encode()
        image = self._model.save()
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(image)
            f.write(_TRAILER + blob + struct.pack("<Q", len(blob)) + _TRAILER)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        """A fitted StreamingPCA from a file save() wrote — or from a bare engine image
        (then the parameters are the image's, and var_ is NaN: an image has no per-feature
        variances)."""
        eng = _engine()
        with open(path, "rb") as f:
            data = f.read()
        n_image = eng.image_length(data)
        if n_image < 0 or n_image > len(data):
            n_image = len(data)           # let the engine report what is wrong
        try:
            model = eng.load(data[:n_image])
        except eng.EngineError as e:
            raise ValueError(f"{path}: not an isvd model image ({e})") from None
        rest = data[n_image:]
        meta = None
        t = len(_TRAILER)
        if len(rest) >= 2 * t + 8 and rest.startswith(_TRAILER) and rest.endswith(_TRAILER):
            (blen,) = struct.unpack("<Q", rest[-t - 8:-t])
            if blen == len(rest) - 2 * t - 8:
                meta = json.loads(rest[t:t + blen].decode())
        opts = model.options()
        if meta is not None:
            est = cls(**meta["params"])
            est.n_components_ = meta["n_components_"]
            if meta["batch_size_"] is not None:
                est.batch_size_ = meta["batch_size_"]
            if meta["feature_names_in_"] is not None:
                est.feature_names_in_ = np.asarray(meta["feature_names_in_"], dtype=object)
            est._stats = tuple(np.frombuffer(bytes.fromhex(h)).copy() for h in meta["stats"])
        else:
            est = cls(n_components=opts["rank"], extra=opts["extra"], forget=opts["forget"],
                      mode=opts["mode"], reorth_every=opts["reorth_every"])
            est.n_components_ = min(opts["rank"], opts["dim"])
            nan = np.full(opts["dim"], np.nan)
            est._stats = (nan, nan, nan)
        if est.missing != "reject":
            model.set_missing(est.missing)
        est._model = model
        est.n_features_in_ = opts["dim"]
        est._refresh()
        return est

    @classmethod
    def from_daemon(cls, client, **params):
        """A fitted StreamingPCA from a daemon's current factors (client: an isvd.Client).

        transform, inverse_transform, get_covariance, get_precision and
        score_samples then work offline on the daemon's model; partial_fit
        does not (the daemon's engine state is not sent over the wire: keep
        pushing to the daemon).  n_components defaults to the daemon's
        rank.  var_ is NaN (the daemon does not keep per-feature variances).
        """
        f = client.factors()
        info = client.info()
        if f.mean is None:
            raise ValueError("from_daemon: the daemon's model does not centre rows "
                             "(model.center: false), so it is not a PCA")
        est = cls(**params)
        est._check_params()
        k = f.n_components_ if est.n_components is None else est.n_components
        if k > f.n_features_in_:
            raise ValueError(f"n_components={k} invalid for n_features={f.n_features_in_}")
        if k > f.n_components_:
            raise ValueError(f"n_components={k}: the daemon reports only {f.n_components_} "
                             "components")
        n = f.n_features_in_
        rows = int(info["rows_seen"])
        lam = float(info.get("forget", 1.0))
        weight = float(rows) if lam == 1.0 else (1.0 - lam ** rows) / (1.0 - lam)
        ratio = float(info.get("explained_energy_ratio", 0.0))
        energy = float(np.sum(f.sigma ** 2)) / ratio if ratio > 0 else 0.0
        est.n_components_ = k
        est.n_features_in_ = n
        est._set_fitted(f.sigma, f.vt, f.mean.copy(), rows=rows, weight=weight, energy=energy)
        est.var_ = np.full(n, np.nan)
        return est
