"""Routed search against the auto funnel and every fixed dim, with paired 95 % intervals.

    python benchmarks/bench_router.py --beir ../shared/datasets/dbpedia-entity-5k \
        --beir ../shared/datasets/msmarco-trecdl-5k [--transform naive] [--embed-backend onnx-int8]

Issue #13, target 5: routed search reads no more of a full scan than the auto funnel and keeps
>= 99.5 % of full nDCG@10. The router keeps the cheaper (on pseudo-queries) of the funnel's cascade
and a doubling ladder (`Router.calibrate`); the line under each table says which and why.
Embeddings come from `mrl-tui bench`'s cache (embedded on first use, minutes on a CPU); vectors
under the transform bench uses ("auto": PCA for MiniLM). `scan` is values read / (N * full_dim),
every stage counted, as in bench. Each "routed −" cell is the mean per-query nDCG@10 difference
and its paired-bootstrap 95 % interval over the judged queries. Run it from the repository root
with `PYTHONPATH=.` (or the package installed).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

import numpy as np

from mrl_tui.core.embedding.embed import Embedder
from mrl_tui.core.evaluation.beir import load_beir
from mrl_tui.core.evaluation.metrics import Scores, evaluate, paired_difference
from mrl_tui.core.evaluation.sets import beir_eval_set
from mrl_tui.core.search.funnel import auto_funnel, scan_fraction, staged_search
from mrl_tui.core.search.query_features import TermStats
from mrl_tui.core.search.router import Router

DIMS = (16, 32, 48, 64, 96, 128, 192, 256)
K, RECALL_K = 10, 100


def scores_of(es, rankings: list[np.ndarray]) -> Scores:
    docs = {
        qid: [es.row_docs[r] for r in ids[:RECALL_K].tolist()]
        for qid, ids in zip(es.query_ids, rankings, strict=True)
    }
    return evaluate(docs, es.qrels, ndcg_k=K, recall_k=RECALL_K)


def run(folder: Path, device: str, transform: str, backend: str) -> None:
    es = beir_eval_set(
        folder, load_beir(folder), Embedder(device=device, backend=backend), transform=transform
    )
    index, n, full = es.index, es.index.n, es.index.full_dim
    depth = min(n, RECALL_K)
    rows: list[tuple[str, float, Scores]] = []
    for dim in (*DIMS, full):
        found = index.search_many(es.query_vectors, dim, depth)
        rows.append((f"exact {dim}d", dim / full, scores_of(es, [h.ids for h in found])))
    funnel, agreement = auto_funnel(index, es.pseudo_vectors, es.pseudo_sources, K)
    ranked = [staged_search(index, q, funnel, depth) for q in es.query_vectors]
    rows.append((funnel.label, scan_fraction(funnel, n, full), scores_of(es, ranked)))
    router = Router.calibrate(
        index,
        TermStats.from_texts(es.row_texts),
        es.route_vectors,
        es.route_sources,
        K,
        es.route_texts,
        funnel=funnel,
    )
    routes, ranked = [], []
    for text, q in zip(es.query_texts, es.query_vectors, strict=True):
        found, route = router.search(index, text, q, depth)
        routes.append(route)
        ranked.append(found.ids)
    routed = scores_of(es, ranked)
    routed_scan = float(np.mean([r.values_read for r in routes])) / (n * full)
    full_ndcg = rows[len(DIMS)][2].ndcg
    print(
        f"\n{es.name}: {n} rows, {len(es.query_ids)} queries, {es.transform}, full {full}d, "
        f"{backend} vectors"
    )
    print(f"{'search':<26} {'scan':>7} {'nDCG@10':>8} {'of full':>8}   routed − it [95 % CI]")
    for label, scan, s in rows:
        diff, low, high = paired_difference(routed.per_query_ndcg, s.per_query_ndcg)
        print(
            f"{label:<26} {100 * scan:6.1f}% {s.ndcg:8.4f} {100 * s.ndcg / full_ndcg:7.1f}%"
            f"   {diff:+.4f} [{low:+.4f}, {high:+.4f}]"
        )
    print(
        f"{'routed':<26} {100 * routed_scan:6.1f}% {routed.ndcg:8.4f} "
        f"{100 * routed.ndcg / full_ndcg:7.1f}%"
    )
    stopped = [r for r in routes if r.dim < full]
    costs = ", ".join(f"{k} {100 * v:.1f}%" for k, v in router.notes["pseudo_scan"].items())
    print(
        f"ladder: {router.notes['ladder']}, scan {router.notes['scan']} (on pseudo-queries "
        f"{costs}; auto funnel {funnel.label}, agreement {agreement:.3f}); "
        f"{len(stopped)}/{len(routes)} queries stopped early; ends at "
        + ", ".join(f"{d}d ×{c}" for d, c in sorted(Counter(r.dim for r in routes).items()))
    )
    for rung in router.notes["rungs"]:
        why = "may stop" if rung["stability"] is not None else "no stop rule kept quality"
        print(
            f"  rung {rung['dim']}d over {rung['rows']} rows: {why}; pseudo-query nDCG@10 "
            f"{rung['ndcg']:.4f} (exact full {router.notes['full_ndcg']:.4f})"
        )
    verdict = routed_scan <= rows[-1][1] + 1e-12 and routed.ndcg >= 0.995 * full_ndcg
    print(f"target 5 (scan <= auto funnel, >= 99.5 % of full): {'met' if verdict else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", type=Path, action="append", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--transform", default="auto", help="as bench's: auto, naive, pca, adaptor")
    parser.add_argument(
        "--embed-backend",
        default="torch",
        help="torch (the default, so figures stay comparable), onnx, onnx-int8 or auto",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for folder in args.beir:
        run(folder, args.device, args.transform, args.embed_backend)


if __name__ == "__main__":
    main()
