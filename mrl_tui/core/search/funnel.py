"""Funnel search: an exact scan at a small prefix keeps candidates, later stages rerank them.

``stages[0]`` is the scan over all rows; each later stage reranks the rows the one before kept, at a
larger prefix, and a last stage reranks the survivors at full dimension (the Milvus-style funnel:
1/32 → 1/16 → … of the dims). Its cost is the values it reads, counted against one exact
full-dimension scan (``N·full_dim``): `scan_fraction`.

`auto_funnel` picks the cheapest funnel that agrees with exact search on pseudo-queries cut from the
corpus itself, never on relevance judgements. An HNSW graph can replace the exact scan on large
corpora: see `mrl_tui.core.search.hnsw.graph_search`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mrl_tui.core.search.index import NestedIndex
from mrl_tui.core.search.rerank import rerank_head

FUNNEL_DIMS = (32, 48, 64)
FUNNEL_CANDIDATES = (50, 100, 200)
AUTO_AGREEMENT = 0.96
""""auto" wants the funnel's top-k to keep 96 % of the exact top-k of pseudo-queries, on average."""
AUTO_FIRST_DIMS = (8, 12, 16, 24, 32, 48, 64)
AUTO_FIRST_KEPT = (50, 100, 200, 400, 800, 1600)
AUTO_SECOND_STAGES = ((48, 50), (64, 50), (64, 100))


@dataclass(frozen=True)
class Funnel:
    """``stages[0]`` = (dim, kept) of the exact scan over all rows; each later (dim, kept) reranks
    the rows the stage before kept. A final stage reranks the last survivors at full dimension."""

    stages: tuple[tuple[int, int], ...]
    auto: bool = False

    @property
    def label(self) -> str:
        steps = " → ".join(f"{d}d:{kept}" for d, kept in self.stages)
        return f"auto {steps}" if self.auto else steps


def values_read(funnel: Funnel, n: int, full_dim: int) -> int:
    """Vector values a funnel search reads: ``N·d0`` for the scan, then ``kept·dim`` per rerank."""
    total = n * funnel.stages[0][0]
    dims = [d for d, _ in funnel.stages[1:]] + [full_dim]
    for (_, kept), dim in zip(funnel.stages, dims, strict=True):
        total += min(kept, n) * dim
    return total


def scan_fraction(funnel: Funnel, n: int, full_dim: int) -> float:
    return values_read(funnel, n, full_dim) / (n * full_dim)


def staged_search(index: NestedIndex, query: np.ndarray, funnel: Funnel, depth: int) -> np.ndarray:
    """Row ids, best first, ``min(depth, N)`` long.

    The candidate stage is an exact scan; an approximate source (HNSW, `core.search.hnsw`) would
    replace this first `index.search`, and its term in `values_read`.
    """
    first_dim, first_kept = funnel.stages[0]
    scanned = index.search(query, first_dim, max(first_kept, depth)).ids
    return rerank_stages(index, query, funnel, scanned)[:depth]


def rerank_stages(
    index: NestedIndex, query: np.ndarray, funnel: Funnel, ranking: np.ndarray
) -> np.ndarray:
    """Apply the stages after the scan to the scan's ranking.

    Each stage reorders the head of the ranking it was given and leaves the rest in place, so a
    funnel keeping fewer than ``depth`` rows still returns ``depth`` of them (the tail in the scan's
    order): that keeps recall@100 comparable across candidate counts.
    """
    dims = [d for d, _ in funnel.stages[1:]] + [index.full_dim]
    for (_, kept), dim in zip(funnel.stages, dims, strict=True):
        ranking = rerank_head(index, query, dim, ranking, kept).ids
    return ranking


def default_funnels(full_dim: int, n: int) -> list[Funnel]:
    """The issue's grid (32/48/64 × 50/100/200), then a few two-stage funnels."""
    funnels = [
        Funnel(((d, c),)) for d in FUNNEL_DIMS for c in FUNNEL_CANDIDATES if d < full_dim and c < n
    ]
    for first, second in (((12, 800), (48, 50)), ((16, 800), (64, 100)), ((24, 400), (64, 100))):
        if second[0] < full_dim and first[1] < n:
            funnels.append(Funnel((first, second)))
    return funnels


def auto_grid(full_dim: int, n: int) -> list[Funnel]:
    """Every funnel "auto" may pick, cheapest first."""
    firsts = [(d, c) for d in AUTO_FIRST_DIMS for c in AUTO_FIRST_KEPT if d < full_dim and c < n]
    grid = [Funnel((first,)) for first in firsts]
    grid += [
        Funnel((first, second))
        for first in firsts
        for second in AUTO_SECOND_STAGES
        if first[0] < second[0] < full_dim and first[1] > second[1]
    ]
    return sorted(grid, key=lambda f: (values_read(f, n, full_dim), f.stages))


def auto_funnel(
    index: NestedIndex, pseudo: np.ndarray, sources: Sequence[int], k: int
) -> tuple[Funnel, float]:
    """The cheapest funnel of `auto_grid` whose top-k agrees with the exact top-k on pseudo-queries.

    Agreement is the mean share of the exact full-dimension top-k that the funnel's top-k keeps,
    over pseudo-queries cut from the corpus (never the judgements). The row a pseudo-query was cut
    from is left out of both lists: finding it is too easy. Returns (funnel, agreement); when
    nothing reaches `AUTO_AGREEMENT`, the funnel that agrees best.
    """
    grid = auto_grid(index.full_dim, index.n)
    if not grid or len(pseudo) == 0:  # a tiny corpus: only an exact funnel is left
        return Funnel(((min(AUTO_FIRST_DIMS[0], index.full_dim), index.n),), auto=True), 1.0
    depth = max(f.stages[0][1] for f in grid)
    exact = [
        _top(h.ids, s, k)
        for h, s in zip(index.search_many(pseudo, index.full_dim, k + 1), sources, strict=True)
    ]
    scans = {
        dim: [h.ids for h in index.search_many(pseudo, dim, depth)]
        for dim in {f.stages[0][0] for f in grid}
    }
    best, best_agreement = grid[-1], -1.0
    for funnel in grid:
        kept = [
            len(set(_top(rerank_stages(index, q, funnel, scan), s, k)) & set(e)) / max(1, len(e))
            for q, s, e, scan in zip(
                pseudo, sources, exact, scans[funnel.stages[0][0]], strict=True
            )
        ]
        agreement = float(np.mean(kept))
        if agreement >= AUTO_AGREEMENT:
            return Funnel(funnel.stages, auto=True), agreement
        if agreement > best_agreement:
            best, best_agreement = funnel, agreement
    return Funnel(best.stages, auto=True), best_agreement


def _top(ranking: np.ndarray, source: int, k: int) -> list[int]:
    return [r for r in ranking[: k + 1].tolist() if r != source][:k]
