"""What one query needs computed, done off the UI thread; plain data in, plain data out.

A query is embedded once (`QueryState`); every slider move only re-scores it (`compare_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mrl_tui.core.compare import agreement, ids_of, power_of_two_dims

if TYPE_CHECKING:
    from mrl_tui.core.library import Hit, Library, Query

TOP_K = 10
"""Hits shown on each side."""
TRAIL_K = 50
"""Depth of the per-dimension rankings behind rank trails: a rank past this shows as ">50"."""


@dataclass(frozen=True)
class QueryState:
    query: Query
    rankings: dict[int, list[int]]  # power-of-two dims (and full) -> chunk ids, TRAIL_K deep
    full_ms: float  # search time at full dim for TOP_K hits

    def agreement(self, full_dim: int, k: int = TOP_K) -> dict[int, float]:
        """overlap@k of each dim's top k with the full dim's top k."""
        tops = {dim: ids[:k] for dim, ids in self.rankings.items()}
        return agreement(tops, full_dim, k)


@dataclass(frozen=True)
class Comparison:
    dim: int
    ref_dim: int
    left: list[Hit]
    right: list[Hit]
    left_ms: float


def embed_and_rank(library: Library, text: str) -> QueryState:
    """Embed the query once, and rank it at every power-of-two dim (for rank trails)."""
    query = library.query(text)
    rankings = {
        dim: ids_of(library.search(query, dim, TRAIL_K).hits)
        for dim in power_of_two_dims(library.full_dim)
    }
    full_ms = library.search(query, library.full_dim, TOP_K).search_ms
    return QueryState(query, rankings, full_ms)


def compare_at(library: Library, state: QueryState, dim: int, ref_dim: int) -> Comparison:
    """The two sides at `dim` and `ref_dim`; re-scores the stored query, never re-embeds."""
    left = library.search(state.query, dim, TOP_K)
    right = left if ref_dim == dim else library.search(state.query, ref_dim, TOP_K)
    return Comparison(dim, ref_dim, left.hits, right.hits, left.search_ms)
