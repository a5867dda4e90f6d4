"""An optional encoder stage after the cached head (`TrainSettings.encoder_steps`, off by default).

Every rotation of the frozen encoder lands near PCA at small prefixes; only the encoder can change
what its first dims carry. Its teacher is the base model itself, whose vectors the head stage has
already encoded once: for each trained dim, the KL divergence from the base's full-dim score
distribution over each batch's candidates (its positives plus random training passages) to the
student's prefix distribution (`head.rank_kl`), plus an anchor term, 1 − cosine between the
student's full-dim vectors and the base's rotated by the trained head (fixed during this stage),
so that the full dimension stays where it was. No labels: the queries are the pairs'
pseudo-queries. Only the top `layers` transformer layers train (the backward pass stops there);
the model runs in eval mode (no dropout), so at step 0 the student is the teacher exactly.

The stage keeps the head stage's semantics: validations on the held-out pseudo-queries, the start
(the head's best) a candidate, patience, a stop request or Ctrl-C keeping the best so far. A
checkpoint must also keep the start's full-dim validation figure (`FULL_DIM_SLACK`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrl_tui.core.training import head as cached

FULL_DIM_SLACK = 0.0
"""A checkpoint whose held-out full-dim nDCG@10 is below the start's by more than this is
not kept."""


@dataclass(frozen=True)
class StageSettings:
    steps: int
    layers: int | None
    """Top transformer layers that train (None: all of them, embeddings included)."""
    anchor: float
    learning_rate: float
    temperature: float
    negatives: int
    passages_as_queries: bool
    batch_size: int
    evaluations: int
    patience: int
    seed: int
    full_slack: float | None = None
    """None: `FULL_DIM_SLACK`."""


@dataclass
class StageTexts:
    """The pairs' texts and the base's vectors for them (before the head), row for row."""

    queries: Sequence[str]
    positives: Sequence[str]
    corpus: Sequence[str]
    query_vectors: Any
    positive_vectors: Any
    corpus_vectors: Any
    prompts: tuple[str, str]


def trainable_layers(model: Any, layers: int | None) -> list[Any]:
    """Freeze the whole model, then unfreeze the transformer's top `layers` layers (or all of
    its weights); returns the parameters that train."""
    for p in model.parameters():
        p.requires_grad_(False)
    transformer = model[0].auto_model
    if layers is None:
        chosen = list(transformer.parameters())
    else:
        blocks = transformer.encoder.layer
        chosen = [
            p
            for block in blocks[len(blocks) - min(layers, len(blocks)) :]
            for p in block.parameters()
        ]
    for p in chosen:
        p.requires_grad_(True)
    return chosen


def run_stage(
    model: Any,
    head_index: int,
    dims: tuple[int, ...],
    stage: StageSettings,
    texts: StageTexts,
    start: dict[str, Any],
    validate: Callable[[Any], dict[str, Any]],
    tell: Callable[..., None],
    should_stop: Callable[[], bool] | None,
) -> dict[str, Any]:
    """Train the encoder from `start` (the head stage's best state and figures, loaded into
    `model` by the caller). Returns the state (best weights, step, figures, stop reason) and the
    stage's record."""
    import torch
    import torch.nn.functional as F

    linear = model[head_index].linear
    with torch.no_grad():
        weight = linear.weight.detach().to("cpu", torch.float32).clone()
    params = trainable_layers(model, stage.layers)
    model.eval()  # no dropout: the student starts as the teacher
    device = model.device
    query_prompt, document_prompt = texts.prompts

    def embed(prompt: str, batch: list[str]) -> Any:
        features = model.tokenize([prompt + t for t in batch])
        features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
        return model(features)["sentence_embedding"]

    def teacher(x: Any) -> Any:
        return F.normalize(x.to("cpu") @ weight.T, dim=-1).to(device)

    torch.manual_seed(stage.seed)
    optimizer = torch.optim.AdamW(params, lr=stage.learning_rate, weight_decay=0.0)
    keys = list(zip(texts.queries, texts.positives, strict=True))
    batches = cached.no_duplicate_batches(keys, stage.batch_size, stage.seed)
    rng = np.random.default_rng(stage.seed)
    total = stage.steps
    every = max(1, math.ceil(total / max(1, stage.evaluations)))
    warmup = math.ceil(0.1 * total)
    full = str(dims[-1])
    start_full = start["figures"]["dims"][full]["ndcg10"]
    floor = start_full - (FULL_DIM_SLACK if stage.full_slack is None else stage.full_slack)

    def snapshot() -> dict[str, Any]:
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    state: dict[str, Any] = {
        "best": start["best"], "best_step": 0, "figures": start["figures"], "stale": 0,
        "reason": "completed",
    }  # fmt: skip
    history: list[dict[str, Any]] = [
        {
            "step": 0,
            "mean_ndcg10": start["figures"]["mean_ndcg10"],
            "full_ndcg10": start_full,
            "ndcg10": {d: f["ndcg10"] for d, f in start["figures"]["dims"].items()},
        }
    ]
    spent, done, losses = 0.0, 0, {"kl": None, "anchor": None}
    began = time.perf_counter()
    try:
        for step in range(1, total + 1):
            ids = next(batches)
            picked = rng.choice(
                len(texts.corpus), size=min(stage.negatives, len(texts.corpus)), replace=False
            )
            q = embed(query_prompt, [texts.queries[i] for i in ids])
            d = embed(
                document_prompt,
                [texts.positives[i] for i in ids] + [texts.corpus[j] for j in picked],
            )
            tq = teacher(texts.query_vectors[ids])
            td = teacher(
                torch.cat(
                    [texts.positive_vectors[ids], texts.corpus_vectors[torch.from_numpy(picked)]]
                )
            )
            kl = cached.rank_kl(tq, td, q, d, dims, stage.temperature)
            if stage.passages_as_queries:
                own = torch.zeros(len(ids), len(td), dtype=torch.bool, device=device)
                own[torch.arange(len(ids)), torch.arange(len(ids))] = True
                kl = kl + cached.rank_kl(
                    td[: len(ids)], td, d[: len(ids)], d, dims, stage.temperature, own
                )
            drift = (
                1
                - torch.cat(
                    [(F.normalize(q, dim=-1) * tq).sum(-1), (F.normalize(d, dim=-1) * td).sum(-1)]
                ).mean()
            )
            loss = kl + stage.anchor * drift
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cached.MAX_GRAD_NORM)
            for group in optimizer.param_groups:
                group["lr"] = stage.learning_rate * cached.linear_schedule(step - 1, total, warmup)
            optimizer.step()
            done = step
            losses = {"kl": round(float(kl.detach()), 5), "anchor": round(float(drift.detach()), 7)}
            kept = state["figures"]["mean_ndcg10"]
            tell("encoder", step=step, total=total, loss=float(loss.detach()), best=kept)
            if should_stop is not None and should_stop():
                state["reason"] = "stopped"
                break
            if step % every and step < total:
                continue
            tell("validating", step=step, total=total, loss=float(loss.detach()), best=kept)
            t0 = time.perf_counter()
            with torch.no_grad():
                figures = validate(model)
            model.eval()
            spent += time.perf_counter() - t0
            at_full = figures["dims"][full]["ndcg10"]
            history.append(
                {
                    "step": step,
                    "mean_ndcg10": figures["mean_ndcg10"],
                    "full_ndcg10": at_full,
                    "ndcg10": {d: f["ndcg10"] for d, f in figures["dims"].items()},
                    **losses,
                }
            )
            if figures["mean_ndcg10"] > kept and at_full >= floor:
                state.update(best=snapshot(), best_step=step, figures=figures, stale=0)
            else:
                state["stale"] += 1
                if state["stale"] >= stage.patience:
                    state["reason"] = "no improvement"
                    break
    except KeyboardInterrupt:
        state["reason"] = "stopped"
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    seconds = time.perf_counter() - began
    record = {
        "objective": (
            f"Matryoshka rank-KL to the base's full dim (τ={stage.temperature:g}, "
            f"+{stage.negatives} corpus passages"
            + (", passages as queries" if stage.passages_as_queries else "")
            + f") + {stage.anchor:g} × (1 − cos) to the base's full-dim vectors through the head"
        ),
        "steps": state["best_step"],
        "steps_run": done,
        "planned_steps": total,
        "layers": stage.layers if stage.layers is not None else "all",
        "trainable_params": sum(p.numel() for p in params),
        "learning_rate": stage.learning_rate,
        "anchor": stage.anchor,
        "temperature": stage.temperature,
        "negatives": stage.negatives,
        "passages_as_queries": stage.passages_as_queries,
        "batch_size": stage.batch_size,
        "train_seconds": round(seconds - spent, 1),
        "validation_seconds": round(spent, 1),
        "stop_reason": state["reason"],
        "start": start["figures"],
        "best": state["figures"],
        "history": history,
        "last_losses": losses,
    }
    return {"state": state, "record": record}
