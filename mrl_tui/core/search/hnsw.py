"""Approximate candidates from an HNSW graph at one anchor dimension, reranked exactly.

Building a graph per prefix dimension would cost one build per slider position. Instead one graph
indexes the normalised ``ANCHOR_DIM``-prefix of the (transformed) vectors; a search at any ``d``
asks it for a few hundred candidates and reranks them exactly at ``d`` with the ``NestedIndex``
("graph search"; a "funnel" is the exact cascade of `funnel.py`). For small corpora the exact
scan is fast enough and needs no graph.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

from mrl_tui.core.cache import artifacts
from mrl_tui.core.errors import CacheError, InputError
from mrl_tui.core.search.index import Hits, NestedIndex, _best_k
from mrl_tui.core.search.rerank import rerank_head

ANCHOR_DIM = 64
"""Graph dimension: cheap distances, and recall of graph search stays high for d from 32 to full."""

HNSW_MIN_CHUNKS = 20_000
"""Below this many chunks the exact scan takes a few milliseconds; no graph is built."""

DEFAULT_EF = 200
"""Beam width and candidate count of `graph_search` where `tune` has measured none for the graph."""
BUILD_BATCH = 10_000

TUNE_EFS = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
"""Beam widths `tune` tries; the candidates reranked are the first c of the beam, c <= ef."""
TUNE_QUERIES = 64
TUNE_TIMED = 3
"""Beam widths timed per d, from the narrowest that reaches the target recall."""
TUNE_RECALL = 0.99
"""`tune` wants the funnel's top-k to hold 99 % of the exact top-k at the same d, on average."""


@dataclass(frozen=True)
class FunnelSetting:
    """Beam width and candidates reranked for one d, with what `tune` measured for them (recall
    on corpus rows, median CPU ms per search)."""

    ef: int
    candidates: int
    recall: float
    ms: float


class HnswGraph:
    """An hnswlib cosine graph over the first ``dim`` coordinates of every row (ids = row ids)."""

    def __init__(self, index: hnswlib.Index, dim: int) -> None:
        self._index = index
        self._lock = threading.Lock()  # set_ef + knn_query must not interleave between threads
        self.dim = dim
        self.settings: dict[int, FunnelSetting] = {}
        """Per d, what `tune` chose (empty until it runs)."""

    @property
    def n(self) -> int:
        return self._index.element_count

    def setting(self, dim: int) -> FunnelSetting | None:
        """What `tune` chose for the tuned d nearest ``dim`` (ties: the larger), if any."""
        if not self.settings:
            return None
        return self.settings[min(self.settings, key=lambda d: (abs(d - dim), -d))]

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        dim: int,
        *,
        ef_construction: int = 200,
        M: int = 16,
        threads: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> HnswGraph:
        """Index ``vectors[:, :dim]`` (hnswlib normalises them: cosine space), in batches."""
        x = np.asarray(vectors)
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
            raise InputError(f"HNSW needs a float (N, D) matrix, got {x.dtype} {x.shape}")
        if not 1 <= dim <= x.shape[1]:
            raise InputError(f"HNSW dimension {dim} is outside 1..{x.shape[1]}")
        n = x.shape[0]
        index = hnswlib.Index(space="cosine", dim=dim)
        index.init_index(max_elements=max(n, 1), ef_construction=ef_construction, M=M)
        for a in range(0, n, BUILD_BATCH):
            b = min(a + BUILD_BATCH, n)
            batch = np.ascontiguousarray(x[a:b, :dim], dtype=np.float32)
            if not np.isfinite(batch).all():
                raise InputError("HNSW input contains NaN or infinite values")
            index.add_items(batch, np.arange(a, b), num_threads=threads or -1)
            if progress is not None:
                progress(b, n)
        index.set_ef(DEFAULT_EF)
        return cls(index, dim)

    def save(self, path: Path) -> None:
        """Write hnswlib's own format atomically and durably (`artifacts.atomic_write`)."""
        artifacts.atomic_write(Path(path), self.write)

    def write(self, path: Path) -> None:
        """Write the graph to ``path`` as it is, and read it back: hnswlib does not report a
        failed write (a full disk leaves a short file), but its loader rejects a short file."""
        self._index.save_index(str(path))
        check = hnswlib.Index(space="cosine", dim=self.dim)
        try:
            check.load_index(str(path), max_elements=max(self.n, 1))
        except RuntimeError as exc:
            raise OSError(errno.EIO, f"the graph file came out incomplete ({exc})") from exc
        if check.element_count != self.n:
            raise OSError(errno.EIO, "the graph file came out incomplete")

    @classmethod
    def load(cls, path: Path, dim: int, n: int) -> HnswGraph:
        """Load a saved graph; a file that does not hold ``n`` rows of ``dim`` is a CacheError.

        Only for a verified file (`artifacts.load_or_build`): an edited one can crash hnswlib."""
        index = hnswlib.Index(space="cosine", dim=dim)
        try:
            index.load_index(str(path), max_elements=max(n, 1))
        except (RuntimeError, OSError, ValueError) as exc:
            raise CacheError(f"unreadable HNSW graph {path}: {exc}") from exc
        if index.element_count != n or index.dim != dim:
            raise CacheError(
                f"HNSW graph {path} holds {index.element_count} rows of dimension {index.dim}, "
                f"expected {n} of {dim}"
            )
        index.set_ef(DEFAULT_EF)
        return cls(index, dim)

    def candidates(self, query: np.ndarray, k: int, ef: int | None = None) -> np.ndarray:
        """Up to ``k`` approximate nearest row ids (int64) for the query's ``dim``-prefix."""
        q = np.asarray(query, dtype=np.float32)
        if q.ndim != 1 or q.shape[0] < self.dim:
            raise InputError(f"query must be 1-D with at least {self.dim} values, got {q.shape}")
        k = min(int(k), self.n)
        if k <= 0:
            return np.empty(0, np.int64)
        with self._lock:
            self._index.set_ef(max(ef or DEFAULT_EF, k))
            labels, _ = self._index.knn_query(q[None, : self.dim], k=k, num_threads=1)
        return labels[0].astype(np.int64)


