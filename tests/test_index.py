"""NestedIndex against a plain reference: truncate, normalise, dot, sort."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from mrl_tui.core.errors import InputError
from mrl_tui.core.search import hnsw
from mrl_tui.core.search import index as index_module
from mrl_tui.core.search.index import STEP, Hits, NestedIndex, index_device

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
def minilm_vectors(embedder) -> np.ndarray:
    """A handful of real sentence embeddings, from the session's model (the plain encoder)."""
    model = embedder.model
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
    for name in ("FUSED_SOLO_ROWS", "FUSED_MIN_ROWS"):  # not a multiple of 8 rows
        monkeypatch.setattr(index_module, name, 136)
    monkeypatch.setattr(index_module, "FUSED_CHUNK_VALUES", 0)


@pytest.fixture(autouse=True, params=["fused", "half", "numpy"])
def scan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on every CPU scan: the C kernel over float32 (its best copy for this CPU; the
    portable copy has its own test below), the kernel over the float16 mirror with its exact
    re-score (CPUs with F16C), and the numpy scan that runs where the kernel was not built."""
    if request.param == "numpy":
        monkeypatch.setattr(index_module, "_fused", None)
    elif index_module._fused is None:
        pytest.skip("the C kernel was not built (no compiler at install time)")
    elif request.param == "half" and not index_module._fused.half():
        pytest.skip("no float16 scan on this CPU (AVX2, FMA and F16C)")
    monkeypatch.setattr(index_module, "HALF_MIRROR", request.param == "half")
    return request.param


@pytest.fixture
def portable_copy(scan: str) -> Iterator[None]:
    """The kernel's portable (baseline) copy instead of the AVX2 one, for one test."""
    fused = index_module._fused
    if scan != "fused":
        pytest.skip("a test of the C kernel")
    assert fused is not None
    fused.use_baseline(True)
    try:
        yield
    finally:
        fused.use_baseline(False)


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


def test_block_bounds_double_up_to_the_widest_block() -> None:
    assert index_module.block_bounds(384) == [(0, 32), (32, 64), (64, 128), (128, 256), (256, 384)]
    assert index_module.block_bounds(20) == [(0, 20)]
    assert index_module.block_bounds(777)[-2:] == [(512, 640), (640, 768), (768, 777)][-2:]
    for full in (20, 100, 384, 777):
        bounds = index_module.block_bounds(full)
        assert [lo for lo, _ in bounds[1:]] == [hi for _, hi in bounds[:-1]]
        assert bounds[0][0] == 0 and bounds[-1][1] == full
        assert all(lo % STEP == 0 and hi - lo <= index_module.MAX_BLOCK for lo, hi in bounds)


def test_every_dim_over_wide_blocks_matches_reference(threads: int) -> None:
    """Every prefix of a 300-d index (blocks 32, 32, 64, 128 and a partial 44): search, search_many,
    score_ids and rerank against the plain reference, with tied rows, a zero row and k > N."""
    rng = np.random.default_rng(11)
    full = 300
    x = rng.standard_normal((257, full)).astype(np.float32)
    x *= rng.uniform(0.1, 3.0, size=(257, 1)).astype(np.float32)
    x[40] = x[3]  # tied with row 3 at every dim: the lower id comes first
    x[90] = 0.0
    queries = x[[3, 7]] + rng.standard_normal((2, full)).astype(np.float32) * 0.1
    index = NestedIndex(x)
    ids = rng.choice(257, 60, replace=False)
    for dim in range(1, full + 1):
        many = index.search_many(queries, dim, 10)
        for q, got in zip(queries, many, strict=True):
            single = index.search(q, dim, 10)
            assert_matches_reference(single, x, q, dim, 10)
            assert_matches_reference(got, x, q, dim, 10)
            np.testing.assert_allclose(
                index.score_ids(q, dim, ids), reference_scores(x, q, dim)[ids], atol=2e-5
            )
        hits = index.search(x[3], dim, 300)  # k > N: every row, the tie in id order
        order = hits.ids.tolist()
        assert len(hits) == 257 and order.index(3) < order.index(40)
        assert hits.scores[order.index(40)] == hits.scores[order.index(3)]
        assert hits.scores[hits.ids.tolist().index(90)] == 0
        top = index.rerank(queries[0], dim, ids, 5)
        want = reference_scores(x, queries[0], dim)[np.sort(ids)]
        np.testing.assert_allclose(top.scores, np.sort(want)[::-1][:5], atol=2e-5)


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


