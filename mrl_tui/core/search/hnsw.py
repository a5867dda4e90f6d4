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
from collections.abc import Callable
from pathlib import Path

import hnswlib
import numpy as np

from mrl_tui.core.cache import artifacts
from mrl_tui.core.errors import CacheError, InputError
from mrl_tui.core.search.index import Hits, NestedIndex
from mrl_tui.core.search.rerank import rerank_head

ANCHOR_DIM = 64
"""Graph dimension: cheap distances, and recall of graph search stays high for d from 32 to full."""

HNSW_MIN_CHUNKS = 20_000
"""Below this many chunks the exact scan takes a few milliseconds; no graph is built."""

DEFAULT_EF = 200
BUILD_BATCH = 10_000


class HnswGraph:
    """An hnswlib cosine graph over the first ``dim`` coordinates of every row (ids = row ids)."""

    def __init__(self, index: hnswlib.Index, dim: int) -> None:
        self._index = index
        self._lock = threading.Lock()  # set_ef + knn_query must not interleave between threads
        self.dim = dim

    @property
    def n(self) -> int:
        return self._index.element_count

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
    index: NestedIndex, graph: HnswGraph, query: np.ndarray, dim: int, k: int, candidates: int
) -> Hits:
    """HNSW candidates at ``graph.dim``, reranked exactly at ``dim``.

    Asking for at least every row reranks all of them, which is the exact answer.
    """
    if graph.dim > index.full_dim or graph.n != index.n:
        raise InputError("the HNSW graph does not belong to this index")
    wanted = max(int(candidates), int(k))
    if wanted >= index.n:
        ids = np.arange(index.n, dtype=np.int64)
    else:
        ids = graph.candidates(query, wanted, ef=max(DEFAULT_EF, wanted))
    return rerank_head(index, query, dim, ids, depth=k)
