"""A learned Matryoshka adaptor: the corpus' PCA rotation, then a learned rotation of its head.

After Yoon et al. (2024), "Matryoshka-Adaptor": trained unsupervised on the corpus so that every
prefix keeps the full-dimension neighbours of the model, but kept *orthogonal*. Frozen embeddings
``x`` map to ``x @ rotation``, where ``rotation`` is PCA's (`transform.fit_pca`) with its first
``K`` columns (``K``: the largest trained prefix below the full dim, 128 by default) turned by a
learned ``K x K`` rotation ``Q``. So:

- full-dimension cosines are exactly the model's (a rotation keeps every dot product), and so are
  those of every prefix of ``K`` dims or more (the head still spans PCA's top-``K`` subspace);
- only prefixes inside the head (16, 32, 64, …) change: ``Q`` picks which directions of that
  subspace come first.

The paper's residual network (the earlier form here) also gained at 16 dims, but it moved
full-dimension scores and took tens of seconds to minutes on a 2-core CPU; this fit takes a few
seconds (numbers in the README).

``Q`` is the Cayley transform of a skew-symmetric matrix, so it starts at the identity (exactly
PCA) and stays a rotation. Each step takes anchors and, per anchor, candidates: its nearest rows,
rows near its rank 100, its *intruders* (rows in its prefix top 128 that are not in its
full-dimension top 128: what costs recall@100) and random rows. At every prefix inside the head,
on each anchor's similarities standardised over its candidates (a prefix's cosines spread wider
than full ones; their order and gaps are what should match), the losses are: *pairwise*
(standardised prefix cosines match full ones), *listwise* (a softmax over the candidates at two
temperatures matches the full-dimension one) and *boundary* (the rows near rank 100 score above
the intruders).

Training keeps the best check on held-out rows used as pseudo-queries: the share of each one's
full-dimension top 10 and top 100 (among the other rows) that each prefix finds. A check counts
only if no prefix lost top-100 agreement against PCA, the start; if none beats PCA, the adaptor is
exactly PCA. Weights are plain arrays (an .npz, no pickle) and `apply` is one matrix product, so
queries need no torch. `Adaptor` still loads and applies the residual form, ``y + relu(y @ w1 +
b1) @ w2 + b2``; a fit now stores a residual of width 0.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from mrl_tui.core.errors import InputError
from mrl_tui.core.transforms.pca import fit_pca

PREFIX_DIMS = (16, 32, 64, 128)
"""The largest of these below the full dim is the learned head; the losses and checks are taken
at the others. With only one below the full dim, the head is all dims."""
MAX_ROWS = 10_000
"""Rows trained on; larger corpora are subsampled (seeded)."""
HELD_OUT = 0.1
"""Share of rows (at most `MAX_HELD_OUT`) kept aside as pseudo-queries for the checks."""
MAX_HELD_OUT = 1000
ANCHOR_POOL = 1024
"""Rows whose full-dimension neighbours are found up front; each step draws anchors from them."""
ANCHORS = 64
NEIGHBOURS = 8
WIDE = 8
WIDE_RANKS = 128
INTRUDERS = 8
RANDOM = 32
"""An anchor's candidates: its NEIGHBOURS nearest rows, WIDE drawn from its next nearest up to
rank WIDE_RANKS, INTRUDERS per prefix, and RANDOM rows."""
TEMPERATURES = (0.25, 1.0)
"""Listwise softmax temperatures on standardised similarities: sharp for the top, soft for all."""
PAIRWISE_WEIGHT = 1.0
BOUNDARY_WEIGHT = 5.0
BOUNDARY_TEMPERATURE = 0.5
LEARNING_RATE = 5e-4
STEPS = 200
CHECK_EVERY = 25
MINE_EVERY = 50
"""Steps between refreshes of the intruders (at a check)."""
PATIENCE = 4
AGREEMENT_K = (10, 100)
"""The held-out checks: overlap of the prefix's and the full dim's top 10 and top 100."""
CPU_THREADS = 1
"""Torch and BLAS threads for a CPU fit. Its matrices are small: two threads were 1.5x faster on
an idle 2-core machine but up to 5x slower per step on a busy one, where they wait on each other
(and a 384-dim eigendecomposition took 0.03 s on one thread, 0.04 to 2.4 s on two)."""

_ARRAYS = ("rotation", "w1", "b1", "w2", "b2")
_CPU_FIT = threading.Lock()
"""One CPU fit at a time: the thread settings it changes are the whole process's."""


@dataclass(frozen=True)
class FitReport:
    """How training went: the held-out score per check (index 0 is plain PCA; -1 marks a check
    that lost top-100 agreement at some prefix), the mean training loss over each check's steps,
    and the time."""

    steps: int
    best_step: int
    scores: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    head: int = 0
    """Columns of the PCA rotation the learned rotation turns (0: none, the adaptor is PCA)."""


