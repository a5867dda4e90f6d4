"""One query side by side: ranked at every prefix dim, two rankings of it compared, its search
time by dim. What the TUI shows and exports, computed here (off its UI thread) and only rendered
there; plain data in, plain data out, no Textual.

A query is embedded once (`QueryState`); every slider move only re-scores it (`compare_at`).
"""

from __future__ import annotations

import dataclasses
import re
import statistics
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mrl_tui.core.errors import InputError
from mrl_tui.core.search.compare import (
    RankingComparison,
    agreement,
    compare_rankings,
    ids_of,
    movement_label,
    overlap_at_k,
    power_of_two_dims,
)

if TYPE_CHECKING:
    from mrl_tui.core.corpus.chunking import Chunk
    from mrl_tui.core.library import Hit, Library, Query
    from mrl_tui.core.search.router import Route

TOP_K = 10
"""Hits shown on each side."""
TRAIL_K = 50
"""Depth of the per-dimension rankings behind rank trails: a rank past this shows as ">50"."""
LATENCY_REPS = 5
"""Searches per dim at least behind each point of the latency plot (the median is shown)."""
LATENCY_BUDGET_S = 0.02
LATENCY_MAX_REPS = 51
"""Where searches are fast (a small index), each dim is searched again until this long is spent
on it, up to `LATENCY_MAX_REPS` times: sub-millisecond timings jitter, their median less so."""


@dataclass(frozen=True)
class QueryState:
    query: Query
    rankings: dict[int, list[int]]  # power-of-two dims (and full) -> chunk ids, TRAIL_K deep
    full_ms: float  # search time at full dim for TOP_K hits
    route: Route | None = None  # the router's choice, for queries made in auto mode

    def agreement(self, full_dim: int, k: int = TOP_K) -> dict[int, float]:
        """overlap@k of each dim's top k with the full dim's top k."""
        tops = {dim: ids[:k] for dim, ids in self.rankings.items()}
        return agreement(tops, full_dim, k)

    def agreement_with_full(self, hits: list[Hit], full_dim: int, k: int = TOP_K) -> float:
        """overlap@k of these hits (a side shown, at any dim) with the full dim's top k."""
        return overlap_at_k(ids_of(hits), self.rankings[full_dim][:k], k)


@dataclass(frozen=True)
class Comparison:
    dim: int
    ref_dim: int
    ref_mode: str  # "exact" or "graph"
    ref_transform: str | None  # None: the loaded transform; else another one, at `dim` itself
    left: list[Hit]
    right: list[Hit]
    left_ms: float
    query: Query | None = None  # what both sides ranked; lets the next move reuse the reference
    k: int = TOP_K  # hits on each side ("more results" raises it)
    retrieval: str = "dense"  # the left side's: "dense", "hybrid" or "lexical"
    ref_retrieval: str = "dense"  # the right side's: "dense" or "hybrid" (at `ref_dim`)
    ref_model: str | None = None
    """None: both sides search the same index; else the model whose own index of the folder the
    right side searched (`compare_with_base`), at `dim` under `ref_transform`."""
    ref_query: Query | None = None
    """The query as `ref_model` embedded it, reused while the query stays the same."""
    ranking: RankingComparison = field(init=False)
    """The two rankings compared (moves, what each lost, overlap@k, τ), once, where the pair is
    made (off the UI thread)."""

    def __post_init__(self) -> None:
        ranking = compare_rankings(ids_of(self.left), ids_of(self.right), self.k)
        object.__setattr__(self, "ranking", ranking)  # frozen: set once, here

    @property
    def keywords(self) -> bool:
        """Whether either side ranked by keywords too (its hits then carry `lexical_rank`)."""
        return self.retrieval != "dense" or self.ref_retrieval != "dense"


def embed_and_rank(library: Library, text: str) -> QueryState:
    """Embed the query once, and rank it at every power-of-two dim (for rank trails)."""
    query = library.query(text)
    rankings = {
        dim: ids_of(library.search(query, dim, TRAIL_K).hits)
        for dim in power_of_two_dims(library.full_dim)
    }
    full_ms = library.search(query, library.full_dim, TOP_K).search_ms
    return QueryState(query, rankings, full_ms)


