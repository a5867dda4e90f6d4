"""Exact cosine search at any prefix dimension over one stored copy of the vectors.

The score at dimension ``d`` is the cosine of the first ``d`` coordinates:
``q[:d]·x[:d] / (|q[:d]| |x[:d]|)``. Row norms of every prefix that is a multiple of ``STEP`` are
stored; other prefixes add their last few columns on the fly, so a search at any ``d`` reads
``N·d`` values once.

Layout (CPU): the columns are stored in blocks (`block_bounds`: 0–32, 32–64, 64–128, 128–256,
then 128 wide), each block a contiguous ``(N, width)`` array, so a prefix reads whole contiguous
blocks and, of the last one, only its first ``d - lo`` columns of every row. Rows are scanned in
chunks that stay in cache, and each chunk is merged into a running top-k with a threshold, so no
``N``-long score array is ever sorted or partitioned. Where the optional C kernel (`_fused.c`) was
built, a single-query search does all of that in one pass over the rows (dot products over the
blocks, times the stored inverse norms, into a heap); `search_many` and `score_ids` stay numpy.
On CPUs with F16C the kernel reads a float16 mirror of the blocks instead (`HALF_MIRROR`: half
the bytes, +0.5× the vectors in memory) and re-scores, from the float32 blocks, every row whose
score could reach the top k: the hits are bitwise those of the float32 scan.
The numbers behind these choices are in ``benchmarks/README.md``.

On CUDA/MPS the vectors are one torch tensor on the device and top-k is ``torch.topk``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from mrl_tui.core.errors import InputError

try:  # the optional C kernel (setup.py); without it the scan runs in numpy
    from mrl_tui.core.search import _fused
except ImportError:  # pragma: no cover - an install without a C compiler
    _fused = None

STEP = 8
"""The UI's slider step; prefix norms are stored at every multiple of it."""

BLOCK = 32
"""Width of the first two column blocks (a multiple of STEP): a prefix of 32 or 64 reads exactly
its own columns."""

MAX_BLOCK = 128
"""Widest column block. Past 64 dims each block is as wide as the prefix before it, up to this:
a matrix-vector product over 128 columns does a quarter of the per-row reductions of four over
32: 3–16 % faster at d >= 128, timed against the 32-wide blocks in the same runs
(benchmarks/README)."""

CHUNK_ROWS = 16_384
"""Rows per scan chunk: a chunk of one block (2 MiB) and its scores stay in L2 cache."""

SCAN_THREADS = max(1, min(4, os.cpu_count() or 1))
"""Threads that share a scan's row chunks (the calling thread is one); a few saturate memory
bandwidth."""

SMALL_SCAN = 1 << 23
"""A scan of fewer values (N·d) runs on the calling thread alone: with the C kernel on a quiet
2-core machine, 100k rows at d = 64 (6.4M values) took 1.13-1.15× faiss's one-thread time on two
threads and 0.95-0.96× on one; from d = 128 the second thread pays (0.69-0.87×)."""

FUSED_CHUNK_VALUES = 1 << 20
"""Values (rows × d) per call of the C kernel when threads share a scan: 4 MiB, a fraction of a
millisecond, so a thread that is descheduled holding one delays the search little. One thread
scans all rows in one call."""

FUSED_MIN_ROWS = 4096
"""At least this many rows per shared call (a call costs about 2 µs)."""

FUSED_SOLO_ROWS = 1 << 62
"""Rows per call on one thread: all of them (the tests make it small)."""

BUSY_LOAD = (os.cpu_count() or 1) + 1
"""From this 1-minute load average on, scans run on one thread: on the 2-core machine at load 3–5
a second scan thread made single searches 10–20 % slower at 100k rows and gained nothing at 400k."""

CORES = os.cpu_count() or 1
"""A scan takes helper threads only for cores that are idle right now (cores minus the tasks
runnable, this one included): a helper on a busy core is descheduled holding a chunk. On the
2-core machine at load 0.7 one CPU-bound neighbour took the two-thread numpy scan at 100k rows,
d >= 128, from 0.56–0.90× faiss's time to 1.02–1.34×. The load average takes a minute to see a
new neighbour; the run queue sees it at once. (Not yet measured quiet with the C kernel.)"""

HALF_MIRROR = True
"""Keep a float16 mirror of the column blocks (+0.5× the float32 vectors in memory, built when
the index is made, never stored) where the C kernel has its AVX2+F16C copy: single-query scans
read it, half the bytes, and re-score the rows that may reach the top k from the float32 blocks,
so results are exactly those of the float32 scan (`_fused.c` derives the bound)."""

HALF_MAX = 2.0**50
"""No mirror when some |value| reaches this (its bound's arithmetic must stay finite)."""

QUERY_BLOCK = 128
"""Queries `search_many` scores together: one pass over the vectors per block of queries."""

BATCH_VALUES = 1 << 18
"""Values (rows × d) of a batched scan's contiguous copy of one chunk: 1 MiB, in L2 cache."""

SCORE_VALUES = 1 << 22
"""Scores (queries × rows) a batched scan holds at once, per thread: 16 MiB at most."""