@dataclass(frozen=True, eq=False)
class Adaptor:
    """``f(x) = y + relu(y @ w1 + b1) @ w2 + b2`` with ``y = x @ rotation``; float32 arrays.

    A fit stores an orthogonal ``rotation`` and a residual of width 0, so ``f(x) = x @ rotation``.
    """

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
        if self.b1.shape[0]:
            y = y + np.maximum(y @ self.w1 + self.b1, 0) @ self.w2 + self.b2
        return np.ascontiguousarray(y, dtype=np.float32)

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

    @classmethod
    def rotation_only(cls, rotation: np.ndarray, report: FitReport | None = None) -> Adaptor:
        """An adaptor that is the orthogonal ``rotation`` alone (a residual of width 0)."""
        d = rotation.shape[0]
        return cls(
            np.ascontiguousarray(rotation, dtype=np.float32),
            np.zeros((d, 0), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, d), np.float32),
            np.zeros(d, np.float32),
            report=report,
        )


def fit_settings() -> dict[str, object]:
    """What a default `fit_adaptor` depends on besides the vectors: part of a cache key."""
    return {
        "form": "pca, then a rotation of its head",
        "prefix_dims": PREFIX_DIMS,
        "rows": (MAX_ROWS, HELD_OUT, MAX_HELD_OUT, ANCHOR_POOL),
        "batch": (ANCHORS, NEIGHBOURS, WIDE, WIDE_RANKS, INTRUDERS, RANDOM),
        "loss": (TEMPERATURES, PAIRWISE_WEIGHT, BOUNDARY_WEIGHT, BOUNDARY_TEMPERATURE),
        "schedule": (LEARNING_RATE, STEPS, CHECK_EVERY, MINE_EVERY, PATIENCE, AGREEMENT_K),
    }


@contextlib.contextmanager
def _cpu_threads(device: str) -> Iterator[None]:
    """`CPU_THREADS` torch and BLAS threads while a CPU fit runs; the caller's afterwards."""
    import torch

    if device != "cpu":
        yield
        return
    with _CPU_FIT:
        before = torch.get_num_threads()
        torch.set_num_threads(min(before, CPU_THREADS))
        try:
            from threadpoolctl import threadpool_limits

            limits: contextlib.AbstractContextManager = threadpool_limits(limits=CPU_THREADS)
        except ImportError:
            limits = contextlib.nullcontext()
        try:
            with limits:
                yield
        finally:
            torch.set_num_threads(before)


def fit_adaptor(
    vectors: np.ndarray,
    *,
    seed: int = 0,
    steps: int = STEPS,
    device: str = "cpu",
    prefix_dims: tuple[int, ...] = PREFIX_DIMS,
) -> Adaptor:
    """Fit the adaptor on corpus vectors ``(N, D)`` on `device` (torch's name: the embedder's
    device, never chosen here); deterministic for a seed on one device."""
    started = time.perf_counter()
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise InputError(f"the adaptor needs an (N, D) matrix with N >= 2, got shape {x.shape}")
    with _cpu_threads(device):
        rotation, report = _fit(x, seed, steps, device, prefix_dims, started)
    return Adaptor.rotation_only(rotation, report)


def _fit(x, seed, steps, device, prefix_dims, started) -> tuple[np.ndarray, FitReport]:
    pca = fit_pca(x, seed=seed)
    assert pca.matrix is not None
    rotation = pca.matrix
    d = x.shape[1]
    dims = sorted({m for m in prefix_dims if 0 < m < d})
    # the learned block: the largest prefix, or all dims if there is one; prefixes inside change
    head, dims = (dims[-1], dims[:-1]) if len(dims) >= 2 else (d, dims)
    rng = np.random.default_rng(seed)
    if len(x) > MAX_ROWS:
        x = x[np.sort(rng.choice(len(x), MAX_ROWS, replace=False))]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    held = min(MAX_HELD_OUT, int(len(x) * HELD_OUT))
    if not dims or steps <= 0 or held < 10 or len(x) - held < 4 * (NEIGHBOURS + 1):
        return rotation, FitReport(0, 0, seconds=time.perf_counter() - started, device=device)
    order = rng.permutation(len(x))
    y = np.ascontiguousarray(x @ rotation)  # PCA coordinates: full cosines are y's cosines
    q, scores, losses, step, best_step = _train(
        y[order[:held]], y[order[held:]], head, dims, steps, seed, rng, device
    )
    matrix = rotation.astype(np.float64)
    matrix[:, :head] = matrix[:, :head] @ _nearest_orthogonal(q)
    seconds = time.perf_counter() - started
    report = FitReport(step, best_step, scores, losses, seconds, device, head)
    return matrix.astype(np.float32), report


