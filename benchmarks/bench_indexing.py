"""Indexing throughput: mrl-tui's indexer against a plain `SentenceTransformer.encode`.

Both embed the same chunks in the same run. The indexer's figure includes everything it does
(walking, reading, chunking with the tokenizer, embedding, writing SQLite); the baseline is only
`model.encode(texts, batch_size=32)` on the finished chunk texts.

    python benchmarks/bench_indexing.py                      # the notes sample corpus
    python benchmarks/bench_indexing.py --beir ../shared/datasets/dbpedia-entity-5k --limit 1500

`--beir` writes each document of a BEIR corpus as a file into a temporary folder (outside the repo).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def beir_folder(beir: Path, limit: int, into: Path) -> Path:
    with open(beir / "corpus.jsonl", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= limit:
                break
            doc = json.loads(line)
            text = (doc.get("title", "") + "\n\n" + doc.get("text", "")).strip()
            (into / f"doc{i:05d}.txt").write_text(text + "\n", encoding="utf-8")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=REPO / "sample_corpora" / "notes")
    parser.add_argument("--beir", type=Path, help="a BEIR folder to use instead of --folder")
    parser.add_argument("--limit", type=int, default=1500, help="documents taken from --beir")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from mrl_tui.core.cache.indexer import embedding_text
    from mrl_tui.core.embedding.embed import Embedder
    from mrl_tui.core.library import Library

    embedder = Embedder(device=args.device, backend="torch")  # the README's figure: torch
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder
        if args.beir:
            (Path(tmp) / "docs").mkdir()
            folder = beir_folder(args.beir, args.limit, Path(tmp) / "docs")
        cache = Path(tmp) / "cache"
        library = Library(folder, embedder, cache_root=cache)
        embedder.embed_documents(["warm up the model"] * 4)

        started = time.perf_counter()
        report = library.update()
        indexer_s = time.perf_counter() - started
        ids, _ = library.store.load_vectors()
        texts = [embedding_text(c) for c in library.store.chunks(ids.tolist())]

        model = embedder._model  # the same loaded model, so only the calling code differs
        started = time.perf_counter()
        model.encode(texts, batch_size=32, show_progress_bar=False)
        plain_s = time.perf_counter() - started
        library.close()

    n = len(texts)
    tokens = sum(embedder.count_tokens(t) for t in texts) / max(n, 1)
    print(
        f"device {embedder.device}, {report.files_seen} files, {n} chunks, ~{tokens:.0f} tok/chunk"
    )
    print(
        f"indexer (walk+read+chunk+embed+store): {n / indexer_s:7.1f} chunks/s ({indexer_s:.1f} s)"
    )
    print(f"plain encode(batch_size=32):           {n / plain_s:7.1f} chunks/s ({plain_s:.1f} s)")
    print(f"ratio indexer / plain: {plain_s / indexer_s:.3f}")


if __name__ == "__main__":
    main()
