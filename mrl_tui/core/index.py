"""Exact cosine search at any prefix dimension over one stored copy of the vectors.

The score at dimension ``d`` is the cosine of the first ``d`` coordinates:
``q[:d]·x[:d] / (|q[:d]| |x[:d]|)``. Row norms of every prefix that is a multiple of ``STEP`` are
stored; other prefixes add their last few columns on the fly, so a search at any ``d`` reads
``N·d`` values once.

Layout (CPU): the columns are stored in blocks of ``BLOCK`` dimensions, each block a contiguous
``(N, BLOCK)`` array, so a prefix reads whole contiguous blocks and nothing past ``d`` rounded up
to a block. Rows are scanned in chunks that stay in cache, and each chunk is merged into a running
top-k with a threshold, so no ``N``-long score array is ever sorted or partitioned. The numbers
behind these choices are in ``benchmarks/README.md``.

On CUDA/MPS the vectors are one torch tensor on the device and top-k is ``torch.topk``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from mrl_tui.core.errors import InputError

STEP = 8
"""The UI's slider step; prefix norms are stored at every multiple of it."""

BLOCK = 32
"""Dimensions per stored column block (a multiple of STEP); 32 measured best (benchmarks/README)."""

CHUNK_ROWS = 16_384
"""Rows per scan chunk: a chunk of one block (2 MiB) and its scores stay in L2 cache."""

SCAN_THREADS = max(1, min(4, os.cpu_count() or 1))
"""Threads that scan disjoint row ranges; a few saturate memory bandwidth."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_blas_limiter: object | None = None


def _scan_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="mrl-scan")
        return _pool


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


def _inverse(norms_sq: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1/sqrt of squared norms. A zero prefix gets a huge but finite factor; its dot product is
    exactly 0, so its score is 0 rather than NaN."""
    out = np.maximum(norms_sq, _TINY, out=out)
    np.sqrt(out, out=out)
    return np.divide(1.0, out, out=out)


_TINY = np.float32(1e-30)


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
            self._blocks = [
                np.ascontiguousarray(x[:, b : b + BLOCK]) for b in range(0, self.full_dim, BLOCK)
            ]
            # Stored inverted: a search at a multiple of STEP then multiplies by it directly.
            self._inv_prefix = _inverse(prefix_sq, out=prefix_sq)
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

    def score_ids(self, query: np.ndarray, dim: int, ids: np.ndarray) -> np.ndarray:
        """Cosine at ``dim`` for the given rows, in the order given (float32)."""
        q = self._check_query(query, dim)
        ids = self._check_ids(ids)
        if self.backend == "torch":
            return self._score_ids_torch(q, dim, ids)
        rows = self._rows(ids, dim)
        dots = rows @ q[:dim]
        return (dots * self._inv_norms_rows(ids, rows, dim) * _query_inv(q, dim)).astype(np.float32)

    def rerank(self, query: np.ndarray, dim: int, ids: np.ndarray, k: int) -> Hits:
        """Exact top-k at ``dim`` among candidate rows (duplicates are ignored)."""
        ids = np.unique(self._check_ids(ids))
        k = _check_k(k, len(ids))
        if k == 0:
            self._check_query(query, dim)
            return _empty_hits()
        scores = self.score_ids(query, dim, ids)
        top_ids, top_scores = _best_k(ids, scores, k)
        return Hits(top_ids, top_scores)

    def nbytes(self, dim: int) -> int:
        """Bytes of float32 vectors a search at ``dim`` reads: ``n * dim * 4``."""
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
        # Contiguous row ranges, one per scan thread, each a whole number of chunks.
        per_thread = -(-self.n // SCAN_THREADS)
        per_thread = max(CHUNK_ROWS, -(-per_thread // CHUNK_ROWS) * CHUNK_ROWS)
        ranges = [(a, min(a + per_thread, self.n)) for a in range(0, self.n, per_thread)]
        with _single_threaded_blas():
            if len(ranges) == 1:
                results = [self._scan(parts, q, dim, k, 0, self.n)]
            else:
                pool = _scan_pool()
                results = list(pool.map(lambda r: self._scan(parts, q, dim, k, *r), ranges))
        ids, scores = _best_k(
            np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]), k
        )
        return ids, scores * _query_inv(q, dim)

    def _scan(
        self,
        parts: list[tuple[np.ndarray, int, int]],
        q: np.ndarray,
        dim: int,
        k: int,
        start: int,
        stop: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of rows start..stop by ``x[:dim]·q[:dim] / |x[:dim]|``, chunk by chunk."""
        best_ids = np.empty(0, np.int64)
        best_scores = np.empty(0, np.float32)
        threshold = -np.inf
        chunk = np.empty(min(CHUNK_ROWS, stop - start), np.float32)
        tmp = np.empty_like(chunk)
        for a in range(start, stop, CHUNK_ROWS):
            b = min(a + CHUNK_ROWS, stop)
            s, t = chunk[: b - a], tmp[: b - a]
            for i, (block, lo, width) in enumerate(parts):
                if i == 0:
                    np.dot(block[a:b, :width], q[lo : lo + width], out=s)
                else:
                    np.dot(block[a:b, :width], q[lo : lo + width], out=t)
                    s += t
            s *= self._inv_norms_range(a, b, dim)
            # Rows of this chunk have higher ids than every kept row, so on a tie the kept row
            # wins: only scores strictly above the current k-th best can enter.
            new = np.flatnonzero(s > threshold)
            if len(new) == 0:
                continue
            best_ids, best_scores = _best_k(
                np.concatenate([best_ids, new + a]), np.concatenate([best_scores, s[new]]), k
            )
            if len(best_scores) == k:
                threshold = best_scores[-1]
        return best_ids, best_scores

    def _block_parts(self, dim: int) -> list[tuple[np.ndarray, int, int]]:
        """(block, first column, columns used) for every block a prefix of ``dim`` touches."""
        return [
            (block, lo, min(BLOCK, dim - lo))
            for block, lo in zip(self._blocks, range(0, dim, BLOCK), strict=False)
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
        cols = self._blocks[lo // BLOCK][a:b, lo % BLOCK : lo % BLOCK + extra]
        return _inverse(self._stored_sq(groups, slice(a, b)) + np.einsum("ij,ij->i", cols, cols))

    def _inv_norms_rows(self, ids: np.ndarray, rows: np.ndarray, dim: int) -> np.ndarray:
        groups, extra = divmod(dim, STEP)
        if not extra:
            return self._inv_prefix[groups - 1, ids]
        cols = rows[:, groups * STEP : dim]
        return _inverse(self._stored_sq(groups, ids) + np.einsum("ij,ij->i", cols, cols))

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

    def _check_ids(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1 or (len(ids) and not np.issubdtype(ids.dtype, np.integer)):
            raise InputError("ids must be a 1-D integer array")
        ids = ids.astype(np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.n):
            raise InputError(f"ids must lie in 0..{self.n - 1}")
        return ids


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
