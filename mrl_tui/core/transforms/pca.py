"""Rotations that make embedding prefixes meaningful.

A Matryoshka model already packs the most information into the first dimensions, so its vectors
are searched as they are (``IDENTITY``). Any other model can be rotated first: ``fit_pca`` finds an
orthogonal basis ordered by how much of the corpus' energy each direction carries, so a prefix of
the rotated vector keeps as much as a prefix can.

The rotation is applied without subtracting a mean. An orthogonal map preserves every dot product
and norm, so full-dimension cosine scores are exactly those of the untransformed model; only the
prefixes change. The basis is the eigenvectors of the corpus covariance (centred), chosen over the
uncentred second moment and over also subtracting the mean by nDCG@10 on two BEIR subsets
(``benchmarks/bench_pca.py``; numbers in ``benchmarks/README.md``): the three are within noise of
each other, covariance was best on average, and it keeps the full-dimension equality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mrl_tui.core.errors import InputError


@dataclass(frozen=True)
class Transform:
    """A fixed map from model vectors to searchable vectors: ``(x - mean) @ matrix``."""

    name: str
    matrix: np.ndarray | None
    mean: np.ndarray | None = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Transform a vector ``(D,)`` or a batch ``(N, D)``; returns float32 of the same shape."""
        x = np.asarray(x, dtype=np.float32)
        if self.matrix is None:
            return x
        if x.ndim not in (1, 2) or x.shape[-1] != self.matrix.shape[0]:
            raise InputError(
                f"transform {self.name!r} expects vectors of dimension {self.matrix.shape[0]}, "
                f"got shape {x.shape}"
            )
        if self.mean is not None:
            x = x - self.mean
        return np.ascontiguousarray(x @ self.matrix, dtype=np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` (no pickle). Identity has none."""
        arrays: dict[str, np.ndarray] = {}
        if self.matrix is not None:
            arrays["matrix"] = self.matrix
        if self.mean is not None:
            arrays["mean"] = self.mean
        return arrays

    @classmethod
    def from_arrays(cls, name: str, arrays: dict[str, np.ndarray]) -> Transform:
        """Rebuild from ``to_arrays`` output (a dict or an ``NpzFile``)."""
        matrix = arrays.get("matrix")
        mean = arrays.get("mean")
        if matrix is None:
            return IDENTITY if name == IDENTITY.name and mean is None else cls(name, None, None)
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise InputError(f"transform {name!r}: matrix must be square, got {matrix.shape}")
        if mean is not None:
            mean = np.ascontiguousarray(mean, dtype=np.float32)
            if mean.shape != (matrix.shape[0],):
                raise InputError(f"transform {name!r}: mean has shape {mean.shape}")
        return cls(name, matrix, mean)


IDENTITY = Transform("identity", None, None)


def fit_pca(
    vectors: np.ndarray,
    *,
    max_samples: int = 50_000,
    seed: int = 0,
    center: bool | None = None,
    subtract_mean: bool = False,
) -> Transform:
    """Fit an orthogonal ``(D, D)`` rotation whose columns are ordered by explained energy.

    ``center`` picks the covariance (True) or the uncentred second moment (False) as the matrix
    whose eigenvectors form the basis. The default (None) takes the covariance, which measured best
    on the BEIR sets, unless there are fewer rows than dimensions: then the covariance cannot see
    the mean direction, which would land among the arbitrary null-space directions at the end.
    ``subtract_mean`` also stores the mean so ``apply`` centres vectors, which breaks the exact
    full-dimension equality and is kept only for measurement. Rows beyond ``max_samples`` are
    subsampled (seeded, so the fit is deterministic). With fewer rows than dimensions the
    eigendecomposition still returns a full
    orthonormal basis; the directions the data does not span come last.
    """
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"PCA needs a non-empty (N, D) matrix, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"PCA needs float vectors, got {x.dtype}")
    if x.shape[0] > max_samples:
        rows = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_samples, replace=False))
        x = x[rows]
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise InputError("PCA input contains NaN or infinite values")

    mean = x.mean(axis=0)
    if center is None:
        center = x.shape[0] >= x.shape[1]
    if center or subtract_mean:
        x = x - mean
    moment = (x.T @ x) / x.shape[0]
    eigenvalues, eigenvectors = np.linalg.eigh(moment)
    order = np.argsort(-eigenvalues, kind="stable")
    basis = eigenvectors[:, order]
    # Eigenvectors have an arbitrary sign; fix it so refits on the same data agree.
    peak = np.argmax(np.abs(basis), axis=0)
    basis *= np.sign(basis[peak, np.arange(basis.shape[1])])
    return Transform(
        "pca",
        np.ascontiguousarray(basis, dtype=np.float32),
        mean.astype(np.float32) if subtract_mean else None,
    )
