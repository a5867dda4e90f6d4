"""A learned Matryoshka adaptor: PCA rotation plus a small residual network, fitted per corpus.

After Yoon et al. (2024), "Matryoshka-Adaptor": frozen embeddings ``x`` are mapped to
``f(x) = y + W2·relu(W1·y + b1) + b2`` with ``y = x @ R`` the corpus' PCA rotation
(`transform.fit_pca`). The last layer starts at zero, so training starts exactly at PCA. It is
trained, unsupervised, so that every prefix of ``f(x)`` keeps the full-dimension similarity
structure of the model:

- *pairwise*: prefix cosines match full cosines over all pairs of a batch;
- *top-k*: for each row, a softmax over the batch at a low temperature, at the prefix, matches the
  one at full dimension (a listwise loss that mostly sees the near neighbours, because each batch
  is built from anchors and their full-dimension neighbours);
- *residual*: a small penalty on ``f(x) - y`` keeps the map close to the rotation.

Training stops at the best score on held-out rows used as pseudo-queries (their full-dimension
top-10 among the other rows are the targets), checked at the starting point too: if training
never beats PCA on that split, the adaptor is exactly PCA. The weights are plain arrays (an .npz,
no pickle) and `apply` is a numpy forward pass, so queries need no torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mrl_tui.core.errors import InputError
from mrl_tui.core.transform import fit_pca

PREFIX_DIMS = (16, 32, 64, 128)
"""Prefixes the losses are taken at (those below the full dim), and the full dim itself."""
HIDDEN = 256
MAX_ROWS = 20_000
"""Rows trained on; larger corpora are subsampled (seeded)."""
HELD_OUT = 0.1
"""Share of rows (at most 1,000) kept aside as pseudo-queries for the early stop."""
NEIGHBOURS = 8
ANCHORS = 96
"""A batch: this many anchors, each with its NEIGHBOURS nearest rows, plus as many random rows."""
TEMPERATURE = 0.05
STEPS = 400
CHECK_EVERY = 25
PATIENCE = 4
LEARNING_RATE = 2e-3
RESIDUAL_WEIGHT = 20.0
PAIRWISE_WEIGHT = 1.0

_ARRAYS = ("rotation", "w1", "b1", "w2", "b2")


@dataclass(frozen=True)
class FitReport:
    """How training went: the held-out score per check (index 0 is plain PCA), the mean training
    loss over each check's steps, and the time."""

    steps: int
    best_step: int
    scores: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"


