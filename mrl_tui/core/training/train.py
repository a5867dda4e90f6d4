"""`mrl-tui train`: fine-tune a model with `MatryoshkaLoss` on pairs cut from a corpus itself.

The loss is sentence-transformers' `MatryoshkaLoss` over `MultipleNegativesRankingLoss` (its
cached variant for batches above `CACHED_LOSS_ABOVE`), run by `SentenceTransformerTrainer`; by
default only an orthogonal head trains, the encoder frozen throughout, and then each text is
encoded once and the head trains on those vectors with the same loss in plain torch (`head`),
with no encoder pass per step. The
checkpoint is chosen on the held-out pseudo-queries only (`train_pairs`): mean nDCG@10 over the
Matryoshka dims, measured before training (the base model, naive prefixes) and a few times during
it. The best weights are kept in memory and written once, into a temporary folder that is renamed
into place when complete (`trained.publish`); a stop request or Ctrl-C writes the best so far,
marked partial, or nothing if no checkpoint beat nothing yet.

Bad input is checked in order of cost: the folder and the dims before any model is loaded, the
model's dimension and the pairs after.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mrl_tui import __version__
from mrl_tui.core.choices import dim_list
from mrl_tui.core.corpus.chunking import ChunkSettings
from mrl_tui.core.corpus.walk import walk_folder
from mrl_tui.core.embedding.choice import ModelChoice
from mrl_tui.core.embedding.embed import resolve_model
from mrl_tui.core.embedding.models import find_spec
from mrl_tui.core.errors import InputError
from mrl_tui.core.library import check_folder
from mrl_tui.core.training.pairs import (
    PairSet,
    beir_fingerprint,
    beir_passages,
    folder_fingerprint,
    folder_passages,
    make_pairs,
)
from mrl_tui.core.training.trained import (
    FORMAT,
    current_model,
    models_root,
    new_temp_dir,
    partial_model,
    publish,
    training_key,
)
from mrl_tui.core.transforms.pca import fit_pca

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from mrl_tui.core.embedding.embed import Embedder

DEFAULT_DIMS = (32, 64, 128, 256)
"""Trained prefixes below full; the model's full dimension is always trained too."""
CACHED_LOSS_ABOVE = 128
"""Batches above this use the cached (gradient-cache) loss: memory of a 32-text mini-batch."""
MINI_BATCH = 32
LEARNING_RATE = 2e-5
"""On dbpedia-entity-5k (100 steps, README), 5e-5 scored lower than 2e-5 at 16, 64, 128 and full."""
HEAD_SHARE = 1.0
"""Share of the steps, from the start, that train the head alone (the encoder frozen). The
default trains the orthogonal head only: on both shared sets (README) that kept the base's full
dimension exactly and matched or beat base PCA at 32 dims, where training the encoder on
pseudo-queries lost 0.011-0.021 nDCG@10 at full dim; 0 trains the encoder from the start."""
HEAD_LEARNING_RATE = 1e-4
"""The head's learning rate (5x the encoder's; set before the README's runs)."""
HEAD_EPOCHS = 3.0
"""Epochs when the head alone trains on cached vectors and neither `max_steps` nor `epochs` is
given (cheap steps). On both shared sets' held-out pseudo-queries 3 beat 1 (mean nDCG@10
0.8282 → 0.8297 on dbpedia-entity-5k, 0.7241 → 0.7297 on msmarco-trecdl-5k; early stop after
2.4 epochs on the first); judged 32-dim nDCG@10 then matches or beats base PCA on both."""
WARMUP = 0.1
EVALUATIONS = 5
"""Validations during a run (plus one of the base model before it)."""
PATIENCE = 2
"""Stop when this many validations in a row do not beat the best."""
VALIDATION_DOCS = 1000
"""Documents the validation queries are searched among: theirs, plus random others."""
PCA_FIT_DOCS = 10000
"""The PCA start is fitted on the training passages (all of them, up to this many at random)."""
NDCG_K = 10
SPACE_MARGIN = 1.2
TRAIN_EXTRA = ("datasets", "accelerate")
"""What SentenceTransformerTrainer needs beyond sentence-transformers (``mrl-tui[train]``)."""