def _train(queries, rows, head, dims, steps, seed, rng, device):
    """Learn ``Q`` (head x head) on ``rows``, keeping the best check on ``queries`` (both in PCA
    coordinates). Returns Q as float64, the check scores and losses, the last and the best step.
    """
    import torch

    dev = torch.device(device)
    torch.manual_seed(seed)
    full = torch.from_numpy(rows).to(dev)
    checks = _Checks(torch.from_numpy(queries).to(dev), full, head, dims)
    pool = torch.from_numpy(rng.choice(len(rows), min(ANCHOR_POOL, len(rows)), replace=False))
    pool = pool.to(dev)
    similar = full[pool] @ full.T  # full-dimension cosines of the pool rows with every row
    ranks = min(WIDE_RANKS, len(rows) - 1)
    near = torch.topk(similar, ranks + 1, dim=1).indices  # each row finds itself among them
    rows_head = full[:, :head].contiguous()  # all that the rotation sees
    del full
    mines = _Intruders(rows_head, pool, near, dims, ranks)
    near = near[:, 1:].cpu().numpy()
    wide = min(WIDE, ranks - NEIGHBOURS)
    anchors = min(ANCHORS, len(pool))
    pool = pool.cpu().numpy()

    skew = torch.zeros(head, head, device=dev, requires_grad=True)
    optimiser = torch.optim.Adam([skew], lr=LEARNING_RATE)

    eye = torch.eye(head, device=dev)

    def turn() -> torch.Tensor:
        """The Cayley transform of a skew-symmetric matrix: a rotation, the identity at 0."""
        a = (skew - skew.T) / 2
        return torch.linalg.solve(eye - a, eye + a)

    best_q = np.eye(head)
    with torch.no_grad():
        base = checks.run(torch.eye(head, device=dev))
        intruders = mines.find(torch.eye(head, device=dev))
    best_score = base.score
    scores, losses, window = [round(base.score, 5)], [], []
    stale = step = best_step = 0
    for step in range(1, steps + 1):
        picked = rng.choice(len(pool), anchors, replace=False)
        far = rng.integers(NEIGHBOURS, ranks, (anchors, wide))
        candidates = np.concatenate(
            [
                near[picked, :NEIGHBOURS],
                np.take_along_axis(near[picked], far, axis=1),
                intruders[picked],
                rng.choice(len(rows), (anchors, RANDOM)),
            ],
            axis=1,
        )
        picked_t = torch.from_numpy(picked).to(dev)
        candidates_t = torch.from_numpy(candidates).to(dev)
        target = similar[picked_t].gather(1, candidates_t)
        a, c = rows_head[torch.from_numpy(pool[picked]).to(dev)], rows_head[candidates_t]
        q = turn()
        loss = _loss(target, a @ q, c @ q, dims, wide, intruders.shape[1])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        window.append(float(loss.detach()))
        if step % CHECK_EVERY == 0 or step == steps:
            losses.append(float(np.mean(window)))
            window = []
            with torch.no_grad():
                q = turn()
                check = checks.run(q)
                if step % MINE_EVERY == 0:
                    intruders = mines.find(q)
            kept = all(a >= b for a, b in zip(check.top100, base.top100, strict=True))
            scores.append(round(check.score, 5) if kept else -1.0)
            if kept and check.score > best_score + 1e-9:
                best_q = q.cpu().numpy().astype(np.float64)
                best_step, best_score, stale = step, check.score, 0
            else:
                stale += 1
                if stale >= PATIENCE:
                    break
    return best_q, scores, losses, step, best_step


class _Intruders:
    """Each pool row's intruders under a rotation: rows in its top-`ranks` at a prefix that are
    not in its full-dimension top-`ranks` (what costs recall), closest first, `INTRUDERS` per
    prefix."""

    def __init__(self, rows, pool, near, dims: list[int], ranks: int) -> None:
        import torch

        self.rows, self.pool, self.dims, self.ranks = rows, pool, dims, ranks
        self.near = torch.zeros(len(pool), len(rows), dtype=torch.bool, device=rows.device)
        self.near.scatter_(1, near, True)
        self.order = torch.arange(ranks, device=rows.device)

    def find(self, q) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        if not INTRUDERS:
            return np.zeros((len(self.pool), 0), np.int64)
        a, r = self.rows[self.pool] @ q, self.rows @ q
        found = []
        for m in self.dims:
            top = _top_k(F.normalize(a[:, :m], dim=1), F.normalize(r[:, :m], dim=1), self.ranks)
            key = self.near.gather(1, top).long() * self.ranks + self.order
            found.append(top.gather(1, key.argsort(dim=1)[:, :INTRUDERS]))
        return torch.cat(found, dim=1).cpu().numpy()