@dataclass(frozen=True, eq=False)
class Adaptor:
    """``f(x) = y + relu(y @ w1 + b1) @ w2 + b2`` with ``y = x @ rotation``; float32 arrays."""

    rotation: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    name: str = "adaptor"
    report: FitReport | None = None

    @property
    def dim(self) -> int:
        return self.rotation.shape[0]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Map a vector ``(D,)`` or a batch ``(N, D)``; returns float32 of the same shape."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[-1] != self.dim:
            raise InputError(
                f"transform {self.name!r} expects vectors of dimension {self.dim}, "
                f"got shape {x.shape}"
            )
        y = x @ self.rotation
        hidden = np.maximum(y @ self.w1 + self.b1, 0)
        return np.ascontiguousarray(y + hidden @ self.w2 + self.b2, dtype=np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` (no pickle)."""
        return {name: getattr(self, name) for name in _ARRAYS}

    @classmethod
    def from_arrays(cls, name: str, arrays: dict[str, np.ndarray]) -> Adaptor:
        """Rebuild from ``to_arrays`` output (a dict or an ``NpzFile``); checks the shapes."""
        missing = [a for a in _ARRAYS if a not in arrays]
        if missing:
            raise InputError(f"transform {name!r}: missing arrays {missing}")
        parts = {a: np.ascontiguousarray(arrays[a], dtype=np.float32) for a in _ARRAYS}
        d = parts["rotation"].shape[0]
        h = parts["b1"].shape[0] if parts["b1"].ndim == 1 else -1
        expected = {"rotation": (d, d), "w1": (d, h), "b1": (h,), "w2": (h, d), "b2": (d,)}
        for a, shape in expected.items():
            if parts[a].shape != shape:
                raise InputError(f"transform {name!r}: {a} has shape {parts[a].shape}")
        return cls(**parts, name=name)


def choose_device() -> str:
    """CUDA, then Apple's MPS, then the CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def fit_adaptor(
    vectors: np.ndarray,
    *,
    seed: int = 0,
    steps: int = STEPS,
    hidden: int = HIDDEN,
    device: str | None = None,
    prefix_dims: tuple[int, ...] = PREFIX_DIMS,
) -> Adaptor:
    """Fit the adaptor on corpus vectors ``(N, D)``; deterministic for a seed on one device."""
    import torch

    started = time.perf_counter()
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise InputError(f"the adaptor needs an (N, D) matrix with N >= 2, got shape {x.shape}")
    pca = fit_pca(x, seed=seed)
    assert pca.matrix is not None
    rotation = pca.matrix
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    if len(x) > MAX_ROWS:
        x = x[np.sort(rng.choice(len(x), MAX_ROWS, replace=False))]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    dims = [m for m in prefix_dims if m < d] + [d]

    device = device or choose_device()
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.empty(d, hidden).uniform_(-1, 1, generator=gen) / np.sqrt(d)
    start = Adaptor(
        rotation,
        np.ascontiguousarray(w1.numpy(), dtype=np.float32),
        np.zeros(hidden, np.float32),
        np.zeros((hidden, d), np.float32),
        np.zeros(d, np.float32),
    )
    held = min(1000, int(len(x) * HELD_OUT))
    order = rng.permutation(len(x))
    if held < 10 or len(x) - held < 4 * NEIGHBOURS or steps == 0:
        report = FitReport(0, 0, seconds=time.perf_counter() - started, device=device)
        return _with_report(start, report)
    queries, train = x[order[:held]], x[order[held:]]
    targets = _top_k(queries, train, 10)
    neighbours = _top_k(train, train, NEIGHBOURS + 1)[:, 1:]  # the row itself comes first

    dev = torch.device(device)
    y = torch.from_numpy(train @ rotation).to(dev)
    full = torch.from_numpy(train).to(dev)
    params = [torch.from_numpy(start.to_arrays()[a]).to(dev).requires_grad_() for a in _ARRAYS[1:]]
    optimiser = torch.optim.Adam(params, lr=LEARNING_RATE)

    def forward(rows: torch.Tensor) -> torch.Tensor:
        w1_, b1_, w2_, b2_ = params
        return rows + torch.relu(rows @ w1_ + b1_) @ w2_ + b2_

    def snapshot() -> Adaptor:
        w1_, b1_, w2_, b2_ = (p.detach().cpu().numpy().copy() for p in params)
        return Adaptor(rotation, w1_, b1_, w2_, b2_)

    best, best_step = start, 0
    scores = [_agreement(start, queries, train, targets, dims[:-1])]
    best_score = scores[0]
    losses: list[float] = []
    window: list[float] = []
    stale, step = 0, 0
    for step in range(1, steps + 1):
        anchors = rng.choice(len(train), ANCHORS, replace=False)
        rows = np.concatenate(
            [anchors, neighbours[anchors].ravel(), rng.choice(len(train), ANCHORS * 2)]
        )
        index = torch.from_numpy(rows).to(dev)
        out = forward(y[index])
        loss = _loss(out, full[index], y[index], dims)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        window.append(float(loss.detach()))
        if step % CHECK_EVERY == 0 or step == steps:
            losses.append(float(np.mean(window)))
            window = []
            candidate = snapshot()
            scores.append(_agreement(candidate, queries, train, targets, dims[:-1]))
            if scores[-1] > best_score + 1e-9:
                best, best_step, best_score, stale = candidate, step, scores[-1], 0
            else:
                stale += 1
                if stale >= PATIENCE:
                    break
    report = FitReport(step, best_step, scores, losses, time.perf_counter() - started, device)
    return _with_report(best, report)


def _with_report(adaptor: Adaptor, report: FitReport) -> Adaptor:
    return Adaptor(**adaptor.to_arrays(), name=adaptor.name, report=report)


def _loss(out, full, base, dims: list[int]):
    """Pairwise + top-k (listwise) similarity losses over the prefixes, plus the residual term."""
    import torch
    import torch.nn.functional as F

    target = full @ full.T
    mask = torch.eye(len(full), dtype=torch.bool, device=full.device)
    target_p = F.softmax(target.masked_fill(mask, -1e4) / TEMPERATURE, dim=1)
    total = out.new_zeros(())
    for m in dims:
        e = F.normalize(out[:, :m], dim=1)
        sim = e @ e.T
        total = total + PAIRWISE_WEIGHT * (sim - target).abs().mean()
        log_p = F.log_softmax(sim.masked_fill(mask, -1e4) / TEMPERATURE, dim=1)
        total = total - (target_p * log_p).sum(dim=1).mean()  # KL up to a constant
    residual = ((out - base) ** 2).sum(dim=1).mean()
    return total / len(dims) + RESIDUAL_WEIGHT * residual


def _top_k(queries: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Row ids of each query's ``k`` best cosines (rows are unit vectors), best first."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for a in range(0, len(queries), 1024):
        scores = queries[a : a + 1024] @ rows.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[a : a + 1024] = np.take_along_axis(top, order, axis=1)
    return out


def _agreement(
    adaptor: Adaptor, queries: np.ndarray, rows: np.ndarray, targets: np.ndarray, dims: list[int]
) -> float:
    """Mean share of each query's full-dimension top-10 that its prefix top-10 keeps, over dims."""
    q, r = adaptor.apply(queries), adaptor.apply(rows)
    shares = []
    for m in dims:
        qm = q[:, :m] / np.maximum(np.linalg.norm(q[:, :m], axis=1, keepdims=True), 1e-12)
        rm = r[:, :m] / np.maximum(np.linalg.norm(r[:, :m], axis=1, keepdims=True), 1e-12)
        found = _top_k(qm, rm, targets.shape[1])
        shares.append(
            np.mean([len(set(a) & set(b)) for a, b in zip(found, targets, strict=True)]) / 10
        )
    return float(np.mean(shares))