# -- batched search and the threaded scan -------------------------------------------------------


@pytest.fixture(params=[1, 2], ids=["one-thread", "two-threads"])
def threads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Scans of any size on one thread or shared by two, whatever the machine's load; batched
    scans in small pieces, so spans, GEMM rows and query blocks all take several steps."""
    monkeypatch.setattr(index_module, "SCAN_THREADS", request.param)
    monkeypatch.setattr(index_module, "SMALL_SCAN", 0)
    monkeypatch.setattr(index_module, "_runnable", lambda: 0)  # however busy the machine
    monkeypatch.setattr(index_module, "BUSY_LOAD", float("inf"))
    monkeypatch.setattr(index_module, "BATCH_VALUES", 40 * 64)
    monkeypatch.setattr(index_module, "DIMS_SPAN_VALUES", 40 * 64)
    monkeypatch.setattr(index_module, "SCORE_VALUES", 3 * 200)
    monkeypatch.setattr(index_module, "QUERY_BLOCK", 3)
    return request.param


def assert_same_hits(many: list[Hits], single: list[Hits], atol: float = 1e-5) -> None:
    """Equal scores, and equal ids wherever a score is not within ``atol`` of a neighbour's: a
    matrix product and a matrix-vector product round differently, so near-ties may swap."""
    assert len(many) == len(single)
    for got, want in zip(many, single, strict=True):
        assert got.ids.dtype == np.int64 and got.scores.dtype == np.float32
        assert len(got.ids) == len(want.ids)
        np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=atol)
        apart = np.abs(np.diff(want.scores)) > atol
        isolated = np.r_[True, apart] & np.r_[apart, True]
        assert got.ids[isolated].tolist() == want.ids[isolated].tolist()


def test_search_many_equals_search_at_every_dim(threads: int) -> None:
    rng = np.random.default_rng(3)
    full = 2 * index_module.BLOCK + 5  # three column blocks, the last one partial
    x = rng.standard_normal((600, full)).astype(np.float32)
    x *= rng.uniform(0.1, 3.0, size=(600, 1)).astype(np.float32)
    x[17] = 0.0  # a zero row scores 0 at every dim
    index = NestedIndex(x)
    queries = rng.standard_normal((7, full)).astype(np.float32)
    queries[2, :20] = 0.0  # a zero prefix below d = 20: every score 0, ids in order
    for dim in range(1, full + 1):
        many = index.search_many(queries, dim, 10)
        assert_same_hits(many, [index.search(q, dim, 10) for q in queries])
        for got, q in zip(many, queries, strict=True):
            assert_matches_reference(got, x, q, dim, 10)
    assert index.search_many(queries, 5, 10)[2].ids.tolist() == list(range(10))


@pytest.mark.parametrize("k", [1, 10, 150, 599, 600, 5000])
def test_search_many_any_k(threads: int, random_vectors: np.ndarray, k: int) -> None:
    x = random_vectors[:600]
    index = NestedIndex(x)
    queries = np.random.default_rng(k).standard_normal((4, 384)).astype(np.float32)
    for dim in (8, 45, 384):
        assert_same_hits(
            index.search_many(queries, dim, k), [index.search(q, dim, k) for q in queries]
        )


def test_search_many_ties_prefer_lower_ids(threads: int) -> None:
    x = np.tile(np.float32([1.0, 0.0, 0.0]), (1000, 1))
    x[500] = [0.0, 1.0, 0.0]
    queries = np.float32([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    hits = NestedIndex(x).search_many(queries, 3, 12)
    assert hits[0].ids.tolist() == [*range(12)]
    assert hits[1].ids.tolist() == [500, *range(11)]
    assert hits[2].ids.tolist() == [*range(12)]  # all score 0


def test_search_many_small_and_empty(threads: int) -> None:
    one = NestedIndex(np.float32([[3.0, 4.0]]))
    (hits,) = one.search_many(np.float32([[1.0, 0.0]]), 2, 5)
    assert hits.ids.tolist() == [0]
    np.testing.assert_allclose(hits.scores, [0.6], atol=1e-6)
    empty = NestedIndex(np.empty((0, 16), np.float32))
    assert [len(h) for h in empty.search_many(np.ones((3, 16), np.float32), 8, 10)] == [0, 0, 0]
    assert one.search_many(np.empty((0, 2), np.float32), 1, 3) == []
    assert [len(h) for h in one.search_many(np.ones((2, 2)), 1, 0)] == [0, 0]


def test_search_many_torch_backend(random_vectors: np.ndarray) -> None:
    queries = np.random.default_rng(5).standard_normal((3, 384)).astype(np.float32)
    numpy_index = NestedIndex(random_vectors)
    torch_index = NestedIndex(random_vectors, backend="torch")
    for dim in (7, 64):
        got = torch_index.search_many(queries, dim, 10)
        assert_same_hits(got, numpy_index.search_many(queries, dim, 10))


def test_search_many_bad_input() -> None:
    index = NestedIndex(np.ones((3, 8), np.float32))
    for bad in (np.ones(8), np.ones((2, 7)), np.ones((2, 8), np.int64), np.full((1, 8), np.nan)):
        with pytest.raises(InputError):
            index.search_many(bad, 4, 1)
    with pytest.raises(InputError):
        index.search_many(np.ones((2, 8)), 9, 1)
    with pytest.raises(InputError):
        index.search_many(np.ones((2, 8)), 4, -1)


@pytest.mark.parametrize("k", [1, 10, 600, 700, 5000])
def test_search_many_dims_equals_search_many_at_each_dim(
    threads: int, random_vectors: np.ndarray, k: int
) -> None:
    """One pass for all dims: the hits `search_many` gives at each d (the tuned dims of a 384-d
    index and odd ones, splitting blocks), with tied rows, zero rows and k >= N."""
    x = random_vectors[:600].copy()
    x[250] = x[4]  # tied with row 4 at every dim: the lower id first
    x[[17, 400]] = 0.0  # zero rows score 0 at every dim
    index = NestedIndex(x)
    queries = np.random.default_rng(k).standard_normal((5, 384)).astype(np.float32)
    queries[1] = x[4]
    queries[3, :100] = 0.0  # a zero prefix up to d = 100: every score 0 there, ids in order
    dims = [*hnsw.tune_dims(384), 1, 7, 100, 7]
    got = index.search_many_dims(queries, dims, k)
    assert list(got) == list(dict.fromkeys(dims))
    for dim, many in got.items():
        want = index.search_many(queries, dim, k)
        assert_same_hits(many, want)
        for hits, q in zip(many, queries, strict=True):
            assert_matches_reference(hits, x, q, dim, k)
        if dim > 1:  # at d = 1 every row of the same sign ties at 1
            assert many[1].ids[:2].tolist() == [4, 250][:k]
        if dim <= 100:
            assert many[3].ids.tolist() == list(range(min(k, 600)))
        if k >= 600:  # every row, the zero ones at 0
            assert all(h.scores[h.ids.tolist().index(17)] == 0 for h in many)


def test_search_many_dims_torch_small_and_bad_input(random_vectors: np.ndarray) -> None:
    queries = np.random.default_rng(6).standard_normal((3, 384)).astype(np.float32)
    numpy_index = NestedIndex(random_vectors)
    torch_index = NestedIndex(random_vectors, backend="torch")
    got = torch_index.search_many_dims(queries, [7, 64, 384], 10)
    for dim, many in got.items():
        assert_same_hits(many, numpy_index.search_many(queries, dim, 10))
    assert [len(h) for h in numpy_index.search_many_dims(queries, [8, 16], 0)[16]] == [0, 0, 0]
    assert numpy_index.search_many_dims(queries[:0], [8, 16], 5) == {8: [], 16: []}
    empty = NestedIndex(np.empty((0, 16), np.float32))
    assert [len(h) for h in empty.search_many_dims(np.ones((2, 16)), [4, 16], 3)[4]] == [0, 0]
    for bad_dims in ([], [0], [385], [8, True]):
        with pytest.raises(InputError):
            numpy_index.search_many_dims(queries, bad_dims, 10)
    with pytest.raises(InputError):
        numpy_index.search_many_dims(np.ones((2, 383)), [8], 10)
    with pytest.raises(InputError):
        numpy_index.search_many_dims(queries, [8], -1)


@pytest.mark.parametrize("dim", DIMS)
def test_threaded_search_matches_reference(threads: int, random_vectors: np.ndarray, dim: int):
    index = NestedIndex(random_vectors)
    query = np.random.default_rng(dim).standard_normal(384).astype(np.float32)
    for k in (1, 10, 700):
        assert_matches_reference(index.search(query, dim, k), random_vectors, query, dim, k)


def test_chunks_are_shared_once_each_in_order() -> None:
    seen: list[list[tuple[int, int]]] = []

    def work(chunks):
        mine = list(chunks)
        seen.append(mine)
        return len(mine)

    counts = index_module._share_chunks(1000, 64, work, threads=3)
    chunks = sorted(c for mine in seen for c in mine)
    assert chunks == [(a, min(a + 64, 1000)) for a in range(0, 1000, 64)]
    assert all(mine == sorted(mine) for mine in seen)
    assert sum(counts) == 16
    assert index_module._share_chunks(10, 64, work, threads=3) == [1]  # one chunk: no helper


def test_the_run_queue_is_read() -> None:
    assert index_module._runnable() >= (1 if sys.platform == "linux" else 0)


def test_one_scan_thread_when_small_or_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "SCAN_THREADS", 2)
    monkeypatch.setattr(index_module, "BUSY_LOAD", 3.0)
    monkeypatch.setattr(index_module.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert index_module._scan_threads(index_module.SMALL_SCAN - 1) == 1
    monkeypatch.setattr(index_module, "CORES", 2)
    monkeypatch.setattr(index_module, "_runnable", lambda: 1)  # only this search: a core idle
    assert index_module._scan_threads(index_module.SMALL_SCAN) == 2
    monkeypatch.setattr(index_module, "_runnable", lambda: 2)  # a CPU-bound neighbour, say
    assert index_module._scan_threads(index_module.SMALL_SCAN) == 1
    monkeypatch.setattr(index_module, "SCAN_THREADS", 4)
    monkeypatch.setattr(index_module, "CORES", 4)  # 4 cores, 2 busy besides this search
    monkeypatch.setattr(index_module, "_runnable", lambda: 3)
    assert index_module._scan_threads(index_module.SMALL_SCAN) == 2
    monkeypatch.setattr(index_module, "_runnable", lambda: 0)  # unknown: all of them
    assert index_module._scan_threads(index_module.SMALL_SCAN) == 4
    monkeypatch.setattr(index_module.os, "getloadavg", lambda: (4.0, 0.5, 0.5))
    assert index_module._scan_threads(index_module.SMALL_SCAN) == 1


def test_an_index_lives_on_the_embedders_gpu_cuda_or_mps_else_on_the_cpu() -> None:
    assert [index_device(d) for d in ("cuda", "mps", "cpu")] == ["cuda", "mps", "cpu"]
    assert NestedIndex(np.eye(16, dtype=np.float32), device=index_device("cpu")).backend == "numpy"


@pytest.mark.parametrize("n", [3, 8, 13, 300])
def test_every_dim_up_to_384_matches_reference(scan: str, n: int) -> None:
    """Every prefix 1..384 of the 384-d layout (blocks 32, 32, 64, 128, 128) at several N, below
    k too, with a row tied to another and a zero row: the same hits as the plain reference. The
    kernel scores equal rows bitwise equal (BLAS may not: its rows take different code paths)."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 384)).astype(np.float32)
    x *= rng.uniform(0.1, 3.0, size=(n, 1)).astype(np.float32)
    x[-1] = x[0]  # tied with row 0 at every dim
    x[n // 2] = 0.0
    query = x[0] + rng.standard_normal(384).astype(np.float32) * 0.5
    index = NestedIndex(x)
    for dim in range(1, 385):
        hits = index.search(query, dim, 10)
        assert_matches_reference(hits, x, query, dim, 10)
        order = hits.ids.tolist()
        if n - 1 in order and scan != "numpy":  # the tie: the same score, the lower id first
            assert hits.scores[order.index(0)] == hits.scores[order.index(n - 1)]
            assert order.index(0) < order.index(n - 1)


def test_the_portable_copy_matches_reference(portable_copy: None, threads: int) -> None:
    """The kernel's baseline copy (CPUs without AVX2/FMA): every dim of a 300-d index (a last,
    odd-width block), ties and a zero row, k below and above N."""
    assert index_module._fused is not None and index_module._fused.kernel() == "baseline"
    rng = np.random.default_rng(12)
    x = rng.standard_normal((301, 300)).astype(np.float32)
    x[77] = x[5]
    x[300] = x[5]  # the last row, past the 8-row groups
    x[9] = 0.0
    query = x[5] + rng.standard_normal(300).astype(np.float32) * 0.3
    index = NestedIndex(x)
    for dim in range(1, 301):
        assert_matches_reference(index.search(query, dim, 10), x, query, dim, 10)
        hits = index.search(x[5], dim, 400)
        order = hits.ids.tolist()
        assert order.index(5) < order.index(77) < order.index(300)
        assert hits.scores[order.index(5)] == hits.scores[order.index(300)]
        assert hits.scores[order.index(9)] == 0


def test_the_kernel_refuses_bad_arguments() -> None:
    """The C kernel checks what it is given (a wrong call is an error, not a crash)."""
    fused = index_module._fused
    if fused is None:
        pytest.skip("the C kernel was not built (no compiler at install time)")
    block = np.ones((16, 8), np.float32)
    inv = np.ones(16, np.float32)
    ids, scores = np.empty(4, np.int64), np.empty(4, np.float32)
    q = np.ones(8, np.float32)
    assert fused.scan((block,), (8,), q, inv, None, 0, 16, 4, ids, scores, 0) == 4
    assert sorted(ids.tolist()) == [0, 1, 2, 3]
    bad = [
        ((block,), (9,), q, inv, None, 0, 16, 4, ids, scores, 0),  # wider than the block
        ((block,), (4,), q, inv, None, 0, 16, 4, ids, scores, 0),  # widths != len(q)
        ((block,), (8,), q, inv, None, 0, 17, 4, ids, scores, 0),  # past the last row
        ((block,), (8,), q, inv[:8], None, 0, 16, 4, ids, scores, 0),  # inv too short
        ((block,), (8,), q, None, None, 0, 16, 4, ids, scores, 0),  # no norms at all
        ((block,), (8,), q, inv, None, 0, 16, 5, ids, scores, 0),  # no room for k
        ((block.astype(np.float64),), (8,), q, inv, None, 0, 16, 4, ids, scores, 0),
        ((block[:, :4],), (4,), q[:4], inv, None, 0, 16, 4, ids, scores, 0),  # not contiguous
    ]
    for args in bad:
        with pytest.raises((ValueError, TypeError, BufferError)):
            fused.scan(*args)


def test_an_install_without_the_kernel_scans_with_numpy() -> None:
    """Where the C kernel was not built (no compiler at install time) the index still imports
    and searches, with the numpy scan."""
    code = """
import sys
class NoKernel:
    def find_spec(self, name, path=None, target=None):
        if name == "mrl_tui.core.search._fused":
            raise ImportError("not built")
sys.meta_path.insert(0, NoKernel())
import numpy as np
from mrl_tui.core.search import index
assert index._fused is None
x = np.eye(4, dtype=np.float32)
print(index.NestedIndex(x).search(x[2], 4, 2).ids.tolist())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[2, 0]"


# -- the float16 mirror: its scan must give exactly the float32 kernel's hits --------------------


def adversarial_vectors(n: int, full: int, seed: int) -> np.ndarray:
    """Rows the float16 mirror cannot tell apart or represent well: duplicates, near-duplicates
    closer than a half's resolution, tiny and huge norms, values spanning 2^-40..1 in one row,
    all-zero rows and rows zero in their first columns only."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, full)).astype(np.float32)
    x *= rng.uniform(0.1, 3.0, size=(n, 1)).astype(np.float32)
    base = x[1].copy()
    near = rng.choice(np.arange(10, n), n // 4, replace=False)
    x[near] = base + rng.standard_normal((len(near), full)).astype(np.float32) * 1e-5
    x[2::37] = base  # exact duplicates of row 1 (ties)
    x[3] *= 1e-20  # tiny: every half subnormal or zero
    x[4] *= 1e13
    x[5, ::2] *= 2.0**-40  # one row from 2^-40 to 1
    x[6] = 0.0
    x[7, :40] = 0.0
    x[8] = base * 1e-30
    x[9] = base * 3e12
    return x


def assert_same_as_float32(got: Hits, want: Hits) -> None:
    assert got.ids.tolist() == want.ids.tolist()
    assert np.array_equal(got.scores.view(np.int32), want.scores.view(np.int32))


def half_and_float32(x: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> tuple:
    fused = index_module._fused
    if fused is None or not fused.half():
        pytest.skip("no float16 scan here (no C kernel, or no AVX2/FMA/F16C)")
    monkeypatch.setattr(index_module, "HALF_MIRROR", True)
    half = NestedIndex(x)
    monkeypatch.setattr(index_module, "HALF_MIRROR", False)
    plain = NestedIndex(x)
    assert half._half is not None and plain._half is None
    return half, plain


@pytest.mark.parametrize("full", [384, 301])
def test_the_half_scan_equals_the_float32_kernel_at_every_dim(
    scan: str, threads: int, full: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every prefix, on adversarial rows, k = 1, 10, 300 (most of N) and k >= N, queries near the
    near-duplicates: the same ids, bitwise the same scores, the same tie order."""
    if scan != "fused":
        pytest.skip("one run is enough: this test picks its own scans")
    x = adversarial_vectors(401, full, full)
    half, plain = half_and_float32(x, monkeypatch)
    rng = np.random.default_rng(5)
    queries = [x[1], x[1] + rng.standard_normal(full).astype(np.float32) * 1e-3, x[5], x[9]]
    queries += [rng.standard_normal(full).astype(np.float32)]
    for dim in range(1, full + 1):
        for i, q in enumerate(queries):
            for k in (1, 10) if i else (1, 10, 300, 500):
                assert_same_as_float32(half.search(q, dim, k), plain.search(q, dim, k))


def test_the_half_scan_keeps_rows_it_cannot_tell_apart(
    scan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5,000 rows within 1e-6 of one another (one float16 mirror for all of them) and more than
    the kernel's candidate buffer holds: the exact top k among them, as the float32 kernel."""
    if scan != "fused":
        pytest.skip("one run is enough: this test picks its own scans")
    rng = np.random.default_rng(8)
    base = rng.standard_normal(64).astype(np.float32)
    x = base + rng.standard_normal((5000, 64)).astype(np.float32) * 1e-6
    x[::500] = base  # ties
    half, plain = half_and_float32(x, monkeypatch)
    assert len({tuple(r) for r in half._half[0][0][:, :32].view(np.uint16).tolist()}) < 50
    for q in (base, base + rng.standard_normal(64).astype(np.float32) * 0.1):
        for dim in (1, 8, 31, 32, 33, 64):
            for k in (1, 10, 700):
                assert_same_as_float32(half.search(q, dim, k), plain.search(q, dim, k))


def test_no_half_mirror_for_huge_values_or_the_portable_copy(
    scan: str, portable_copy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value at HALF_MAX or above gets no mirror; the portable copy never scans one; a query too
    large for the bound's arithmetic scans float32; all still find the reference hits."""
    assert index_module._fused is not None and not index_module._fused.half()
    monkeypatch.setattr(index_module, "HALF_MIRROR", True)
    x = np.random.default_rng(9).standard_normal((300, 40)).astype(np.float32)
    assert NestedIndex(x)._half is None  # the portable copy: no F16C scan, no mirror
    index_module._fused.use_baseline(False)
    if not index_module._fused.half():
        pytest.skip("no float16 scan on this CPU")
    assert NestedIndex(x)._half is not None
    x[7, 3] = index_module.HALF_MAX
    assert NestedIndex(x)._half is None
    x[7, 3] = 1.0
    index = NestedIndex(x)
    query = x[2] * np.float32(2.0**40)
    assert_matches_reference(index.search(query, 40, 5), x, query, 40, 5)


def test_the_mirror_rounds_as_numpy_and_bad_mirrors_are_refused(
    scan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's float16 conversion rounds as numpy's cast does (subnormals too), and scan
    checks a mirror it is given (a wrong call is an error, not a crash)."""
    if scan != "fused":
        pytest.skip("one run is enough: this test picks its own scans")
    x = adversarial_vectors(300, 301, 3)
    half, _ = half_and_float32(x, monkeypatch)
    mirror, rscale = half._half
    scale = np.float32(1.0) / np.where(rscale > 0, rscale, 1).astype(np.float32)
    for (lo, hi), block in zip(index_module.block_bounds(301), mirror, strict=True):
        want = (x[:, lo:hi] * scale[:, None]).astype(np.float16)
        assert np.array_equal(block[:, : hi - lo].view(np.uint16), want.view(np.uint16))
        assert block.shape[1] % 8 == 0 and not block[:, hi - lo :].any()
    assert rscale[6] == 0 and rscale[0] > 0
    fused = index_module._fused
    block, inv = np.ones((16, 8), np.float32), np.ones(16, np.float32)
    h, rs = np.ones((16, 8), np.float16), np.ones(16, np.float32)
    ids, scores, q = np.empty(4, np.int64), np.empty(4, np.float32), np.ones(8, np.float32)
    assert fused.scan((block,), (8,), q, inv, None, 0, 16, 4, ids, scores, 0, ((h,), rs)) == 4
    assert sorted(ids.tolist()) == [0, 1, 2, 3]
    for bad in [
        ((h[:8],), rs),  # short
        ((h[:, :4],), rs),  # narrow, and not contiguous
        ((h.astype(np.float32),), rs),
        ((h, h), rs),  # one block too many
        ((h,), rs[:8]),
        (h, rs),
    ]:
        with pytest.raises((ValueError, TypeError, BufferError)):
            fused.scan((block,), (8,), q, inv, None, 0, 16, 4, ids, scores, 0, bad)
    with pytest.raises(ValueError):
        fused.to_half(block, rs[:8], h)


def _scores_as_searched(index: NestedIndex, x: np.ndarray, scan: str) -> None:
    """Given rows score as the search scored them: bitwise with the C kernel (a rerank of a
    search's hits ranks as the search did), to float32 rounding without it."""
    rng = np.random.default_rng(5)
    for dim in DIMS:
        query = rng.standard_normal(x.shape[1]).astype(np.float32)
        hits = index.search(query, dim, 40)
        scores = index.score_ids(query, dim, hits.ids)
        again = index.rerank(query, dim, np.concatenate([hits.ids[::-1], hits.ids[:5]]), 40)
        if scan == "numpy":
            np.testing.assert_allclose(scores, hits.scores, atol=2e-6)
        else:
            assert np.array_equal(scores, hits.scores), dim
            assert np.array_equal(again.ids, hits.ids) and np.array_equal(again.scores, scores)


def test_scored_rows_score_as_the_search_scored_them(random_vectors: np.ndarray, scan: str) -> None:
    x = random_vectors.copy()
    x[7] = x[3]  # equal rows score equally wherever they sit
    _scores_as_searched(NestedIndex(x), x, scan)


def test_the_portable_copy_scores_rows_as_it_searches(
    portable_copy: None, random_vectors: np.ndarray
) -> None:
    _scores_as_searched(NestedIndex(random_vectors), random_vectors, "fused")


def test_the_kernels_row_scores_reject_bad_ids(random_vectors: np.ndarray, scan: str) -> None:
    if scan != "fused":
        pytest.skip("a test of the C kernel")
    fused = index_module._fused
    assert fused is not None
    index = NestedIndex(random_vectors)
    blocks, widths, inv, cols, _ = index._fused_args(100)
    q = np.ones(100, np.float32)
    for ids, out, message in [
        (np.array([0, -1]), np.empty(2, np.float32), "negative"),
        (np.array([0, index.n]), np.empty(2, np.float32), "short"),
        (np.array([0, 1]), np.empty(3, np.float32), "as long"),
    ]:
        with pytest.raises(ValueError, match=message):
            fused.score(blocks, widths, q, inv, cols, ids, out)
    with pytest.raises(TypeError):
        fused.score(blocks, widths, q, inv, cols, np.array([0, 1], np.int32), np.empty(2))