DIMS_SPAN_VALUES = 1 << 20
"""Values (rows × the largest d) per span of `search_many_dims`: 2,730 rows at 384, which it
multiplies segment by segment in place (no copy) and merges into every d's top-k at once. At
200k rows, 1,000 queries and 7 dims it took 3.7-4.3 s on 2 cores, 5.3-5.5 s at a quarter of
that (the merges' fixed cost), 4.4-4.7 s at 4 and 8 times it (the sums leave the cache)."""

T = TypeVar("T")
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_blas_limiter: object | None = None


def _scan_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="mrl-scan")
        return _pool


def _scan_threads(values: int) -> int:
    """Threads for a scan reading ``values`` floats (see `SMALL_SCAN`, `BUSY_LOAD`, `CORES`)."""
    if SCAN_THREADS == 1 or values < SMALL_SCAN:
        return 1
    try:
        busy = os.getloadavg()[0] >= BUSY_LOAD
    except OSError:  # no load average on this platform
        busy = False
    if busy:
        return 1
    running = _runnable()
    return SCAN_THREADS if running == 0 else max(1, min(SCAN_THREADS, 1 + CORES - running))


def _runnable() -> int:
    """Tasks runnable on the machine now, this one included (Linux); 0 where unknown."""
    try:
        with open("/proc/loadavg", "rb") as f:
            return int(f.read().split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return 0


def _share_chunks(
    n: int, rows: int, work: Callable[[Iterator[tuple[int, int]]], T], threads: int
) -> list[T]:
    """``work(chunks)`` on the calling thread and on up to ``threads - 1`` pool threads.

    All of them take (start, stop) row chunks in order from one shared queue, so a helper that
    starts late, or is descheduled by other load on the machine, scans less instead of holding
    the search up (a fixed split into one range per thread measured 1.5–1.9× slower than one
    thread on a loaded 2-core machine). A helper that has not started when the queue runs dry is
    cancelled. Each worker sees its chunks in increasing row order.
    """
    starts = range(0, n, rows)
    helpers = min(threads, len(starts)) - 1
    if helpers <= 0:
        return [work((a, min(a + rows, n)) for a in starts)]
    queue = iter(starts)
    lock = threading.Lock()

    def chunks() -> Iterator[tuple[int, int]]:
        while True:
            with lock:
                a = next(queue, None)
            if a is None:
                return
            yield a, min(a + rows, n)

    futures = [_scan_pool().submit(work, chunks()) for _ in range(helpers)]
    results = [work(chunks())]
    return results + [f.result() for f in futures if not f.cancel()]


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """Keep numpy's BLAS on one thread while we scan: our own threads split the rows instead.

    OpenBLAS threading of many small matrix-vector products measured erratic here (up to 30x
    slower on some block widths); one BLAS thread per scan thread is steady at the memory floor.
    Without threadpoolctl the scan still works, with OpenBLAS's own threading.
    """
    global _blas_limiter
    if _blas_limiter is None:
        try:
            from threadpoolctl import ThreadpoolController

            numpy_dir = os.path.dirname(np.__file__)
            controller = ThreadpoolController()
            ours = [
                info["filepath"]
                for info in controller.info()
                if info["user_api"] == "blas" and info["filepath"].startswith(numpy_dir)
            ]
            # numpy's bundled OpenBLAS if we can tell it apart, else every BLAS loaded.
            _blas_limiter = controller.select(filepath=ours) if ours else controller
        except ImportError:
            _blas_limiter = False
    if _blas_limiter is False:
        return contextlib.nullcontext()
    return _blas_limiter.limit(limits=1)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Hits:
    """Search results, best first. Ties are broken by the lower row id."""

    ids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def block_bounds(full_dim: int) -> list[tuple[int, int]]:
    """(first, end) column of every stored block: 0–32, 32–64, 64–128, 128–256, 256–384, …

    Every bound is a multiple of `STEP` (but the last, ``full_dim``), so the < STEP columns past a
    stored prefix norm lie in one block."""
    bounds, lo = [], 0
    while lo < full_dim:
        width = BLOCK if lo < 2 * BLOCK else min(lo, MAX_BLOCK)
        bounds.append((lo, min(lo + width, full_dim)))
        lo = bounds[-1][1]
    return bounds


def _empty_hits() -> Hits:
    return Hits(np.empty(0, np.int64), np.empty(0, np.float32))


def _best_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (ids, scores), sorted by score descending then id ascending."""
    if len(scores) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = scores >= kth  # keeps every tie at the boundary so the lower id can win
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def _merged(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of the threads' top-k lists (`_share_chunks`' results for one query): the one
    list as it is, else `_best_k` of them all."""
    if len(parts) == 1:
        return parts[0]
    return _best_k(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), k)


