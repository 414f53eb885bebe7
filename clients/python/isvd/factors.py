"""isvd.factors — a snapshot of the daemon's model for offline use.

A Factors object holds what the `factors` operation (or a `factors`
snapshot on the publish socket) returns: the singular values σ (k), the
right singular vectors Vᵀ (k × n, one vector per row, sign-normalised by
the daemon), the mean μ (n, or None when the model does not centre) and the
seq of the last row they reflect.  It needs no daemon once fetched, and
mirrors scikit-learn's PCA where that makes sense:

    transform(X)          = (X − μ) Vᵀᵀ     the daemon's project, space "scores"
    inverse_transform(Z)  = Z Vᵀ + μ
    components_ = vt, singular_values_ = sigma, mean_ = μ (zeros without centring)
"""
import numpy as np

from .codec import as_rows, decode_matrix, decode_vector
from .errors import InputError, ProtocolError

__all__ = ["Factors"]


class Factors:
    """The model's factors at one seq: ``sigma``, ``vt``, ``mean``, ``seq``.

    Attributes:
        sigma: (k,) float64 singular values, non-increasing.
        vt: (k, n) float64; row i is the i-th right singular vector.
        mean: (n,) float64 model mean, or None when the model does not centre.
        seq: the sequence number of the last row these factors reflect.

    scikit-learn style aliases (read-only properties):
        components_ (= vt), singular_values_ (= sigma), mean_ (= mean, or
        zeros when not centring), n_components_ (k), n_features_in_ (n).
    """

    def __init__(self, sigma, vt, mean=None, seq=0):
        """Builds a snapshot from arrays: sigma (k,), vt (k, n), mean (n,) or None, seq."""
        self.sigma = np.asarray(sigma, dtype=np.float64).reshape(-1)
        self.vt = np.asarray(vt, dtype=np.float64)
        if self.vt.ndim != 2:
            raise InputError("vt must be a 2-D array (k × n)")
        if self.vt.shape[0] != self.sigma.shape[0]:
            raise InputError(f"vt has {self.vt.shape[0]} rows but sigma {self.sigma.shape[0]} values")
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64).reshape(-1)
        if self.mean is not None and self.mean.shape[0] != self.vt.shape[1]:
            raise InputError(f"mean has {self.mean.shape[0]} values but vt {self.vt.shape[1]} columns")
        self.seq = int(seq)

    @classmethod
    def from_body(cls, body):
        """A Factors from a decoded `factors` reply or snapshot body (a dict)."""
        try:
            sigma = decode_vector(body["sigma"], "sigma")
            vt = decode_matrix(body["vt"], "vt")
            mean = decode_vector(body.get("mean"), "mean")
            seq = body["seq"]
        except KeyError as e:
            raise ProtocolError(f"factors: missing key {e}") from None
        if sigma is None or not isinstance(seq, int):
            raise ProtocolError("factors: sigma or seq has the wrong type")
        if vt.size == 0:                     # k = 0: keep the column count from the mean
            vt = np.empty((len(sigma), 0 if mean is None else len(mean)))
        try:
            return cls(sigma, vt, mean, seq)
        except InputError as e:
            raise ProtocolError(f"factors: {e}") from None

    # ------------------------------------------------ scikit-learn style names

    @property
    def components_(self):
        """(k, n) principal axes: the right singular vectors, one per row (= vt)."""
        return self.vt

    @property
    def singular_values_(self):
        """(k,) singular values (= sigma)."""
        return self.sigma

    @property
    def mean_(self):
        """(n,) mean subtracted before projecting; zeros when the model does not centre."""
        return self.mean if self.mean is not None else np.zeros(self.vt.shape[1])

    @property
    def n_components_(self):
        """k, the number of components."""
        return int(self.vt.shape[0])

    @property
    def n_features_in_(self):
        """n, the row length."""
        return int(self.vt.shape[1])

    @property
    def centered(self):
        """Whether the model centres rows (has a mean)."""
        return self.mean is not None

    # ------------------------------------------------------------- maths

    def transform(self, X):
        """Scores of rows X: (X − mean) Vᵀᵀ, an (r, k) array.

        X is a 2-D (r, n) array or a 1-D row (treated as r = 1); the result is
        what the daemon's ``project(X, space="scores")`` returns for the same
        factors.
        """
        a = self._rows(X, self.n_features_in_, "X")
        return (a - self.mean_) @ self.vt.T

    def inverse_transform(self, Z):
        """Rows back from scores Z (r, k): Z Vᵀ + mean, an (r, n) array.

        ``inverse_transform(transform(X))`` is the daemon's ``reconstruct(X)``.
        """
        z = self._rows(Z, self.n_components_, "Z")
        return z @ self.vt + self.mean_

    def residual(self, X):
        """(r,) distances of rows X from the model's subspace, as the daemon's project reports."""
        a = self._rows(X, self.n_features_in_, "X") - self.mean_
        return np.linalg.norm(a - (a @ self.vt.T) @ self.vt, axis=1)

    @staticmethod
    def _rows(X, n, name):
        a = as_rows(X, name).astype(np.float64, copy=False)
        if a.shape[1] != n:
            raise InputError(f"{name}: rows have {a.shape[1]} values; expected {n}")
        return a

    def __repr__(self):
        return (f"Factors(k={self.n_components_}, n={self.n_features_in_}, seq={self.seq}, "
                f"centered={self.centered}, sigma={np.array2string(self.sigma, precision=4, threshold=6)})")