def _loss(target, out_a, out_c, dims: list[int], wide: int, intruders: int):
    """Each anchor against its candidates (``(A, C)`` rows: its nearest, ``wide`` near rank 100,
    ``intruders``, random; ``target`` their full-dimension cosines), at every prefix in ``dims``:
    pairwise, listwise and boundary losses on the anchor's similarities standardised over its
    candidates (a prefix's cosines spread wider than full ones; their order and relative gaps
    are what should match)."""
    import torch.nn.functional as F

    target = _standardise(target)
    sim = _standardise(_prefix_cosines(out_a, out_c, dims))  # (dims, A, C)
    total = PAIRWISE_WEIGHT * (sim - target).abs().mean()
    for t in TEMPERATURES:
        # cross-entropy to the full-dimension softmax = KL up to a constant
        p = F.softmax(target / t, dim=-1)
        total = total - (p * F.log_softmax(sim / t, dim=-1)).sum(dim=-1).mean() / len(TEMPERATURES)
    if BOUNDARY_WEIGHT and intruders and wide:
        pos = sim[..., NEIGHBOURS : NEIGHBOURS + wide]
        neg = sim[..., NEIGHBOURS + wide : NEIGHBOURS + wide + intruders]
        gap = (neg[..., None, :] - pos[..., :, None]) / BOUNDARY_TEMPERATURE
        total = total + BOUNDARY_WEIGHT * F.softplus(gap).mean()
    return total


def _prefix_cosines(a, c, dims: list[int]):
    """Cosines of each row of ``a`` (A, K) with its rows of ``c`` (A, C, K) at each prefix in
    ``dims``: ``(len(dims), A, C)``, one product per block of dims between consecutive prefixes.
    """
    import torch

    bounds = list(zip([0, *dims[:-1]], dims, strict=True))
    dots = torch.stack([torch.einsum("ak,ack->ac", a[:, i:j], c[..., i:j]) for i, j in bounds])
    norm_a = torch.stack([a[:, i:j].square().sum(-1) for i, j in bounds]).cumsum(0)
    norm_c = torch.stack([c[..., i:j].square().sum(-1) for i, j in bounds]).cumsum(0)
    return dots.cumsum(0) * torch.rsqrt((norm_a[..., None] * norm_c).clamp_min(1e-24))


def _standardise(sim):
    """Each row (last axis) minus its mean, over its standard deviation."""
    mean = sim.mean(dim=-1, keepdim=True)
    return (sim - mean) / (sim - mean).square().mean(dim=-1, keepdim=True).add(1e-12).sqrt()


def _top_k(queries, rows, k: int):
    """Row ids of each query's ``k`` best dot products (torch, on the rows' device), best first."""
    import torch

    parts = [
        torch.topk(queries[a : a + 1024] @ rows.T, k, dim=1).indices
        for a in range(0, len(queries), 1024)
    ]
    return torch.cat(parts)


def _nearest_orthogonal(q: np.ndarray) -> np.ndarray:
    """The orthogonal matrix nearest ``q`` (polar factor): removes float error of the fit."""
    u, _, vt = np.linalg.svd(np.asarray(q, dtype=np.float64))
    return u @ vt


@dataclass
class _Check:
    top10: list[float]
    top100: list[float]

    @property
    def score(self) -> float:
        return float(np.mean(self.top10) + np.mean(self.top100))


class _Checks:
    """Held-out agreement: the share of each query's full-dimension top-k that a prefix keeps."""

    def __init__(self, queries, rows, head: int, dims: list[int]) -> None:
        import torch

        self.dims = dims
        self.ks = [min(k, len(rows)) for k in AGREEMENT_K]
        self.top = max(self.ks)
        truth = _top_k(queries, rows, self.top)
        self.queries, self.rows = queries[:, :head], rows[:, :head]  # all a rotation changes
        self.truth = []
        for k in self.ks:
            member = torch.zeros(len(queries), len(rows), dtype=torch.bool, device=rows.device)
            member.scatter_(1, truth[:, :k], True)
            self.truth.append(member)

    def run(self, q) -> _Check:
        import torch.nn.functional as F

        qs, rs = self.queries @ q, self.rows @ q
        shares: list[list[float]] = [[] for _ in self.ks]
        for m in self.dims:
            found = _top_k(F.normalize(qs[:, :m], dim=1), F.normalize(rs[:, :m], dim=1), self.top)
            for i, (k, member) in enumerate(zip(self.ks, self.truth, strict=True)):
                shares[i].append(float(member.gather(1, found[:, :k]).float().mean()))
        return _Check(*shares)
