"""Compact int8 and binary codes of the searchable vectors, searched coarse-then-exact.

A search at prefix ``d`` first scans the codes' first ``d`` dimensions for ``rescore × k``
candidates, then scores those exactly with the stored float32 vectors (``NestedIndex.rerank``), so
the final scores are always the exact cosines; the codes only decide which rows get looked at.

int8: each dimension is mapped affinely from the corpus' min..max onto -128..127 (calibrated on the
corpus, so no corpus value is clipped). The coarse score is the cosine between the float query and
the dequantised prefix. Its prefix norms are computed once per dim and kept for the last few dims
searched (4 bytes a vector each); using them rather than the original vectors' norms keeps the
coarse stage self-contained: it reads nothing but the codes.

binary: one sign bit per dimension (``x > 0``), packed into 64-bit words; the coarse distance is the
Hamming distance between the query's bits and a row's, over the first ``d`` bits. Thresholding at
the corpus mean instead of 0 measured no better on the two BEIR sets (recall within ±0.03). Every
bit counts the same, so after PCA the low-variance tail dims weigh as much as the leading ones:
binary recall falls as ``d`` grows towards the full dim (benchmarks/bench_quantize.py).
"""

from __future__ import annotations

import math

import numpy as np

from mrl_tui.core.choices import PRECISIONS
from mrl_tui.core.errors import InputError
from mrl_tui.core.search.index import Hits, NestedIndex, _single_threaded_blas
from mrl_tui.core.search.rerank import rerank_head

DEFAULT_RESCORE = {"int8": 4, "binary": 20}
"""Candidates per requested hit. On the two BEIR sets and the notes corpus (MiniLM + PCA, dims
64/128/384) int8 recovers the exact top-10 fully from 2 on; binary keeps 0.85-0.99 of it at 20
and 0.68-0.97 at 10 (benchmarks/bench_quantize.py). Rescoring 200 rows costs well under a ms."""

CHUNK_ROWS = 4096
"""Rows per step of the int8 scan: their float32 copy stays in cache. With one BLAS thread this
measured 3-10x faster than 65k-row steps on 200k x 384 (2-core CPU)."""

NORM_CACHE_DIMS = 8
"""Dims whose int8 prefix norms are kept (4 bytes a vector each); the oldest goes first."""

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def bytes_per_vector(dim: int, precision: str) -> int:
    """What one vector's first ``dim`` dimensions take: float32 4·d, int8 d, binary ⌈d/8⌉."""
    if precision == "float32":
        return 4 * dim
    if precision == "int8":
        return dim
    if precision == "binary":
        return math.ceil(dim / 8)
    raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per element; numpy >= 2.0 has a native popcount, older numpy a byte table."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return popcount_table(words)


def popcount_table(words: np.ndarray) -> np.ndarray:
    """The same as `popcount`, by looking up each byte (the fallback; tested on every numpy)."""
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(*words.shape, -1)
    return _POPCOUNT8[as_bytes].sum(axis=-1, dtype=np.uint8)


