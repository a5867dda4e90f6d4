"""Candidates, then exact rerank: the one step every multi-stage search shares.

A cheap source proposes rows (an exact scan at a small prefix, an HNSW graph, int8 or binary
codes); `rerank_head` scores the first ``kept`` of them exactly at ``dim`` with the
`NestedIndex` and puts them first, best first, leaving the rest of the ranking in its order.
The funnel (`funnel.rerank_stages`), the router's rungs (`router.Router.search`), the HNSW graph
search (`hnsw.graph_search`) and the codes' rescored search (`codes.rescored_search`) all use it.
"""

from __future__ import annotations

import numpy as np

from mrl_tui.core.search.index import Hits, NestedIndex


def rerank_head(
    index: NestedIndex,
    query: np.ndarray,
    dim: int,
    ids: np.ndarray,
    kept: int | None = None,
    depth: int | None = None,
    scores: np.ndarray | None = None,
) -> Hits:
    """The first ``kept`` rows of ``ids`` (all by default) reranked exactly at ``dim``, then the
    rest of ``ids`` in its order; at most ``depth`` rows (all by default).

    ``scores`` are the scores of ``ids`` from the source (the tail keeps them); without them the
    tail's scores are NaN. Duplicates in the head are ignored (`NestedIndex.rerank`). When
    ``depth`` falls within the head, only the best ``depth`` of it are selected, not all sorted.
    """
    ids = np.asarray(ids)
    head = ids if kept is None else ids[:kept]
    wanted = len(head) if depth is None else min(depth, len(head))
    top = index.rerank(query, dim, head, wanted)
    if len(head) == len(ids) or (depth is not None and depth <= len(top)):
        return top if depth is None else Hits(top.ids[:depth], top.scores[:depth])
    tail_scores = (
        np.full(len(ids) - len(head), np.nan, np.float32)
        if scores is None
        else np.asarray(scores, np.float32)[len(head) :]
    )
    ranked = Hits(
        np.concatenate([top.ids, ids[len(head) :].astype(np.int64)]),
        np.concatenate([top.scores, tail_scores]),
    )
    return ranked if depth is None else Hits(ranked.ids[:depth], ranked.scores[:depth])
