"""`mrl-tui bench`'s hybrid part: keyword search alone, and fused with dense search at each dim.

The question MRL adds to hybrid search: how few dense dimensions does the fusion need to match
dense search at full dimension? Both fusions of `core.search.hybrid` are measured on the same
candidates, so the default can be chosen on figures (README.md, "Hybrid search").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mrl_tui.core.evaluation.bench import RECALL_K, EvalSet, _depth, _documents
from mrl_tui.core.evaluation.metrics import evaluate
from mrl_tui.core.search import hybrid
from mrl_tui.core.search.lexical import MemoryIndex


def hybrid_report(
    es: EvalSet, dims: Sequence[int], k: int = 10, with_fusion: bool = True
) -> dict[str, Any] | None:
    """``{"lexical", "rows", "reaches_full", "best", ...}``, or None without query texts.

    ``rows``: per dim (then full) nDCG@k / recall@100 of dense and of each fusion;
    ``reaches_full[fusion]``: the smallest dim whose hybrid nDCG@k is at least dense at full
    dim (None if none does); ``best[fusion]``: its best dim and nDCG@k."""
    if not es.query_texts or not es.row_texts:
        return None
    index, full_dim = es.index, es.index.full_dim
    depth = min(_depth(es), max(hybrid.CANDIDATES, RECALL_K))
    keywords = MemoryIndex(es.row_texts)
    lexical = {
        qid: keywords.search(text, hybrid.CANDIDATES)
        for qid, text in zip(es.query_ids, es.query_texts, strict=True)
    }

    def scores(rankings: dict[str, list[int]]) -> dict[str, float]:
        docs = {
            qid: _documents(np.asarray(rows), es.row_docs, RECALL_K)
            for qid, rows in rankings.items()
        }
        measured = evaluate(docs, es.qrels, ndcg_k=k, recall_k=RECALL_K)
        return {f"ndcg{k}": round(measured.ndcg, 4), "recall100": round(measured.recall, 4)}

    report: dict[str, Any] = {
        "candidates": hybrid.CANDIDATES,
        "default": hybrid.DEFAULT_FUSION,
        "lexical": scores({q: [r for r, _ in found] for q, found in lexical.items()}),
    }
    if not with_fusion:
        return report
    rows = []
    for dim in [*dims, full_dim]:
        row: dict[str, Any] = {"dim": dim}
        fused: dict[str, dict[str, list[int]]] = {name: {} for name in hybrid.FUSIONS}
        dense: dict[str, list[int]] = {}
        for qid, vector in zip(es.query_ids, es.query_vectors, strict=True):
            dense[qid] = index.search(vector, dim, depth).ids.tolist()
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
        row["dense"] = scores(dense)
        for name in hybrid.FUSIONS:
            row[name] = scores(fused[name])
        rows.append(row)
    key = f"ndcg{k}"
    target = rows[-1]["dense"][key]
    report["rows"] = rows
    report["dense_full"] = target
    report["reaches_full"] = {
        name: next((r["dim"] for r in rows if r[name][key] >= target), None)
        for name in hybrid.FUSIONS
    }
    report["best"] = {
        name: max(({"dim": r["dim"], key: r[name][key]} for r in rows), key=lambda b: b[key])
        for name in hybrid.FUSIONS
    }
    return report
