"""Exact prefix search vs the memory floor, and HNSW funnel search vs exact.

    python benchmarks/bench_search.py                   # N = 100k and 1M, funnel at 1M
    python benchmarks/bench_search.py --n 100000 --funnel-n 200000

Exact scan: N random unit vectors (D = 384); the layout does not care about structure. The floor
is bytes scanned / the best streaming read bandwidth measured in the same run.

Funnel: a Gaussian mixture (2,000 clusters) whose per-dimension scale decays like a PCA/MRL
spectrum, so prefixes carry the most information, as they do for real transformed embeddings;
queries are fresh draws from the same mixture. Ground truth is the exact top-10 at each d.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mrl_tui.core.search import index as index_module
from mrl_tui.core.search.hnsw import ANCHOR_DIM, DEFAULT_EF, GRAPH_M, HnswGraph, graph_search
from mrl_tui.core.search.index import NestedIndex

D = 384
DIMS = [32, 64, 128, 256, 384]
K = 10


def timed(fn, items) -> tuple[float, list]:
    """Median seconds of ``fn(item)`` over the items, and the results."""
    times, results = [], []
    for item in items:
        t = time.perf_counter()
        results.append(fn(item))
        times.append(time.perf_counter() - t)
    return statistics.median(times), results


class Bandwidth:
    """Best streaming read rate (bytes/s) of a few ways to read a 1 GiB array.

    Measured again next to every timing: other work on the machine changes it.
    """

    def __init__(self) -> None:
        self.array = np.ones(2**28, np.float32)
        self.parts = np.split(self.array, index_module.SCAN_THREADS)
        self.pool = ThreadPoolExecutor(index_module.SCAN_THREADS)

    def measure(self, repeats: int = 3) -> float:
        a = self.array
        ways = [
            lambda _: a.sum(),
            lambda _: a @ a,  # BLAS dot, reads the array once
            lambda _: list(self.pool.map(np.sum, self.parts)),  # one sum per scan thread
        ]
        best = min(min(timed(fn, [None])[0] for _ in range(repeats)) for fn in ways)
        return a.nbytes / best


def unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, D), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def clustered(n: int, rng: np.random.Generator, clusters: int = 2_000) -> np.ndarray:
    scale = (np.arange(D, dtype=np.float32) + 1.0) ** -0.5
    centres = rng.standard_normal((clusters, D), dtype=np.float32) * scale
    out = np.empty((n, D), np.float32)
    for a in range(0, n, 100_000):
        b = min(a + 100_000, n)
        labels = rng.integers(clusters, size=b - a)
        noise = rng.standard_normal((b - a, D), dtype=np.float32) * scale
        out[a:b] = centres[labels] + noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def bench_exact(n: int, bandwidth: Bandwidth, repeats: int) -> None:
    rng = np.random.default_rng(0)
    index = NestedIndex(unit_vectors(n, rng))
    queries = unit_vectors(repeats, rng)
    print(f"\nexact search, N = {n:,}, top-{K}, median of {repeats} queries")
    print(f"{'d':>5} {'ms':>8} {'MB scanned':>11} {'GB/s':>6} {'floor ms':>9} {'ratio':>6}")
    for d in DIMS:
        index.search(queries[0], d, K)  # warm the pages
        rate = bandwidth.measure()
        seconds, _ = timed(lambda q, d=d: index.search(q, d, K), queries)
        floor = index.nbytes(d) / rate
        print(
            f"{d:>5} {seconds * 1e3:>8.2f} {index.nbytes(d) / 1e6:>11.1f} {rate / 1e9:>6.1f} "
            f"{floor * 1e3:>9.2f} {seconds / floor:>6.2f}",
            flush=True,
        )


def bench_funnel(n: int, anchor: int, candidates: list[int], ef_construction: int, repeats: int):
    rng = np.random.default_rng(1)
    x = clustered(n + repeats, rng)
    queries, x = x[n:].copy(), x[:n]
    index = NestedIndex(x)
    print(
        f"\nfunnel, N = {n:,}, anchor d = {anchor}, M = {GRAPH_M}, "
        f"ef_construction = {ef_construction}"
    )
    t = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"  built {done:,}/{total:,} ({time.perf_counter() - t:.0f} s)", flush=True)

    graph = HnswGraph.build(x, anchor, ef_construction=ef_construction, progress=progress)
    print(f"  HNSW build: {time.perf_counter() - t:.0f} s on {index_module.os.cpu_count()} cores")
    del x
    header = f"{'d':>5} {'exact ms':>9}" + "".join(
        f" {f'c={c} ms':>10} {'speed-up':>8} {'recall':>6}" for c in candidates
    )
    print(header)
    for d in DIMS:
        exact_s, truth = timed(lambda q, d=d: index.search(q, d, K), queries)
        row = f"{d:>5} {exact_s * 1e3:>9.2f}"
        for c in candidates:
            s, got = timed(
                lambda q, d=d, c=c: graph_search(index, graph, q, d, K, c, max(DEFAULT_EF, c)),
                queries,
            )
            pairs = zip(got, truth, strict=True)
            recall = np.mean([len(set(g.ids.tolist()) & set(t.ids.tolist())) / K for g, t in pairs])
            row += f" {s * 1e3:>10.2f} {exact_s / s:>7.1f}x {recall:>6.3f}"
        print(row, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="exact-scan N (repeatable; 0 skips)")
    parser.add_argument("--funnel-n", type=int, default=1_000_000, help="0 skips the funnel")
    parser.add_argument("--anchor", type=int, default=ANCHOR_DIM)
    parser.add_argument("--candidates", default="100,400", help="comma-separated")
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    print(f"scan threads: {index_module.SCAN_THREADS}, blocks: {index_module.block_bounds(D)}")
    print("floor = bytes scanned / best of (np.sum, BLAS dot, threaded sum) read rate, per row")
    if args.n != [0]:
        bandwidth = Bandwidth()
        for n in args.n or [100_000, 1_000_000]:
            bench_exact(n, bandwidth, args.repeats)
        del bandwidth
    if args.funnel_n:
        candidates = [int(c) for c in args.candidates.split(",")]
        bench_funnel(args.funnel_n, args.anchor, candidates, args.ef_construction, args.repeats)


if __name__ == "__main__":
    main()