def compare_at(
    library: Library,
    state: QueryState,
    dim: int,
    ref_dim: int,
    ref_mode: str = "exact",
    ref_transform: str | None = None,
    previous: Comparison | None = None,
    k: int = TOP_K,
    retrieval: str = "dense",
    ref_retrieval: str = "dense",
) -> Comparison:
    """The two sides: `dim` as the app searches it ("auto"), the reference at `ref_dim` with
    `ref_mode` ("exact", or "graph" where the index has an HNSW graph), or, with `ref_transform`, at
    `dim` itself under that transform (exact). Never re-embeds the query.

    A fixed reference does not move with the slider: when `previous` ranked the same query
    against the same reference, its right side is reused instead of searched again. `k`: hits
    on each side. `retrieval` "hybrid" or "lexical": the left side is that at `dim`
    (`Library.retrieve`); `ref_retrieval` "hybrid": the right side is hybrid at `ref_dim`
    (`ref_transform`, always dense, takes precedence)."""
    if retrieval == "dense":
        left = library.search(state.query, dim, k)
    else:
        left = library.retrieve(state.query, dim, k, retrieval)
    if ref_transform is not None:
        ref_dim, ref_mode, ref_retrieval = dim, "exact", "dense"
    same_reference = (
        previous is not None
        and previous.query is state.query
        and ref_transform is None
        and previous.ref_transform is None
        and (previous.ref_dim, previous.ref_mode, previous.k, previous.ref_retrieval)
        == (ref_dim, ref_mode, k, ref_retrieval)
    )
    if same_reference:
        assert previous is not None
        right_hits = previous.right
    elif ref_retrieval != "dense":
        right_hits = library.retrieve(state.query, ref_dim, k, ref_retrieval, mode=ref_mode).hits
    else:
        ref = library.search(state.query, ref_dim, k, mode=ref_mode, transform=ref_transform)
        right_hits = ref.hits
    return Comparison(
        dim,
        ref_dim,
        ref_mode,
        ref_transform,
        left.hits,
        right_hits,
        left.search_ms,
        state.query,
        k,
        retrieval,
        ref_retrieval,
    )


BASE_TRANSFORMS = ("pca", "naive")
"""How the base model's vectors are cut to the dim on the reference side (`compare_with_base`)."""


def compare_with_base(
    library: Library,
    base: Library,
    state: QueryState,
    dim: int,
    transform: str = "pca",
    previous: Comparison | None = None,
    k: int = TOP_K,
    retrieval: str = "dense",
) -> Comparison:
    """The left side as `compare_at` ranks it, in `library` (a model trained on the folder); the
    right side in `base`, the base model's own index of the same folder, at the same `dim` under
    `transform` ("pca" or "naive"): what the training bought over rotating or cutting the model
    it started from.

    The base model embeds the query once per query (kept as `ref_query` for the next slider
    move). The right side's hits carry `library`'s chunk ids, so moves, overlap and τ compare
    the same chunks; one that `library`'s index does not hold (the file changed between the two
    indexes) gets an id of its own, negative, and counts as different."""
    if transform not in BASE_TRANSFORMS:
        raise InputError(f"the base model's side is pca or naive, not {transform}")
    if dim > base.full_dim:
        raise InputError(f"dim {dim} is above {base.embedder.name}'s {base.full_dim}")
    if retrieval == "dense":
        left = library.search(state.query, dim, k)
    else:
        left = library.retrieve(state.query, dim, k, retrieval)
    name = base.embedder.name
    base_query = None
    if previous is not None and previous.query is state.query and previous.ref_model == name:
        base_query = previous.ref_query
    if base_query is None:
        base_query = base.query(state.query.text)
    found = base.search(base_query, dim, k, mode="exact", transform=transform).hits
    ids = library.store.ids_of_chunks([hit.chunk for hit in found])
    right = [
        dataclasses.replace(hit, id=-1 - hit.id if same is None else same)
        for hit, same in zip(found, ids, strict=True)
    ]
    return Comparison(
        dim,
        dim,
        "exact",
        transform,
        left.hits,
        right,
        left.search_ms,
        state.query,
        k,
        retrieval,
        "dense",
        ref_model=name,
        ref_query=base_query,
    )


