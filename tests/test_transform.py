"""PCA rotation: orthogonal, keeps full-dimension cosine, better prefixes than truncation."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_tui.core.errors import InputError
from mrl_tui.core.transforms.pca import IDENTITY, Transform, fit_pca


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T


def anisotropic(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Most variance in a few directions, hidden by a random rotation so truncation misses it."""
    rng = np.random.default_rng(seed)
    scale = 0.8 ** np.arange(dim)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    x = (rng.standard_normal((n, dim)) * scale) @ rotation.T + 0.5 * rotation[:, 0]
    return x.astype(np.float32)


def test_rotation_is_orthogonal_and_preserves_full_dim_cosine() -> None:
    x = anisotropic(500, 48)
    t = fit_pca(x)
    assert t.name == "pca" and t.matrix is not None and t.mean is None
    assert t.matrix.shape == (48, 48) and t.matrix.dtype == np.float32
    np.testing.assert_allclose(t.matrix.T @ t.matrix, np.eye(48), atol=1e-5)
    y = t.apply(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(cosine(y[:20], y[20:40]), cosine(x[:20], x[20:40]), atol=1e-5)
    np.testing.assert_allclose(t.apply(x[3]), y[3], atol=1e-6)


def test_components_are_ordered_by_variance() -> None:
    y = fit_pca(anisotropic(800, 32)).apply(anisotropic(800, 32))
    variances = y.var(axis=0)
    assert np.all(np.diff(variances) <= 1e-6)


def test_pca_prefix_beats_naive_truncation() -> None:
    x = anisotropic(1000, 64)
    t = fit_pca(x)
    truth = np.argsort(-cosine(x[:50], x), axis=1)[:, 1:11]

    def recall(vectors: np.ndarray, dim: int) -> float:
        top = np.argsort(-cosine(vectors[:50, :dim], vectors[:, :dim]), axis=1)[:, 1:11]
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, truth, strict=True)])

    for dim in (4, 8, 16):
        assert recall(t.apply(x), dim) > recall(x, dim) + 0.25


def test_fewer_rows_than_dimensions() -> None:
    x = anisotropic(5, 32)
    t = fit_pca(x)
    assert t.matrix is not None and t.matrix.shape == (32, 32)
    np.testing.assert_allclose(t.matrix.T @ t.matrix, np.eye(32), atol=1e-5)
    y = t.apply(x)
    np.testing.assert_allclose(cosine(y, y), cosine(x, x), atol=1e-5)
    # Five rows span five directions; the second-moment basis puts them first.
    y = fit_pca(x, center=False).apply(x)
    np.testing.assert_allclose(y[:, 5:], 0, atol=1e-4)
    # Even a single row gives a full orthonormal basis, with that row's direction first.
    one = fit_pca(x[:1], center=False)
    assert one.matrix is not None and one.matrix.shape == (32, 32)
    np.testing.assert_allclose(one.matrix.T @ one.matrix, np.eye(32), atol=1e-5)
    y = one.apply(x[:1])
    np.testing.assert_allclose(np.abs(y[0, 0]), np.linalg.norm(x[0]), rtol=1e-4)
    np.testing.assert_allclose(y[0, 1:], 0, atol=1e-4)
    centred = fit_pca(x[:1]).matrix  # nothing left after centring: still a rotation
    assert centred is not None
    np.testing.assert_allclose(centred.T @ centred, np.eye(32), atol=1e-5)


def test_fit_is_deterministic_and_subsamples() -> None:
    x = anisotropic(3000, 16)
    a = fit_pca(x, max_samples=1000, seed=3)
    b = fit_pca(x, max_samples=1000, seed=3)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    full = fit_pca(x)
    # The leading direction is found from a subsample too (same sign convention).
    assert abs(float(a.matrix[:, 0] @ full.matrix[:, 0])) > 0.99  # type: ignore[index]


def test_round_trip_through_npz(tmp_path) -> None:
    x = anisotropic(200, 24)
    for t in (fit_pca(x), fit_pca(x, subtract_mean=True), IDENTITY):
        path = tmp_path / f"{t.name}-{t.mean is None}.npz"
        np.savez(path, **t.to_arrays())
        with np.load(path, allow_pickle=False) as arrays:
            back = Transform.from_arrays(t.name, dict(arrays))
        assert back.name == t.name
        np.testing.assert_array_equal(back.apply(x), t.apply(x))
    assert Transform.from_arrays("identity", {}) is IDENTITY


def test_identity_and_bad_input() -> None:
    x = np.ones((3, 4), np.float64)
    y = IDENTITY.apply(x)
    assert y.dtype == np.float32 and np.array_equal(y, x)
    assert IDENTITY.to_arrays() == {}
    t = fit_pca(anisotropic(50, 8))
    with pytest.raises(InputError):
        t.apply(np.ones(7, np.float32))
    with pytest.raises(InputError):
        fit_pca(np.ones((0, 8), np.float32))
    with pytest.raises(InputError):
        fit_pca(np.array([[1.0, np.inf]]))
    with pytest.raises(InputError):
        fit_pca(np.ones((4, 4), np.int32))
