"""`mrl-tui train` on a BEIR set's corpus, then the set's judged queries at each prefix dimension.

    python benchmarks/bench_train.py --max-steps 100                    # both shared sets
    python benchmarks/bench_train.py --sets ../shared/datasets/dbpedia-entity-5k --epochs 1

Training reads ``corpus.jsonl`` only (`train --beir`); the queries and qrels are read afterwards,
for the evaluation alone. The columns are the base model's vectors truncated as they are (naive),
under PCA and under the adaptor, and the trained model's own prefixes (native MRL); every cell is
nDCG@10 / recall@100 from `core.evaluation.bench`. The sets are read in place, never copied; the
model and the embeddings go to the cache (`--cache-dir`, else ``$MRL_TUI_CACHE_DIR`` or the
platform cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SETS = [
    REPO.parent / "shared" / "datasets" / "dbpedia-entity-5k",
    REPO.parent / "shared" / "datasets" / "msmarco-trecdl-5k",
]
DIMS = [16, 32, 64, 128]
COLUMNS = {"naive": "base naive", "pca": "base PCA", "adaptor": "base adaptor"}
TRAINED = "trained native"


def head_only(base, mine) -> np.ndarray | None:
    """The trained model's head as a (D, D) matrix when its encoder is the base's bit for bit
    (the head alone trained): its vectors are then the base's through that head."""
    import torch
    from sentence_transformers.base.modules.dense import Dense

    theirs, ours = base.model[0].state_dict(), mine.model[0].state_dict()
    if theirs.keys() != ours.keys() or not all(torch.equal(theirs[k], ours[k]) for k in theirs):
        return None
    heads = [m for m in mine.model if isinstance(m, Dense)]
    if len(heads) != 1 or heads[0].linear.bias is not None:
        return None
    return heads[0].linear.weight.detach().cpu().numpy().astype(np.float32)