def measure_latency(
    library: Library,
    query: Query,
    reps: int = LATENCY_REPS,
    budget_s: float = LATENCY_BUDGET_S,
    dims: list[int] | None = None,
) -> dict[int, float]:
    """Median search time (ms) for the top `TOP_K` at each of `dims` (default: the power-of-two
    dims), after a warm-up: `reps` searches per dim, more while they take under `budget_s` (see
    `LATENCY_MAX_REPS`). Every search time the app shows comes from here, so no figure is a
    cold single search next to a warm median."""
    library.search(query, library.full_dim, TOP_K)
    profile = {}
    for dim in dims or power_of_two_dims(library.full_dim):
        times: list[float] = []
        started = time.perf_counter()
        while len(times) < reps or (
            len(times) < LATENCY_MAX_REPS and time.perf_counter() - started < budget_s
        ):
            times.append(library.search(query, dim, TOP_K).search_ms)
        profile[dim] = statistics.median(times)
    return profile


def comparison_record(state: QueryState, comparison: Comparison, full_dim: int) -> dict[str, Any]:
    """The current comparison as plain JSON-ready data: both sides, movements and agreement.
    A side that is not dense search says its `retrieval`."""
    ranking = comparison.ranking
    overlap = ranking.overlap
    if ranking.k != TOP_K:  # "more results" shown: the record's figure stays at 10
        overlap = overlap_at_k(ids_of(comparison.left), ids_of(comparison.right), TOP_K)

    def side(hits: list[Hit], moves: list[int | None]) -> list[dict[str, Any]]:
        return [
            {
                "rank": hit.rank,
                "path": hit.chunk.path,
                "start_line": hit.chunk.start_line,
                "end_line": hit.chunk.end_line,
                "score": round(hit.score, 6),
                "moved": movement_label(move),
            }
            for hit, move in zip(hits, moves, strict=True)
        ]

    reference: dict[str, Any] = {"dim": comparison.ref_dim, "mode": comparison.ref_mode}
    if comparison.ref_transform is not None:
        reference = {"dim": comparison.dim, "transform": comparison.ref_transform}
        if comparison.ref_model is not None:
            reference["model"] = comparison.ref_model
    elif comparison.ref_retrieval != "dense":
        reference["retrieval"] = comparison.ref_retrieval
    record: dict[str, Any] = {
        "query": state.query.text,
        "full_dim": full_dim,
        "dim": comparison.dim,
        "reference": reference,
        "left": side(comparison.left, ranking.left_moves),
        "right": side(comparison.right, ranking.right_moves),
        "overlap_at_10": overlap,
        "kendall_tau": ranking.tau,
        "route": state.route.to_dict() if state.route is not None else None,
    }
    if comparison.retrieval != "dense":
        record["retrieval"] = comparison.retrieval
    return record


def keyword_matches(query: Query, chunk: Chunk) -> list[str]:
    """The query's terms that keyword search (SQLite FTS5) matches in this chunk's path, heading
    or text, in the query's order: why keywords ranked it. FTS5 itself is asked, over this chunk
    alone (`lexical.MemoryIndex`), so its tokenizer decides, not a copy of it."""
    from mrl_tui.core.search.lexical import MemoryIndex, query_terms

    words = query.words if query.paths is not None else (query.words or query.text)
    path = re.sub(r"[/\\]", " ", chunk.path)  # as `lexical.row_values` indexes a path
    index = MemoryIndex([f"{path}\n{chunk.heading}\n{chunk.text}"])
    return [term for term in query_terms(words) if index.search(term, 1)]


def _unmarked(text: str) -> str:
    """`text` without diacritics, as FTS5's ``remove_diacritics`` compares."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _folded(word: str) -> str:
    return _unmarked(word).lower()


def _folded_in_place(text: str) -> str:
    """`text` without diacritics, character by character where that leaves one character
    (``é`` → ``e``; ``ﬁ`` stays) and case kept (it splits ``camelCase``): the same length, so
    spans found in it are spans of `text`."""
    return "".join(f if len(f := _unmarked(c)) == 1 else c for c in text)


def term_spans(text: str, terms: Iterable[str]) -> list[tuple[int, int]]:
    """(start, end) of each word or identifier of `text` one of whose forms is one of `terms`
    (as `keyword_matches` gives them), diacritics aside: ``rate`` marks ``parse_rate`` whole,
    but not ``rates``, which keyword search did not match either."""
    from mrl_tui.core.search.lexical import identifier_forms, marked_spans

    wanted = {_folded(term) for term in terms}
    folded = _folded_in_place(text)
    return [
        (start, end)
        for start, end in marked_spans(folded, wanted)  # the words that start with a term
        if any(form in wanted for form in identifier_forms(folded[start:end]))
    ]
