"""The HNSW funnel against faiss HNSW at recall@10 >= 0.99, in the same process and run.

    pip install -e '.[bench]'                                  # faiss-cpu, benchmark only
    python benchmarks/bench_hnsw_vs_faiss.py --n 50000         # d = 32, 64, 128, 256, 384
    python benchmarks/bench_hnsw_vs_faiss.py --n 200000 --dims 64,128,256,384 --with-anchor \
        --graph-cache /tmp/hnsw-bench                          # keeps the graphs for a rerun
    python benchmarks/bench_hnsw_vs_faiss.py --n 200000 --dims 128,384 --phases
    python benchmarks/bench_hnsw_vs_faiss.py --n 200000 --dims 128,256,384 --phases-only

Data: `bench_search.clustered` (2,000 clusters, a decaying PCA-like spectrum), queries are fresh
draws; truth is the exact top-10 at each d. mrl-tui: the library's graph tiers (`--tiers`,
default `hnsw.GRAPH_DIMS`: hnswlib graphs over the 64-, 128- and 256-d prefixes, M = `--m`,
default `hnsw.GRAPH_M` = 20, ef_construction = 200), with the tier, ef and the candidate count
chosen per d by `hnsw.tune`, candidates reranked exactly at d (not at a tier's own d); with
``--with-anchor`` the one 64-d graph alone (as before the tiers), tuned the same way, is timed
in passes of its own. faiss: an `IndexHNSWFlat` (M = 16, efConstruction = 200, inner
product) built per d over a prefix-normalised copy, on one thread, at the smallest efSearch
that reaches the recall asked. (hnswlib's M = 20 is about faiss's M = 16 at level 0, where
faiss links a new node to up to 2 M neighbours and hnswlib to M: see `hnsw.GRAPH_M`.)

Like for like, each side's beam is picked by the same rule, two ways (rows "probe" and "test"):
"probe" on ``--probes`` (`hnsw.TUNE_QUERIES`) probe queries made from corpus rows
(`hnsw.probe_queries`), the same for both sides, for ``--target`` (`hnsw.TUNE_RECALL`, what the
library does); "test" on these very test queries for
recall 0.99 (an oracle's pick). Every row prints recall@10 against exact at d on the test
queries. Each rule is timed in passes of its own: each query on our side, then on faiss's, in
wall time and in this thread's CPU time (which leaves out waits for a loaded machine's run
queue).
``--phases`` also splits the funnel's time into graph walk and rerank at fixed 200 and 400
candidates (ef = max(200, c), the old rule), with the slowest query, to look for outliers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import faiss
import numpy as np
from bench_search import K, clustered

from mrl_tui.core.search import hnsw
from mrl_tui.core.search.hnsw import ANCHOR_DIM, GraphSet, HnswGraph, graph_search
from mrl_tui.core.search.index import NestedIndex

DIMS = [32, 64, 128, 256, 384]
FAISS_EFS = hnsw.TUNE_EFS  # the same grid as ours
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
    parser.add_argument(
        "--probes", type=int, default=hnsw.TUNE_QUERIES, help="probe queries, both sides' rule"
    )
    parser.add_argument("--phases", action="store_true")
    parser.add_argument("--phases-only", action="store_true", help="no faiss, no tune")
    parser.add_argument("--tiers", default=",".join(map(str, hnsw.GRAPH_DIMS)))
    parser.add_argument("--with-anchor", action="store_true", help="time the 64-d graph alone too")
    parser.add_argument("--target", type=float, default=hnsw.TUNE_RECALL, help="tune's recall")
    parser.add_argument("--m", type=int, default=hnsw.GRAPH_M, help="hnswlib's M (ours)")
    parser.add_argument("--graph-cache", help="folder to keep built graphs in between runs")
    parser.add_argument("--build-only", action="store_true", help="fill --graph-cache, no timing")
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    tiers = [int(d) for d in args.tiers.split(",")]
    print(f"faiss {faiss.__version__}, numpy {np.__version__}, {os.cpu_count()} cores")
    print(f"load average at start: {_load()}")
    rng = np.random.default_rng(1)
    x = clustered(args.n + args.queries, rng)
    queries, x = x[args.n :].copy(), x[: args.n]
    index = NestedIndex(x)
    built_tiers = [_graph(x, d, args.graph_cache, args.m) for d in sorted({ANCHOR_DIM, *tiers})]
    graph = built_tiers[0]
    graphs = GraphSet([g for g in built_tiers if g.dim in tiers])
    anchor = GraphSet([graph])
    if args.build_only:
        for d in dims:
            _faiss(x, d, args)
        return
    if args.phases_only:
        for d in dims:
            exact = _timed(lambda q, d=d: index.search(q, d, K), queries[:20])
            print(f"d = {d}: exact scan median {statistics.median(exact) * 1e3:.2f} ms  {_load()}")
            phases(index, graph, queries, d)
        return
    probes = hnsw.probe_queries(index, args.probes)
    # Like for like: each side's beam picked by the same rule, two ways. "probe": on probe
    # queries made from corpus rows (what the library does, `hnsw.tune`'s target); "test": on
    # these very test queries, for recall 0.99 (what an oracle would pick). faiss takes the
    # smallest efSearch that reaches the target, ours `tune`'s fastest (tier, ef, candidates).
    on_test = GraphSet(list(graphs.graphs.values()))
    rules = [("probe", graphs, probes, args.target), ("test", on_test, queries, TARGET)]
    for rule, g, qs, target in rules:
        t, c = time.perf_counter(), time.process_time()
        hnsw.tune(index, g, dims, K, target=target, probes=qs)
        print(
            f"hnsw.tune (tiers {args.tiers}, rule {rule}: {len(qs)} queries, recall {target}), "
            f"{len(dims)} dims: {time.perf_counter() - t:.1f} s wall, "
            f"{time.process_time() - c:.1f} s CPU"
        )
    if args.with_anchor:
        t, c = time.perf_counter(), time.process_time()
        hnsw.tune(index, anchor, dims, K, target=args.target, probes=probes)
        print(
            f"hnsw.tune ({ANCHOR_DIM} d alone, rule probe), {len(dims)} dims: "
            f"{time.perf_counter() - t:.1f} s wall, {time.process_time() - c:.1f} s CPU"
        )
    print(
        f"rule probe: both sides' beams picked on {len(probes)} probe queries off the corpus for "
        f"recall {args.target}; rule test: on the {len(queries)} test queries for {TARGET}. "
        "recall: of the exact top-10 at d, on the test queries."
    )
    print(
        f"{'d':>4} {'exact':>7} {'rule':>5} {'tier':>4} {'ef':>5} {'cand':>5} {'mrl ms':>7} "
        f"{'recall':>6} {'faiss ef':>8} {'faiss ms':>8} {'recall':>6} {'ratio':>6} {'mrl cpu':>7} "
        f"{'f cpu':>7} {'ratio':>6}  load"
    )
    for d in dims:
        truth = [set(h.ids.tolist()) for h in index.search_many(queries, d, K)]
        probe_truth = [set(h.ids.tolist()) for h in index.search_many(probes, d, K)]
        qd, pd = _normalised(queries, d), _normalised(probes, d)
        peer, built = _faiss(x, d, args)
        faiss.omp_set_num_threads(1)
        faiss_ef = {
            "test": _smallest_ef(peer, qd, truth, TARGET),
            "probe": _smallest_ef(peer, pd, probe_truth, args.target),
        }
        passes = [(rule, g, faiss_ef[rule]) for rule, g, _, _ in rules]
        if args.with_anchor:
            passes.append(("alone", anchor, faiss_ef["probe"]))
        # Each pass times every query once on our side, then on faiss's, in passes of their
        # own: a second walk of the same graph for the same query would find it in the cache.
        times = {rule: ([], [], [], []) for rule, _, _ in passes}
        found: dict[str, list[np.ndarray]] = {}
        want: dict[str, list[np.ndarray]] = {}
        for _ in range(args.rounds):
            for rule, g, ef in passes:
                peer.hnsw.efSearch = ef
                wall, cpu, wall_f, cpu_f = times[rule]
                found[rule], want[rule] = [], []
                for i in range(len(queries)):
                    c, s = time.thread_time(), time.perf_counter()
                    found[rule].append(graph_search(index, g, queries[i], d, K).ids)
                    wall.append(time.perf_counter() - s)
                    cpu.append(time.thread_time() - c)
                    c, s = time.thread_time(), time.perf_counter()
                    want[rule].append(peer.search(qd[i : i + 1], K)[1][0])
                    wall_f.append(time.perf_counter() - s)
                    cpu_f.append(time.thread_time() - c)
        exact = statistics.median(
            _timed(lambda q, d=d: index.search(q, d, K), queries[: min(20, len(queries))])
        )
        for rule, g, ef in passes:
            a, cpu_a, b, cpu_b = (statistics.median(t) for t in times[rule])
            st = g.setting(d)
            assert st is not None
            first = rule == passes[0][0]
            print(
                f"{d:>4} {f'{exact * 1e3:.2f}' if first else '':>7} {rule:>5} {st.graph:>4} "
                f"{st.ef:>5} {st.candidates:>5} {a * 1e3:>7.3f} {recall(found[rule], truth):>6.3f} "
                f"{ef:>8} {b * 1e3:>8.3f} {recall(want[rule], truth):>6.3f} {a / b:>6.2f} "
                f"{cpu_a * 1e3:>7.3f} {cpu_b * 1e3:>7.3f} {cpu_a / cpu_b:>6.2f}  {_load()}"
                + (f" (faiss build {built:.0f} s)" if first else ""),
                flush=True,
            )
        if args.phases:
            phases(index, graph, queries, d)
        del peer


def _normalised(queries: np.ndarray, d: int) -> np.ndarray:
    qd = np.ascontiguousarray(queries[:, :d], dtype=np.float32)
    qd /= np.linalg.norm(qd, axis=1, keepdims=True)
    return qd


def _smallest_ef(peer: faiss.Index, qd: np.ndarray, truth: list[set[int]], target: float) -> int:
    """faiss's smallest efSearch of `FAISS_EFS` whose recall@10 on ``qd`` reaches ``target``."""
    for ef in FAISS_EFS:
        peer.hnsw.efSearch = ef
        if recall([peer.search(q[None], K)[1][0] for q in qd], truth) >= target - 1e-9:
            return ef
    return FAISS_EFS[-1]


