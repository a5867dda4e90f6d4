"""`mrl-tui bench`, end to end: check the request, build the evaluation sets, measure, report.

The stages live in their own modules: `sets` (evaluation sets and their transforms),
`embeddings_cache` (the bench cache), `measure` (scoring every way of searching), `bench_hybrid`
(keyword search and fusion), `report` (the dataclasses returned, and their JSON) and `svg` (the
plot). A front end calls `run` with a `BenchRequest` and `BenchHooks` (how it shows progress and
opens a folder), then renders the `BenchReport` or `CompareReport` it gets back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mrl_tui.core.choices import dim_list
from mrl_tui.core.embedding.choice import ModelChoice
from mrl_tui.core.errors import InputError
from mrl_tui.core.evaluation.embeddings_cache import warn
from mrl_tui.core.evaluation.report import BenchReport, CompareReport, Report
from mrl_tui.core.evaluation.sets import EvalSet, Progress
from mrl_tui.core.transforms.kind import KINDS, NAIVE

if TYPE_CHECKING:
    from mrl_tui.core.embedding.embed import Embedder
    from mrl_tui.core.evaluation.beir import BeirSet
    from mrl_tui.core.library import Library

DEFAULT_DIMS = (32, 64, 128, 256)
COMPARE_TRANSFORMS = tuple(kind.choice for kind in KINDS)
"""`--compare`'s transform columns: every transform kind, "naive", "pca", "adaptor"."""
TRAINED_COLUMN = "trained (native)"
"""`--compare`'s column for the model `mrl-tui train` made for the set, at its own prefixes."""
BENCH_PHASE = "scoring each dim and funnel, calibrating the router"
COMPARE_PHASE = "scoring each transform and precision"
HYBRID_PHASE = "keyword index and fusions at each dim"
FOLDER_SILENT = {"embedding queries": "embedding pseudo-queries for the funnel and router"}
"""After a folder's queries, its pseudo-queries (funnel, router) are embedded unreported."""


def parse_dims(text: str) -> list[int]:
    """``"32,64,128"`` → sorted unique dims; anything else is an `InputError`."""
    return sorted(set(dim_list(text)))


def check_dims(dims: Sequence[int], full_dim: int, *, given: bool = True) -> list[int]:
    """The dims below full (full itself is always measured); too large given dims are an error."""
    too_big = [d for d in dims if d > full_dim]
    if too_big and given:
        raise InputError(
            f"dims: {too_big[0]} is above the model's {full_dim} dimensions", settings=("dims",)
        )
    return [d for d in dims if d < full_dim]


# -- the request and how it is shown ---------------------------------------------------------


@dataclass(frozen=True)
class BenchRequest:
    """One bench: a BEIR folder (`beir`) or an indexed folder holding queries.tsv (`folder`)."""

    beir: Path | None = None
    folder: Path | None = None
    dims: tuple[int, ...] | None = None
    """Prefix dims to measure (`parse_dims`); None: `DEFAULT_DIMS`, those below full."""
    k: int = 10
    precision: str = "float32"
    transform: str = "auto"
    retrieval: str = "hybrid"
    """dense, lexical or hybrid: keyword search (and its fusions) measured too."""
    compare: bool = False
    model_choice: ModelChoice = field(default_factory=ModelChoice)
    """The model measured, and how it runs (the trained column's runs the same way)."""
    cache_root: Path | None = None
    backend: str | None = None
    """An engine (`--backend`): the same queries searched through it too (``report.engine``)."""
    trained: bool = True
    """`compare` on a BEIR set: a `TRAINED_COLUMN` when `mrl-tui train` made a model of this
    base for the set."""


@contextlib.contextmanager
def _quiet(_text: str) -> Iterator[None]:
    yield


@contextlib.contextmanager
def _no_progress(_silent: dict[str, str] | None) -> Iterator[Progress]:
    yield lambda what, done, total: None


@dataclass(frozen=True)
class BenchHooks:
    """How a front end shows bench's long steps, and opens a folder; the defaults show nothing."""

    status: Callable[[str], AbstractContextManager[object]] = _quiet
    """A short wait: loading a model."""
    phase: Callable[[str], AbstractContextManager[object]] = _quiet
    """A long step that reports no progress."""
    embedding: Callable[[dict[str, str] | None], AbstractContextManager[Progress]] = _no_progress
    """Embedding stages, with progress(what, done, total); `silent` as `FOLDER_SILENT`."""
    library: Callable[[str], AbstractContextManager[Library]] | None = None
    """A folder opened under a transform choice (closed on exit); needed for `folder`."""
    index: Callable[[Library], None] | None = None
    """Index the open folder completely (default: `Library.update`, waiting for others)."""
    note: Callable[[str], None] = warn
    """One line about the bench cache: a damaged file rebuilt, one that could not be saved."""


# -- running it ------------------------------------------------------------------------------


def run(request: BenchRequest, hooks: BenchHooks | None = None) -> Report:
    """The bench `request` asks for. Bad input fails before any model loads."""
    hooks = hooks or BenchHooks()
    if (request.beir is None) == (request.folder is None):
        raise InputError("bench needs either a folder holding queries.tsv or a BEIR folder")
    if request.beir is not None:
        return _run_beir(request, request.beir, hooks)
    assert request.folder is not None
    return _run_folder(request, request.folder, hooks)