def graph_search(
    index: NestedIndex,
    graph: HnswGraph,
    query: np.ndarray,
    dim: int,
    k: int,
    candidates: int | None = None,
    ef: int | None = None,
) -> Hits:
    """HNSW candidates at ``graph.dim``, reranked exactly at ``dim``.

    ``candidates``/``ef`` default to what `tune` measured for the nearest tuned d (ties: the
    larger d), else to `DEFAULT_EF` for both. The beam is ``max(ef, candidates, k)`` wide: no
    fixed floor. Asking for at least every row reranks all of them, which is the exact answer.
    """
    if graph.dim > index.full_dim or graph.n != index.n:
        raise InputError("the HNSW graph does not belong to this index")
    if candidates is None:
        setting = graph.setting(dim)
        candidates = setting.candidates if setting else DEFAULT_EF
        ef = ef or (setting.ef if setting else DEFAULT_EF)
    wanted = max(int(candidates), int(k))
    if wanted >= index.n:
        ids = np.arange(index.n, dtype=np.int64)
    else:
        ids = graph.candidates(query, wanted, ef=max(ef or wanted, wanted))
    return rerank_head(index, query, dim, ids, depth=k)


def tune(
    index: NestedIndex,
    graph: HnswGraph,
    dims: Sequence[int],
    k: int = 10,
    *,
    target: float = TUNE_RECALL,
    queries: int = TUNE_QUERIES,
    seed: int = 0,
) -> dict[int, FunnelSetting]:
    """Measure, per d, the fastest (ef, candidates) whose funnel keeps ``target`` of the exact
    top-k, and store them in ``graph.settings`` (`graph_search` then uses them).

    Queries are rows of the corpus itself (the row is left out of both top-k lists: finding it
    is too easy), like the auto funnel's pseudo-queries. For each beam width of `TUNE_EFS` the
    candidates are the first c of the beam, c doubling from k; per beam width the smallest c
    that reaches the target is timed (median CPU time over the queries), from the narrowest beam
    that reaches it and the next `TUNE_TIMED` - 1, and the fastest wins. Where nothing reaches
    it, the setting with the best recall.
    """
    if graph.dim > index.full_dim or graph.n != index.n:
        raise InputError("the HNSW graph does not belong to this index")
    n = index.n
    count = min(queries, n)
    if count == 0 or k < 1:
        return {}
    rows = np.sort(np.random.default_rng(seed).choice(n, count, replace=False))
    qs = index.vectors(rows)
    efs = [ef for ef in TUNE_EFS if k <= ef < n] or [max(k, min(n, TUNE_EFS[0]))]
    # One beam per width serves every c <= ef: hnswlib's c best of an ef-wide beam are its
    # first c, whatever count was asked. One more than ef: the query's own row drops out. Beams
    # are walked only for the widths some d needs, once for all d.
    beams: dict[int, list[np.ndarray]] = {}

    def beam(ef: int) -> list[np.ndarray]:
        if ef not in beams:
            beams[ef] = [
                _drop(graph.candidates(q, ef + 1, ef=ef + 1), r)[:ef]
                for q, r in zip(qs, rows, strict=True)
            ]
        return beams[ef]

    chosen: dict[int, FunnelSetting] = {}
    for dim in dims:
        truth = [
            set(_drop(h.ids, r)[:k].tolist())
            for h, r in zip(index.search_many(qs, dim, k + 1), rows, strict=True)
        ]
        scored: dict[int, list[np.ndarray]] = {}

        def recall_at(ef: int, c: int, dim: int = dim, truth=truth, scored=scored) -> float:
            if ef not in scored:  # each beam scored once at this d; its first c are a slice
                scored[ef] = [index.score_ids(q, dim, b) for q, b in zip(qs, beam(ef), strict=True)]
            kept = [
                len(set(_best_k(b[:c], scores[:c], k)[0].tolist()) & t) / max(1, len(t))
                for b, scores, t in zip(beam(ef), scored[ef], truth, strict=True)
            ]
            return float(np.mean(kept))

        best: FunnelSetting | None = None
        fallback: FunnelSetting | None = None
        tried = 0
        for ef in efs:
            c = k
            while True:
                recall = recall_at(ef, c)
                if fallback is None or recall > fallback.recall:
                    fallback = FunnelSetting(ef, c, recall, float("nan"))
                if recall >= target or c == ef:
                    break
                c = min(2 * c, ef)
            if recall < target:
                continue
            ms = _median_ms(
                lambda q, dim=dim, ef=ef, c=c: graph_search(index, graph, q, dim, k, c, ef), qs
            )
            if best is None or ms < best.ms:
                best = FunnelSetting(ef, c, recall, ms)
            tried += 1
            if tried == TUNE_TIMED:
                break  # wider beams than these cost more: each step widens it by half
        chosen[dim] = best or fallback  # type: ignore[assignment]
    graph.settings.update(chosen)
    return chosen


def _drop(ids: np.ndarray, row: int) -> np.ndarray:
    return ids[ids != row]


def _median_ms(search: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    """Median CPU milliseconds of this thread per query: on a loaded machine, wall time also
    counts waits for the run queue, which grow with a query's length and would pick at random."""
    times = []
    for q in queries:
        started = time.thread_time()
        search(q)
        times.append(time.thread_time() - started)
    return float(np.median(times) * 1e3)
