"""`mrl-tui bench --backend`: the same judged queries, searched through the engine.

The eval set's vectors (already in the index basis) go into a collection of their own, once per
set, model and transform; each dim is then searched exactly in the engine, and its nDCG@k is set
against the local index's in the same report. A funnel on the anchor tier (nested prefetch, then
the full tier) is measured too, against the same funnel run locally.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mrl_tui.core.engines import open_engine
from mrl_tui.core.engines.base import (
    CollectionSpec,
    EnginePoint,
    anchor_tier,
    collection_name,
    tiers_for,
)
from mrl_tui.core.engines.binding import tiered_search
from mrl_tui.core.evaluation.measure import _evaluate
from mrl_tui.core.evaluation.measure import depth as _depth
from mrl_tui.core.evaluation.sets import EvalSet
from mrl_tui.core.search.funnel import Funnel, staged_search

FUNNEL_KEPT = 200


def _basis(es: EvalSet) -> str:
    head = es.index.vectors(np.arange(min(es.index.n, 256)))
    digest = hashlib.sha256(np.round(head.astype(np.float64), 4).tobytes())
    digest.update(str(es.index.n).encode())
    return digest.hexdigest()[:16]


def load_eval_set(es: EvalSet, backend: str) -> tuple[Any, tuple[int, ...], float | None]:
    """(engine, tiers, seconds spent writing or None when the collection already held the set)."""
    full_dim = es.index.full_dim
    spec = CollectionSpec(es.model, es.transform, full_dim, tiers_for(full_dim), f"bench:{es.name}")
    name = collection_name(f"bench/{es.name}/{es.model}/{es.transform}")
    engine = open_engine(backend, name)
    engine.check(spec)
    state = {"basis": _basis(es), "points": es.index.n}
    held = engine.marker() if engine.exists() else None
    if held and held.get("state") == "synced" and all(held.get(k) == v for k, v in state.items()):
        return engine, spec.tiers, None
    started = time.perf_counter()
    engine.ensure(spec)
    engine.set_marker({**state, "state": "syncing"})
    engine.delete_ids(sorted(engine.point_paths()))
    step = 20_000
    for a in range(0, es.index.n, step):
        rows = np.arange(a, min(a + step, es.index.n))
        vectors = es.index.vectors(rows)
        engine.upsert(
            [
                EnginePoint(
                    int(r) + 1, vectors[j], {"path": es.row_docs[r], "chunk_id": int(r) + 1}
                )
                for j, r in enumerate(rows.tolist())
            ]
        )
    engine.optimize()
    engine.set_marker({**state, "state": "synced"})
    return engine, spec.tiers, time.perf_counter() - started


def engine_report(
    es: EvalSet, backend: str, dims: Sequence[int], k: int, local: dict[str, Any]
) -> dict[str, Any]:
    """nDCG@k and recall through the engine per dim, next to `local` (`bench.run_bench`'s)."""
    engine, tiers, ingest_s = load_eval_set(es, backend)
    try:
        full_dim, depth, n = es.index.full_dim, _depth(es), es.index.n
        key = f"ndcg{k}"
        local_by_dim = {row["dim"]: row for row in local["fixed"]}
        rows = []
        for dim in dict.fromkeys([*dims, full_dim]):
            elapsed: list[float] = []
            used: set[str] = set()

            def search(
                query: np.ndarray,
                dim: int = dim,
                elapsed: list[float] = elapsed,
                used: set[str] = used,
            ) -> np.ndarray:
                started = time.perf_counter()
                found, _, how = tiered_search(engine, tiers, n, query, dim, depth, "exact")
                elapsed.append(time.perf_counter() - started)
                used.add(how)
                return found.ids - 1

            scores = _evaluate(es, search, k)
            mine = round(scores.ndcg, 4)
            theirs = local_by_dim.get(dim, {}).get(key)
            rows.append(
                {
                    "dim": dim,
                    key: mine,
                    "recall100": round(scores.recall, 4),
                    "local": theirs,
                    "diff": None if theirs is None else round(mine - theirs, 4),
                    "search_ms": round(1000 * float(np.median(elapsed)), 3),
                    "how": "/".join(sorted(used)),
                }
            )
        anchor = anchor_tier(tiers)
        funnel = None
        if anchor < full_dim and n > FUNNEL_KEPT:
            kept = max(FUNNEL_KEPT, depth)

            def staged(query: np.ndarray) -> np.ndarray:
                stages = [(anchor, kept)]
                found = engine.search(query, full_dim, depth, stages, exact=True)
                return found.ids - 1

            local_funnel = Funnel(((anchor, kept),))
            theirs = _evaluate(es, lambda q: staged_search(es.index, q, local_funnel, depth), k)
            mine = _evaluate(es, staged, k)
            funnel = {
                "label": f"prefetch {anchor}d:{kept} → {full_dim}d",
                key: round(mine.ndcg, 4),
                "local": round(theirs.ndcg, 4),
                "diff": round(mine.ndcg - theirs.ndcg, 4),
            }
        info = engine.info().to_dict()
    finally:
        engine.close()
    return {
        "backend": backend,
        "engine": info["engine"],
        "collection": info["collection"],
        "points": info["points"],
        "ingest_s": None if ingest_s is None else round(ingest_s, 2),
        "max_abs_diff": max(abs(r["diff"]) for r in rows if r["diff"] is not None),
        "fixed": rows,
        "funnel": funnel,
        "tiers": info["tiers"],
    }
