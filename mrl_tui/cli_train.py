"""`mrl-tui train`: the command's shell over `core.training.train` (progress bar, Ctrl-C, output).

The first Ctrl-C asks training to stop after the current step and keep its best checkpoint so far
(marked partial); a second one aborts at once, which keeps nothing new.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mrl_tui.core.errors import InputError
from mrl_tui.core.training.trained import steps_phrase, when_trained

PHASES = {
    "restarting": "restarting",
    "loading": "loading model",
    "pairs": "cutting pairs",
    "encoding": "encoding texts",
    "validating": "validating",
    "training": "training",
    "encoder": "training the encoder",
    "saving": "saving",
}
RATE_UNITS = {"encoding": "texts", "training": "steps", "encoder": "steps"}
"""Phases whose bar shows a rate, and what it counts."""


def cmd_train(args: argparse.Namespace) -> int:
    from mrl_tui.cli import resolve_trained
    from mrl_tui.core.training.train import TrainSettings, parse_dims, train

    if (args.path is None) == (args.beir is None):
        raise InputError("train needs either a folder or --beir DIR")
    source = args.beir or args.path
    settings = TrainSettings(
        max_steps=args.max_steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        **({"dims": parse_dims(args.dims)} if args.dims else {}),
        **({"head_share": args.head_share} if args.head_share is not None else {}),
        encoder_steps=args.encoder_steps or 0,
    )
    resolve_trained(args, source)
    if args.embed_backend not in ("torch", "auto"):
        raise InputError("mrl-tui train trains on torch; drop --embed-backend")
    with _stop_on_ctrl_c() as stop, _progress() as show:
        try:
            result = train(
                source,
                beir=args.beir is not None,
                model=args.model,
                device=args.device,
                settings=settings,
                cache_root=args.cache_dir,
                force=args.force,
                trust_remote_code=args.trust_remote_code,
                on_progress=show,
                should_stop=stop,
            )
        except KeyboardInterrupt:
            print("mrl-tui: training aborted; nothing new was saved", file=sys.stderr)
            return 130
    record = result.provenance
    stopped = record.get("stop_reason") == "stopped" and not result.up_to_date
    if args.json:
        print(json.dumps(summary(result), indent=2))
    else:
        _print(result)
    return 130 if stopped else 0


def summary(result: Any) -> dict[str, Any]:
    """The `--json` object."""
    record = result.provenance
    validation = record.get("validation", {})
    return {
        "model_path": str(result.model_path) if result.model_path else None,
        "up_to_date": result.up_to_date,
        "base_model": record["base_model"],
        "source": record["source"],
        "dims": record["dims"],
        "pairs": record["pairs"]["train"],
        "validation_queries": record["pairs"]["validation"],
        "passages": record["passages"],
        "steps": record["steps"],
        "steps_run": record["steps_run"],
        "batch_size": record["batch_size"],
        "seconds": record["seconds"],
        "train_seconds": record["train_seconds"],
        "validation_seconds": record["validation_seconds"],
        "pairs_per_second": record["pairs_per_second"],
        "device": record["device"],
        "precision": record["precision"],
        "partial": record["partial"],
        "stop_reason": record["stop_reason"],
        "restarted_after_partial": record.get("restarted_after", {}).get("model_path"),
        "validation": {"base": validation.get("base"), "best": validation.get("best")},
        **(
            {"encoder_stage": _stage_summary(record["encoder_stage"])}
            if "encoder_stage" in record
            else {}
        ),
    }


STAGE_FIELDS = ("steps", "steps_run", "planned_steps", "layers", "train_seconds", "stop_reason")


def _stage_summary(stage: dict[str, Any]) -> dict[str, Any]:
    """The encoder stage's figures in `--json` (its per-validation history stays in the model's
    `mrl_tui_training.json`)."""
    return {key: stage[key] for key in STAGE_FIELDS}


def _print(result: Any) -> None:
    record = result.provenance
    if result.up_to_date:
        print(
            f"up to date: {result.model_path} was trained on {record['source']} "
            f"({when_trained(record)}, {steps_phrase(record)}); --force trains again"
        )
        return
    if result.model_path is None:
        kept = ""
        if "restarted_after" in record:
            kept = f"; the last partial model is kept: {record['restarted_after']['model_path']}"
        print(f"stopped before the first validation: nothing saved{kept}")
        return
    validation = record["validation"]
    base, best = validation["base"], validation["best"]
    dims = "/".join(str(d) for d in record["dims"])
    early = ", stopped early: kept its best checkpoint, marked partial" if record["partial"] else ""
    encoded = ""
    if "encoded_texts" in record:  # the head alone, on vectors encoded once
        seconds = record.get("timings", {}).get("encoding", 0.0)
        encoded = f"encoded {record['encoded_texts']} texts once in {seconds:.0f} s, then "
    print(
        f"trained {record['base_model']} on {record['pairs']['train']} pairs: {encoded}"
        f"{record['steps_run']} steps in {record['train_seconds']:.0f} s "
        f"({record['validation_seconds']:.0f} s of it validating; "
        f"{record['pairs_per_second']:.1f} pairs/s{' with the encoding' if encoded else ''}), "
        f"best at step {record['steps']}{early}"
    )
    per_dim = ", ".join(
        f"{d} {base['dims'][d]['ndcg10']:.3f}→{best['dims'][d]['ndcg10']:.3f}" for d in best["dims"]
    )
    start = ""
    if "base_pca" in validation:
        pca = validation["base_pca"]["mean_ndcg10"]
        start = f" (training started from its PCA rotation: {pca:.3f})"
    print(
        f"validation nDCG@10 ({validation['queries']} held-out pseudo-queries), base naive → "
        f"trained: mean {base['mean_ndcg10']:.3f}→{best['mean_ndcg10']:.3f}{start}; {per_dim}"
    )
    if best["mean_ndcg10"] <= base["mean_ndcg10"]:
        print("note: no checkpoint beat the base model on the validation queries")
    stage = record.get("encoder_stage")
    if stage is not None:
        after = (
            f"kept its step {stage['steps']}"
            if stage["steps"]
            else "no step beat the head on the held-out pseudo-queries: the head's model is kept"
        )
        print(
            f"then {_layers(stage['layers'])}: {stage['steps_run']} of "
            f"{stage['planned_steps']} steps in {stage['train_seconds']:.0f} s, {after}"
        )
    print(f"native MRL at {dims}: {result.model_path}")
    if "restarted_after" in record:
        print(f"it replaces the partial model {record['restarted_after']['model_path']}")


def _layers(layers: int | str) -> str:
    if layers == "all":
        return "the whole encoder"
    return "the encoder's top layer" if layers == 1 else f"the encoder's top {layers} layers"


@contextmanager
def _stop_on_ctrl_c() -> Iterator[Callable[[], bool]]:
    """A stop flag the first Ctrl-C sets; the second raises KeyboardInterrupt as usual."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        print(
            "\nmrl-tui: stopping after this step; the best checkpoint so far is kept "
            "(Ctrl-C again aborts)",
            file=sys.stderr,
        )

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _progress() -> Iterator[Callable[[Any], None]]:
    """A rich bar on stderr: phase, steps, loss, steps/s, elapsed and ETA."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting", total=None, stats="")
        first: dict[str, tuple[int, float]] = {}  # each phase's first report: its rate's start

        def show(p: Any) -> None:
            if p.note:
                bar.console.print(
                    f"mrl-tui: {p.note}", markup=False, highlight=False, soft_wrap=True
                )
            stats = []
            unit = RATE_UNITS.get(p.phase)
            if unit and p.step:
                step0, t0 = first.setdefault(p.phase, (p.step, time.perf_counter()))
                elapsed = time.perf_counter() - t0
                if p.step > step0 and elapsed > 0:
                    stats.append(f"{(p.step - step0) / elapsed:.2f} {unit}/s")
            if p.loss is not None:
                stats.append(f"loss {p.loss:.3f}")
            if p.best is not None:
                stats.append(f"val {p.best:.3f}")
            bar.update(
                task,
                description=PHASES.get(p.phase, p.phase),
                total=p.total or None,
                completed=p.step,
                stats="  ".join(stats),
            )

        yield show
