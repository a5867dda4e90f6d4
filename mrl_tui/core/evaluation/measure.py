"""Retrieval quality and cost of each way of searching one evaluation set.

Three families of search are measured on the same vectors (already in the index's basis):

- *full*: exact cosine at the model's full dimension, the reference;
- *fixed*: exact cosine at one prefix ``d`` (reads ``N·d`` values);
- *funnel*: an exact scan at a small prefix keeps a few candidates, later stages rerank them at
  larger prefixes, the last one at full dimension. Its cost is the values it reads, counted
  against a full exact scan (``N·full_dim``): ``scan_fraction``.

Funnels can be fixed, or chosen per corpus ("auto") from pseudo-queries cut out of the corpus
itself, never from the judgements: see `auto_funnel`. The router is calibrated the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from mrl_tui.core.evaluation.metrics import Scores, evaluate, paired_difference
from mrl_tui.core.evaluation.report import (
    RECALL_K,
    AgainstFixed,
    BenchReport,
    Cell,
    CompareReport,
    CompareRow,
    FixedRow,
    FunnelRow,
    RoutedReport,
)
from mrl_tui.core.evaluation.sets import EvalSet
from mrl_tui.core.search.codes import DEFAULT_RESCORE, bytes_per_vector, encode, rescored_search
from mrl_tui.core.search.funnel import (
    Funnel,
    auto_funnel,
    default_funnels,
    scan_fraction,
    staged_search,
)
from mrl_tui.core.search.index import NestedIndex
from mrl_tui.core.search.query_features import TermStats
from mrl_tui.core.search.router import Route, Router

TIMED_QUERIES = 50
"""Queries whose single search is timed for ``search_ms`` (the rankings come from a batch)."""

Search = Callable[[np.ndarray], np.ndarray]
"""A query vector → the rows it ranks first."""


def documents(rows: np.ndarray, row_docs: list[str], limit: int) -> list[str]:
    """Row ids → document ids, first (best) occurrence only, at most ``limit``."""
    docs: list[str] = []
    seen = set()
    for row in rows.tolist():
        doc = row_docs[row]
        if doc and doc not in seen:
            seen.add(doc)
            docs.append(doc)
            if len(docs) == limit:
                break
    return docs


def depth(es: EvalSet) -> int:
    """Rows to retrieve so that `RECALL_K` documents come out: all rows when docs have many."""
    one_row_each = len(set(es.row_docs)) == es.index.n
    return min(es.index.n, RECALL_K) if one_row_each else es.index.n


def _evaluate(es: EvalSet, search: Search, k: int) -> Scores:
    rankings = {
        qid: documents(search(vector), es.row_docs, RECALL_K)
        for qid, vector in zip(es.query_ids, es.query_vectors, strict=True)
    }
    return evaluate(rankings, es.qrels, ndcg_k=k, recall_k=RECALL_K)


def _score(es: EvalSet, search: Search, k: int) -> Cell:
    return Cell.of(_evaluate(es, search, k))


def against_fixed(
    routed: Scores, scan: float, fixed: dict[int, Scores], full_dim: int
) -> list[AgainstFixed]:
    """Routed minus each fixed dim that costs at least as much (``dim/full_dim >= scan``): the
    mean nDCG difference and its paired-bootstrap 95 % interval over the judged queries."""
    rows = []
    for dim, scores in sorted(fixed.items()):
        if dim / full_dim < scan or not scores.per_query_ndcg:
            continue
        diff, low, high = paired_difference(routed.per_query_ndcg, scores.per_query_ndcg)
        rows.append(
            AgainstFixed(
                dim, round(dim / full_dim, 4), round(diff, 4), (round(low, 4), round(high, 4))
            )
        )
    return rows


def _routed(es: EvalSet, k: int, fixed: dict[int, Scores], funnel: Funnel) -> RoutedReport | None:
    """Every query through a `Router` whose ladder is ``funnel`` (the auto funnel), its stop
    rules calibrated on this corpus's pseudo-queries (no qrels)."""
    if not es.row_texts or es.route_vectors is None:
        return None
    index, rows = es.index, depth(es)
    stats = TermStats.from_texts(es.row_texts)
    texts = es.route_texts or None
    router = Router.calibrate(
        index, stats, es.route_vectors, es.route_sources, k, texts, funnel=funnel
    )
    routes: list[Route] = []
    rankings = {}
    for qid, text, vector in zip(es.query_ids, es.query_texts, es.query_vectors, strict=True):
        found, route = router.search(index, text, vector, rows)
        routes.append(route)
        rankings[qid] = documents(found.ids, es.row_docs, RECALL_K)
    scores = evaluate(rankings, es.qrels, ndcg_k=k, recall_k=RECALL_K)
    dims = [r.dim for r in routes]
    scan = round(float(np.mean([r.values_read for r in routes])) / (index.n * index.full_dim), 4)
    return RoutedReport(
        mean_dim=round(float(np.mean(dims)), 1),
        scan_fraction=scan,
        cell=Cell.of(scores),
        scan_dim=router.scan_dim,
        dims={d: dims.count(d) for d in sorted(set(dims))},
        calibration=router.notes,
        against_fixed=tuple(against_fixed(scores, scan, fixed, index.full_dim)),
    )


