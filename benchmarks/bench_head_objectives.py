"""Label-free objectives for the orthogonal head (`train`'s default), compared on the held-out
pseudo-queries only: never on a BEIR set's judged queries or qrels (those are for
`bench_train.py`, once the settings are chosen here).

    python benchmarks/bench_head_objectives.py                     # both shared sets, the grid
    python benchmarks/bench_head_objectives.py --configs mnrl kl-t05 --sets ../shared/datasets/x

Each run is a real `train --beir` (`--force`, into a temporary cache that is removed after), but
the encoded training texts are kept between runs (``--vectors``): the encoder is frozen, so every
configuration trains on the same vectors and the grid costs one encoding per set.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SETS = [
    REPO.parent / "shared" / "datasets" / "dbpedia-entity-5k",
    REPO.parent / "shared" / "datasets" / "msmarco-trecdl-5k",
]
CONFIGS: dict[str, dict] = {
    "mnrl": {},
    "mnrl-e3": {"epochs": 3},
    "mnrl-e6": {"epochs": 6},
    "kl-t02": {"rank_distill": 1.0, "rank_temperature": 0.02},
    "kl-t05": {"rank_distill": 1.0, "rank_temperature": 0.05},
    "kl-t10": {"rank_distill": 1.0, "rank_temperature": 0.1},
    "kl-t05-n128": {"rank_distill": 1.0, "rank_temperature": 0.05, "rank_negatives": 128},
    "kl-t05-pq": {"rank_distill": 1.0, "rank_temperature": 0.05, "rank_passages": True},
    "kl-t05-e3": {"rank_distill": 1.0, "rank_temperature": 0.05, "epochs": 3},
    "mix-t05": {"rank_distill": 0.5, "rank_temperature": 0.05},
    "mix-t05-e3": {"rank_distill": 0.5, "rank_temperature": 0.05, "epochs": 3},
}


def remembered_encoding(store: Path):
    """`head.encode_texts`, each group's vectors kept in `store` by its prompt, length and texts."""
    from mrl_tui.core.training import head

    real = head.encode_texts

    def encode_texts(encoder, embedder, groups, on_progress, should_stop):
        out: list[np.ndarray | None] = []
        missing = []
        for i, (prompt, texts) in enumerate(groups):
            key = hashlib.sha256(
                f"{embedder.name}|{embedder.model.max_seq_length}|{prompt}|".encode()
                + "\0".join(texts).encode()
            ).hexdigest()[:20]
            path = store / f"{key}.npy"
            out.append(np.load(path) if path.is_file() else None)
            if out[-1] is None:
                missing.append((i, path))
        if missing:
            made = real(
                encoder, embedder, [groups[i] for i, _ in missing], on_progress, should_stop
            )
            for (i, path), vectors in zip(missing, made, strict=True):
                np.save(path, vectors)
                out[i] = vectors
        return out

    head.encode_texts = encode_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=Path, nargs="+", default=DEFAULT_SETS)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--vectors", type=Path, default=Path(tempfile.gettempdir()) / "mrl-head")
    parser.add_argument("--cache-dir", type=Path, help="where the ONNX export is kept")
    parser.add_argument("--threads", type=int, help="torch threads (1 on a loaded machine)")
    args = parser.parse_args()

    from mrl_tui.core.cache.store import default_cache_root
    from mrl_tui.core.training import head
    from mrl_tui.core.training.train import TrainSettings, train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    head.EXPORT_ROOT = args.cache_dir or default_cache_root()  # one export, not one per run
    args.vectors.mkdir(parents=True, exist_ok=True)
    remembered_encoding(args.vectors)
    for folder in args.sets:
        print(f"\n{folder.name} (held-out pseudo-queries; mean nDCG@10 over dims, then per dim)")
        print("| config | steps run / best | mean | 32 | 64 | 128 | 256 | 384 | head s | load |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in args.configs:
            cache = Path(tempfile.mkdtemp(prefix="mrl-head-"))
            settings = TrainSettings(max_seq_length=args.max_seq_length, **CONFIGS[name])
            try:
                result = train(folder, beir=True, device="cpu", settings=settings, cache_root=cache)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            record = result.provenance
            best = record["validation"]["best"]
            cells = " | ".join(f"{best['dims'][d]['ndcg10']:.4f}" for d in best["dims"])
            if name == args.configs[0]:
                start = record["validation"]["base_pca"]
                pca = " | ".join(f"{start['dims'][d]['ndcg10']:.4f}" for d in start["dims"])
                print(f"| (PCA start) | 0 | {start['mean_ndcg10']:.4f} | {pca} | | |")
            print(
                f"| {name} | {record['steps_run']} / {record['steps']} | "
                f"{best['mean_ndcg10']:.4f} | {cells} | {record['timings']['training']:.0f} | "
                f"{os.getloadavg()[0]:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
