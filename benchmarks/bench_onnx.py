"""CPU embedding backends: torch against ONNX Runtime fp32 and int8, speed and nDCG@10.

Speed: the same chunk texts (the first `--speed-docs` documents of the first set) through
`Embedder.embed_documents` for each backend, and plain torch `encode(batch_size=32)`, in
interleaved rounds; the best round of each is reported, with the load average around the run.
"onnx-int8" is the backend (each text run alone, one per core, the feed-forward down-projections
left float32); "int8 batched" is the int8 backend as it was before (every MatMul int8, padded
batches, so vectors that depend on the batch).
Quality: each set's whole corpus and its queries embedded by each backend, exact full-dim
cosine search, nDCG@10 (the corpora are read in place). Batch independence: a few texts alone
against the same texts in a batch of short texts and in a batch of long ones (min cosine, and
whether every vector is the same bit for bit).

    python benchmarks/bench_onnx.py --beir ../shared/datasets/dbpedia-entity-5k \
        --beir ../shared/datasets/msmarco-trecdl-5k
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

BACKENDS = ("torch", "onnx", "onnx-int8")
BATCHED = "int8 batched"


def batch_independence(embedder, texts) -> tuple[float, bool]:
    probe, short = texts[:4], ["dns", "x", "mars moons", "ok then"]
    long = sorted(texts, key=len)[-8:]
    alone = np.stack([embedder.embed_documents([t])[0] for t in probe])
    mixed = [
        embedder.embed_documents([*short, *probe])[len(short) :],
        embedder.embed_documents([*long, *probe])[len(long) :],
    ]
    cosine = min(float((alone * m).sum(axis=1).min()) for m in mixed)
    return cosine, all(np.array_equal(alone, m) for m in mixed)


def ndcg_at_10(embedder, data) -> tuple[float, float]:
    from mrl_tui.core.evaluation.metrics import evaluate

    started = time.perf_counter()
    docs = embedder.embed_documents(data.doc_texts)
    seconds = time.perf_counter() - started
    qids = list(data.queries)
    queries = embedder.embed_queries([data.queries[q] for q in qids])
    top = np.argsort(-(queries @ docs.T), axis=1)[:, :100]
    rankings = {q: [data.doc_ids[i] for i in row] for q, row in zip(qids, top, strict=True)}
    return evaluate(rankings, data.qrels).ndcg, len(docs) / seconds


def batched_int8(embedder, folder: Path):
    """The int8 backend as it was before: every MatMul quantised, run on padded batches."""
    import copy

    from mrl_tui.core.embedding import onnx_embed

    path = folder / "model_int8_all_batched.onnx"
    onnx_embed._quantize(embedder._onnx.path.parent / "model.onnx", path, keep_float=False)
    other = copy.copy(embedder)
    other._onnx = onnx_embed.OnnxEncoder(embedder.model, path)
    return other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", type=Path, action="append", required=True)
    parser.add_argument("--speed-docs", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-quality", action="store_true", help="speed only")
    parser.add_argument(
        "--quality-backends",
        default=",".join((*BACKENDS, BATCHED)),
        help="which embedders the nDCG@10 part runs (comma-separated)",
    )
    args = parser.parse_args()

    from mrl_tui.core.embedding.embed import Embedder
    from mrl_tui.core.evaluation.beir import load_beir

    sets = [load_beir(folder) for folder in args.beir]
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as cache:
        embedders = {b: Embedder(device="cpu", backend=b, cache_root=Path(cache)) for b in BACKENDS}
        embedders[BATCHED] = batched_int8(embedders["onnx-int8"], Path(cache))
        texts = sets[0].doc_texts[: args.speed_docs]
        for embedder in embedders.values():
            embedder.embed_documents(texts[:16])  # warm up
        plain = embedders["torch"].model
        best = {name: float("inf") for name in ("plain torch encode", *embedders)}
        vectors: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            started = time.perf_counter()
            plain.encode(texts, batch_size=32, show_progress_bar=False)
            best["plain torch encode"] = min(
                best["plain torch encode"], time.perf_counter() - started
            )
            for name, embedder in embedders.items():
                started = time.perf_counter()
                vectors[name] = embedder.embed_documents(texts)
                best[name] = min(best[name], time.perf_counter() - started)
        print(f"speed, {len(texts)} chunks of {sets[0].name}, best of {args.rounds} interleaved:")
        base = best["plain torch encode"]
        for name, seconds in best.items():
            rate = len(texts) / seconds
            print(f"  {name:>18}: {rate:7.1f} chunks/s  ({base / seconds:.2f}x plain encode)")
        print(f"load average after speed: {os.getloadavg()}")
        print("cosine to the torch backend's vector, per chunk:")
        for name, rows in vectors.items():
            cosines = (rows * vectors["torch"]).sum(axis=1)
            print(f"  {name:>18}: min {cosines.min():.4f}, mean {cosines.mean():.4f}")
        print("batch independence (a text alone vs in a batch of short / long texts):")
        for name, embedder in embedders.items():
            cosine, same = batch_independence(embedder, sets[0].doc_texts[:200])
            print(f"  {name:>18}: min cosine {cosine:.6f}, bit-identical {same}")
        if args.no_quality:
            return
        for data in sets:
            for name, embedder in embedders.items():
                if name not in args.quality_backends.split(","):
                    continue
                ndcg, rate = ndcg_at_10(embedder, data)
                print(f"  {data.name:>22} {name:>10}: nDCG@10 {ndcg:.4f}  ({rate:.1f} docs/s)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