def _timed(index: NestedIndex, dim: int, rows: int, elapsed: list[float]) -> Search:
    """An exact search at ``dim`` that appends its wall time (s) to ``elapsed``."""

    def search(query: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        ids = index.search(query, dim, rows).ids
        elapsed.append(time.perf_counter() - started)
        return ids

    return search


def _batched(index: NestedIndex, queries: np.ndarray, dim: int, rows: int) -> Search:
    """A search function that answers ``queries``, in order, from one `NestedIndex.search_many`."""
    found = iter(index.search_many(queries, dim, rows))
    return lambda _query: next(found).ids


def _searcher(es: EvalSet, dim: int, precision: str, elapsed: list[float] | None = None) -> Search:
    """Exact search at ``dim``, or codes of ``precision`` rescored exactly; optionally timed."""
    index, rows = es.index, depth(es)
    if precision == "float32":
        return _timed(index, dim, rows, [] if elapsed is None else elapsed)
    codes = es.codes.get(precision)
    if codes is None:
        codes = es.codes[precision] = encode(index.vectors(), precision)

    def search(query: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        found = rescored_search(index, codes, query, dim, rows, DEFAULT_RESCORE[precision])
        if elapsed is not None:
            elapsed.append(time.perf_counter() - started)
        return found.ids

    return search


def run_bench(
    es: EvalSet, dims: Sequence[int], k: int = 10, precision: str = "float32"
) -> BenchReport:
    """Every dim (then full), the funnels and the router on `es` (``routed`` is None without
    query texts). ``precision`` int8 or binary changes the fixed-dim searches only: codes keep
    ``DEFAULT_RESCORE × depth`` candidates, which are scored exactly. Funnels stay float32."""
    index, rows = es.index, depth(es)
    full_dim, n = index.full_dim, index.n
    full = _score(es, _batched(index, es.query_vectors, full_dim, rows), k)
    fixed = []
    per_dim: dict[int, Scores] = {}
    for dim in [*dims, full_dim]:
        elapsed: list[float] = []
        _searcher(es, dim, precision)(es.query_vectors[0])  # warm-up: first-touch costs aside
        if precision == "float32":  # ranked in one batch; latency timed on single queries
            per_dim[dim] = _evaluate(es, _batched(index, es.query_vectors, dim, rows), k)
            timed = _searcher(es, dim, precision, elapsed)
            for query in es.query_vectors[:TIMED_QUERIES]:
                timed(query)
        else:
            per_dim[dim] = _evaluate(es, _searcher(es, dim, precision, elapsed), k)
        fixed.append(
            FixedRow(
                dim,
                Cell.of(per_dim[dim]),
                search_ms=round(1000 * float(np.median(elapsed)), 3),
                bytes_per_vector=bytes_per_vector(dim, precision),
            )
        )

    funnels = default_funnels(full_dim, n)
    auto, agreement = auto_funnel(index, es.pseudo_vectors, es.pseudo_sources, k)
    funnels.append(auto)
    funnel_rows = []
    for funnel in funnels:
        cell = _score(es, lambda q, f=funnel: staged_search(index, q, f, rows), k)
        funnel_rows.append(
            FunnelRow(
                label=funnel.label,
                stages=tuple((d, kept) for d, kept in funnel.stages),
                rerank_dim=full_dim,
                auto=funnel.auto,
                pseudo_agreement=round(agreement, 4) if funnel.auto else None,
                cell=cell,
                scan_fraction=round(scan_fraction(funnel, n, full_dim), 4),
            )
        )
    return BenchReport(
        dataset=es.name,
        model=es.model,
        transform=es.transform,
        precision=precision,
        docs=len({d for d in es.row_docs if d}),
        rows=n,
        queries=len(es.query_ids),
        full_dim=full_dim,
        k=k,
        full=full,
        fixed=tuple(fixed),
        funnel=tuple(funnel_rows),
        routed=_routed(es, k, per_dim, auto),
    )


def run_compare(
    sets: dict[str, EvalSet],
    chosen: str,
    dims: Sequence[int],
    k: int = 10,
    fitted: Sequence[str] | None = None,
) -> CompareReport:
    """Ways of searching side by side: rows = dims (then full), one column per set in `sets`
    (exact float32), then int8 and binary codes of the `chosen` set (rescored exactly). Every
    cell holds nDCG@k and recall@100. `fitted`: the sets whose fit time is reported (default:
    all)."""
    first = sets[chosen]
    full_dim = first.index.full_dim
    columns = (*sets, f"{chosen} int8", f"{chosen} binary")
    rows = []
    for dim in [*dims, full_dim]:
        cells: dict[str, Cell] = {}
        for name, es in sets.items():
            cells[name] = _score(es, _batched(es.index, es.query_vectors, dim, depth(es)), k)
        for precision in ("int8", "binary"):
            cells[f"{chosen} {precision}"] = _score(first, _searcher(first, dim, precision), k)
        rows.append(CompareRow(dim, cells))
    timed = {name: es for name, es in sets.items() if fitted is None or name in fitted}
    return CompareReport(
        dataset=first.name,
        model=first.model,
        docs=len({d for d in first.row_docs if d}),
        queries=len(first.query_ids),
        full_dim=full_dim,
        k=k,
        chosen=chosen,
        columns=columns,
        rows=tuple(rows),
        fit_seconds={name: round(es.fit_seconds, 2) for name, es in timed.items()},
        fit_cached=tuple(name for name, es in timed.items() if es.fit_cached),
    )
