"""Training the orthogonal head alone on cached vectors (`train`'s default: the encoder frozen).

With the encoder frozen for the whole run, every training step would run it forward on the same
texts again; instead each distinct text is encoded once (token-sorted batches; ONNX Runtime fp32
for the bundled model on a CPU, about 1.9x torch's speed, with torch's vectors to ~1e-6), and the
head trains on those pooled vectors in plain torch. The vectors are the encoder's in eval mode:
the trainer's steps ran it in train mode, dropout included, so each step saw noised vectors.

The loss mirrors what sentence-transformers computes for
``MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), dims)`` with their defaults
(``sentence_transformer/losses/matryoshka.py``, ``multiple_negatives_ranking.py``): for each dim,
the prefixes are L2-normalised, cosine × scale 20 between every anchor and every positive of the
batch, cross-entropy against each anchor's own positive; the dims' losses summed with weight 1.
Batches hold no text twice (their ``NoDuplicatesBatchSampler``'s rule, anchors and positives
alike); AdamW, a linear warm-up over the first 10 % of the steps then linear decay, gradient norm
clipped at 1 (the Trainer's defaults).

`rank_kl` is a label-free alternative for the small prefixes: the base model's full-dim score
distribution over a candidate set (the batch's positives and random corpus passages) is the
teacher, each prefix's distribution the student (Kullback-Leibler divergence at temperature τ).
The full dimension is rotation-invariant, so the teacher needs no labels and never moves.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from mrl_tui.core.embedding.embed import Embedder

MNRL_SCALE = 20.0
"""MultipleNegativesRankingLoss's default scale (temperature 0.05)."""
MAX_GRAD_NORM = 1.0
EXPORT_ROOT: Path | None = None
"""Where the ONNX export is kept (None: the run's cache root, where `auto`'s int8 export left
the fp32 file already; the tests point their many runs' fresh caches at one)."""
STOP_CHECK_TEXTS = 1024
"""While encoding, a stop request is asked for before each further this many texts (a corpus
smaller than this encodes without being asked: its steps ask, one question each)."""


class Stopped(Exception):
    """A stop request (or Ctrl-C) while the training texts were being encoded."""


@dataclass
class Encoder:
    encode: Callable[[list[str], str], np.ndarray]
    """(texts, prompt) → (N, D) float32 vectors, the model's output before any head."""
    backend: str
    """"onnx" (ONNX Runtime fp32) or "torch"."""


