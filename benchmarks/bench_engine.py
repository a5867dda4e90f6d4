"""The engine backend (#12) against the local index, in one run: ingest rate, query latency and
bytes per vector per tier, on N synthetic unit vectors.

    python benchmarks/bench_engine.py --n 100000            # about 2 min on 2 busy cores
    python benchmarks/bench_engine.py --n 100000,1000000    # 1M: ~4 GB for the engine, far longer

Engine: Qdrant Edge (qdrant-edge-py, Qdrant's Rust engine in-process), laid out as `--backend
qdrant:DIR` lays a collection out (`mrl_tui.core.engines`): tiers 32/64/128/256/384, HNSW and int8
codes on the 64 tier. Local: `NestedIndex` (an exact scan at any prefix dim, numpy) as the app
builds it. Queries are corpus vectors plus noise, so each has a true nearest neighbour.

Printed: ingest (points/s: the engine's upserts; its optimise step, which builds the HNSW graph
and the int8 codes, separately), median latency per search kind, recall@10 against the exact
local answer, and the bytes per vector of each tier. Speed is a ratio against the local index in
the same run; `uptime` says the load it ran under.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from mrl_tui.core.engines.base import CollectionSpec, EnginePoint, tier_infos, tiers_for
from mrl_tui.core.engines.binding import EF_QUERIES, tune_ef
from mrl_tui.core.engines.qdrant import EdgeEngine
from mrl_tui.core.search.funnel import Funnel, staged_search
from mrl_tui.core.search.index import NestedIndex

DIM = 384
FUNNEL = (64, 200)


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def median_ms(samples: list[float]) -> float:
    return round(1000 * float(np.median(samples)), 3)


def timed(fn, queries: np.ndarray) -> tuple[list[np.ndarray], float]:
    fn(queries[0])  # warm-up
    out, elapsed = [], []
    for q in queries:
        started = time.perf_counter()
        out.append(fn(q))
        elapsed.append(time.perf_counter() - started)
    return out, median_ms(elapsed)


def recall(found: list[np.ndarray], truth: list[np.ndarray], k: int) -> float:
    return round(
        float(
            np.mean(
                [
                    len(set(f[:k].tolist()) & set(t[:k].tolist())) / k
                    for f, t in zip(found, truth, strict=True)
                ]
            )
        ),
        4,
    )


def run(n: int, queries_n: int, k: int, root: Path) -> dict:
    x = unit_vectors(n, DIM, seed=n)
    rng = np.random.default_rng(1)
    picked = rng.choice(n, size=queries_n, replace=False)
    queries = x[picked] + 0.05 * rng.standard_normal((queries_n, DIM), dtype=np.float32)

    started = time.perf_counter()
    local = NestedIndex(x)
    local_build = time.perf_counter() - started
    result: dict = {"n": n, "dim": DIM, "queries": queries_n, "k": k}
    result["local"] = {"build_s": round(local_build, 2), "points_per_s": round(n / local_build)}
    truth = {}
    for dim in (64, DIM):
        found, ms = timed(lambda q, d=dim: local.search(q, d, k).ids, queries)
        truth[f"exact_{dim}"] = found
        result["local"][f"exact_{dim}_ms"] = ms
    # The same funnel locally (an exact 64d scan keeping 200, reranked at 384d): isotropic random
    # vectors have no real neighbours past the planted one, so the funnel is checked against
    # itself, and the planted neighbour (recall@1) against the truth.
    funnel = Funnel((FUNNEL,))
    found, ms = timed(lambda q: staged_search(local, q, funnel, k), queries)
    truth["funnel"] = found
    result["local"]["funnel_64:200_384_ms"] = ms

    spec = CollectionSpec("synthetic", "none", DIM, tiers_for(DIM))
    path = root / f"engine-{n}"
    shutil.rmtree(path, ignore_errors=True)
    engine = EdgeEngine(path, "bench")
    engine.ensure(spec)
    started = time.perf_counter()
    step = 20_000
    for a in range(0, n, step):
        block = x[a : a + step]
        engine.upsert(
            [EnginePoint(a + i, block[i], {"path": f"f{(a + i) // 10}"}) for i in range(len(block))]
        )
    upsert_s = time.perf_counter() - started
    started = time.perf_counter()
    engine.optimize()
    optimize_s = time.perf_counter() - started
    rows = {
        "upsert_s": round(upsert_s, 2),
        "points_per_s": round(n / upsert_s),
        "optimize_s": round(optimize_s, 2),
    }
    # Ids: the engine's are the row numbers here (chunk ids in the app).
    searches = {
        "exact_64": lambda q: engine.search(q, 64, k, exact=True).ids,
        "exact_384": lambda q: engine.search(q, DIM, k, exact=True).ids,
        "hnsw_64": lambda q: engine.search(q, 64, k).ids,
        "funnel_64:200_384": lambda q: engine.search(q, DIM, k, [FUNNEL]).ids,
        "funnel_exact_64:200_384": lambda q: engine.search(q, DIM, k, [FUNNEL], exact=True).ids,
    }
    for name, fn in searches.items():
        found, ms = timed(fn, queries)
        rows[f"{name}_ms"] = ms
        same = (
            "funnel" if name.startswith("funnel") else "exact_64" if "64" in name else "exact_384"
        )
        rows[f"{name}_recall10"] = recall(found, truth[same], k)
        rows[f"{name}_planted1"] = round(
            float(np.mean([f[0] == p for f, p in zip(found, picked, strict=True)])), 4
        )
    # The search ef as a synced collection measures it (`binding.tune_ef`), and the funnel at it.
    started = time.perf_counter()
    sample = np.random.default_rng(2).choice(n, EF_QUERIES, replace=False)
    ef, ef_recall = tune_ef(engine, spec.tiers, x[sample], sample)
    rows["tune_s"] = round(time.perf_counter() - started, 2)
    rows["hnsw_ef"], rows["ef_recall_vs_exact_funnel"] = ef, round(ef_recall, 4)
    found, ms = timed(  # ef 0: no beam kept the target, the anchor stage scans exactly
        lambda q: engine.search(q, DIM, k, [FUNNEL], ef=ef, exact=ef == 0).ids, queries
    )
    rows["funnel_tuned_ms"] = ms
    rows["funnel_tuned_recall10"] = recall(found, truth["funnel"], k)
    rows["funnel_tuned_planted1"] = round(
        float(np.mean([f[0] == p for f, p in zip(found, picked, strict=True)])), 4
    )
    info = engine.info()
    rows["disk_bytes"] = info.disk_bytes
    rows["disk_bytes_per_vector"] = round(info.disk_bytes / n)
    engine.close()
    result["engine"] = rows
    result["tiers"] = [
        {
            "dim": t.dim,
            "bytes_per_vector": t.bytes_per_vector,
            "int8": t.quantized == "int8",
            "hnsw": t.graph,
        }
        for t in tier_infos(spec.tiers)
    ]
    result["local"]["bytes_per_vector"] = 4 * DIM
    result["ratios"] = {
        "ingest_engine_vs_local": round(rows["points_per_s"] / result["local"]["points_per_s"], 3),
        "exact_384_engine_vs_local": round(
            rows["exact_384_ms"] / result["local"][f"exact_{DIM}_ms"], 2
        ),
        "funnel_vs_local_exact_384": round(
            rows["funnel_64:200_384_ms"] / result["local"][f"exact_{DIM}_ms"], 3
        ),
    }
    shutil.rmtree(path, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", default="100000", help="corpus sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dir", type=Path, help="where the engine writes (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-engine-"))
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    results = []
    for n in (int(v) for v in args.n.split(",")):
        r = run(n, args.queries, args.k, root)
        results.append(r)
        if args.json:
            print(json.dumps(r))
            continue
        e, loc = r["engine"], r["local"]
        print(f"\nN={n:,} D={DIM}, {args.queries} queries, k={args.k} (cpus: {os.cpu_count()})")
        print(f"  ingest   local NestedIndex {loc['points_per_s']:>10,} pts/s ({loc['build_s']} s)")
        print(
            f"           engine upsert     {e['points_per_s']:>10,} pts/s ({e['upsert_s']} s), "
            f"then optimise (HNSW d64 + int8) {e['optimize_s']} s"
        )
        print(f"  query    local exact 64d {loc['exact_64_ms']} ms, 384d {loc['exact_384_ms']} ms")
        print(f"           local funnel 64:200→384 {loc['funnel_64:200_384_ms']} ms")
        for name in (
            "exact_64",
            "exact_384",
            "hnsw_64",
            "funnel_64:200_384",
            "funnel_exact_64:200_384",
        ):
            print(
                f"           engine {name:<24} {e[name + '_ms']:>8} ms  "
                f"recall@10 {e[name + '_recall10']}  planted@1 {e[name + '_planted1']}"
            )
        print(
            f"           tuned ef {e['hnsw_ef']} (recall@10 {e['ef_recall_vs_exact_funnel']} of "
            f"the exact funnel on {EF_QUERIES} rows, measured in {e['tune_s']} s): funnel "
            f"{e['funnel_tuned_ms']} ms, recall@10 {e['funnel_tuned_recall10']}, "
            f"planted@1 {e['funnel_tuned_planted1']}"
        )
        print(
            "  bytes/vector  "
            + ", ".join(f"d{t['dim']}: {t['bytes_per_vector']}" for t in r["tiers"])
        )
        print(
            f"           engine total {sum(t['bytes_per_vector'] for t in r['tiers'])} B laid out, "
            f"{e['disk_bytes_per_vector']} B on disk; local {loc['bytes_per_vector']} B"
        )
        print(f"  ratios   {r['ratios']}")
    print("load after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
