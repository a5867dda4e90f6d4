"""Exact prefix search against faiss, in the same process and run, interleaved.

    pip install -e '.[bench]'                       # faiss-cpu, benchmark only
    python benchmarks/bench_vs_faiss.py             # N = 100k and 1M
    python benchmarks/bench_vs_faiss.py --n 100000 --neighbour   # with a CPU-bound neighbour
    python benchmarks/bench_vs_faiss.py --batch 0 --compare-numpy  # and the numpy scan
    python benchmarks/bench_vs_faiss.py --batch 0 --scan both      # float16 mirror and float32

mrl-tui searches its one copy of the vectors at each d (`NestedIndex.search`, and
`search_many` for a batch); faiss gets what suits it best: an `IndexFlatIP` on one thread over a
prefix-normalised copy made for that d (five such copies are what mrl-tui avoids). Each round
times one side, then the other, on the same query, so load changes hit both. *floor* = bytes of
the prefix (N·d·4) ÷ the best streaming read rate measured next to each row; the load average is
printed with every row, because on a shared machine it moves the figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import faiss
import numpy as np
from bench_search import Bandwidth, D, K, unit_vectors

from mrl_tui.core.search import index as index_module
from mrl_tui.core.search.index import NestedIndex

DIMS = [32, 64, 128, 256, 384]


def _spin() -> None:
    while True:
        pass


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def interleaved(a, b, items, rounds: int = 1, cpu: list | None = None):
    """Median seconds of ``a(item)`` and ``b(item)``, alternating, and their last results.

    ``cpu`` (a list) receives the two medians of process CPU time too: a loaded machine's waits
    for the run queue are not in it (for a scan on two threads it is both threads' sum)."""
    ta, tb, ca, cb, ra, rb = [], [], [], [], [], []
    for _ in range(rounds):
        ra, rb = [], []
        for item in items:
            c, t = time.process_time(), time.perf_counter()
            ra.append(a(item))
            ta.append(time.perf_counter() - t)
            ca.append(time.process_time() - c)
            c, t = time.process_time(), time.perf_counter()
            rb.append(b(item))
            tb.append(time.perf_counter() - t)
            cb.append(time.process_time() - c)
    if cpu is not None:
        cpu[:] = [statistics.median(ca), statistics.median(cb)]
    return statistics.median(ta), statistics.median(tb), ra, rb


def numpy_scan(index: NestedIndex, q: np.ndarray, d: int) -> np.ndarray:
    """`index.search` with the numpy scan, as where the C kernel was not built."""
    fused, index_module._fused = index_module._fused, None
    try:
        return index.search(q, d, K).ids
    finally:
        index_module._fused = fused


def float32_scan(index: NestedIndex, q: np.ndarray, d: int) -> np.ndarray:
    """`index.search` with the C kernel over the float32 blocks, as without the float16 mirror."""
    half, index._half = index._half, None
    index._kernel_args.clear()
    try:
        return index.search(q, d, K).ids
    finally:
        index._half = half
        index._kernel_args.clear()


def bench(
    n: int,
    dims: list[int],
    queries: int,
    batch: int,
    bandwidth: Bandwidth,
    rounds: int = 1,
    compare_blocks: bool = False,
    compare_numpy: bool = False,
    scan: str = "default",
) -> None:
    """One table for ``n`` rows; ``batch`` = 0 times single queries only. ``compare_blocks`` also
    times an index of 32-wide column blocks (the layout before `MAX_BLOCK`) in the same run;
    ``compare_numpy`` the numpy scan that runs where the C kernel was not built. ``scan``:
    "float32" builds no float16 mirror; "both" also times the float32 kernel in the same run."""
    rng = np.random.default_rng(0)
    x = unit_vectors(n, rng)
    mirror = index_module.HALF_MIRROR
    index_module.HALF_MIRROR = scan != "float32" and mirror
    t = time.perf_counter()
    index = NestedIndex(x)
    built = time.perf_counter() - t
    index_module.HALF_MIRROR = mirror
    half = getattr(index, "_half", None) is not None
    print(f"\nindex built in {built:.1f} s; float16 mirror: {'yes' if half else 'no'}")
    narrow = None
    if compare_blocks:
        widest, index_module.MAX_BLOCK = index_module.MAX_BLOCK, index_module.BLOCK
        narrow = NestedIndex(x)
        index_module.MAX_BLOCK = widest
    singles = unit_vectors(queries, rng)
    batches = [unit_vectors(batch, rng) for _ in range(3)] if batch else []
    print(
        f"\nN = {n:,}, top-{K}; single: median of {queries} queries; batch: {batch} queries, "
        "median of 3; ms, and mrl-tui / faiss (cpu r: the same in process CPU time)"
    )
    print(
        f"{'d':>4} {'floor':>7} {'mrl':>8} {'faiss':>8} {'ratio':>6} {'x floor':>7} "
        f"{'mrl64':>8} {'faiss64':>8} {'ratio':>6} {'agree':>6} {'cpu r':>6}  load"
    )
    for d in dims:
        copy = np.ascontiguousarray(x[:, :d])
        copy /= np.linalg.norm(copy, axis=1, keepdims=True)
        flat = faiss.IndexFlatIP(d)
        flat.add(copy)
        del copy

        def faiss_single(q, d=d, flat=flat):
            return flat.search(np.ascontiguousarray(q[None, :d]), K)[1][0]

        def faiss_batch(qs, d=d, flat=flat):
            return flat.search(np.ascontiguousarray(qs[:, :d]), K)[1]

        index.search(singles[0], d, K)  # first touch aside
        faiss_single(singles[0])
        rate = bandwidth.measure()
        floor = index.nbytes(d) / rate
        cpu: list[float] = []
        ours, theirs, got, want = interleaved(
            lambda q, d=d: index.search(q, d, K).ids, faiss_single, singles, rounds, cpu
        )
        if compare_numpy and index_module._fused is not None:
            cpu_np: list[float] = []
            plain, theirs_np, _, _ = interleaved(
                lambda q, d=d: numpy_scan(index, q, d), faiss_single, singles, rounds, cpu_np
            )
            print(
                f"{'':>4} numpy scan: {plain * 1e3:.2f} ms, faiss {theirs_np * 1e3:.2f} ms, "
                f"ratio {plain / theirs_np:.2f} (CPU {cpu_np[0] / cpu_np[1]:.2f}); C kernel "
                f"{ours / theirs:.2f} (CPU {cpu[0] / cpu[1]:.2f})",
                flush=True,
            )
        if scan == "both" and half:
            cpu_32: list[float] = []
            plain, theirs_32, _, _ = interleaved(
                lambda q, d=d: float32_scan(index, q, d), faiss_single, singles, rounds, cpu_32
            )
            print(
                f"{'':>4} float32 kernel: {plain * 1e3:.2f} ms, faiss {theirs_32 * 1e3:.2f} ms, "
                f"ratio {plain / theirs_32:.2f} (CPU {cpu_32[0] / cpu_32[1]:.2f}); float16 "
                f"mirror {ours / theirs:.2f} (CPU {cpu[0] / cpu[1]:.2f}), "
                f"{ours / plain:.2f}x the float32 kernel's time",
                flush=True,
            )
        if narrow is not None:  # the same run, the 32-wide blocks the index had before
            cpu_old: list[float] = []
            old, theirs_again, _, _ = interleaved(
                lambda q, d=d: narrow.search(q, d, K).ids, faiss_single, singles, rounds, cpu_old
            )
            print(
                f"{'':>4} 32-wide blocks: {old * 1e3:.2f} ms, faiss {theirs_again * 1e3:.2f} ms, "
                f"ratio {old / theirs_again:.2f} (CPU {cpu_old[0] / cpu_old[1]:.2f}); current "
                f"blocks {ours / theirs:.2f} (CPU {cpu[0] / cpu[1]:.2f})",
                flush=True,
            )
        ours_b, theirs_b, got_b, want_b = (
            interleaved(
                lambda qs, d=d: [h.ids for h in index.search_many(qs, d, K)], faiss_batch, batches
            )
            if batch
            else (float("nan"), float("nan"), [], [])
        )
        pairs = [*zip(got, want, strict=True)]
        for gs, ws in zip(got_b, want_b, strict=True):
            pairs += zip(gs, ws, strict=True)
        agree = np.mean([len(set(g.tolist()) & set(w.tolist())) / K for g, w in pairs])
        print(
            f"{d:>4} {floor * 1e3:>7.2f} {ours * 1e3:>8.2f} {theirs * 1e3:>8.2f} "
            f"{ours / theirs:>6.2f} {ours / floor:>7.2f} {ours_b * 1e3:>8.1f} "
            f"{theirs_b * 1e3:>8.1f} {ours_b / theirs_b:>6.2f} {agree:>6.3f} "
            f"{cpu[0] / cpu[1]:>6.2f}  {_load()}",
            flush=True,
        )
        del flat
    mib = 2**20
    extra = sum(b.nbytes for b in index._half[0]) / mib if half else 0.0
    print(
        f"memory: mrl-tui one copy {x.nbytes / mib:,.0f} MiB + prefix norms "
        f"{index.n * (D // 8) * 4 / mib:,.0f} MiB + float16 mirror {extra:,.0f} MiB; faiss "
        f"copies for d = {','.join(map(str, dims))}: {n * sum(dims) * 4 / mib:,.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="rows (repeatable)")
    parser.add_argument("--dims", default=",".join(map(str, DIMS)))
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64, help="0: single queries only")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the single queries")
    parser.add_argument("--compare-blocks", action="store_true", help="also 32-wide blocks")
    parser.add_argument(
        "--compare-numpy", action="store_true", help="also the numpy scan (no C kernel)"
    )
    parser.add_argument("--neighbour", action="store_true", help="run a CPU-bound process too")
    parser.add_argument(
        "--scan",
        choices=["default", "float32", "both"],
        default="default",
        help="float32: no float16 mirror; both: time the float32 kernel too",
    )
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    neighbour = None
    if args.neighbour:
        neighbour = multiprocessing.Process(target=_spin, daemon=True)
        neighbour.start()
    kernel = index_module._fused.kernel() if index_module._fused else "not built: numpy scan"
    print(
        f"faiss {faiss.__version__} on 1 thread, numpy {np.__version__}, {os.cpu_count()} cores, "
        f"mrl-tui C kernel: {kernel}"
    )
    print(f"load average at start: {_load()}" + (" (+ a CPU-bound neighbour)" if neighbour else ""))
    try:
        bandwidth = Bandwidth()
        for n in args.n or [100_000, 1_000_000]:
            dims = [int(d) for d in args.dims.split(",")]
            bench(
                n,
                dims,
                args.queries,
                args.batch,
                bandwidth,
                args.rounds,
                args.compare_blocks,
                args.compare_numpy,
                args.scan,
            )
    finally:
        if neighbour is not None:
            neighbour.terminate()


if __name__ == "__main__":
    main()
