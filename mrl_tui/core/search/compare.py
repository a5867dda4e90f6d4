"""Compare two rankings of chunk ids: what moved, what dropped out, and how much they agree.

Plain functions over lists of chunk ids (best first), no Textual and no numpy, so the TUI, the
benchmarks and the tests all agree on what "▲3" or "τ 0.71" means.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

NEW = "NEW"
SAME = "="


def rank_of(ranking: Sequence[int]) -> dict[int, int]:
    """Chunk id → 1-based rank. A repeated id keeps its best rank."""
    ranks: dict[int, int] = {}
    for position, chunk_id in enumerate(ranking, start=1):
        ranks.setdefault(chunk_id, position)
    return ranks


def movements(ranking: Sequence[int], other: Sequence[int]) -> list[int | None]:
    """For each hit of `ranking`, how many places it climbed compared with `other`.

    Positive: it ranks higher here than in `other` (▲); negative: lower (▼); 0: same place;
    None: `other` does not have it (NEW).
    """
    other_rank = rank_of(other)
    moves: list[int | None] = []
    for position, chunk_id in enumerate(ranking, start=1):
        there = other_rank.get(chunk_id)
        moves.append(None if there is None else there - position)
    return moves


def movement_label(move: int | None) -> str:
    """The label of one entry of `movements`: "▲3", "▼2", "=" or "NEW"."""
    if move is None:
        return NEW
    if move > 0:
        return f"▲{move}"
    if move < 0:
        return f"▼{-move}"
    return SAME


def dropped(ranking: Sequence[int], other: Sequence[int]) -> list[int]:
    """Ids in `other` that `ranking` lost, in `other`'s order."""
    present = set(ranking)
    return [chunk_id for chunk_id in other if chunk_id not in present]


def overlap_at_k(a: Sequence[int], b: Sequence[int], k: int) -> float:
    """Share of the top k that both lists have: |top_k(a) ∩ top_k(b)| / n.

    n is k, or the longer of the two lists if both are shorter than k (a corpus of 5 chunks
    searched with k=10 can still agree perfectly). Two empty lists agree: 1.0.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    top_a, top_b = set(a[:k]), set(b[:k])
    n = min(k, max(len(a), len(b)))
    if n == 0:
        return 1.0
    return len(top_a & top_b) / n


def kendall_tau(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Kendall's τ between two rankings, over the ids they share; None if they share fewer than 2.

    Hits that only one list has are left out (overlap@k reports those). A ranking never ties two
    ids, so τ-b reduces to (concordant − discordant) / (n·(n−1)/2) over the n shared ids:
    1.0 means the shared hits come in the same order, −1.0 in reverse order.
    """
    rank_b = rank_of(b)
    shared = [chunk_id for chunk_id in rank_of(a) if chunk_id in rank_b]
    n = len(shared)
    if n < 2:
        return None
    # `shared` is in a's order, so a pair is concordant when b keeps it in the same order.
    order_b = [rank_b[chunk_id] for chunk_id in shared]
    score = 0
    for i in range(n):
        for j in range(i + 1, n):
            score += 1 if order_b[i] < order_b[j] else -1
    return score / (n * (n - 1) / 2)


@dataclass(frozen=True)
class RankingComparison:
    """Two rankings of one query side by side (`compare_rankings`): everything the TUI marks and
    the export writes, computed once."""

    left_moves: list[int | None]  # per left hit, against the right (`movements`)
    right_moves: list[int | None]  # per right hit, against the left
    left_lost: list[int]  # ids the right has and the left does not, in the right's order
    right_lost: list[int]  # ids the left has and the right does not, in the left's order
    overlap: float  # overlap@k
    tau: float | None  # Kendall's τ over the shared ids (None: fewer than 2 shared)
    k: int


def compare_rankings(left: Sequence[int], right: Sequence[int], k: int) -> RankingComparison:
    """The whole comparison of two rankings: moves both ways, what each lost, overlap@k and τ."""
    return RankingComparison(
        movements(left, right),
        movements(right, left),
        dropped(left, right),
        dropped(right, left),
        overlap_at_k(left, right, k),
        kendall_tau(left, right),
        k,
    )


def rank_trail(rankings: Mapping[int, Sequence[int]], chunk_id: int) -> dict[int, int | None]:
    """The 1-based rank of one chunk in each dimension's ranking (None where it is absent).

    `rankings` maps a dimension to its ranking; the result keeps the dimensions in ascending order.
    """
    return {dim: rank_of(rankings[dim]).get(chunk_id) for dim in sorted(rankings)}


def power_of_two_dims(full_dim: int, start: int = 8) -> list[int]:
    """8, 16, 32, … below `full_dim`, then `full_dim` itself: the dims worth comparing."""
    dims: list[int] = []
    dim = start
    while dim < full_dim:
        dims.append(dim)
        dim *= 2
    return [*dims, full_dim]


def agreement(rankings: Mapping[int, Sequence[int]], reference: int, k: int) -> dict[int, float]:
    """overlap@k of every dimension's ranking with the ranking at `reference`, by dimension."""
    ref = rankings[reference]
    return {dim: overlap_at_k(rankings[dim], ref, k) for dim in sorted(rankings)}


class HasId(Protocol):
    @property
    def id(self) -> int: ...


def ids_of(hits: Iterable[HasId]) -> list[int]:
    """Chunk ids of a list of hits (anything with an `id`, such as `Hit`), in order."""
    return [hit.id for hit in hits]