def _dims(request: BenchRequest, full_dim: int) -> list[int]:
    given = request.dims is not None
    return check_dims(request.dims or DEFAULT_DIMS, full_dim, given=given)


def _embedder(request: BenchRequest, model: str | None, hooks: BenchHooks) -> Embedder:
    """`model` loaded as the request's model is."""
    choice = replace(request.model_choice, model=model)
    with hooks.status(f"loading {model or 'the bundled model'}"):
        return choice.load(cache_root=request.cache_root)


def _run_beir(request: BenchRequest, folder: Path, hooks: BenchHooks) -> Report:
    from mrl_tui.core.evaluation.beir import load_beir
    from mrl_tui.core.evaluation.sets import beir_eval_set, resolve_transform

    data = load_beir(folder)  # a typo fails in milliseconds, before the model loads
    embedder = _embedder(request, request.model_choice.model, hooks)
    dims = _dims(request, embedder.full_dim)
    names = COMPARE_TRANSFORMS if request.compare else (request.transform,)
    with hooks.embedding(None) as progress:
        sets = {
            name: beir_eval_set(
                folder, data, embedder, progress, request.cache_root, name, hooks.note
            )
            for name in names
        }
    if not request.compare:
        return _bench(sets[request.transform], dims, request, hooks)
    trained = _trained_set(request, folder, data, embedder, hooks) if request.trained else None
    if trained is not None:
        sets[TRAINED_COLUMN] = trained
    chosen = resolve_transform(request.transform, embedder.spec.native_mrl)
    return _compare(sets, chosen, dims, request, hooks)


def _trained_set(
    request: BenchRequest, folder: Path, data: BeirSet, base: Embedder, hooks: BenchHooks
) -> EvalSet | None:
    """The set embedded by the model `mrl-tui train --beir` made from this base for `folder`,
    at its own prefixes (native MRL); None when there is none, or the base is itself trained."""
    from mrl_tui.core.evaluation.sets import beir_eval_set
    from mrl_tui.core.training.train import base_model_id
    from mrl_tui.core.training.trained import trained_for

    if base.spec.trained_on:
        return None
    model = trained_for(folder, request.cache_root)
    base_id = base_model_id(request.model_choice.model)
    if model is None or model.provenance.get("base_model") != base_id:
        return None
    embedder = _embedder(request, str(model.path), hooks)
    with hooks.embedding(None) as progress:
        return beir_eval_set(
            folder, data, embedder, progress, request.cache_root, NAIVE.choice, hooks.note
        )


def _run_folder(request: BenchRequest, folder: Path, hooks: BenchHooks) -> Report:
    from mrl_tui.core.evaluation.beir import read_folder_queries
    from mrl_tui.core.evaluation.sets import folder_eval_set, resolve_transform, retransformed
    from mrl_tui.core.preflight import check_folder

    read_folder_queries(check_folder(folder))
    if hooks.library is None:
        raise ValueError("a folder bench needs BenchHooks.library")
    # --compare fits each transform on the model's own vectors: the folder is opened naive.
    opened = NAIVE.choice if request.compare else request.transform
    with hooks.library(opened) as library:
        dims = _dims(request, library.full_dim)
        _index(library, hooks)  # figures of a complete index
        with hooks.embedding(FOLDER_SILENT) as progress:
            eval_set = folder_eval_set(library, progress)
        native = library.embedder.spec.native_mrl
    if not request.compare:
        return _bench(eval_set, dims, request, hooks)
    sets = {}
    for name in COMPARE_TRANSFORMS:
        with hooks.phase(f"fitting {name} on the index"):
            sets[name] = retransformed(eval_set, name, native)
    return _compare(sets, resolve_transform(request.transform, native), dims, request, hooks)


def _index(library: Library, hooks: BenchHooks) -> None:
    if hooks.index is not None:
        hooks.index(library)
    else:
        library.update(wait=True)  # an empty index is told by `folder_eval_set`


def _bench(es: EvalSet, dims: list[int], request: BenchRequest, hooks: BenchHooks) -> BenchReport:
    from dataclasses import replace

    from mrl_tui.core.evaluation.measure import run_bench

    with hooks.phase(BENCH_PHASE):
        report = run_bench(es, dims, request.k, request.precision)
    if request.retrieval != "dense":
        from mrl_tui.core.evaluation.bench_hybrid import hybrid_report

        with hooks.phase(HYBRID_PHASE):
            fused = request.retrieval == "hybrid"
            hybrid = hybrid_report(es, dims, request.k, with_fusion=fused)
        report = replace(report, hybrid=hybrid, with_hybrid=True)
    if request.backend:
        from mrl_tui.core.engines.bench import engine_report

        with hooks.phase(f"loading the set into {request.backend} and searching it there"):
            engine = engine_report(es, request.backend, dims, request.k, report.to_dict())
        report = replace(report, engine=engine)
    return report


def _compare(
    sets: dict[str, EvalSet],
    chosen: str,
    dims: list[int],
    request: BenchRequest,
    hooks: BenchHooks,
) -> CompareReport:
    from mrl_tui.core.evaluation.measure import run_compare

    with hooks.phase(COMPARE_PHASE):
        return run_compare(sets, chosen, dims, request.k, fitted=COMPARE_TRANSFORMS)
