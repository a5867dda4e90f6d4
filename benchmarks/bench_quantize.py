"""int8 and binary codes with exact rescoring: how much of the exact top-10 survives, per dim.

    python benchmarks/bench_quantize.py

recall@10 here is overlap with the exact float32 top-10 at the same prefix dim (not relevance).
Sets: the two shared BEIR sets, from the MiniLM embeddings that `bench_pca.py` caches under
/tmp/mrl_tui_bench_cache (skipped when absent), and the notes sample corpus, indexed on the fly
with the bundled model. All vectors are PCA-rotated first, as the Library does for MiniLM.
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

import numpy as np

from mrl_tui.core.search.codes import bytes_per_vector, encode, rescored_search
from mrl_tui.core.search.index import NestedIndex
from mrl_tui.core.transforms.pca import fit_pca

REPO = Path(__file__).resolve().parents[1]
CACHE = Path("/tmp/mrl_tui_bench_cache")
SETS = ("dbpedia-entity-5k", "msmarco-trecdl-5k")
DIMS = (64, 128, 384)
RUNS = (("int8", 1), ("int8", 2), ("int8", 4), ("binary", 4), ("binary", 10), ("binary", 20))
K = 10


def cached_sets() -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for name in SETS:
        docs, queries = (CACHE / f"{name}-minilm-{kind}.npy" for kind in ("docs", "queries"))
        if docs.exists() and queries.exists():
            out.append((name, np.load(docs), np.load(queries)))
    return out


def notes_set() -> tuple[str, np.ndarray, np.ndarray]:
    from mrl_tui.core.embedding.choice import ModelChoice
    from mrl_tui.core.library import Library

    corpus = REPO / "sample_corpora" / "notes"
    with open(corpus / "queries.tsv", newline="", encoding="utf-8") as fh:
        texts = [row[0] for row in list(csv.reader(fh, delimiter="\t"))[1:]]
    with tempfile.TemporaryDirectory() as cache:
        library = Library.open(
            corpus,
            model_choice=ModelChoice(device="cpu", embed_backend="torch"),
            cache_root=Path(cache),
        )
        library.update()
        _, docs = library.store.load_vectors()
        queries = np.stack([library.embedder.embed_query(t) for t in texts])
        library.close()
    return "notes", docs, queries


def measure(name: str, docs: np.ndarray, queries: np.ndarray) -> None:
    pca = fit_pca(docs)
    x, qs = pca.apply(docs), pca.apply(queries)
    index = NestedIndex(x)
    codes = {p: encode(x, p) for p in ("int8", "binary")}
    print(f"\n{name}: {len(x)} vectors, {len(qs)} queries (recall@{K} vs exact float32)")
    print(f"{'dim':>5} {'precision':>9} {'rescore':>7} {'B/vec':>6} {'recall':>7} {'ms/query':>8}")
    for dim in DIMS:
        exact = [set(index.search(q, dim, K).ids) for q in qs]
        started = time.perf_counter()
        for q in qs:
            index.search(q, dim, K)
        ms = (time.perf_counter() - started) * 1000 / len(qs)
        row = f"{dim:>5} {'float32':>9} {'-':>7} {bytes_per_vector(dim, 'float32'):>6}"
        print(f"{row} {1.0:>7.3f} {ms:>8.2f}")
        for precision, rescore in RUNS:
            codes[precision].candidates(qs[0], dim, K)  # first use at a dim caches int8 norms
            started = time.perf_counter()
            found = [rescored_search(index, codes[precision], q, dim, K, rescore) for q in qs]
            ms = (time.perf_counter() - started) * 1000 / len(qs)
            recall = np.mean([len(e & set(f.ids)) / K for e, f in zip(exact, found, strict=True)])
            row = f"{dim:>5} {precision:>9} {rescore:>7} {bytes_per_vector(dim, precision):>6}"
            print(f"{row} {recall:>7.3f} {ms:>8.2f}")


def main() -> None:
    for name, docs, queries in [*cached_sets(), notes_set()]:
        measure(name, docs, queries)


if __name__ == "__main__":
    main()