def _inverse(norms_sq: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1/sqrt of squared norms. A zero prefix gets a huge but finite factor; its dot product is
    exactly 0, so its score is 0 rather than NaN."""
    out = np.maximum(norms_sq, _TINY, out=out)
    np.sqrt(out, out=out)
    return np.divide(1.0, out, out=out)


_TINY = np.float32(1e-30)


class _TopK:
    """Running top-k of many queries over row chunks taken in increasing row order, merged for
    all queries at once: per chunk one sort of the kept rows of the queries it touches and its
    rows above their k-th best. A merge per query and chunk (`_best_k`, about 20 us) was most of
    a batched scan: `search_many` at 7 dims, 1,000 queries over 50k rows took 6.3 s, now 3.1 s
    (quiet, 2 cores). Ties go to the lower row id, as `_best_k`."""

    def __init__(self, m: int, k: int) -> None:
        self.k = k
        self.ids = np.full((m, k), np.iinfo(np.int64).max, np.int64)
        self.scores = np.full((m, k), -np.inf, np.float32)  # -inf: no row yet
        self.thresholds = np.full((m, 1), -np.inf, np.float32)
        self.filling = m > 0

    def add(self, s: np.ndarray, hit: np.ndarray, first: int) -> None:
        """Merge the scores ``s`` (m, rows) of rows ``first, first + 1, ...``; ``hit`` is
        contiguous scratch of the same shape. A row tied with the k-th kept one has a higher
        id: it loses, so only scores strictly above the threshold enter."""
        k, width = self.k, s.shape[1]
        np.greater(s, self.thresholds, out=hit)
        if self.filling and width > k:
            # Some query keeps fewer than k rows (at first, all): of this chunk, only rows at or
            # above its own k-th best can enter (at least k of its rows beat any other), so the
            # first chunk sorts about k rows a query, not all of them.
            floor = np.partition(s, width - k, axis=1)[:, width - k : width - k + 1]
            hit &= s >= floor
        flat = np.flatnonzero(hit)  # ten times as fast as a 2-D nonzero
        if len(flat) == 0:
            return
        qi, col = np.divmod(flat, width)
        touched = np.unique(qi)
        which = np.concatenate([np.repeat(touched, k), qi])
        scores = np.concatenate([self.scores[touched].ravel(), s[qi, col]])
        ids = np.concatenate([self.ids[touched].ravel(), col + first])
        order = np.lexsort((ids, -scores, which))
        # Every touched query has its k kept entries (padded with -inf), so its group in
        # ``order`` is at least k long and its first k are its new top-k.
        starts = np.searchsorted(which[order], touched)
        take = order[starts[:, None] + np.arange(k)]
        self.scores[touched] = scores[take]
        self.ids[touched] = ids[take]
        self.thresholds[touched, 0] = self.scores[touched, k - 1]
        self.filling = self.filling and bool(np.isinf(self.thresholds).any())

    def hits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each query's (ids, scores), best first, without the padding of unfilled places."""
        filled = np.isfinite(self.scores).sum(axis=1)
        return [(self.ids[i, :f].copy(), self.scores[i, :f].copy()) for i, f in enumerate(filled)]


def _half_mirror(
    x: np.ndarray, bounds: list[tuple[int, int]]
) -> tuple[list[np.ndarray], np.ndarray] | None:
    """The float16 mirror of the blocks and each row's float32 scale back (see `HALF_MIRROR`).

    Row r is stored as ``x[r] * 2**e`` with ``e`` putting its largest |value| in [2^14, 2^15)
    (clipped to ±60: a row of tiny values then has some subnormal halves, which the kernel's
    bound allows for): exact in float32, and no half overflows. ``rscale[r] = 2**-e``, 0 for an
    all-zero row. Each mirror block is zero-padded to a multiple of 8 columns. None when a value
    is too large (`HALF_MAX`)."""
    assert _fused is not None
    n = len(x)
    peak = np.empty(n, np.float32)
    for a in range(0, n, CHUNK_ROWS):
        part = x[a : a + CHUNK_ROWS]
        np.maximum(part.max(axis=1), -part.min(axis=1), out=peak[a : a + CHUNK_ROWS])
    if n and peak.max() >= HALF_MAX:
        return None
    _, exp = np.frexp(peak)  # peak = m * 2**exp, m in [0.5, 1)
    shift = np.clip(15 - exp, -60, 60)
    scale = np.ldexp(np.float32(1.0), shift).astype(np.float32)
    rscale = np.ldexp(np.float32(1.0), -shift).astype(np.float32)
    rscale[peak == 0] = 0.0
    mirror = []
    for lo, hi in bounds:
        block = np.zeros((n, -(-(hi - lo) // 8) * 8), np.float16)
        for a in range(0, n, CHUNK_ROWS):
            b = min(a + CHUNK_ROWS, n)
            _fused.to_half(np.ascontiguousarray(x[a:b, lo:hi]), scale[a:b], block[a:b])
        mirror.append(block)
    return mirror, rscale


class NestedIndex:
    """All vectors once, searchable exactly at every prefix ``1 <= dim <= full_dim``.

    ``backend`` is normally chosen from ``device``: numpy on "cpu", torch elsewhere. Passing
    ``backend="torch"`` with ``device="cpu"`` runs the device code path on the CPU, which is how
    the tests check it without a GPU.
    """

    def __init__(
        self, vectors: np.ndarray, *, device: str = "cpu", backend: str | None = None
    ) -> None:
        x = _validate_vectors(vectors)
        self.n, self.full_dim = x.shape
        self.device = device
        if backend is None:
            backend = "numpy" if device == "cpu" else "torch"
        if backend not in ("numpy", "torch"):
            raise InputError(f"unknown index backend {backend!r}")
        if backend == "numpy" and device != "cpu":
            raise InputError(f"the numpy backend runs on the CPU only, not {device!r}")
        self.backend = backend

        groups = self.full_dim // STEP
        # prefix_sq[j] = squared norm of every row's first (j + 1) * STEP coordinates.
        prefix_sq = np.empty((groups, self.n), np.float32)
        for a in range(0, self.n, CHUNK_ROWS):
            part = x[a : a + CHUNK_ROWS, : groups * STEP].astype(np.float64)
            part = part.reshape(len(part), groups, STEP)
            sq = np.einsum("rgs,rgs->rg", part, part)
            prefix_sq[:, a : a + len(part)] = np.cumsum(sq, axis=1).T

        if backend == "numpy":
            self._bounds = block_bounds(self.full_dim)
            self._blocks = [np.ascontiguousarray(x[:, lo:hi]) for lo, hi in self._bounds]
            # Stored inverted: a search at a multiple of STEP then multiplies by it directly.
            self._inv_prefix = _inverse(prefix_sq, out=prefix_sq)
            # The C kernel's arguments per dim (views of the arrays above), made on first use.
            self._kernel_args: dict[int, tuple] = {}
            self._half: tuple[list[np.ndarray], np.ndarray] | None = None
            if HALF_MIRROR and _fused is not None and _fused.half():
                self._half = _half_mirror(x, self._bounds)
        else:
            self._init_torch(x, prefix_sq)

    # ----------------------------------------------------------------- public API

    def search(self, query: np.ndarray, dim: int, k: int) -> Hits:
        """Exact top-k by cosine at ``dim``. Returns ``min(k, n)`` hits."""
        q = self._check_query(query, dim)
        k = _check_k(k, self.n)
        if k == 0:
            return _empty_hits()
        if self.backend == "torch":
            ids, scores = self._search_torch(q, dim, k)
        else:
            ids, scores = self._search_numpy(q, dim, k)
        return Hits(ids.astype(np.int64), scores.astype(np.float32))

    def search_many(self, queries: np.ndarray, dim: int, k: int) -> list[Hits]:
        """`search` for every row of ``queries`` (Q, full_dim), in order: the same hits (scores
        equal to float32 rounding), from one pass over the vectors per `QUERY_BLOCK` queries
        (matrix products instead of a scan per query)."""
        qs = self._check_queries(queries, dim)
        k = _check_k(k, self.n)
        if k == 0:
            return [_empty_hits() for _ in qs]
        if self.backend == "torch":
            return [Hits(*self._search_torch(q, dim, k)) for q in qs]
        return self._search_many_numpy(qs, dim, k)

    def search_many_dims(
        self, queries: np.ndarray, dims: Sequence[int], k: int
    ) -> dict[int, list[Hits]]:
        """`search_many` at every d of ``dims`` (keys in the order given, duplicates once), from
        one pass over the first ``max(dims)`` columns instead of one pass per d: each block of
        rows is multiplied segment by segment (the columns between consecutive dims, split at
        the stored blocks), the running sum of the segments is the dot product at each d, and
        each d keeps its own running top-k. The same hits as `search_many` at each d (scores
        equal to float32 rounding: the sums are added in another order). `hnsw.tune` needs the
        probes' exact top-k at 7 dims: at 200k rows 1,152 columns of work in 7 passes, 384 in
        one. The torch backend runs `search_many` per d."""
        wanted = list(dict.fromkeys(dims))
        if not wanted:
            raise InputError("search_many_dims needs at least one dimension")
        for dim in wanted:
            self._check_dim(dim)
        qs = self._check_queries(queries, max(wanted))
        k = _check_k(k, self.n)
        if k == 0:
            return {d: [_empty_hits() for _ in qs] for d in wanted}
        if self.backend == "torch" or len(qs) == 0:
            return {d: self.search_many(qs, d, k) for d in wanted}
        found = self._search_many_dims_numpy(qs, sorted(wanted), k)
        return {d: found[d] for d in wanted}

    def score_ids(self, query: np.ndarray, dim: int, ids: np.ndarray) -> np.ndarray:
        """Cosine at ``dim`` for the given rows, in the order given (float32)."""
        return self._score_checked(self._check_query(query, dim), dim, self._check_ids(ids))

    def rerank(self, query: np.ndarray, dim: int, ids: np.ndarray, k: int) -> Hits:
        """Exact top-k at ``dim`` among candidate rows (duplicates are ignored)."""
        q = self._check_query(query, dim)
        ids = self._unique_ids(ids)
        k = _check_k(k, len(ids))
        if k == 0:
            return _empty_hits()
        top_ids, top_scores = _best_k(ids, self._score_checked(q, dim, ids), k)
        return Hits(top_ids, top_scores)

    def _score_checked(self, q: np.ndarray, dim: int, ids: np.ndarray) -> np.ndarray:
        """`score_ids` for a checked query and ids. On the CPU the C kernel scores each row as its
        scan does (bitwise: a rerank ranks as a search); without it each block's rows are
        gathered and multiplied in turn (a few hundred candidates: no copy of their prefix)."""
        if self.backend == "torch":
            return self._score_ids_torch(q, dim, ids)
        if _fused is not None and hasattr(_fused, "score"):  # not in a kernel built before it
            blocks, widths, inv, cols, _ = self._fused_args(dim)
            out = np.empty(len(ids), np.float32)
            _fused.score(blocks, widths, np.ascontiguousarray(q[:dim]), inv, cols, ids, out)
            out *= _query_inv(q, dim)
            return out
        dots = None
        for block, lo, width in self._block_parts(dim):
            part = block[ids] if width == block.shape[1] else block[ids, :width]
            dot = part @ q[lo : lo + width]
            dots = dot if dots is None else np.add(dots, dot, out=dots)
        assert dots is not None  # dim >= 1 touches a block
        dots *= self._inv_norms_ids(ids, dim)
        dots *= _query_inv(q, dim)
        return dots.astype(np.float32, copy=False)

    def nbytes(self, dim: int) -> int:
        """Bytes of float32 vectors a search at ``dim`` reads: ``n * dim * 4`` (with the float16
        mirror a single-query scan reads half of that, and a few rows again in float32)."""
        self._check_dim(dim)
        return self.n * dim * 4

    def vectors(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Full rows as a new ``(len(ids), full_dim)`` float32 array (all rows when None)."""
        ids = np.arange(self.n) if ids is None else self._check_ids(ids)
        if self.backend == "torch":
            return self._x[self._torch.as_tensor(ids, device=self._x.device)].cpu().numpy()
        return self._rows(ids, self.full_dim)

    # ----------------------------------------------------------------- numpy backend

    def _search_numpy(self, q: np.ndarray, dim: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        parts = self._block_parts(dim)
        threads = _scan_threads(self.n * dim)
        if _fused is not None:
            rows = (
                FUSED_SOLO_ROWS if threads == 1 else max(FUSED_MIN_ROWS, FUSED_CHUNK_VALUES // dim)
            )
            if threads == 1 and rows >= self.n:  # one call, no queue
                results = [self._scan_fused(parts, q, dim, k, iter([(0, self.n)]))]
            else:
                results = _share_chunks(
                    self.n, rows, lambda chunks: self._scan_fused(parts, q, dim, k, chunks), threads
                )
        else:
            with _single_threaded_blas():
                results = _share_chunks(
                    self.n, CHUNK_ROWS, lambda chunks: self._scan(parts, q, dim, k, chunks), threads
                )
        ids, scores = _merged(results, k)
        return ids, scores * _query_inv(q, dim)

    def _scan(
        self,
        parts: list[tuple[np.ndarray, int, int]],
        q: np.ndarray,
        dim: int,
        k: int,
        chunks: Iterator[tuple[int, int]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of the chunks' rows by ``x[:dim]·q[:dim] / |x[:dim]|``, chunk by chunk."""
        best_ids = np.empty(0, np.int64)
        best_scores = np.empty(0, np.float32)
        threshold = -np.inf
        chunk = np.empty(min(CHUNK_ROWS, self.n), np.float32)
        tmp = np.empty_like(chunk)
        for a, b in chunks:
            s, t = chunk[: b - a], tmp[: b - a]
            for i, (block, lo, width) in enumerate(parts):
                if i == 0:
                    np.matmul(block[a:b, :width], q[lo : lo + width], out=s)
                else:
                    np.matmul(block[a:b, :width], q[lo : lo + width], out=t)
                    s += t
            s *= self._inv_norms_range(a, b, dim)
            if len(best_scores) < k < len(s):
                # Nothing kept yet. The k-th best of every step-th row is at most the chunk's
                # own k-th best, so the rows at or above it hold the chunk's top k and its ties:
                # a few hundred rows to merge, found without partitioning the whole chunk.
                sample = s[:: max(1, len(s) // (64 * k))]
                floor = np.partition(sample, len(sample) - k)[len(sample) - k]
                new = np.flatnonzero(s >= floor)
            else:
                # Rows of this chunk have higher ids than every kept row, so on a tie the kept
                # row wins: only scores strictly above the current k-th best can enter.
                new = np.flatnonzero(s > threshold)
            if len(new) == 0:
                continue
            best_ids, best_scores = _best_k(
                np.concatenate([best_ids, new + a]), np.concatenate([best_scores, s[new]]), k
            )
            if len(best_scores) == k:
                threshold = best_scores[-1]
        return best_ids, best_scores

    def _scan_fused(
        self,
        parts: list[tuple[np.ndarray, int, int]],
        q: np.ndarray,
        dim: int,
        k: int,
        chunks: Iterator[tuple[int, int]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """`_scan` in the C kernel: one call per chunk, each continuing the same heap."""
        assert _fused is not None
        blocks, widths, inv, cols, half = self._fused_args(dim)
        qd = np.ascontiguousarray(q[:dim])
        ids = np.empty(k, np.int64)
        scores = np.empty(k, np.float32)
        count = 0
        for a, b in chunks:
            count = _fused.scan(blocks, widths, qd, inv, cols, a, b, k, ids, scores, count, half)
        return _best_k(ids[:count], scores[:count], k)

    def _fused_args(self, dim: int) -> tuple:
        """The C kernel's arguments at ``dim`` (blocks, widths, inv, norm_cols, half), kept."""
        args = self._kernel_args.get(dim)
        if args is None:
            parts = self._block_parts(dim)
            groups, extra = divmod(dim, STEP)
            cols = None
            if extra:
                i = self._block_of(groups * STEP)
                cols = (self._blocks[i], groups * STEP - self._bounds[i][0], extra)
            half = None
            if self._half is not None:
                mirror, rscale = self._half
                half = (tuple(mirror[: len(parts)]), rscale)
            args = (
                tuple(block for block, _, _ in parts),
                tuple(width for _, _, width in parts),
                self._inv_prefix[groups - 1] if groups else None,
                cols,
                half,
            )
            self._kernel_args[dim] = args
        return args

    def _search_many_numpy(self, queries: np.ndarray, dim: int, k: int) -> list[Hits]:
        parts = self._block_parts(dim)
        # Rows per GEMM: the chunk's normalised copy stays in cache. Rows merged into the running
        # top-k at once (a span): at least 4k, so a large k is not re-sorted every few rows.
        rows = min(self.n, max(256, BATCH_VALUES // dim))
        span = min(self.n, max(rows, 4 * k))
        block = max(1, min(QUERY_BLOCK, SCORE_VALUES // span))
        threads = _scan_threads(self.n * dim)
        out = []
        with _single_threaded_blas():
            for first in range(0, len(queries), block):
                qs = np.ascontiguousarray(queries[first : first + block, :dim])
                results = _share_chunks(
                    self.n,
                    span,
                    lambda chunks, qs=qs: self._scan_many(parts, qs, dim, k, rows, chunks),
                    threads,
                )
                for i, q in enumerate(queries[first : first + block]):
                    ids, scores = _merged([r[i] for r in results], k)
                    out.append(Hits(ids, (scores * _query_inv(q, dim)).astype(np.float32)))
        return out

    def _scan_many(
        self,
        parts: list[tuple[np.ndarray, int, int]],
        qs: np.ndarray,
        dim: int,
        k: int,
        rows: int,
        chunks: Iterator[tuple[int, int]],
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """`_scan` for a block of queries ``qs`` (m, dim): per span of rows, one GEMM per
        ``rows`` of it over a contiguous copy of those rows' prefix, then the queries' running
        top-k take the scores above their current k-th best (`_TopK`)."""
        m = len(qs)
        top = _TopK(m, k)
        copy = np.empty((rows, dim), np.float32)
        scores = np.empty(0, np.float32)
        above = np.empty(0, np.bool_)
        for a, b in chunks:
            if scores.size < m * (b - a):
                scores = np.empty(m * (b - a), np.float32)
                above = np.empty(m * (b - a), np.bool_)
            s = scores[: m * (b - a)].reshape(m, b - a)
            hit = above[: m * (b - a)].reshape(m, b - a)
            for c in range(a, b, rows):
                e = min(c + rows, b)
                x = copy[: e - c]
                for block, lo, width in parts:
                    x[:, lo : lo + width] = block[c:e, :width]
                np.matmul(qs, x.T, out=s[:, c - a : e - a])
            s *= self._inv_norms_range(a, b, dim)  # after the product, as `_scan` does
            top.add(s, hit, a)
        return top.hits()

    def _search_many_dims_numpy(
        self, queries: np.ndarray, dims: list[int], k: int
    ) -> dict[int, list[Hits]]:
        widest = dims[-1]
        # Segments (block, first column in it, last, ends a dim?): the columns between
        # consecutive dims, split where a stored block ends, so each is a strided slice of one
        # block (no copy of the rows' prefix, as `_scan_many` makes).
        cuts = sorted({*dims, *(hi for _, hi in self._bounds if hi < widest)})
        segments, lo = [], 0
        for hi in cuts:
            i = self._block_of(lo)
            first = self._bounds[i][0]
            segments.append((self._blocks[i], lo, lo - first, hi - first, hi in dims))
            lo = hi
        span = min(self.n, max(256, DIMS_SPAN_VALUES // widest, 4 * k))
        block = max(1, min(QUERY_BLOCK, SCORE_VALUES // span))  # three arrays of them
        threads = _scan_threads(self.n * widest)
        out: dict[int, list[Hits]] = {d: [] for d in dims}
        with _single_threaded_blas():
            for first in range(0, len(queries), block):
                qs = np.ascontiguousarray(queries[first : first + block, :widest])
                results = _share_chunks(
                    self.n,
                    span,
                    lambda chunks, qs=qs: self._scan_many_dims(segments, qs, dims, k, chunks),
                    threads,
                )
                for j, dim in enumerate(dims):
                    for i, q in enumerate(queries[first : first + block]):
                        ids, scores = _merged([r[j][i] for r in results], k)
                        out[dim].append(Hits(ids, (scores * _query_inv(q, dim)).astype(np.float32)))
        return out

    def _scan_many_dims(
        self,
        segments: list[tuple[np.ndarray, int, int, int, bool]],
        qs: np.ndarray,
        dims: list[int],
        k: int,
        chunks: Iterator[tuple[int, int]],
    ) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """`_scan_many` at every d of ``dims`` (sorted) at once: per span of rows, one GEMM per
        segment added into a running sum; where a segment ends a d, the sum times the rows'
        inverse norms at d goes to that d's running top-k (`_TopK`: all queries at once)."""
        m = len(qs)
        tops = [_TopK(m, k) for _ in dims]
        total = part = scaled = np.empty(0, np.float32)
        above = np.empty(0, np.bool_)
        for a, b in chunks:
            size = m * (b - a)
            if total.size < size:
                total, part, scaled = (np.empty(size, np.float32) for _ in range(3))
                above = np.empty(size, np.bool_)
            acc = total[:size].reshape(m, b - a)
            tmp = part[:size].reshape(m, b - a)
            s = scaled[:size].reshape(m, b - a)
            hit = above[:size].reshape(m, b - a)
            j = 0
            for n_seg, (blk, lo, c0, c1, ends) in enumerate(segments):
                q = qs[:, lo : lo + c1 - c0]
                x = blk[a:b, c0:c1]
                if n_seg == 0:
                    np.matmul(q, x.T, out=acc)
                else:
                    np.matmul(q, x.T, out=tmp)
                    acc += tmp
                if ends:
                    np.multiply(acc, self._inv_norms_range(a, b, dims[j]), out=s)
                    tops[j].add(s, hit, a)
                    j += 1
        return [top.hits() for top in tops]

    def _block_parts(self, dim: int) -> list[tuple[np.ndarray, int, int]]:
        """(block, first column, columns used) for every block a prefix of ``dim`` touches."""
        return [
            (block, lo, min(hi, dim) - lo)
            for block, (lo, hi) in zip(self._blocks, self._bounds, strict=True)
            if lo < dim
        ]

    def _rows(self, ids: np.ndarray, dim: int) -> np.ndarray:
        """Gather the first ``dim`` columns of the given rows from the blocks."""
        out = np.empty((len(ids), dim), np.float32)
        for block, lo, width in self._block_parts(dim):
            out[:, lo : lo + width] = block[ids, :width]
        return out

    def _inv_norms_range(self, a: int, b: int, dim: int) -> np.ndarray:
        """1/|x[:dim]| for rows a..b: stored at multiples of STEP, else the stored prefix plus
        the last (< STEP) columns."""
        groups, extra = divmod(dim, STEP)
        if not extra:
            return self._inv_prefix[groups - 1, a:b]
        lo = groups * STEP
        i = self._block_of(lo)
        first = self._bounds[i][0]
        cols = self._blocks[i][a:b, lo - first : lo - first + extra]
        return _inverse(self._stored_sq(groups, slice(a, b)) + np.einsum("ij,ij->i", cols, cols))

    def _inv_norms_ids(self, ids: np.ndarray, dim: int) -> np.ndarray:
        """1/|x[:dim]| for the given rows (as `_inv_norms_range`)."""
        groups, extra = divmod(dim, STEP)
        if not extra:
            return self._inv_prefix[groups - 1, ids]
        lo = groups * STEP
        i = self._block_of(lo)
        cols = self._blocks[i][ids, lo - self._bounds[i][0] : lo - self._bounds[i][0] + extra]
        return _inverse(self._stored_sq(groups, ids) + np.einsum("ij,ij->i", cols, cols))

    def _block_of(self, column: int) -> int:
        """The stored block holding this column."""
        return next(i for i, (first, end) in enumerate(self._bounds) if first <= column < end)

    def _stored_sq(self, groups: int, rows: slice | np.ndarray) -> np.ndarray:
        """Squared norm of the first ``groups * STEP`` columns for the given rows."""
        if groups == 0:
            return np.float32(0.0)  # type: ignore[return-value]
        inv = self._inv_prefix[groups - 1, rows]
        return 1.0 / (inv * inv)

    # ----------------------------------------------------------------- torch backend

    def _init_torch(self, x: np.ndarray, prefix_sq: np.ndarray) -> None:
        import torch

        try:
            device = torch.device(self.device)
            if device.type == "cuda" and not torch.cuda.is_available():
                raise InputError("CUDA was requested but torch sees no CUDA device")
            if device.type == "mps" and not torch.backends.mps.is_available():
                raise InputError("MPS was requested but torch sees no MPS device")
        except RuntimeError as exc:
            raise InputError(f"unknown torch device {self.device!r}: {exc}") from exc
        self._torch = torch
        self._x = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        self._prefix_sq_t = torch.from_numpy(prefix_sq).to(device)

    def _torch_norms_sq(self, dim: int, ids=None):
        """Squared prefix norms at ``dim`` as a device tensor, for all rows or the given ids."""
        torch = self._torch
        groups, extra = divmod(dim, STEP)
        n = self.n if ids is None else len(ids)
        if groups:
            base = self._prefix_sq_t[groups - 1]
            base = base if ids is None else base[ids]
        else:
            base = torch.zeros(n, dtype=torch.float32, device=self._x.device)
        if not extra:
            return base
        cols = self._x[:, groups * STEP : dim]
        cols = cols if ids is None else cols[ids]
        return base + (cols * cols).sum(dim=1)

    def _torch_scores(self, q: np.ndarray, dim: int, ids=None):
        torch = self._torch
        qt = torch.from_numpy(q[:dim].copy()).to(self._x.device)
        x = self._x[:, :dim] if ids is None else self._x[ids, :dim]
        norms_sq = self._torch_norms_sq(dim, ids)
        inv = torch.where(norms_sq > 0, torch.rsqrt(norms_sq), torch.zeros_like(norms_sq))
        return (x @ qt) * inv * float(_query_inv(q, dim))

    def _search_torch(self, q: np.ndarray, dim: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        scores = self._torch_scores(q, dim)
        kth = torch.topk(scores, k, sorted=True).values[-1]
        # torch.topk does not promise which of several equal scores it returns; take every row
        # at or above the k-th score (usually exactly k) and break ties by id on the host.
        candidates = torch.nonzero(scores >= kth, as_tuple=True)[0]
        ids = candidates.cpu().numpy().astype(np.int64)
        return _best_k(ids, scores[candidates].cpu().numpy().astype(np.float32), k)

    def _score_ids_torch(self, q: np.ndarray, dim: int, ids: np.ndarray) -> np.ndarray:
        index = self._torch.as_tensor(ids, device=self._x.device)
        return self._torch_scores(q, dim, index).cpu().numpy().astype(np.float32)

    # ----------------------------------------------------------------- validation

    def _check_dim(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise InputError(f"dimension must be an integer, got {dim!r}")
        if not 1 <= dim <= self.full_dim:
            raise InputError(f"dimension {dim} is outside 1..{self.full_dim}")

    def _check_query(self, query: np.ndarray, dim: int) -> np.ndarray:
        self._check_dim(dim)
        q = np.asarray(query)
        if q.shape != (self.full_dim,):
            raise InputError(f"query must have shape ({self.full_dim},), got {q.shape}")
        if not np.issubdtype(q.dtype, np.floating):
            raise InputError(f"query must be float, got {q.dtype}")
        q = np.ascontiguousarray(q, dtype=np.float32)
        if not np.isfinite(q).all():
            raise InputError("query contains NaN or infinite values")
        return q

    def _check_queries(self, queries: np.ndarray, dim: int) -> np.ndarray:
        self._check_dim(dim)
        qs = np.asarray(queries)
        if qs.ndim != 2 or qs.shape[1] != self.full_dim:
            raise InputError(f"queries must have shape (Q, {self.full_dim}), got {qs.shape}")
        if not np.issubdtype(qs.dtype, np.floating):
            raise InputError(f"queries must be float, got {qs.dtype}")
        qs = np.ascontiguousarray(qs, dtype=np.float32)
        if not np.isfinite(qs).all():
            raise InputError("queries contain NaN or infinite values")
        return qs

    def _check_ids(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1 or (len(ids) and not np.issubdtype(ids.dtype, np.integer)):
            raise InputError("ids must be a 1-D integer array")
        ids = ids.astype(np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.n):
            raise InputError(f"ids must lie in 0..{self.n - 1}")
        return ids

    def _unique_ids(self, ids: np.ndarray) -> np.ndarray:
        """`_check_ids`, sorted and without duplicates (sorting makes the gathers forward)."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or (len(ids) and not np.issubdtype(ids.dtype, np.integer)):
            raise InputError("ids must be a 1-D integer array")
        ids = np.sort(ids.astype(np.int64))
        if len(ids) and (ids[0] < 0 or ids[-1] >= self.n):
            raise InputError(f"ids must lie in 0..{self.n - 1}")
        if len(ids) > 1:
            fresh = ids[1:] != ids[:-1]
            if not fresh.all():
                ids = ids[np.concatenate(([True], fresh))]
        return ids


def index_device(embedder_device: str) -> str:
    """Where an index of this embedder's vectors lives: on its GPU ("cuda" or "mps", the torch
    backend: float32 matmul and ``torch.topk``, both supported on MPS), else the CPU (numpy)."""
    return embedder_device if embedder_device in ("cuda", "mps") else "cpu"


def _query_inv(q: np.ndarray, dim: int) -> np.float32:
    """1/|q[:dim]|, or 0 for a zero prefix (every score is then 0)."""
    norm = float(np.sqrt(np.dot(q[:dim].astype(np.float64), q[:dim])))
    return np.float32(1.0 / norm if norm > 0 else 0.0)


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InputError(f"k must be a non-negative integer, got {k!r}")
    return min(int(k), n)


def _validate_vectors(vectors: np.ndarray) -> np.ndarray:
    if not isinstance(vectors, np.ndarray):
        raise InputError(f"vectors must be a numpy array, got {type(vectors).__name__}")
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise InputError(f"vectors must be a 2-D (N, D) array with D >= 1, got {vectors.shape}")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise InputError(f"vectors must be float, got {vectors.dtype}")
    x = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InputError("vectors contain NaN or infinite values")
    return x
