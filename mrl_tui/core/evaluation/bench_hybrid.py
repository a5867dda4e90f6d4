"""`mrl-tui bench`'s hybrid part: keyword search alone, and fused with dense search at each dim.

The question MRL adds to hybrid search: how few dense dimensions does the fusion need to match
dense search at full dimension? Both fusions of `core.search.hybrid` are measured on the same
candidates, so the default can be chosen on figures (README.md, "Hybrid search").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrl_tui.core.evaluation.measure import depth, documents
from mrl_tui.core.evaluation.metrics import evaluate
from mrl_tui.core.evaluation.report import RECALL_K, Cell, HybridReport, HybridRow
from mrl_tui.core.evaluation.sets import EvalSet
from mrl_tui.core.search import hybrid
from mrl_tui.core.search.lexical import MemoryIndex


def hybrid_report(
    es: EvalSet, dims: Sequence[int], k: int = 10, with_fusion: bool = True
) -> HybridReport | None:
    """Keyword search alone and, `with_fusion`, per dim (then full) dense search and each fusion
    (`HybridReport`); None without query texts."""
    if not es.query_texts or not es.row_texts:
        return None
    index, full_dim = es.index, es.index.full_dim
    rows_wanted = min(depth(es), max(hybrid.CANDIDATES, RECALL_K))
    keywords = MemoryIndex(es.row_texts)
    lexical = {
        qid: keywords.search(text, hybrid.CANDIDATES)
        for qid, text in zip(es.query_ids, es.query_texts, strict=True)
    }

    def scores(rankings: dict[str, list[int]]) -> Cell:
        docs = {
            qid: documents(np.asarray(rows), es.row_docs, RECALL_K)
            for qid, rows in rankings.items()
        }
        return Cell.of(evaluate(docs, es.qrels, ndcg_k=k, recall_k=RECALL_K))

    lexical_cell = scores({q: [r for r, _ in found] for q, found in lexical.items()})
    if not with_fusion:
        return HybridReport(hybrid.CANDIDATES, hybrid.DEFAULT_FUSION, lexical_cell)
    rows = []
    for dim in [*dims, full_dim]:
        fused: dict[str, dict[str, list[int]]] = {name: {} for name in hybrid.FUSIONS}
        dense: dict[str, list[int]] = {}
        for qid, vector in zip(es.query_ids, es.query_vectors, strict=True):
            dense[qid] = index.search(vector, dim, rows_wanted).ids.tolist()
            found = lexical[qid]
            for name in hybrid.FUSIONS:
                ranked, _ = hybrid.fuse(
                    dense[qid][: hybrid.CANDIDATES],
                    [r for r, _ in found],
                    [s for _, s in found],
                    name,
                    lambda ids, v=vector, d=dim: index.score_ids(v, d, ids),
                )
                fused[name][qid] = ranked.tolist()
        cells = {name: scores(fused[name]) for name in hybrid.FUSIONS}
        rows.append(HybridRow(dim, scores(dense), cells))
    return HybridReport(hybrid.CANDIDATES, hybrid.DEFAULT_FUSION, lexical_cell, tuple(rows))
