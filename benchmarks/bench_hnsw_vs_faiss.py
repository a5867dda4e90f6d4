"""The HNSW funnel against faiss HNSW at recall@10 >= 0.99, in the same process and run.

    pip install -e '.[bench]'                                  # faiss-cpu, benchmark only
    python benchmarks/bench_hnsw_vs_faiss.py --n 50000         # d = 32, 64, 128, 256, 384
    python benchmarks/bench_hnsw_vs_faiss.py --n 200000 --dims 128,384 --phases
    python benchmarks/bench_hnsw_vs_faiss.py --n 200000 --dims 128,256,384 --phases-only

Data: `bench_search.clustered` (2,000 clusters, a decaying PCA-like spectrum), queries are fresh
draws; truth is the exact top-10 at each d. mrl-tui: one hnswlib graph over the 64-d prefix
(M = 16, ef_construction = 200) for every d, candidates reranked exactly at d, with ef and the
candidate count chosen by `hnsw.tune` on rows of the corpus (not on these queries). faiss: an
`IndexHNSWFlat` (M = 16, efConstruction = 200, inner product) built per d over a
prefix-normalised copy, on one thread, with the smallest efSearch that reaches recall 0.99 on
these very queries (which favours faiss). Each query is timed on one side, then the other, in
wall time and in this thread's CPU time (which leaves out waits for a loaded machine's run queue).
``--phases`` also splits the funnel's time into graph walk and rerank at fixed 200 and 400
candidates (ef = max(200, c), the old rule), with the slowest query, to look for outliers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import faiss
import numpy as np
from bench_search import K, clustered

from mrl_tui.core.search import hnsw
from mrl_tui.core.search.hnsw import ANCHOR_DIM, HnswGraph, graph_search
from mrl_tui.core.search.index import NestedIndex

DIMS = [32, 64, 128, 256, 384]
FAISS_EFS = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
TARGET = 0.99


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def recall(got: list[np.ndarray], truth: list[set[int]]) -> float:
    return float(np.mean([len(set(g.tolist()) & t) / K for g, t in zip(got, truth, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dims", default=",".join(map(str, DIMS)))
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the queries")
    parser.add_argument("--phases", action="store_true")
    parser.add_argument("--phases-only", action="store_true", help="no faiss, no tune")
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    print(f"faiss {faiss.__version__}, numpy {np.__version__}, {os.cpu_count()} cores")
    print(f"load average at start: {_load()}")
    rng = np.random.default_rng(1)
    x = clustered(args.n + args.queries, rng)
    queries, x = x[args.n :].copy(), x[: args.n]
    index = NestedIndex(x)
    t = time.perf_counter()
    graph = HnswGraph.build(x, ANCHOR_DIM, M=16, ef_construction=200)
    print(
        f"N = {args.n:,}: hnswlib graph at {ANCHOR_DIM} d built in {time.perf_counter() - t:.0f} s"
    )
    if args.phases_only:
        for d in dims:
            exact = _timed(lambda q, d=d: index.search(q, d, K), queries[:20])
            print(f"d = {d}: exact scan median {statistics.median(exact) * 1e3:.2f} ms  {_load()}")
            phases(index, graph, queries, d)
        return
    t = time.perf_counter()
    settings = hnsw.tune(index, graph, dims, K)
    print(
        f"hnsw.tune over {hnsw.TUNE_QUERIES} corpus rows, {len(dims)} dims: "
        f"{time.perf_counter() - t:.1f} s"
    )
    print(
        f"{'d':>4} {'exact':>7} {'ef':>5} {'cand':>5} {'mrl ms':>7} {'recall':>6} "
        f"{'faiss ef':>8} {'faiss ms':>8} {'recall':>6} {'ratio':>6} {'mrl cpu':>7} "
        f"{'f cpu':>7} {'ratio':>6}  load"
    )
    for d in dims:
        truth_hits = index.search_many(queries, d, K)
        truth = [set(h.ids.tolist()) for h in truth_hits]
        copy = np.ascontiguousarray(x[:, :d])
        copy /= np.linalg.norm(copy, axis=1, keepdims=True)
        qd = np.ascontiguousarray(queries[:, :d])
        qd /= np.linalg.norm(qd, axis=1, keepdims=True)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        t = time.perf_counter()
        peer = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
        peer.hnsw.efConstruction = 200
        peer.add(copy)
        built = time.perf_counter() - t
        del copy
        faiss.omp_set_num_threads(1)
        chosen_ef = FAISS_EFS[-1]
        for ef in FAISS_EFS:
            peer.hnsw.efSearch = ef
            if recall([peer.search(q[None], K)[1][0] for q in qd], truth) >= TARGET:
                chosen_ef = ef
                break
        peer.hnsw.efSearch = chosen_ef

        def ours(i: int, d: int = d) -> np.ndarray:
            return graph_search(index, graph, queries[i], d, K).ids

        def theirs(i: int, peer=peer, qd=qd) -> np.ndarray:
            return peer.search(qd[i : i + 1], K)[1][0]

        ta, tb, ca, cb = [], [], [], []
        for _ in range(args.rounds):
            got, want = [], []
            for i in range(len(queries)):
                c, s = time.thread_time(), time.perf_counter()
                got.append(ours(i))
                ta.append(time.perf_counter() - s)
                ca.append(time.thread_time() - c)
                c, s = time.thread_time(), time.perf_counter()
                want.append(theirs(i))
                tb.append(time.perf_counter() - s)
                cb.append(time.thread_time() - c)
        exact = statistics.median(
            _timed(lambda q, d=d: index.search(q, d, K), queries[: min(20, len(queries))])
        )
        a, b = statistics.median(ta), statistics.median(tb)
        cpu_a, cpu_b = statistics.median(ca), statistics.median(cb)
        st = settings[d]
        print(
            f"{d:>4} {exact * 1e3:>7.2f} {st.ef:>5} {st.candidates:>5} {a * 1e3:>7.3f} "
            f"{recall(got, truth):>6.3f} {chosen_ef:>8} {b * 1e3:>8.3f} "
            f"{recall(want, truth):>6.3f} {a / b:>6.2f} {cpu_a * 1e3:>7.3f} {cpu_b * 1e3:>7.3f} "
            f"{cpu_a / cpu_b:>6.2f}  {_load()} (faiss build {built:.0f} s)",
            flush=True,
        )
        if args.phases:
            phases(index, graph, queries, d)
        del peer


def _timed(fn, items) -> list[float]:
    times = []
    for item in items:
        s = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - s)
    return times


def phases(index: NestedIndex, graph: HnswGraph, queries: np.ndarray, d: int) -> None:
    """Graph walk and rerank apart, at the old fixed 200 and 400 candidates (ef = max(200, c)).

    Wall time next to this thread's CPU time: on a loaded machine a query that straddles the end
    of the process's time slice waits for the run queue, which CPU time does not count."""
    for c in (200, 400):
        walk, rerank, cpu = [], [], []
        for q in queries:
            c0, s = time.thread_time(), time.perf_counter()
            ids = graph.candidates(q, c, ef=max(200, c))
            walk.append(time.perf_counter() - s)
            s = time.perf_counter()
            index.rerank(q, d, ids, K)
            rerank.append(time.perf_counter() - s)
            cpu.append(time.thread_time() - c0)
        w, r, u = np.array(walk) * 1e3, np.array(rerank) * 1e3, np.array(cpu) * 1e3
        print(
            f"     c={c}: wall median {np.median(w + r):.3f} ms (walk {np.median(w):.3f}, rerank "
            f"{np.median(r):.3f}), CPU median {np.median(u):.3f} ms; wall over 5 ms: "
            f"{int(np.sum(w + r > 5))}/{len(w)} (CPU over 5 ms: {int(np.sum(u > 5))})  {_load()}",
            flush=True,
        )


if __name__ == "__main__":
    main()