def _faiss(x: np.ndarray, d: int, args: argparse.Namespace) -> tuple[faiss.Index, float]:
    """faiss's HNSW over the prefix-normalised copy at ``d`` (built on every core, or from
    ``--graph-cache``), and the seconds it took."""
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    kept = args.graph_cache and os.path.join(args.graph_cache, f"faiss-{args.n}-{d}.index")
    if kept and os.path.exists(kept):
        return faiss.read_index(kept), time.perf_counter() - t
    copy = np.ascontiguousarray(x[:, :d])
    copy /= np.linalg.norm(copy, axis=1, keepdims=True)
    peer = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
    peer.hnsw.efConstruction = 200
    peer.add(copy)
    built = time.perf_counter() - t
    print(f"faiss HNSW at {d} d built in {built:.0f} s  {_load()}", flush=True)
    if kept:
        faiss.write_index(peer, kept)
    return peer, built


def _graph(x: np.ndarray, dim: int, cache: str | None, m: int) -> HnswGraph:
    """The hnswlib graph over ``x[:, :dim]``, built (timed, with its size) or from ``cache``."""
    path = None
    if cache is not None:
        os.makedirs(cache, exist_ok=True)
        path = os.path.join(cache, f"bench-{len(x)}-{x.shape[1]}-{dim}-m{m}.bin")
        if os.path.exists(path):
            print(f"hnswlib graph at {dim} d: loaded from {path}")
            return HnswGraph.load(Path(path), dim, len(x))
    t, c = time.perf_counter(), time.process_time()
    graph = HnswGraph.build(x, dim, M=m, ef_construction=200)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    target = path or os.path.join("/tmp", f"bench-hnsw-{os.getpid()}-{dim}.bin")
    graph.save(Path(target))
    size = os.path.getsize(target)
    if path is None:
        os.unlink(target)
    print(
        f"N = {len(x):,}: hnswlib graph at {dim} d (M = {m}) built in {wall:.0f} s wall, "
        f"{cpu:.0f} s CPU, "
        f"{size / 2**20:.0f} MiB ({size / len(x):.0f} B a row)  {_load()}",
        flush=True,
    )
    return graph


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