def trained_set(folder, data, base, mine, raw, args):
    """The trained model's eval set: a head-only model's vectors are the base's (cached) through
    its head, checked against the model itself on a sample (no 5k re-embedding per run); any
    other model embeds the set."""
    from dataclasses import replace

    from mrl_tui.core.evaluation.sets import beir_eval_set
    from mrl_tui.core.search.index import NestedIndex

    weight = None if args.embed_trained else head_only(base, mine)
    if weight is None:
        return beir_eval_set(folder, data, mine, None, args.cache_dir, transform="auto"), "embedded"
    sample = data.doc_texts[:: max(1, len(data.doc_texts) // 64)][:64]
    rows = list(range(0, len(data.doc_texts), max(1, len(data.doc_texts) // 64)))[:64]
    through = raw.index.vectors()[rows] @ weight.T
    own = mine.embed_documents(sample)
    gap = float(np.abs(through - own).max())
    if gap > 1e-4:
        raise SystemExit(f"head-only shortcut: vectors differ from the model's own by {gap:.2e}")

    def head(x):
        return None if x is None or len(x) == 0 else (x @ weight.T).astype(np.float32)

    es = replace(
        raw,
        model=mine.name,
        transform="native MRL",
        index=NestedIndex(head(raw.index.vectors()), device=raw.index.device),
        query_vectors=head(raw.query_vectors),
        pseudo_vectors=head(raw.pseudo_vectors),
        route_vectors=head(raw.route_vectors),
        codes={},
    )
    return es, f"base vectors through the head (max |gap| {gap:.1e} on 64 documents)"


def bench_set(folder: Path, args: argparse.Namespace) -> dict:
    from mrl_tui.core.embedding.embed import Embedder
    from mrl_tui.core.evaluation.beir import load_beir
    from mrl_tui.core.evaluation.embeddings_cache import beir_cache_dir
    from mrl_tui.core.evaluation.measure import run_compare
    from mrl_tui.core.evaluation.sets import beir_eval_set, retransformed
    from mrl_tui.core.training.train import TrainSettings, train

    settings = TrainSettings(
        max_steps=args.max_steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        evaluations=args.evaluations,
        distill=args.distill,
        rank_distill=args.rank_distill,
        rank_passages=args.rank_passages,
        **({"rank_temperature": args.rank_temperature} if args.rank_temperature else {}),
        **({"rank_negatives": args.rank_negatives} if args.rank_negatives is not None else {}),
        **({"learning_rate": args.learning_rate} if args.learning_rate else {}),
        **({"head_share": args.head_share} if args.head_share is not None else {}),
        **({"head_learning_rate": args.head_learning_rate} if args.head_learning_rate else {}),
        encoder_steps=args.encoder_steps,
        encoder_layers=args.encoder_layers or None,
        encoder_anchor=args.encoder_anchor,
        encoder_learning_rate=args.encoder_lr,
        encoder_negatives=args.encoder_negatives,
        encoder_passages=args.encoder_passages,
        encoder_patience=args.encoder_patience,
        encoder_full_slack=args.encoder_full_slack,
    )
    load_before = os.getloadavg()
    last = [""]

    def phases(progress) -> None:
        """One stderr line per phase change (training can run for many minutes)."""
        if progress.phase != last[0]:
            last[0] = progress.phase
            print(
                f"  [{progress.elapsed_s:.0f} s] {progress.phase} step {progress.step}/"
                f"{progress.total} best {progress.best}",
                file=sys.stderr,
                flush=True,
            )

    result = train(
        folder, beir=True, device=args.device, settings=settings, cache_root=args.cache_dir,
        force=args.force, on_progress=phases,
    )  # fmt: skip
    if result.model_path is None:
        raise SystemExit("training stopped before its first validation; nothing to measure")
    record = result.provenance
    load_after = os.getloadavg()

    data = load_beir(folder)  # the judgements, for the evaluation only
    started = time.perf_counter()
    base = Embedder(device=args.device, backend="torch")  # as the trained model runs
    raw = beir_eval_set(folder, data, base, None, args.cache_dir, transform="naive")
    directory = beir_cache_dir(folder, data.name, base.name, args.cache_dir)
    sets = {label: retransformed(raw, name, False, directory) for name, label in COLUMNS.items()}
    mine = Embedder(str(result.model_path), device=args.device, backend="torch")
    sets[TRAINED], how = trained_set(folder, data, base, mine, raw, args)
    report = run_compare(sets, TRAINED, DIMS, k=10).to_dict()
    compared = report["compare"]["rows"]
    rows = [{"dim": r["dim"], **{name: r[name] for name in sets}} for r in compared]
    base_full = rows[-1][COLUMNS["naive"]]["ndcg10"]
    return {
        "set": data.name,
        "docs": report["docs"],
        "queries": report["queries"],
        "model_path": str(result.model_path),
        "up_to_date": result.up_to_date,
        "train": {
            key: record[key]
            for key in (
                "steps",
                "steps_run",
                "batch_size",
                "max_seq_length",
                "learning_rate",
                "head_learning_rate",
                "head_only_steps",
                "loss",
                "train_seconds",
                "validation_seconds",
                "pairs_per_second",
                "device",
                "precision",
                "stop_reason",
                "distill",
                "distill_docs",
                "rank_distill",
                "encode_backend",
                "encoded_texts",
                "encoder_stage",
            )
            if key in record
        },
        "pairs": record["pairs"],
        "validation": {
            "base": record["validation"]["base"]["mean_ndcg10"],
            "start": record["validation"].get("base_pca", record["validation"]["base"])[
                "mean_ndcg10"
            ],
            "best": record["validation"]["best"]["mean_ndcg10"],
        },
        "load_average": {"before": load_before, "after_training": load_after},
        "eval_seconds": round(time.perf_counter() - started, 1),
        "trained_vectors": how,
        "timings": record.get("timings", {}),
        "rows": rows,
        "targets": {
            "trained_32_of_base_full": round(
                next(r for r in rows if r["dim"] == 32)[TRAINED]["ndcg10"] / base_full, 4
            ),
            "trained_full_minus_base_full": round(rows[-1][TRAINED]["ndcg10"] - base_full, 4),
        },
    }


def print_set(out: dict) -> None:
    t, load = out["train"], out["load_average"]
    print(f"\n{out['set']}: {out['docs']} docs, {out['queries']} judged queries")
    print(
        f"trained on {out['pairs']['train']} corpus pairs: {t['steps_run']} steps of "
        f"{t['batch_size']} at {t['max_seq_length']} tokens ({t['device']}, {t['precision']}), "
        f"{t['loss']}, lr {t['learning_rate']:g}"
        + (
            f", head lr {t['head_learning_rate']:g} ({t['head_only_steps']} steps head only)"
            if "head_learning_rate" in t
            else ""
        )
        + f"; best step {t['steps']}; {t['train_seconds']:.0f} s ({t['validation_seconds']:.0f} s "
        f"validating), {t['pairs_per_second']:.1f} pairs/s; load average "
        f"{load['before'][0]:.1f} before, {load['after_training'][0]:.1f} after"
    )
    print(
        f"validation (held-out pseudo-queries, mean nDCG@10 over the dims): base "
        f"{out['validation']['base']:.4f}, start {out['validation']['start']:.4f}, best "
        f"{out['validation']['best']:.4f}"
    )
    names = list(out["rows"][0])[1:]
    print("| dim | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for row in out["rows"]:
        cells = [f"{row[n]['ndcg10']:.4f} / {row[n]['recall100']:.3f}" for n in names]
        print(f"| {row['dim']} | " + " | ".join(cells) + " |")
    stage = t.get("encoder_stage")
    if stage:
        print(
            f"encoder stage: {stage['steps_run']} of {stage['planned_steps']} steps, best step "
            f"{stage['steps']}, top {stage['layers']} layers ({stage['trainable_params']} params), "
            f"lr {stage['learning_rate']:g}, anchor {stage['anchor']:g}, "
            f"{stage['train_seconds']:.0f} s training + {stage['validation_seconds']:.0f} s "
            f"validating, {stage['stop_reason']}"
        )
        for h in stage["history"]:
            print(
                f"  held-out step {h['step']}: mean {h['mean_ndcg10']:.4f}, "
                f"full {h['full_ndcg10']:.4f}, by dim {h['ndcg10']}"
            )
    print(f"timings (s): {out['timings']}; trained vectors: {out['trained_vectors']}")
    targets = out["targets"]
    print(
        f"trained 32d keeps {100 * targets['trained_32_of_base_full']:.1f} % of the base model's "
        f"full nDCG@10; trained full − base full = {targets['trained_full_minus_base_full']:+.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=Path, nargs="+", default=DEFAULT_SETS)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--max-steps", type=int)
    length.add_argument("--epochs", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--evaluations", type=int, default=5, help="validations during training")
    parser.add_argument(
        "--learning-rate", type=float, help="default: mrl_tui.core.training.train's"
    )
    parser.add_argument(
        "--distill",
        type=float,
        default=0.0,
        help="weight of a term keeping full-dim passage vectors close to the starting model's",
    )
    parser.add_argument(
        "--head-share",
        type=float,
        help="share of the steps that train the PCA head alone, encoder frozen (1: head only)",
    )
    parser.add_argument("--head-learning-rate", type=float, help="the PCA head's learning rate")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--force", action="store_true", help="train again even if up to date")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--rank-distill", type=float, default=0.0, help="weight of the ranking distillation"
    )
    parser.add_argument("--rank-temperature", type=float)
    parser.add_argument("--rank-negatives", type=int)
    parser.add_argument("--rank-passages", action="store_true")
    parser.add_argument(
        "--encoder-steps", type=int, default=0, help="steps of the encoder stage after the head"
    )
    parser.add_argument(
        "--encoder-layers", type=int, default=2, help="top layers the stage trains (0: all)"
    )
    parser.add_argument("--encoder-anchor", type=float, default=20.0)
    parser.add_argument("--encoder-lr", type=float, default=5e-5)
    parser.add_argument("--encoder-negatives", type=int, default=16)
    parser.add_argument("--encoder-passages", action="store_true")
    parser.add_argument("--encoder-patience", type=int, help="default: the head's (2)")
    parser.add_argument("--encoder-full-slack", type=float, default=0.0)
    parser.add_argument(
        "--vectors", type=Path, help="keep the encoded training texts here between runs"
    )
    parser.add_argument(
        "--embed-trained", action="store_true", help="embed the set with a head-only model too"
    )
    args = parser.parse_args()
    if args.vectors:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_head_objectives import remembered_encoding

        args.vectors.mkdir(parents=True, exist_ok=True)
        remembered_encoding(args.vectors)
    results = []
    for folder in args.sets:
        if not (folder / "corpus.jsonl").is_file():
            print(f"skipping {folder}: not there")
            continue
        results.append(bench_set(folder, args))
        print_set(results[-1])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