@dataclass(frozen=True)
class TrainSettings:
    dims: tuple[int, ...] = DEFAULT_DIMS
    max_steps: int | None = None
    epochs: float | None = None
    """When neither is given: `HEAD_EPOCHS` for the head alone on cached vectors, else one."""
    batch_size: int | None = None
    """Default 32, or 128 on CUDA."""
    max_seq_length: int | None = None
    """Tokens per text while training (default: the model's own); the saved model keeps its own."""
    learning_rate: float = LEARNING_RATE
    evaluations: int = EVALUATIONS
    patience: int = PATIENCE
    validation_docs: int = VALIDATION_DOCS
    distill: float = 0.0
    """Weight of a distillation term (0: none): besides the pairs, batches of corpus passages
    whose full-dim vectors are kept close (cosine) to the starting model's (the base, or its PCA
    rotation), so that the full dimension does not drift while the prefixes are trained."""
    pca_start: bool = True
    """Start a model that is not native MRL from its PCA rotation (a `Dense` layer fitted on the
    training passages, kept orthogonal while it trains): its prefixes begin where PCA's are, not
    naive ones, and while the encoder is frozen its full dimension is exactly the base's."""
    head_share: float = HEAD_SHARE
    """With a PCA start: the share of the steps, from the first, in which only that head trains
    (the encoder frozen: cheaper steps, no drift); 1 trains the head alone throughout."""
    head_learning_rate: float | None = HEAD_LEARNING_RATE
    """With a PCA start: the head's learning rate (None: `learning_rate`, the encoder's)."""
    rank_distill: float = 0.0
    """Head alone on cached vectors only: the weight, 0 to 1, of a ranking distillation against
    the Matryoshka MNRL (1: instead of it); see `head.Objective`."""
    rank_temperature: float = 0.05
    rank_negatives: int = 32
    """Random training passages added to each batch's candidates for the distillation."""
    rank_passages: bool = False
    """The distillation also asks each batch's positives as queries."""
    encoder_steps: int = 0
    """Head alone on cached vectors only: after it, this many steps of an encoder stage whose
    teacher is the base model (`encoder_stage`; 0: none, the default)."""
    encoder_layers: int | None = 2
    """The encoder stage trains the transformer's top this many layers (None: all)."""
    encoder_anchor: float = 20.0
    """The encoder stage's weight on 1 − cosine to the base's full-dim vectors, through the head."""
    encoder_learning_rate: float = 5e-5
    encoder_temperature: float = 0.05
    encoder_negatives: int = 16
    """Random training passages added to each encoder-stage batch's candidates."""
    encoder_passages: bool = False
    """The encoder stage also asks each batch's positives as queries."""
    encoder_patience: int | None = None
    """The encoder stage's patience (None: `patience`, the head's)."""
    encoder_full_slack: float = 0.0
    """How far below the start's held-out full-dim nDCG@10 an encoder-stage checkpoint may be."""
    seed: int = 0

    @property
    def cached_head(self) -> bool:
        """The head alone trains on vectors encoded once (`head`): a PCA start, the head's share
        1 and no full-dim distillation term (that one runs the trainer)."""
        return self.pca_start and self.head_share >= 1 and self.distill <= 0


@dataclass
class TrainProgress:
    phase: str
    """ "restarting" | "loading" | "pairs" | "encoding" | "validating" | "training" | "saving" """
    step: int = 0
    """Texts encoded so far while "encoding"; else training steps."""
    total: int = 0
    loss: float | None = None
    best: float | None = None
    """Best validation mean nDCG@10 so far."""
    elapsed_s: float = 0.0
    note: str = ""
    """A line for the user ("restarting": why this run starts from the base model again)."""


@dataclass
class TrainResult:
    model_path: Path | None
    """None when the run was stopped before its first validation: nothing was written."""
    provenance: dict[str, Any]
    up_to_date: bool = False
    """An existing model was current; nothing was trained."""


def parse_dims(text: str) -> tuple[int, ...]:
    """``"32,64,128"`` → (32, 64, 128): positive whole numbers, strictly increasing."""
    dims = dim_list(text)
    if any(b <= a for a, b in itertools.pairwise(dims)):
        raise InputError(f"dims must increase, e.g. 32,64,128,256 (got {text})", settings=("dims",))
    return tuple(dims)


def check_dims(dims: tuple[int, ...], full_dim: int, model: str) -> tuple[int, ...]:
    """The dims to train: the given ones below full, then full itself."""
    too_big = [d for d in dims if d > full_dim]
    if too_big:
        raise InputError(
            f"dims: {too_big[0]} is above {model}'s {full_dim} dimensions", settings=("dims",)
        )
    return (*(d for d in dims if d < full_dim), full_dim)