class Int8Codes:
    """int8 codes of (N, D) vectors: ``x ≈ scale * code + offset``, per dimension."""

    precision = "int8"

    def __init__(self, vectors: np.ndarray) -> None:
        x = np.asarray(vectors, dtype=np.float32)
        lo, hi = x.min(axis=0), x.max(axis=0)
        self.scale = (np.maximum(hi - lo, 1e-12) / 255).astype(np.float32)
        self.offset = (lo + 128 * self.scale).astype(np.float32)
        codes = np.rint((x - self.offset) / self.scale)
        self.codes = np.clip(codes, -128, 127).astype(np.int8)
        self.n, self.full_dim = self.codes.shape
        self._norms: dict[int, np.ndarray] = {}

    def dequantize(self, rows: slice | np.ndarray, dim: int) -> np.ndarray:
        return self.codes[rows, :dim] * self.scale[:dim] + self.offset[:dim]

    def scores(self, query: np.ndarray, dim: int) -> np.ndarray:
        """Cosine of ``query[:dim]`` with every row's dequantised prefix (the query's own norm
        left out: it does not change the order)."""
        q = np.asarray(query, dtype=np.float32)[:dim]
        # x̂·q = code·(scale*q) + offset·q: one float matvec over the codes per chunk.
        q_scaled = self.scale[:dim] * q
        bias = np.float32(self.offset[:dim] @ q)
        out = np.empty(self.n, np.float32)
        buf = np.empty((min(CHUNK_ROWS, self.n), dim), np.float32)
        with _single_threaded_blas():
            for a in range(0, self.n, CHUNK_ROWS):
                b = min(a + CHUNK_ROWS, self.n)
                np.copyto(buf[: b - a], self.codes[a:b, :dim], casting="unsafe")
                np.dot(buf[: b - a], q_scaled, out=out[a:b])
        out += bias
        return out / self._prefix_norms(dim)

    def _prefix_norms(self, dim: int) -> np.ndarray:
        norms = self._norms.get(dim)
        if norms is None:
            norms = np.empty(self.n, np.float32)
            for a in range(0, self.n, CHUNK_ROWS):
                b = min(a + CHUNK_ROWS, self.n)
                norms[a:b] = np.linalg.norm(self.dequantize(slice(a, b), dim), axis=1)
            norms = np.maximum(norms, 1e-30)
            if len(self._norms) >= NORM_CACHE_DIMS:  # a slider visits many dims: keep a few
                del self._norms[next(iter(self._norms))]
            self._norms[dim] = norms
        return norms

    def candidates(self, query: np.ndarray, dim: int, count: int) -> np.ndarray:
        """Row ids of the ``count`` best coarse scores (unordered)."""
        scores = self.scores(query, dim)
        return _smallest(-scores, count)


class BinaryCodes:
    """Sign bits of (N, D) vectors, packed into (N, ⌈D/64⌉) uint64 words."""

    precision = "binary"

    def __init__(self, vectors: np.ndarray) -> None:
        x = np.asarray(vectors, dtype=np.float32)
        self.n, self.full_dim = x.shape
        self.words = self.pack(x)

    def pack(self, x: np.ndarray) -> np.ndarray:
        """Bits ``x > 0`` of an (N, D) array as (N, ⌈D/64⌉) uint64 words, zero-padded."""
        n_words = -(-self.full_dim // 64)
        bits = np.zeros((len(x), n_words * 64), dtype=bool)
        bits[:, : x.shape[1]] = x > 0
        return np.packbits(bits, axis=1).view(np.uint64)

    def hamming(self, query: np.ndarray, dim: int) -> np.ndarray:
        """Hamming distance over the first ``dim`` bits between the query's bits and every row's."""
        n_words = -(-dim // 64)
        q = self.pack(np.asarray(query, dtype=np.float32)[None, :])[0, :n_words]
        # The same packing of "first dim bits set" gives the mask, whatever the byte order.
        mask = np.packbits(np.arange(n_words * 64) < dim).view(np.uint64)
        diff = (self.words[:, :n_words] ^ q) & mask
        return popcount(diff).sum(axis=1, dtype=np.int32)

    def candidates(self, query: np.ndarray, dim: int, count: int) -> np.ndarray:
        return _smallest(self.hamming(query, dim), count)


Codes = Int8Codes | BinaryCodes


def encode(vectors: np.ndarray, precision: str) -> Codes:
    """Codes of the given precision ("int8" or "binary") for (N, D) float vectors."""
    if precision == "int8":
        return Int8Codes(vectors)
    if precision == "binary":
        return BinaryCodes(vectors)
    raise InputError(f"no codes for precision {precision!r}; choose int8 or binary")


def rescored_search(
    index: NestedIndex, codes: Codes, query: np.ndarray, dim: int, k: int, rescore: int
) -> Hits:
    """Exact top-k at ``dim`` among the ``rescore * k`` best rows by the codes."""
    if rescore < 1:
        raise InputError("rescore must be at least 1", settings=("rescore",))
    count = min(index.n, rescore * k)
    return rerank_head(index, query, dim, codes.candidates(query, dim, count), depth=k)


def _smallest(values: np.ndarray, count: int) -> np.ndarray:
    if count >= len(values):
        return np.arange(len(values))
    return np.argpartition(values, count - 1)[:count]