def vector_encoder(embedder: Embedder, bundled: bool, cache_root: Path | None) -> Encoder:
    """ONNX Runtime fp32 for the bundled model on a CPU when onnxruntime is installed (the
    export is cached, once per model); else, or if the export fails, the torch model itself.
    Both read the model's `max_seq_length` (set to the training length before this is made)."""
    from mrl_tui.core.embedding.onnx_embed import OnnxEncoder, exported_model, onnx_available

    model = embedder.model
    if bundled and embedder.device == "cpu" and onnx_available():
        from mrl_tui.core.cache.store import default_cache_root

        try:
            root = EXPORT_ROOT or cache_root or default_cache_root()
            path = exported_model(model, embedder.name, "onnx", root)
            onnx = OnnxEncoder(model, path, per_text=False)
            return Encoder(lambda texts, prompt: onnx.encode(texts, len(texts), prompt), "onnx")
        except Exception:  # any exporter failure: torch gives the same vectors
            pass

    def encode(texts: list[str], prompt: str) -> np.ndarray:
        vectors = model.encode(
            texts, prompt=prompt or None, batch_size=len(texts), show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    return Encoder(encode, "torch")


def encode_texts(
    encoder: Encoder,
    embedder: Embedder,
    groups: Sequence[tuple[str, Sequence[str]]],
    on_progress: Callable[[int, int], None],
    should_stop: Callable[[], bool] | None,
) -> list[np.ndarray]:
    """Each (prompt, texts) group's vectors, in the texts' order. Batches hold texts of similar
    token length, up to the embedder's token budget (as `Embedder.embed_documents`).
    `on_progress(done, total)` after each batch; raises `Stopped` on a stop request."""
    from mrl_tui.core.embedding.embed import MAX_BATCH, TOKEN_BUDGET

    model = embedder.model
    limit = int(model.max_seq_length or 512)
    budget = TOKEN_BUDGET.get(embedder.device, TOKEN_BUDGET["cpu"])
    total = sum(len(texts) for _, texts in groups)
    done, ask_at = 0, STOP_CHECK_TEXTS
    out = []
    for prompt, texts in groups:
        if not texts:
            out.append(np.zeros((0, embedder.full_dim), dtype=np.float32))
            continue
        ids = model.tokenizer([prompt + t for t in texts], truncation=False)["input_ids"]
        lengths = [min(len(row), limit) for row in ids]
        order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
        vectors = np.zeros((len(texts), embedder.full_dim), dtype=np.float32)
        start = 0
        while start < len(order):
            if done >= ask_at:
                ask_at += STOP_CHECK_TEXTS
                if should_stop is not None and should_stop():
                    raise Stopped
            size = max(1, min(MAX_BATCH, budget // max(1, lengths[order[start]])))
            batch = order[start : start + size]
            vectors[batch] = encoder.encode([texts[i] for i in batch], prompt)
            start += len(batch)
            done += len(batch)
            on_progress(done, total)
        out.append(vectors)
    return out


def no_duplicate_batches(
    keys: Sequence[tuple[str, str]], size: int, seed: int
) -> Iterator[list[int]]:
    """Endless batches of pair indices, epoch after epoch (epoch e shuffled with seed + e): a
    pair whose anchor or positive is already in the batch waits for a later one; the last batch
    of an epoch may be short. The rule of sentence-transformers' ``NoDuplicatesBatchSampler``."""
    epoch = 0
    while True:
        pending = deque(np.random.default_rng(seed + epoch).permutation(len(keys)).tolist())
        while pending:
            batch: list[int] = []
            seen: set[str] = set()
            skipped = []
            while pending and len(batch) < size:
                i = pending.popleft()
                if seen.isdisjoint(keys[i]):
                    batch.append(i)
                    seen.update(keys[i])
                else:
                    skipped.append(i)
            pending.extendleft(reversed(skipped))
            yield batch
        epoch += 1


def linear_schedule(step: int, total: int, warmup: int) -> float:
    """The learning rate's factor before optimizer step `step` (0-based): transformers' linear
    schedule with warm-up (0 at the first step, 1 after `warmup` steps, 0 at `total`)."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def matryoshka_mnrl(
    anchors: torch.Tensor, positives: torch.Tensor, dims: Sequence[int]
) -> torch.Tensor:
    """Σ over dims of MNRL on the prefixes (see the module's docstring)."""
    import torch
    import torch.nn.functional as F

    labels = torch.arange(len(anchors), device=anchors.device)
    loss = anchors.new_zeros(())
    for dim in dims:
        scores = MNRL_SCALE * _cosines(anchors[:, :dim], positives[:, :dim])
        loss = loss + F.cross_entropy(scores, labels)
    return loss


def rank_kl(
    queries_base: torch.Tensor,
    candidates_base: torch.Tensor,
    queries: torch.Tensor,
    candidates: torch.Tensor,
    dims: Sequence[int],
    temperature: float,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ over dims of KL(teacher ‖ student), averaged over the queries: the teacher is the
    softmax of the base's full-dim cosines to the candidates / τ, the student that of the
    rotated prefixes'. `exclude`: a (queries × candidates) mask of pairs left out of both (a
    passage asked as a query against itself)."""
    import torch.nn.functional as F

    def log_p(scores: torch.Tensor) -> torch.Tensor:
        scores = scores / temperature
        if exclude is not None:
            scores = scores.masked_fill(exclude, -1e4)  # exp() is 0 in both distributions
        return F.log_softmax(scores, dim=-1)

    teacher = log_p(_cosines(queries_base, candidates_base)).detach()
    loss = queries.new_zeros(())
    for dim in dims:
        student = log_p(_cosines(queries[:, :dim], candidates[:, :dim]))
        loss = loss + F.kl_div(student, teacher, log_target=True, reduction="batchmean")
    return loss


@dataclass
class Objective:
    """(1 − rank_distill) × Matryoshka MNRL + rank_distill × the ranking distillation."""

    dims: tuple[int, ...]
    rank_distill: float = 0.0
    temperature: float = 0.05
    negatives: int = 0
    """Random corpus passages added to each batch's candidates (the distillation's only)."""
    passages_as_queries: bool = False
    """The batch's positives are asked as queries too (the distillation's only)."""

    def __call__(
        self,
        weight: torch.Tensor,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        corpus: torch.Tensor,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        import torch

        a, p = anchors @ weight.T, positives @ weight.T
        loss = anchors.new_zeros(())
        if self.rank_distill < 1:
            loss = loss + (1 - self.rank_distill) * matryoshka_mnrl(a, p, self.dims)
        if self.rank_distill > 0:
            cand_base = positives
            if self.negatives and len(corpus):
                picked = rng.choice(
                    len(corpus), size=min(self.negatives, len(corpus)), replace=False
                )
                cand_base = torch.cat([positives, corpus[torch.from_numpy(picked)]])
            cand = cand_base @ weight.T
            term = rank_kl(anchors, cand_base, a, cand, self.dims, self.temperature)
            if self.passages_as_queries:
                own = torch.zeros(len(p), len(cand), dtype=torch.bool)
                own[torch.arange(len(p)), torch.arange(len(p))] = True
                term = term + rank_kl(
                    positives, cand_base, p, cand, self.dims, self.temperature, own
                )
            loss = loss + self.rank_distill * term
        return loss


def describe(objective: Objective) -> str:
    if objective.rank_distill <= 0:
        return "MatryoshkaLoss(MultipleNegativesRankingLoss)"
    kl = (
        f"rank-KL(τ={objective.temperature:g}, +{objective.negatives} corpus passages"
        + (", passages as queries" if objective.passages_as_queries else "")
        + ")"
    )
    if objective.rank_distill >= 1:
        return f"Matryoshka {kl}"
    return (
        f"{1 - objective.rank_distill:g} × MatryoshkaLoss(MultipleNegativesRankingLoss) + "
        f"{objective.rank_distill:g} × Matryoshka {kl}"
    )


def seconds_since(began: float) -> float:
    return round(time.perf_counter() - began, 1)


def as_tensor(x: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