def _check_space(root: Path, need: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if free < need:
        raise InputError(
            f"no space for the trained model in {root}: it needs about {need / 1e6:.0f} MB, "
            f"{free / 1e6:.0f} MB are free"
        )


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _checked_source(source: Path, beir: bool) -> Path:
    """The corpus to train on, resolved; before any model loads."""
    if beir:
        folder = Path(source).expanduser()
        if not (folder / "corpus.jsonl").is_file():
            raise InputError(f"{source}: not a BEIR folder, missing corpus.jsonl")
        return folder.resolve()
    root = check_folder(source)
    walked = walk_folder(root)
    if not walked.files:
        raise InputError(f"{root}: nothing indexable found ({len(walked.skipped)} files skipped)")
    return root


def base_model_id(model: str | None) -> str:
    """The base model as a trained model's provenance names it: a folder by its resolved path,
    else the model's name (the default: the bundled model's)."""
    display, weights = resolve_model(model)
    return weights if Path(display).expanduser().exists() else display


def train(
    source: Path,
    *,
    beir: bool = False,
    model: str | None = None,
    device: str = "auto",
    settings: TrainSettings | None = None,
    cache_root: Path | None = None,
    force: bool = False,
    trust_remote_code: bool = False,
    on_progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a Matryoshka model on `source` (a folder, or a BEIR set with `beir`) and save it in
    the cache; or return the current one for the same base, dims and corpus unless `force`."""
    settings = settings or TrainSettings()
    started = time.perf_counter()

    def tell(phase: str, **fields: Any) -> None:
        if on_progress is not None:
            on_progress(TrainProgress(phase, elapsed_s=time.perf_counter() - started, **fields))

    missing = [name for name in TRAIN_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"training needs {' and '.join(missing)}: pip install 'mrl-tui[train]'")
    root = _checked_source(source, beir)
    display, weights = resolve_model(model)
    spec = find_spec(display)
    if spec is not None and spec.full_dim:
        check_dims(settings.dims, spec.full_dim, display)
    if settings.encoder_steps > 0 and not settings.cached_head:
        raise _stage_needs_the_head()  # before any model loads
    base_id = base_model_id(model)
    fingerprint = beir_fingerprint(root) if beir else folder_fingerprint(root)
    key = training_key(base_id, settings.dims, root, fingerprint)
    if not force:
        current = current_model(key, cache_root)
        if current is not None:
            return TrainResult(current.path, current.provenance, up_to_date=True)
    previous = partial_model(key, cache_root)
    restarted: dict[str, Any] = {}
    if previous is not None:
        record = previous.provenance
        restarted = {
            "restarted_after": {
                "model_path": str(previous.path),
                "steps": record.get("steps"),
                "steps_run": record.get("steps_run"),
                "planned_steps": record.get("planned_steps"),
            }
        }
        tell(
            "restarting",
            note=(
                f"the last run on {root.name} was stopped early at step {record.get('steps_run')} "
                f"of {record.get('planned_steps')} (kept, marked partial); this run starts again "
                f"from {display} and replaces it once it saves a checkpoint"
            ),
        )
    target = models_root(cache_root)
    if Path(weights).is_dir():
        _check_space(target, int(SPACE_MARGIN * _folder_bytes(Path(weights))))

    tell("loading")
    began = time.perf_counter()
    choice = ModelChoice(
        model,
        device=device,
        trust_remote_code=trust_remote_code,
        embed_backend="torch",  # training updates the torch weights; an ONNX export would go stale
    )
    embedder = choice.load(full_precision=True)
    dims = check_dims(settings.dims, embedder.full_dim, embedder.name)
    timings = {"load": round(time.perf_counter() - began, 1)}
    tell("pairs")
    began = time.perf_counter()
    if beir:
        passages = beir_passages(root)
    else:
        chunking = ChunkSettings(max_tokens=min(256, embedder.max_chunk_tokens))  # as `Library`
        passages = folder_passages(root, embedder.count_tokens, chunking)
    pairs = make_pairs(passages, seed=settings.seed)
    params = sum(p.numel() for p in embedder.model.parameters())
    _check_space(target, int(SPACE_MARGIN * 4 * params))
    timings["pairs"] = round(time.perf_counter() - began, 1)

    if settings.encoder_steps > 0 and embedder.spec.native_mrl:
        raise _stage_needs_the_head()
    with _training_length(embedder.model, settings.max_seq_length):
        if settings.cached_head and not embedder.spec.native_mrl:
            bundled = resolve_model(model) == resolve_model(None)
            outcome = _fit_cached(
                embedder, pairs, dims, settings, tell, should_stop, cache_root, bundled
            )
        else:
            outcome = _fit(embedder, pairs, dims, settings, tell, should_stop, cache_root)
    outcome.record["timings"] = {**timings, **outcome.record.get("timings", {})}
    provenance = {
        "format": FORMAT,
        "tool": f"mrl-tui {__version__}",
        "key": key,
        "slot": training_key(base_id, settings.dims, root),
        "base_model": base_id,
        "source": str(root),
        "source_kind": "beir" if beir else "folder",
        "fingerprint": fingerprint,
        "dims": list(dims),
        "passages": len(pairs.passages),
        "pairs": {
            "train": len(pairs.train),
            "validation": len(pairs.validation),
            "by_kind": pairs.kinds,
        },
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        **outcome.record,
        **restarted,
    }
    if outcome.best_state is None:
        return TrainResult(None, provenance)
    tell("saving", step=outcome.record["steps"])
    began = time.perf_counter()
    path = _save(embedder, outcome.best_state, provenance, root, cache_root)
    provenance["timings"]["saving"] = round(time.perf_counter() - began, 1)  # (not in the file)
    return TrainResult(path, provenance)


def _stage_needs_the_head() -> InputError:
    return InputError(
        "encoder steps follow the head trained alone: they need head share 1, no "
        "distillation and a base that is not native MRL",
        settings=("encoder steps", "head share"),
    )


@dataclass
class _Outcome:
    best_state: dict[str, Any] | None
    record: dict[str, Any] = field(default_factory=dict)


class _Validation:
    """Held-out pseudo-queries searched among their passages and random others, at each dim."""

    def __init__(self, pairs: PairSet, dims: tuple[int, ...], embedder: Embedder, cap: int, seed):
        held = sorted({p.passage for p in pairs.validation})
        held_set = set(held)
        others = [i for i in range(len(pairs.passages)) if i not in held_set]
        rng = np.random.default_rng(seed)
        room = max(0, cap - len(held))
        rows = held + sorted(rng.permutation(others)[:room].tolist())
        row_of = {passage: row for row, passage in enumerate(rows)}
        self.held_rows = len(held)
        """`docs[held_rows:]` are training passages (the distillation term may use them)."""
        self.docs = [pairs.passages[i].text for i in rows]
        self.queries = [p.query for p in pairs.validation]
        self.relevant = np.array([row_of[p.passage] for p in pairs.validation])
        self.dims = dims
        info = embedder.info
        self.prompts = (info.query_prompt, info.document_prompt)

    def __call__(self, model: Any) -> dict[str, Any]:
        return self.score(*self.encode(model))

    def encode(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        def encode(texts: list[str], prompt: str) -> np.ndarray:
            vectors = model.encode(
                texts, prompt=prompt or None, batch_size=32, show_progress_bar=False
            )
            return np.asarray(vectors, dtype=np.float32)

        return encode(self.queries, self.prompts[0]), encode(self.docs, self.prompts[1])

    def score(self, queries: np.ndarray, docs: np.ndarray) -> dict[str, Any]:
        figures: dict[str, dict[str, float]] = {}
        for dim in self.dims:
            q, d = _unit(queries[:, :dim]), _unit(docs[:, :dim])
            scores = q @ d.T
            own = scores[np.arange(len(q)), self.relevant]
            ranks = (scores > own[:, None]).sum(axis=1) + 1
            hit = ranks <= NDCG_K
            figures[str(dim)] = {
                "ndcg10": round(float(np.where(hit, 1 / np.log2(ranks + 1), 0).mean()), 4),
                "mrr10": round(float(np.where(hit, 1 / ranks, 0).mean()), 4),
            }
        mean = float(np.mean([f["ndcg10"] for f in figures.values()]))
        return {"mean_ndcg10": round(mean, 4), "dims": figures}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@contextmanager
def _training_length(model: SentenceTransformer, max_seq_length: int | None) -> Iterator[None]:
    """Texts cut at ``max_seq_length`` tokens while training (never past the model's own
    limit), and the model's own limit back afterwards, whatever happens: a saved model keeps
    its own."""
    own_length = model.max_seq_length
    model.max_seq_length = min(max_seq_length or own_length, own_length)
    try:
        yield
    finally:
        model.max_seq_length = own_length


def _fit(
    embedder: Embedder,
    pairs: PairSet,
    dims: tuple[int, ...],
    settings: TrainSettings,
    tell: Callable[..., None],
    should_stop: Callable[[], bool] | None,
    cache_root: Path | None,
) -> _Outcome:
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    model = embedder.model
    train_length = model.max_seq_length
    device = embedder.device
    validation = _Validation(pairs, dims, embedder, settings.validation_docs, settings.seed)
    spent = [0.0]

    def validate(model: Any) -> dict[str, Any]:
        began = time.perf_counter()
        if head is not None and not any(p.requires_grad for p in encoder):
            # the encoder is the base's: its vectors through the current (orthogonal) head
            weight = model[head].linear.weight.detach().to("cpu", torch.float32).numpy()
            figures = validation.score(queries @ weight.T, docs @ weight.T)
        else:
            figures = validation(model)
        spent[0] += time.perf_counter() - began
        return figures

    tell("validating")
    queries, docs = validation.encode(model)
    base = validation.score(queries, docs)
    start, base_pca, head = "base", base, None
    fit_docs = 0
    if settings.pca_start and not embedder.spec.native_mrl:
        fit_texts = _fit_texts(pairs, settings.seed)
        fit_docs = len(fit_texts)
        vectors = model.encode(
            fit_texts,
            prompt=embedder.info.document_prompt or None,
            batch_size=32,
            show_progress_bar=False,
        )
        rotation = fit_pca(np.asarray(vectors, dtype=np.float32))
        base_pca = validation.score(rotation.apply(queries), rotation.apply(docs))
        head = _insert_rotation(model, rotation.matrix)
        start = "pca"
    teacher = rotation.apply(docs) if start == "pca" else docs  # the starting model's vectors
    batch = settings.batch_size or (128 if device == "cuda" else 32)
    if batch > CACHED_LOSS_ABOVE:
        inner: Any = CachedMultipleNegativesRankingLoss(model, mini_batch_size=MINI_BATCH)
    else:
        inner = MultipleNegativesRankingLoss(model)
    loss = MatryoshkaLoss(model, inner, list(dims))
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    fp16 = device == "cuda" and not bf16 and embedder.spec.allow_fp16
    query_prompt, document_prompt = embedder.info.query_prompt, embedder.info.document_prompt
    prompts = {
        column: prompt
        for column, prompt in (("anchor", query_prompt), ("positive", document_prompt))
        if prompt
    }
    history = [{"step": 0, "mean_ndcg10": base_pca["mean_ndcg10"]}]  # where training starts

    def snapshot() -> dict[str, Any]:
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    # The start is a candidate: the model kept is never worse on validation than where it began
    # (a run stopped before its first validation still keeps nothing).
    state: dict[str, Any] = {"best": snapshot(), "best_step": 0, "figures": base_pca, "stale": 0}
    state["reason"] = "completed"

    head_rate = settings.head_learning_rate
    head_params = set() if head is None else {id(p) for p in model[head].parameters()}
    encoder = [p for p in model.parameters() if id(p) not in head_params]

    class Control(TrainerCallback):
        total = 0
        every = 1
        head_steps = 0
        loss: float | None = None

        def on_train_begin(self, args, state_, control, **kwargs):  # type: ignore[no-untyped-def]
            self.total = state_.max_steps
            self.every = max(1, math.ceil(self.total / max(1, settings.evaluations)))
            if head is not None and settings.head_share > 0:
                # after the optimizer is made (it holds every parameter): a frozen parameter
                # gets no gradient, which AdamW skips, and its backward pass is not run
                self.head_steps = min(self.total, math.ceil(settings.head_share * self.total))
                for p in encoder:
                    p.requires_grad_(False)

        def on_step_begin(self, args, state_, control, **kwargs):  # type: ignore[no-untyped-def]
            if self.head_steps and state_.global_step == self.head_steps < self.total:
                for p in encoder:
                    p.requires_grad_(True)

        def on_log(self, args, state_, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args, state_, control, **kwargs):  # type: ignore[no-untyped-def]
            step = state_.global_step
            kept = state["figures"]["mean_ndcg10"]  # the start's, until a checkpoint beats it
            best = kept if len(history) > 1 else None  # shown once training has validated
            tell("training", step=step, total=self.total, loss=self.loss, best=best)
            if should_stop is not None and should_stop():
                state["reason"] = "stopped"
                control.should_training_stop = True
                return
            if step % self.every and step < self.total:
                return
            tell("validating", step=step, total=self.total, loss=self.loss, best=best)
            figures = validate(model)
            history.append({"step": step, "mean_ndcg10": figures["mean_ndcg10"]})
            if figures["mean_ndcg10"] > kept:
                state.update(best=snapshot(), best_step=step, figures=figures, stale=0)
            else:
                state["stale"] += 1
                if state["stale"] >= settings.patience:
                    state["reason"] = "no improvement"
                    control.should_training_stop = True

    class Trainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
            """No model card: it would compute widget examples and print progress bars."""

    workdir = new_temp_dir(cache_root)  # the trainer wants an output folder; it writes nothing
    args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir),
        max_steps=settings.max_steps or -1,
        num_train_epochs=settings.epochs or 1.0,
        per_device_train_batch_size=batch,
        learning_rate=settings.learning_rate,
        warmup_steps=WARMUP,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_steps=1,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        use_cpu=device == "cpu",
        bf16=bf16,
        fp16=fp16,
        seed=settings.seed,
        data_seed=settings.seed,
        dataloader_num_workers=0,
        prompts=prompts or None,
        learning_rate_mapping=(
            {rf"(^|\.)model\.{head}\.": head_rate} if head is not None and head_rate else None
        ),
    )
    data: Any = Dataset.from_dict(
        {"anchor": [p.query for p in pairs.train], "positive": [p.positive for p in pairs.train]}
    )
    losses: Any = loss
    distilled = 0
    if settings.distill > 0:
        texts = validation.docs[validation.held_rows :]
        distilled = len(texts)
        data = {
            "pairs": data,
            "distill": Dataset.from_dict(
                {"text": texts, "label": teacher[validation.held_rows :].tolist()}
            ),
        }
        losses = {"pairs": loss, "distill": _weighted_distill(model, settings.distill)}
    control = Control()
    trainer = Trainer(model=model, args=args, train_dataset=data, loss=losses, callbacks=[control])
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    seconds = time.perf_counter()
    try:
        result = trainer.train()
        steps_run = int(result.global_step)
    except KeyboardInterrupt:
        state["reason"] = "stopped"
        steps_run = int(trainer.state.global_step)
    finally:
        seconds = time.perf_counter() - seconds
        shutil.rmtree(workdir, ignore_errors=True)
        for p in encoder:
            p.requires_grad_(True)
    record = {
        "loss": f"MatryoshkaLoss({type(inner).__name__})",
        "batch_size": batch,
        "learning_rate": settings.learning_rate,
        "max_seq_length": train_length,
        "device": device,
        "precision": "bf16" if bf16 else "fp16" if fp16 else "fp32",
        "start": start,
        **({"pca_fit_docs": fit_docs} if fit_docs else {}),
        **(
            {
                "head_learning_rate": head_rate or settings.learning_rate,
                "head_only_steps": control.head_steps,
            }
            if head is not None
            else {}
        ),
        **({"distill": settings.distill, "distill_docs": distilled} if distilled else {}),
        **_ending(
            state,
            history,
            validation,
            base,
            base_pca if start == "pca" else None,
            steps_run=steps_run,
            planned=control.total,
            seconds=seconds,
            validating=spent[0],
            pairs_per_second=steps_run * batch / max(1e-9, seconds - spent[0]),
        ),
    }
    return _kept(state, history, record)


def _ending(
    state: dict[str, Any],
    history: list[dict[str, Any]],
    validation: _Validation,
    base: dict[str, Any],
    base_pca: dict[str, Any] | None,
    *,
    steps_run: int,
    planned: int,
    seconds: float,
    validating: float,
    pairs_per_second: float,
) -> dict[str, Any]:
    """The record's fields both training paths end with: steps, times, why it stopped, and the
    validation figures (the base's, the PCA start's, the best and the history)."""
    return {
        "steps": state["best_step"],
        "steps_run": steps_run,
        "planned_steps": planned,
        "train_seconds": round(seconds, 1),
        "validation_seconds": round(validating, 1),
        "pairs_per_second": round(pairs_per_second, 2),
        "partial": state["reason"] == "stopped",
        "stop_reason": state["reason"],
        "validation": {
            "metric": f"mean nDCG@{NDCG_K} of held-out pseudo-queries over the trained dims",
            "queries": len(validation.queries),
            "documents": len(validation.docs),
            "base": base,
            **({"base_pca": base_pca} if base_pca is not None else {}),
            "best": state["figures"],
            "history": history,
        },
    }


def _kept(state: dict[str, Any], history: list[dict[str, Any]], record: dict[str, Any]) -> _Outcome:
    """The best weights, or none when the run was stopped before its first validation."""
    if state["reason"] == "stopped" and len(history) == 1:
        return _Outcome(None, record)
    return _Outcome(state["best"], record)


def _fit_cached(
    embedder: Embedder,
    pairs: PairSet,
    dims: tuple[int, ...],
    settings: TrainSettings,
    tell: Callable[..., None],
    should_stop: Callable[[], bool] | None,
    cache_root: Path | None,
    bundled: bool,
) -> _Outcome:
    """The head alone, trained on vectors encoded once (`head`'s docstring): the trainer path's
    batches, steps, schedule, validations, stop rule and outcome, without its encoder passes."""
    import torch

    from mrl_tui.core.training import head as cached

    model = embedder.model
    train_length = model.max_seq_length
    validation = _Validation(pairs, dims, embedder, settings.validation_docs, settings.seed)
    fit_texts = _fit_texts(pairs, settings.seed)
    query_prompt, document_prompt = embedder.info.query_prompt, embedder.info.document_prompt
    queries = list(dict.fromkeys([p.query for p in pairs.train] + validation.queries))
    docs = list(dict.fromkeys([p.positive for p in pairs.train] + validation.docs + fit_texts))
    if query_prompt == document_prompt:  # one prompt: a text both ways is encoded once
        known = set(docs)
        queries = [t for t in queries if t not in known]
    batch = settings.batch_size or (128 if embedder.device == "cuda" else 32)
    per_epoch = math.ceil(len(pairs.train) / batch)
    total = settings.max_steps or max(1, math.ceil((settings.epochs or HEAD_EPOCHS) * per_epoch))
    timings: dict[str, float] = {}
    record: dict[str, Any] = {
        "loss": "MatryoshkaLoss(MultipleNegativesRankingLoss)",
        "head_training": "cached vectors",
        "batch_size": batch,
        "learning_rate": settings.learning_rate,
        "max_seq_length": train_length,
        "device": embedder.device,
        "precision": "fp32",
        "start": "pca",
        "timings": timings,
    }

    began = time.perf_counter()
    encoder = cached.vector_encoder(embedder, bundled, cache_root)
    record["encode_backend"] = encoder.backend
    record["encoded_texts"] = len(queries) + len(docs)

    def progress(done: int, total: int) -> None:
        tell("encoding", step=done, total=total)

    tell("encoding", step=0, total=len(queries) + len(docs))
    try:
        q_vectors, d_vectors = cached.encode_texts(
            encoder,
            embedder,
            [(query_prompt, queries), (document_prompt, docs)],
            progress,
            should_stop,
        )
    except (cached.Stopped, KeyboardInterrupt):
        timings["encoding"] = cached.seconds_since(began)
        record.update(
            steps=0, steps_run=0, planned_steps=total, train_seconds=0.0, validation_seconds=0.0,
            pairs_per_second=0.0, partial=True, stop_reason="stopped",
        )  # fmt: skip
        return _Outcome(None, record)
    timings["encoding"] = cached.seconds_since(began)
    row = {t: i for i, t in enumerate(docs)}
    query_row = {t: i for i, t in enumerate(queries)}

    def as_query(texts: list[str]) -> np.ndarray:
        if query_prompt == document_prompt:
            return np.stack(
                [q_vectors[query_row[t]] if t in query_row else d_vectors[row[t]] for t in texts]
            )
        return q_vectors[[query_row[t] for t in texts]]

    def as_doc(texts: list[str]) -> np.ndarray:
        return d_vectors[[row[t] for t in texts]]

    tell("validating")
    began = time.perf_counter()
    val_queries, val_docs = as_query(validation.queries), as_doc(validation.docs)
    base = validation.score(val_queries, val_docs)
    corpus = as_doc(fit_texts)
    rotation = fit_pca(corpus)
    base_pca = validation.score(rotation.apply(val_queries), rotation.apply(val_docs))
    head = _insert_rotation(model, rotation.matrix)
    linear = model[head].linear
    timings["pca"] = cached.seconds_since(began)  # with the base's two validations
    spent = [0.0]

    anchors = cached.as_tensor(as_query([p.query for p in pairs.train])).to(model.device)
    positives = cached.as_tensor(as_doc([p.positive for p in pairs.train])).to(model.device)
    corpus_t = cached.as_tensor(corpus).to(model.device)
    objective = cached.Objective(
        dims,
        rank_distill=settings.rank_distill,
        temperature=settings.rank_temperature,
        negatives=settings.rank_negatives,
        passages_as_queries=settings.rank_passages,
    )
    record["loss"] = cached.describe(objective)
    if settings.rank_distill > 0:
        record["rank_distill"] = {
            "weight": settings.rank_distill,
            "temperature": settings.rank_temperature,
            "negatives": settings.rank_negatives,
            "passages_as_queries": settings.rank_passages,
        }
    every = max(1, math.ceil(total / max(1, settings.evaluations)))
    warmup = math.ceil(WARMUP * total)
    rate = settings.head_learning_rate or settings.learning_rate
    params = list(model[head].parameters())
    torch.manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(params, lr=rate, weight_decay=0.0)
    batches = cached.no_duplicate_batches(
        [(p.query, p.positive) for p in pairs.train], batch, settings.seed
    )
    rng = np.random.default_rng(settings.seed)
    history = [{"step": 0, "mean_ndcg10": base_pca["mean_ndcg10"]}]

    def snapshot() -> dict[str, Any]:
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def validate() -> dict[str, Any]:
        began = time.perf_counter()
        with torch.no_grad():
            weight = linear.weight.detach().to("cpu", torch.float32).numpy()
        figures = validation.score(val_queries @ weight.T, val_docs @ weight.T)
        spent[0] += time.perf_counter() - began
        return figures

    state: dict[str, Any] = {"best": snapshot(), "best_step": 0, "figures": base_pca, "stale": 0}
    state["reason"] = "completed"
    done, loss_value = 0, None
    began = time.perf_counter()
    try:
        for step in range(1, total + 1):
            ids = torch.tensor(next(batches))
            loss = objective(linear.weight, anchors[ids], positives[ids], corpus_t, rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cached.MAX_GRAD_NORM)
            for group in optimizer.param_groups:
                group["lr"] = rate * cached.linear_schedule(step - 1, total, warmup)
            optimizer.step()
            done = step
            loss_value = float(loss.detach())
            kept = state["figures"]["mean_ndcg10"]
            best = kept if len(history) > 1 else None
            tell("training", step=step, total=total, loss=loss_value, best=best)
            if should_stop is not None and should_stop():
                state["reason"] = "stopped"
                break
            if step % every and step < total:
                continue
            tell("validating", step=step, total=total, loss=loss_value, best=best)
            figures = validate()
            history.append({"step": step, "mean_ndcg10": figures["mean_ndcg10"]})
            if figures["mean_ndcg10"] > kept:
                state.update(best=snapshot(), best_step=step, figures=figures, stale=0)
            else:
                state["stale"] += 1
                if state["stale"] >= settings.patience:
                    state["reason"] = "no improvement"
                    break
    except KeyboardInterrupt:
        state["reason"] = "stopped"  # `done`: the steps that finished
    seconds = time.perf_counter() - began
    timings["training"] = round(seconds - spent[0], 1)
    timings["validation"] = round(spent[0], 1)
    record.update(
        {
            "pca_fit_docs": len(fit_texts),
            "head_learning_rate": rate,
            "head_only_steps": total,
            **_ending(
                state,
                history,
                validation,
                base,
                base_pca,
                steps_run=done,
                planned=total,
                seconds=seconds,
                validating=spent[0],
                pairs_per_second=done
                * batch
                / max(1e-9, timings["encoding"] + timings["training"]),
            ),
        }
    )
    if settings.encoder_steps > 0 and state["reason"] != "stopped":
        _encoder_stage(
            model, head, dims, settings, batch, pairs, fit_texts, anchors, positives, corpus_t,
            (query_prompt, document_prompt), validation, state, history, record, tell,
            should_stop,
        )  # fmt: skip
    return _kept(state, history, record)


def _encoder_stage(
    model: Any,
    head: int,
    dims: tuple[int, ...],
    settings: TrainSettings,
    batch: int,
    pairs: PairSet,
    fit_texts: list[str],
    anchors: Any,
    positives: Any,
    corpus: Any,
    prompts: tuple[str, str],
    validation: _Validation,
    state: dict[str, Any],
    history: list[dict[str, Any]],
    record: dict[str, Any],
    tell: Callable[..., None],
    should_stop: Callable[[], bool] | None,
) -> None:
    """The encoder stage from the head's best (`encoder_stage`); `state` and `record` updated
    in place: its best becomes the run's, its stop reason the run's when it was stopped."""
    from mrl_tui.core.training import encoder_stage as stage

    model.load_state_dict(state["best"])
    settings_ = stage.StageSettings(
        steps=settings.encoder_steps,
        layers=settings.encoder_layers,
        anchor=settings.encoder_anchor,
        learning_rate=settings.encoder_learning_rate,
        temperature=settings.encoder_temperature,
        negatives=settings.encoder_negatives,
        passages_as_queries=settings.encoder_passages,
        batch_size=batch,
        evaluations=settings.evaluations,
        patience=settings.encoder_patience or settings.patience,
        seed=settings.seed,
        full_slack=settings.encoder_full_slack,
    )
    texts = stage.StageTexts(
        [p.query for p in pairs.train], [p.positive for p in pairs.train], fit_texts,
        anchors, positives, corpus, prompts,
    )  # fmt: skip
    out = stage.run_stage(
        model, head, dims, settings_, texts, {"best": state["best"], "figures": state["figures"]},
        validation, tell, should_stop,
    )  # fmt: skip
    found, kept = out["state"], out["record"]
    if found["best_step"] > 0:
        state.update(best=found["best"], figures=found["figures"])
        record["validation"]["best"] = found["figures"]
    if found["reason"] == "stopped":
        state["reason"] = "stopped"
        record.update(partial=True, stop_reason="stopped")
    record["encoder_stage"] = kept
    record["loss"] = f"{record['loss']}, then the encoder: {kept['objective']}"
    record["timings"]["encoder_stage"] = round(
        kept["train_seconds"] + kept["validation_seconds"], 1
    )


def _fit_texts(pairs: PairSet, seed: int) -> list[str]:
    """The training passages (not the held-out ones), up to `PCA_FIT_DOCS` of them at random."""
    held = {p.passage for p in pairs.validation}
    rows = [i for i in range(len(pairs.passages)) if i not in held]
    if len(rows) > PCA_FIT_DOCS:
        rng = np.random.default_rng(seed)
        rows = sorted(rng.permutation(rows)[:PCA_FIT_DOCS].tolist())
    return [pairs.passages[i].text for i in rows]


def _weighted_distill(model: Any, weight: float) -> Any:
    """`weight` × sentence-transformers' `EmbedDistillLoss` (1 − cosine to the label vectors)."""
    from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss

    class Weighted(EmbedDistillLoss):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return weight * super().forward(*args, **kwargs)

    return Weighted(model, distance_metric="cosine")


def _insert_rotation(model: Any, matrix: np.ndarray) -> int:
    """A trainable `Dense` layer holding the PCA rotation, before the model's `Normalize` (or at
    its end), kept orthogonal while it trains (torch's `orthogonal` parametrization): full-dim
    scores stay the base model's while the encoder is frozen, prefixes start at PCA's. `_save`
    writes it as a plain `Dense` weight. Returns the layer's index in the model."""
    import torch
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.base.modules.normalize import Normalize
    from torch.nn.utils.parametrizations import orthogonal

    dim = matrix.shape[0]
    weight = torch.tensor(np.ascontiguousarray(matrix.T), dtype=torch.float32)
    dense = Dense(dim, dim, bias=False, activation_function=None, init_weight=weight)
    orthogonal(dense.linear)
    where = next((i for i, m in enumerate(model) if isinstance(m, Normalize)), len(model))
    model.insert(where, dense.to(model.device))
    return where


def plain_heads(model: Any) -> None:
    """Each parametrized (orthogonal) weight replaced by the plain weight it stands for, so that
    the model saves as an ordinary `Dense` layer that plain `SentenceTransformer(path)` loads."""
    from torch.nn.utils import parametrize

    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def _save(
    embedder: Embedder,
    best_state: dict[str, Any],
    provenance: dict[str, Any],
    source: Path,
    cache_root: Path | None,
) -> Path:
    """The best weights as safetensors in a temporary folder, renamed into place when whole."""
    model = embedder.model
    model.load_state_dict(best_state)
    plain_heads(model)
    temp = new_temp_dir(cache_root)
    try:
        model.save(str(temp), create_model_card=False, safe_serialization=True)
        if not any(temp.rglob("*.safetensors")):
            raise InputError(f"{embedder.name}: the trained weights were not saved as safetensors")
        name = f"{source.name}-{Path(embedder.name).name}"
        return publish(temp, name, provenance, cache_root)
    except OSError as exc:
        raise InputError(
            f"cannot write the trained model to {temp.parent}: {exc.strerror or exc}"
        ) from exc
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # gone already when published
