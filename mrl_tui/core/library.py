"""An indexed folder, ready to search: the one object the CLI, the TUI and the benchmarks share.

Data flows one way: folder → `update()` (chunks and vectors in the cache) → `load()` (transform and
nested index in memory) → `query()` (one embedding per query) → `search(query, dim)` (ranked hits).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from mrl_tui.core.cache import artifacts
from mrl_tui.core.cache.indexer import IndexProgress, IndexReport, update_index
from mrl_tui.core.cache.store import IndexStore, check_cache_root, default_cache_root, index_dir_for
from mrl_tui.core.cache.writer_lock import WAITING
from mrl_tui.core.corpus.chunking import Chunk, ChunkSettings
from mrl_tui.core.corpus.walk import DEFAULT_MAX_FILE_BYTES
from mrl_tui.core.embedding import facts
from mrl_tui.core.embedding.choice import ModelChoice
from mrl_tui.core.embedding.embed import EmbedderInfo
from mrl_tui.core.embedding.onnx_embed import vectors_name
from mrl_tui.core.errors import (
    CacheDamaged,
    CacheError,
    CacheUnwritable,
    Cancelled,
    InputError,
    MrlError,
)
from mrl_tui.core.preflight import check_folder, check_query
from mrl_tui.core.search import hnsw, hybrid
from mrl_tui.core.search.codes import DEFAULT_RESCORE, PRECISIONS, Codes, encode, rescored_search
from mrl_tui.core.search.funnel import auto_funnel
from mrl_tui.core.search.hnsw import ANCHOR_DIM, HNSW_MIN_CHUNKS, GraphSet, graph_search
from mrl_tui.core.search.index import Hits, NestedIndex, index_device
from mrl_tui.core.search.pseudo import SHORT, WINDOWS, pseudo_queries
from mrl_tui.core.search.query_features import TermStats
from mrl_tui.core.search.query_syntax import PathFilter, matching_rows
from mrl_tui.core.search.router import Route, Router, routable
from mrl_tui.core.transforms.adaptor import Adaptor, fit_adaptor
from mrl_tui.core.transforms.kind import ADAPTOR, CHOICES, NAIVE, PCA, TransformKind, check_choice
from mrl_tui.core.transforms.kind import resolve as resolve_kind
from mrl_tui.core.transforms.pca import IDENTITY, Transform, fit_pca

if TYPE_CHECKING:
    from mrl_tui.core.embedding.embed import Embedder  # made by `ModelChoice.load`


@dataclass(frozen=True)
class Query:
    """A query embedded once; moving the slider only re-scores it.

    `raw` is the model's vector; `vector` is it in the index's basis (PCA or as is) for the load
    of the index it was made against (`generation`: a count of loads, unique in this process).
    After a re-index, `search` re-projects `raw` by itself.
    """

    text: str
    raw: np.ndarray
    vector: np.ndarray
    generation: int
    embed_ms: float
    paths: PathFilter | None = None
    """The query's ``path:`` terms (`core.search.query_syntax`): only matching files are ranked."""
    words: str = ""
    """What was embedded: `text` without its ``path:`` terms."""


@dataclass(frozen=True)
class Hit:
    rank: int  # 1-based
    id: int  # chunk id in the cache
    score: float
    chunk: Chunk
    dense_rank: int | None = None
    """Its rank in the dense list (`retrieve`); None where it is not in that list."""
    lexical_rank: int | None = None
    """Its rank in the keyword (bm25) list; None where no term matched or not searched."""


SEARCH_MODES = ("auto", "exact", "graph")
MODE_ALIASES = {"funnel": "graph"}
"""Older spellings of a search mode: "funnel" was the HNSW graph search before the word came to
mean only the exact cascade (`mrl_tui.core.search.funnel`)."""
TRANSFORMS = CHOICES
"""The user's transform choices (`mrl_tui.core.transforms.kind`)."""
GRAPH_BUILDING_NOTE = (
    "exact search: the HNSW graph of this index is being built in the background; graph search "
    "once it is ready"
)
"""Said with a search that would have used the graph (`search` at a dim above it) while a
background build (`background_refit`) makes it: the answer is the exact one meanwhile."""
REFIT_FRACTION = 0.10
"""A fitted transform (PCA, adaptor) or router made for an earlier generation is kept, and new
vectors are projected with it, until more than this share of the rows it was fitted on has
changed (added, replaced or removed); then it is fitted again. A watched folder re-indexes on
every save: refitting each time would cost an adaptor's training, or a router's ~200 query
embeddings, per save."""


@dataclass(frozen=True)
class FitBasis:
    """What a fit saw: the generation, its row count and its largest chunk id (ids only grow, so
    rows added since are the ids above it, and rows removed since are the old ones missing)."""

    generation: int
    rows: int
    max_id: int

    def changed(self, ids: np.ndarray) -> int:
        added = int((ids > self.max_id).sum())
        return added + max(0, self.rows - (len(ids) - added))


@dataclass(frozen=True)
class SearchResult:
    query: Query
    dim: int
    hits: list[Hit]
    search_ms: float
    mode: str  # "exact", "graph" (HNSW, then exact), "rescored" (codes, then exact), "routed"
    precision: str = "float32"
    retrieval: str = "dense"  # or "lexical", "hybrid" (`retrieve`)
    note: str = ""
    """One line on how the answer was made, when the user should know (an engine's dim between
    its tiers: candidates from the tier below, rescored here)."""
    backend: str = "local"
    """What searched: "local" (the in-memory index) or the engine (`--backend`)."""


@dataclass
class LibraryInfo:
    root: Path
    cache_dir: Path
    embedder: EmbedderInfo
    transform: str
    files: int
    chunks: int
    messages: list[str] = field(default_factory=list)


T = TypeVar("T")
Fitted = TypeVar("Fitted", Transform, Adaptor)


def _pca_from_arrays(arrays: dict[str, np.ndarray]) -> Transform:
    if "matrix" not in arrays:
        raise KeyError("a PCA transform without its matrix")
    return Transform.from_arrays("pca", arrays)


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    """Serialise a method on the library's state lock: the TUI searches from one worker while a
    re-index in another swaps the index, and a search must never see half of each."""

    @functools.wraps(method)
    def wrapper(self: Library, *args: Any, **kwargs: Any) -> T:
        with self._state_lock:
            return method(self, *args, **kwargs)

    return wrapper


class _IndexMoved(Exception):
    """Another process committed a new generation under a search; load it and search again."""


def _repairing(method: Callable[..., T]) -> Callable[..., T]:
    """Damage found while loading or searching is repaired (from the database, else from the
    folder: see `Library.update`), with one line in `messages`, and the call made again."""

    @functools.wraps(method)
    def wrapper(self: Library, *args: Any, **kwargs: Any) -> T:
        for attempt in range(3):
            try:
                return method(self, *args, **kwargs)
            except _IndexMoved:
                continue
            except CacheDamaged as exc:
                if attempt == 2:
                    raise
                self._update(None, None, wait=True, damage=exc)
        raise CacheError("the index kept changing during this search; try again")

    return wrapper


class Library:
    def __init__(
        self,
        root: Path,
        embedder: Embedder,
        *,
        cache_root: Path | None = None,
        chunk_settings: ChunkSettings | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        transform: str = "auto",
    ) -> None:
        check_choice(transform)
        self.root = check_folder(root)
        self.transform_choice = transform
        self.embedder = embedder
        self.max_file_bytes = max_file_bytes
        self.chunk_settings = chunk_settings or ChunkSettings(
            max_tokens=min(256, embedder.max_chunk_tokens)
        )
        settings: dict[str, object] = {
            "model": embedder.name,
            "max_tokens": self.chunk_settings.max_tokens,
            "overlap_tokens": self.chunk_settings.overlap_tokens,
        }
        backend = getattr(embedder, "backend", "torch")
        if backend != "torch":  # other vectors, so another index; torch's key is as before
            settings["embed_backend"] = vectors_name(backend)
        directory = index_dir_for(cache_root or default_cache_root(), self.root, settings)
        facts.record(cache_root or default_cache_root(), embedder)  # for `open(lazy=True)`
        started = time.perf_counter()
        self.store, message = IndexStore.open_or_rebuild(directory, settings, embedder.full_dim)
        self.messages: list[str] = [message] if message else []
        """One line each: rebuilt caches, waits, files that could not be saved (see
        `take_messages`)."""
        if self.store.keyword_rows_built:  # a cache made before the keyword index
            self.messages.append(
                f"building the keyword index for the {self.store.keyword_rows_built} chunks "
                f"already in the cache… done in {time.perf_counter() - started:.1f} s (once)"
            )
        self._told = 0
        self.transform: Transform | Adaptor = IDENTITY
        self.index: NestedIndex | None = None
        self.graph: GraphSet | None = None
        self._ids = np.zeros(0, dtype=np.int64)
        self._codes: dict[str, Codes] = {}
        self._views: dict[str, tuple[Transform, NestedIndex]] = {}
        self._loaded_generation = -1
        self._loaded_db = ""
        self._loads = 0
        self._router: Router | None = None
        self._row_paths: list[str] | None = None  # each loaded row's file, for path filters
        self._fits: dict[str, Any] = {}  # fitted transforms and routers, by name, for reuse
        self._fit_ids = np.zeros(0, dtype=np.int64)  # the rows a fit being made is for
        self.fit_notes: dict[str, str] = {}
        """Which fit is in use, by name ("pca", "router_pca"): fitted when, how much changed."""
        self.background_refit = False
        """Refit a stale transform or router, and build a new generation's HNSW graph, in a
        thread (see `REFIT_FRACTION`), searching with the current fit (and exactly, while the
        graph is built) meanwhile: what a watched folder wants (`watch`, `serve`)."""
        self.on_refit: Callable[[str], None] | None = None
        """Gets one line when a background refit or graph is in use (else: `messages`)."""
        self._due: set[str] = set()  # fits to make again in the background
        self._graph_due = False
        self._refitting: set[str] = set()
        self._refit_seconds: dict[str, float] = {}
        """What each background refit ("pca", "router_pca", "hnsw") last took, in seconds."""
        self._worker: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._rows_key: tuple[str, int] | None = None
        """(db id, generation) of `_ids` read for a keyword search before any `load`."""
        self._state_lock = threading.RLock()
        self.engine: Any = None
        """An `engines.binding.EngineBinding` once `use_engine` is called: dense searches go to
        it, and each load of a new generation syncs it (under `background_refit`, after the first
        load, in the background thread: searches run here until the engine is level)."""
        self._engine_due = False

    def use_engine(self, backend: str, collection: str | None = None) -> None:
        """Search through a vector engine (``qdrant:DIR`` or ``qdrant://HOST:PORT``). Checks the
        engine now (not installed, unreachable, another model's collection: one line, nothing
        written); the next load syncs it."""
        from mrl_tui.core.engines.binding import EngineBinding

        with self._state_lock:
            if self.engine is not None:
                self.engine.close()
                self.engine = None
            self.engine = EngineBinding(self, backend, collection)
            if self.index is not None:
                self._sync_engine(now=True)

    def _sync_engine(self, now: bool = False) -> None:
        if not now and self.background_refit and self._loads > 1:  # a watched save: aside
            self._engine_due = True
            return
        report = self.engine.sync(self)
        if report is not None and (report.upserted or report.deleted_files):
            self._note(report.line)

    def _background_engine(self) -> None:
        """In the background thread: bring the engine level with the loaded rows (a new
        generation, or every point after a refit), outside the state lock; searches run on the
        local index until it is (`EngineBinding.serves`)."""
        with self._state_lock:
            if not self._engine_due or self.engine is None or self.index is None or self._closed:
                return
            self._engine_due = False
            binding, rows = self.engine, self.engine.rows_of(self)
        try:
            report = binding.sync(self, rows)
        except MrlError as exc:  # unreachable, or the folder moved on: the next load tries again
            if self.store.generation == rows.generation and not self._closed:
                self._said(f"{exc}; searches run on the local index until the next change")
            return
        if report is not None and not self._closed:
            self._said(report.line)

    @classmethod
    def open(
        cls,
        root: Path | str,
        *,
        model_choice: ModelChoice | None = None,
        cache_root: Path | None = None,
        transform: str = "auto",
        lazy: bool = False,
        on_status: Callable[[str], None] | None = None,
    ) -> Library:
        """Check the folder first (fast), then load the model `model_choice` says (slow; None:
        the bundled model on the best device).

        `lazy`: when an earlier run recorded this model (`core.embedding.facts`), open the index
        without it; it loads on the first embedding (a changed file, a dense query). A keyword
        search of an indexed folder then never imports torch. `on_status(line)`: told what a first
        load does that takes a while (the model's one-time ONNX export)."""
        folder = check_folder(root)
        check_choice(transform)
        check_cache_root(cache_root or default_cache_root())
        choice = model_choice or ModelChoice()

        def load() -> Embedder:
            return choice.load(cache_root=cache_root, on_status=on_status)

        embedder: Any = None
        if lazy:
            key = choice.facts_key
            data = facts.read(cache_root or default_cache_root(), key)
            if data is not None:
                embedder = facts.KnownModel(data, mrl=choice.mrl, key=key, load=load)
        return cls(folder, embedder or load(), cache_root=cache_root, transform=transform)

    @property
    def full_dim(self) -> int:
        return self.embedder.full_dim

    @property
    def row_chunk_ids(self) -> np.ndarray:
        """The store's chunk id of each row of the loaded `index` (a copy)."""
        return self._ids.copy()

    def take_messages(self) -> list[str]:
        """The messages not taken yet (the CLI prints them, the TUI shows them)."""
        new, self._told = self.messages[self._told :], len(self.messages)
        return new

    def _note(self, message: str) -> None:
        if not self.messages or self.messages[-1] != message:
            self.messages.append(message)

    # -- indexing ------------------------------------------------------------------------------

    def update(
        self,
        on_progress: Callable[[IndexProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        *,
        wait: bool = True,
    ) -> IndexReport:
        """Embed what changed since the last run; afterwards `load()` picks up the new state.

        One process indexes a folder at a time (the writer lock). When another holds it this
        waits (a progress phase "waiting" says so), or with `wait=False` returns at once and
        leaves the index as the other has committed it so far (unless that is nothing yet).
        A read-only cache is not updated: it is searched as it is."""
        return self._update(on_progress, should_stop, wait=wait)

    def _update(
        self,
        on_progress: Callable[[IndexProgress], None] | None,
        should_stop: Callable[[], bool] | None,
        *,
        wait: bool,
        damage: CacheDamaged | None = None,
    ) -> IndexReport:
        self.check_root_still_there()
        if self.store.read_only:
            if damage is not None:
                raise CacheUnwritable(
                    f"{damage}, and read-only: give a writable cache folder",
                    settings=("cache folder",),
                )
            self._note(
                f"the cache at {self.store.directory} is read-only: searching what it holds, "
                "without looking for changes"
            )
            return IndexReport(chunks_total=self.store.chunk_count())
        lock = self.store.writer_lock()
        try:
            free = lock.try_acquire()
        except OSError as exc:
            raise artifacts.unwritable(lock.path, exc) from exc
        if not free:
            if not wait and damage is None and self.store.chunk_count() > 0:
                self._note(f"{WAITING.split(';')[0]}; searching what it has committed so far")
                return IndexReport(chunks_total=self.store.chunk_count())
            if on_progress is not None:
                on_progress(IndexProgress("waiting", current=WAITING))
            try:
                lock.wait(should_stop=should_stop)
            except Cancelled:
                return IndexReport(chunks_total=self.store.chunk_count(), cancelled=True)
        try:
            if damage is not None:
                self._mend(damage)
            try:
                return self._index(on_progress, should_stop)
            except CacheDamaged as exc:
                self._mend(exc)
                return self._index(on_progress, should_stop)
        finally:
            lock.release()

    def _index(
        self,
        on_progress: Callable[[IndexProgress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> IndexReport:
        return update_index(
            self.store,
            self.root,
            self.embedder,
            self.chunk_settings,
            max_file_bytes=self.max_file_bytes,
            on_progress=on_progress,
            should_stop=should_stop,
        )

    def _mend(self, damage: CacheDamaged) -> None:
        """Under the writer lock: forget the files of damaged rows, or the whole database; the
        update that follows embeds them again from the folder."""
        self._loaded_generation = -1  # not under the state lock: a search may hold it, waiting
        if damage.chunk_ids:
            self._note(f"{damage}; embedding their files again")
            self.store.forget_files_of(damage.chunk_ids)
        else:
            self._note(f"{damage}; rebuilding it from the folder")
            self.store.wipe()

    def check_root_still_there(self) -> None:
        if not self.root.is_dir():
            raise InputError(f"{self.root}: the folder is gone")

    @_repairing
    @_locked
    def load(
        self,
        on_graph_progress: Callable[[int, int], None] | None = None,
        on_tune_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Build the transform and the in-memory index for the cache's current generation.

        Above `HNSW_MIN_CHUNKS` chunks an HNSW graph at `ANCHOR_DIM` is loaded or built too (its
        build reports `on_graph_progress(done, total)`, the measurement of its search settings
        that follows `on_tune_progress(done, total)`), and searches above that dim use it
        (graph search).
        """
        loaded = (self.store.db_id, self.store.generation)
        if loaded == (self._loaded_db, self._loaded_generation):
            return
        generation, ids, vectors = self.store.load_snapshot(self._note)
        self._fit_ids = ids
        self.transform = self._load_transform(vectors, generation)
        device = index_device(self.embedder.device)
        self.index = NestedIndex(self.transform.apply(vectors), device=device)
        self.graph = self._load_graph(generation, on_graph_progress, on_tune_progress)
        self._ids = ids
        self._codes = {}
        self._views = {}
        self._router = None
        self._row_paths = None
        self._loaded_generation = generation
        self._loaded_db = self.store.db_id
        self._loads += 1
        if self.engine is not None:
            self._sync_engine()
        self._start_background()

    def _shelf(self) -> artifacts.Shelf:
        """Derived files of the index folder: recorded in its database, a rebuild told in the
        messages, kept unless the cache is read-only."""
        return artifacts.Shelf(self.store, self._note, keep=not self.store.read_only)

    def _load_graph(
        self,
        generation: int,
        on_progress: Callable[[int, int], None] | None,
        on_tune: Callable[[int, int], None] | None = None,
    ) -> GraphSet | None:
        assert self.index is not None
        if self.index.n < HNSW_MIN_CHUNKS or self.full_dim <= ANCHOR_DIM:
            return None
        # The graphs are built on transformed vectors, so each transform has its own. hnswlib
        # reads only a verified file: it crashes on an edited one.
        paths = self._graph_paths(self.transform.name, generation)
        if self.background_refit and self._loads > 0 and not all(p.exists() for p in paths):
            self._graph_due = True  # exact searches until it is built (minutes on a CPU)
            return None
        return self._graphs(self.index, self.transform.name, generation, on_progress, on_tune)

    def _graph_paths(self, name: str, generation: int) -> list[Path]:
        """The graph tiers' files, then their tuned settings' (`hnsw.load_or_build`)."""
        tiers: list[int | None] = [*hnsw.tier_dims(self.full_dim), None]
        return [
            self.store.derived_path(hnsw.file_name(name, t), generation, ".bin" if t else ".json")
            for t in tiers
        ]

    def _graphs(
        self,
        index: NestedIndex,
        name: str,
        generation: int,
        on_progress: Callable[[int, int], None] | None = None,
        on_tune: Callable[[int, int], None] | None = None,
    ) -> GraphSet:
        """The graph tiers and their settings, loaded, or built and tuned once, and kept."""
        *graphs, settings = self._graph_paths(name, generation)
        tiers = dict(zip(hnsw.tier_dims(self.full_dim), graphs, strict=True))
        return hnsw.load_or_build(self._shelf(), tiers, settings, index, on_progress, on_tune)

    @property
    def transform_kind(self) -> TransformKind:
        """What `transform_choice` resolves to for this model (``auto``: naive or PCA)."""
        return self._kind(self.transform_choice)

    def _kind(self, choice: str) -> TransformKind:
        """`choice` resolved; only ``auto`` asks whether the model is native MRL (a stand-in
        embedder with no registry entry can still search naive or PCA)."""
        return resolve_kind(choice, choice == "auto" and self.embedder.spec.native_mrl)

    def _load_transform(
        self, vectors: np.ndarray, generation: int, choice: str | None = None
    ) -> Transform | Adaptor:
        """The rotation `choice` (default: `transform_choice`) asks for; a fitted PCA or adaptor
        is kept next to the vectors."""
        kind = self._kind(choice or self.transform_choice)
        if kind is NAIVE or len(vectors) < 2:
            return IDENTITY
        if kind is ADAPTOR:
            return self._load_adaptor(vectors, generation)
        return self._fitted(PCA.fitted, generation, lambda: fit_pca(vectors), _pca_from_arrays)

    def _load_adaptor(self, vectors: np.ndarray, generation: int) -> Adaptor:
        """Fitted once per generation on the embedder's device, then loaded."""
        name = ADAPTOR.fitted
        return self._fitted(
            name,
            generation,
            lambda: fit_adaptor(vectors, device=self.embedder.device),
            lambda a: Adaptor.from_arrays(name, a),
        )

    def transform_ready(self, name: str) -> bool:
        """Whether the fitted transform ``name`` ("pca", "adaptor") is stored for the loaded
        index, so using it costs no fitting. Not locked: the UI thread asks while a worker may
        hold the lock to fit one."""
        generation = self._loaded_generation
        return self.store.derived_path(f"transform_{name}", generation, ".npz").exists()

    def _fitted(
        self,
        name: str,
        generation: int,
        fit: Callable[[], Fitted],
        load: Callable[[dict[str, np.ndarray]], Fitted],
    ) -> Fitted:
        """A transform fitted on the corpus once per generation, kept as .npz (never pickled)."""
        dim = self.full_dim

        def checked(path: Path) -> Fitted:
            fitted = load(artifacts.load_npz(path))
            fitted.apply(np.zeros(dim, np.float32))  # an InputError for another dimension
            return fitted

        return self._shelf().get(
            self.store.derived_path(f"transform_{name}", generation, ".npz"),
            (dim,),
            load=lambda path: self._kept_fit(name, generation, checked(path), fresh=False),
            build=lambda: self._refit_or_reuse(name, generation, fit),
            writer=lambda fitted: artifacts.npz_writer(fitted.to_arrays()),
            what=f"{name} transform",
        )

    def _refit_or_reuse(self, name: str, generation: int, fit: Callable[[], T]) -> T:
        """The fit of an earlier generation while little changed since (`REFIT_FRACTION`),
        else a new one."""
        previous, basis = self._fits.get(name), self._basis(name)
        if previous is not None and basis is not None:
            changed = basis.changed(self._fit_ids)
            small = changed <= REFIT_FRACTION * max(basis.rows, 1)
            if small or self.background_refit:
                self.fit_notes[name] = (
                    f"{name} fitted on {basis.rows:,} chunks (generation {basis.generation}); "
                    f"{changed:,} changed since, "
                    + (
                        f"refitted above {REFIT_FRACTION:.0%}"
                        if small
                        else "refitting in the background"
                    )
                )
                if not small:
                    self._due.add(name)
                return previous
        return self._kept_fit(name, generation, fit(), fresh=True)

    def _kept_fit(self, name: str, generation: int, fitted: T, *, fresh: bool) -> T:
        """Remember `fitted` for reuse; a fresh fit (or one without a record) records its
        basis in the database."""
        self._fits[name] = fitted
        ids = self._fit_ids
        known = None if fresh else self._basis(name)
        if known is None:
            basis = FitBasis(generation, len(ids), int(ids.max()) if len(ids) else 0)
            if not self.store.read_only:
                self.store.set_meta(f"fit_{name}", json.dumps(dataclasses.asdict(basis)))
            self.fit_notes[name] = f"{name} fitted on {basis.rows:,} chunks (this generation)"
        elif self.background_refit and known.changed(ids) > REFIT_FRACTION * max(known.rows, 1):
            self._due.add(name)  # a kept fit saved as stale (its refit never finished): now
        return fitted

    def _basis(self, name: str) -> FitBasis | None:
        try:
            return FitBasis(**json.loads(self.store.get_meta(f"fit_{name}") or "null"))
        except (TypeError, ValueError):
            return None

    # -- background refits (`background_refit`) -------------------------------------------------

    def _start_background(self) -> None:
        """Under the state lock: a worker for what is due, unless one runs (it looks again)."""
        if not (self._due or self._graph_due or self._engine_due) or self._closed:
            return
        if self._worker is not None and self._worker.is_alive():
            return
        self._idle.clear()
        self._worker = threading.Thread(target=self._background, name="refit", daemon=True)
        self._worker.start()

    def wait_for_refits(self, timeout: float | None = None) -> bool:
        """Whether every background refit and graph build is done (waits up to `timeout`)."""
        return self._idle.wait(timeout)

    def _said(self, line: str) -> None:
        if self.on_refit is not None:
            self.on_refit(line)
        else:
            self._note(line)

    def _background(self) -> None:
        try:
            while True:
                with self._state_lock:
                    if self._closed or not (self._due or self._graph_due or self._engine_due):
                        return
                    generation = self._loaded_generation
                    due, self._due = self._due, set()
                    graph, self._graph_due = self._graph_due, False
                    self._refitting = set(due) | ({"hnsw"} if graph else set())
                try:
                    self._background_step(generation, due, graph)
                except Exception as exc:  # the current fit stays in use; the next load tries again
                    if not self._closed:
                        self._said(
                            f"a background refit failed ({type(exc).__name__}: {exc}); "
                            "the current fit stays in use"
                        )
        finally:
            with self._state_lock:
                self._refitting = set()
                self._worker = None
                self._idle.set()

    def _background_step(self, generation: int, due: set[str], graph: bool) -> None:
        """Fit again what is due for `generation` outside the state lock, then swap it in under
        it (dropped if another generation was loaded meanwhile: that load decides again)."""
        self._background_engine()  # a new generation's files, before anything slower
        name = self.transform.name
        if name in due:
            started = time.perf_counter()
            moved, ids, vectors = self.store.load_snapshot(self._note)
            if moved != generation:
                return
            if self.transform_kind is ADAPTOR:
                fitted: Transform | Adaptor = fit_adaptor(vectors, device=self.embedder.device)
            else:
                fitted = fit_pca(vectors)
            index = NestedIndex(fitted.apply(vectors), device=index_device(self.embedder.device))
            with self._state_lock:
                if generation != self._loaded_generation or self._closed:
                    return
                self._swap_transform(generation, name, ids, fitted, index)
                graph = self.graph is not None or graph
                self.graph = None  # built on the old fit's vectors
                self._refitting.discard(name)  # `fit_status` is true when `_said` is heard
                self._refitting |= {"hnsw"} if graph else set()
                self._refit_seconds[name] = time.perf_counter() - started
            self._said(
                f"{name} refitted in the background on {len(ids):,} chunks "
                f"({time.perf_counter() - started:.1f} s); in use now"
            )
            self._background_engine()  # every point again, under the new fit
        router_name = f"router_{name}"
        if router_name in due:
            with self._state_lock:
                if generation != self._loaded_generation or self.index is None:
                    return
                index, ids, transform = self.index, self._ids, self.transform
            started = time.perf_counter()
            router = self._calibrate(index, ids, transform)
            with self._state_lock:
                if self.index is not index or self._closed:
                    return
                self._fit_ids = ids
                self._router = self._kept_fit(router_name, generation, router, fresh=True)
                self._keep(router_name, generation, ".json", (index.n, self.full_dim), router)
                self._refitting.discard(router_name)
                self._refit_seconds[router_name] = time.perf_counter() - started
        if graph:
            with self._state_lock:
                if generation != self._loaded_generation or self.index is None:
                    return
                index = self.index
            started = time.perf_counter()
            built = self._graphs(index, name, generation)  # kept as it is made
            with self._state_lock:
                if self.index is not index or self._closed:
                    return
                self.graph = built
                self._refitting.discard("hnsw")
                self._refit_seconds["hnsw"] = time.perf_counter() - started
            self._said(
                f"HNSW graphs of {index.n:,} chunks built and tuned in the background; in use now"
            )

    def _swap_transform(
        self,
        generation: int,
        name: str,
        ids: np.ndarray,
        fitted: Transform | Adaptor,
        index: NestedIndex,
    ) -> None:
        """Under the state lock: `fitted` and its index replace the loaded ones; what was
        derived from the old fit (graph, router, codes, views) goes, on disk too."""
        stale = [self.store.derived_path(f"router_{name}", generation, ".json")]
        for path in [*stale, *self._graph_paths(name, generation)]:
            if os.path.lexists(path) and not self.store.read_only:
                artifacts.remove(path)
        self._fit_ids = ids
        self._kept_fit(name, generation, fitted, fresh=True)
        self._keep(f"transform_{name}", generation, ".npz", (self.full_dim,), fitted)
        router_name = f"router_{name}"
        if self._fits.pop(router_name, None) is not None:  # calibrated on the old fit's vectors
            self._due.add(router_name)
        self.transform, self.index = fitted, index
        self._ids, self._codes, self._views = ids, {}, {}
        self._router = None
        self._loads += 1  # queries embedded before are projected again (`_index_vector`)
        self._engine_due = self.engine is not None  # its vectors are of the old fit

    def _keep(
        self, name: str, generation: int, suffix: str, shape: tuple[int, ...], value: Any
    ) -> None:
        """Save a background refit's result as the generation's derived file (what a process
        that loads this generation then uses too)."""
        if self.store.read_only:
            return
        path = self.store.derived_path(name, generation, suffix)
        if suffix == ".npz":
            writer = artifacts.npz_writer(value.to_arrays())
        elif suffix == ".json":
            writer = artifacts.text_writer(value.to_json())
        else:
            writer = value.write
        try:
            artifacts.save(path, self.store, shape, writer)
        except CacheUnwritable as exc:
            self._note(f"{exc}; used from memory this time")

    def fit_status(self) -> dict[str, Any]:
        """Which fits the loaded index uses (`info --json`, status lines): per fitted part, the
        generation and rows it was fitted on, the rows changed since, and whether it is being
        fitted again, and what its last background refit took (``refit_s``, seconds; None if
        none ran in this process); and the HNSW graph's state ("ready", "building", "none") and
        what its last background build took (``graph_built_s``)."""
        with self._state_lock:
            ids = self._ids
            parts: dict[str, Any] = {}
            names = [self.transform.name] if self.transform is not IDENTITY else []
            if self._router is not None:
                names.append(f"router_{self.transform.name}")
            for name in names:
                basis = self._basis(name)
                parts[name] = {
                    "fitted_generation": None if basis is None else basis.generation,
                    "fitted_rows": None if basis is None else basis.rows,
                    "changed_since": None if basis is None else basis.changed(ids),
                    "refitting": name in self._due or name in self._refitting,
                    "refit_s": self._refit_seconds.get(name),
                    "note": self.fit_notes.get(name, ""),
                }
            big = self.index is not None and self.index.n >= HNSW_MIN_CHUNKS
            building = self._graph_building()
            graph = "ready" if self.graph is not None else "building" if building else "none"
            engine = {}
            if self.engine is not None:
                engine = {"engine": "level" if self.engine.serves(self) else "syncing"}
            return {
                "generation": self._loaded_generation,
                "transform": self.transform.name,
                "fits": parts,
                "graph": graph if big or self.graph is not None else "none",
                "graph_built_s": self._refit_seconds.get("hnsw"),
                "refit_fraction": REFIT_FRACTION,
                **engine,
            }

    def _graph_building(self) -> bool:
        """Under the state lock: the loaded generation's HNSW graph is due or being built in the
        background (`background_refit`); searches are exact until it is ready."""
        return self.graph is None and (self._graph_due or "hnsw" in self._refitting)

    @property
    def chunk_count(self) -> int:
        return 0 if self.index is None else self.index.n

    # -- searching -----------------------------------------------------------------------------

    def keyword_query(self, text: str) -> Query:
        """A query for `retrieve(..., "lexical")` only: parsed, not embedded (no model)."""
        parsed = check_query(text)
        empty = np.zeros(0, np.float32)
        return Query(text, empty, empty, -1, 0.0, parsed.paths, parsed.words)

    def _load_rows(self) -> None:
        """The committed chunk ids only (for keyword search, before any `load`): no vectors,
        no transform, no graph."""
        key = (self.store.db_id, self.store.generation)
        if key != self._rows_key:
            generation, self._ids = self.store.load_ids()
            self._row_paths = None
            self._rows_key = (key[0], generation)

    def query(self, text: str) -> Query:
        """Embed `text` once; its ``path:`` terms, if any, filter every search of it."""
        parsed = check_query(text)
        self.load()
        started = time.perf_counter()
        raw = self.embedder.embed_query(parsed.words)
        elapsed = (time.perf_counter() - started) * 1000
        return Query(
            text,
            raw,
            self.transform.apply(raw),
            self._loads,
            elapsed,
            parsed.paths,
            parsed.words,
        )

    def _filtered_search(
        self,
        query: Query,
        dim: int,
        k: int,
        view: tuple[Transform | Adaptor, NestedIndex] | None = None,
    ) -> SearchResult:
        """Exact top-k at `dim` among the rows whose file the query's path filter keeps: the
        true top-k of those files (a mask before ranking, not a filter after it). `view`: the
        rows under another transform (`view`)."""
        assert self.index is not None and query.paths is not None
        if self._row_paths is None:
            self._row_paths = [c.path for c in self.store.chunks(self._ids.tolist())]
        rows = np.asarray(matching_rows(self._row_paths, query.paths), dtype=np.int64)
        if len(rows) == 0:
            raise InputError(f"no indexed file matches {query.paths}")
        index, vector = self.index, self._index_vector(query)
        if view is not None:
            index, vector = view[1], view[0].apply(query.raw)
        started = time.perf_counter()
        found = index.rerank(vector, dim, rows, k)
        elapsed = (time.perf_counter() - started) * 1000
        return SearchResult(query, dim, self._hits(found), elapsed, "exact")

    def row_paths(self) -> list[str]:
        """Each loaded row's file (read once per load): what path filters match."""
        if self._row_paths is None:
            self._row_paths = [c.path for c in self.store.chunks(self._ids.tolist())]
        return self._row_paths

    def _index_vector(self, query: Query) -> np.ndarray:
        if query.generation == self._loads:
            return query.vector
        return self.transform.apply(query.raw)

    def check_dim(self, dim: int) -> int:
        if not 1 <= dim <= self.full_dim:
            raise InputError(
                f"dim must be between 1 and {self.full_dim} for {self.embedder.name}",
                settings=("dim",),
            )
        return dim

    @_repairing
    @_locked
    def search(
        self,
        query: Query,
        dim: int,
        k: int = 10,
        mode: str = "auto",
        precision: str = "float32",
        rescore: int | None = None,
        transform: str | None = None,
    ) -> SearchResult:
        """Top-k at prefix `dim`. `auto` is exact, except on large corpora (an HNSW graph exists)
        at dims above the graph's, where HNSW candidates are reranked exactly at `dim`.

        `precision` "int8" or "binary" scans compact codes instead, keeps `rescore * k` candidates
        (default `quantize.DEFAULT_RESCORE`) and scores those exactly; `mode` is then ignored.

        `transform` (one of `TRANSFORMS`) searches the same stored vectors under another transform
        than the loaded one, to compare them at one dim: always exact and float32 (see `view`)."""
        if k < 1:
            raise InputError("k must be at least 1", settings=("k",))
        mode = MODE_ALIASES.get(mode, mode)
        if mode not in SEARCH_MODES:
            raise InputError(f"unknown search mode {mode!r}; choose one of {SEARCH_MODES}")
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
        self.check_dim(dim)
        self.load()
        assert self.index is not None
        if self.engine is not None:
            other = transform is not None and self.view(transform)[1] is not self.index
            level = self.engine.serves(self)
            if level and not other and precision == "float32":  # path filters run there too
                return self.engine.search(self, query, self._index_vector(query), dim, k, mode)
            self._note(
                f"{self.engine.engine.engine} does not run another transform or codes: this "
                "search ran on the local index"
                if level
                else f"{self.engine.engine.engine} is being brought level with this index (a "
                "new generation or fit): this search ran on the local index"
            )
        if query.paths is not None:  # exact and float32, whatever was asked
            return self._filtered_search(query, dim, k, self.view(transform) if transform else None)
        if transform is not None and self.view(transform)[1] is not self.index:
            return self._view_search(query, dim, k, transform, mode, precision)
        if precision != "float32":
            return self._rescored_search(query, dim, k, precision, rescore)
        building = self._graph_building()
        if mode == "graph" and self.graph is None and not building:
            raise InputError("graph search needs an HNSW graph: this index is small, use exact")
        wants_graph = mode == "graph" or (mode == "auto" and dim > ANCHOR_DIM)
        use_graph = self.graph is not None and wants_graph
        vector = self._index_vector(query)
        started = time.perf_counter()
        if use_graph:
            assert self.graph is not None  # its tier, ef and candidates: as tuned for dim
            found = graph_search(self.index, self.graph, vector, dim, k)
        else:
            found = self.index.search(vector, dim, k)
        elapsed = (time.perf_counter() - started) * 1000
        return SearchResult(
            query,
            dim,
            self._hits(found),
            elapsed,
            "graph" if use_graph else "exact",
            note=GRAPH_BUILDING_NOTE if building and wants_graph else "",
        )

    @_repairing
    @_locked
    def retrieve(
        self,
        query: Query,
        dim: int,
        k: int = 10,
        retrieval: str = "dense",
        fusion: str = hybrid.DEFAULT_FUSION,
        mode: str = "auto",
    ) -> SearchResult:
        """Top-k by dense search at `dim` (`search`), by keywords (bm25 over the chunks' text,
        heading and path), or both fused (`mrl_tui.core.search.hybrid`). Every hit says its rank in
        each list that was searched. The query's path filter holds in every mode."""
        if retrieval not in hybrid.RETRIEVALS:
            raise InputError(f"unknown retrieval {retrieval!r}; choose one of {hybrid.RETRIEVALS}")
        if fusion not in hybrid.FUSIONS:
            raise InputError(f"unknown fusion {fusion!r}; choose one of {hybrid.FUSIONS}")
        if k < 1:
            raise InputError("k must be at least 1", settings=("k",))
        self.check_dim(dim)
        if retrieval == "lexical" and self.index is None:
            self._load_rows()  # keywords need the rows, not the vectors (nor the model)
        else:
            self.load()
        if retrieval == "dense":
            result = self.search(query, dim, k, mode=mode)
            hits = [dataclasses.replace(h, dense_rank=h.rank) for h in result.hits]
            return dataclasses.replace(result, hits=hits)
        started = time.perf_counter()
        depth = max(k, hybrid.CANDIDATES)
        lexical = self._keyword_rows(query, depth)
        lexical_rows = [row for row, _ in lexical]
        note = ""  # the dense half's, in hybrid (exact while the graph is built)
        if retrieval == "lexical":
            rows = lexical_rows[:k]
            scores = [score for _, score in lexical[:k]]
            dense_rows: list[int] = []
        else:
            assert self.index is not None
            dense = self.search(query, dim, depth, mode=mode)
            note = dense.note
            dense_rows = self._rows_of([h.id for h in dense.hits])
            vector = self._index_vector(query)
            index = self.index
            fused, fused_scores = hybrid.fuse(
                dense_rows,
                lexical_rows,
                [score for _, score in lexical],
                fusion,
                lambda ids: index.score_ids(vector, dim, ids),
            )
            rows, scores = fused[:k].tolist(), fused_scores[:k].tolist()
        elapsed = (time.perf_counter() - started) * 1000
        dense_ranks, lexical_ranks = hybrid.ranks(dense_rows), hybrid.ranks(lexical_rows)
        found = Hits(np.asarray(rows, np.int64), np.asarray(scores, np.float32))
        hits = [
            dataclasses.replace(
                hit,
                dense_rank=dense_ranks.get(row) if retrieval == "hybrid" else None,
                lexical_rank=lexical_ranks.get(row),
            )
            for hit, row in zip(self._hits(found), rows, strict=True)
        ]
        return SearchResult(query, dim, hits, elapsed, "exact", retrieval=retrieval, note=note)

    def _rows_of(self, chunk_ids: list[int]) -> list[int]:
        """Loaded rows of these chunk ids (the ids are sorted: one binary search each)."""
        positions = np.searchsorted(self._ids, np.asarray(chunk_ids, np.int64))
        return [int(p) for p in positions]

    def _keyword_rows(self, query: Query, depth: int) -> list[tuple[int, float]]:
        """(loaded row, bm25 score) best first, at most `depth`, within the path filter. Chunks
        committed after the load (another process) are left out until the next load."""
        allowed: set[int] | None = None
        if query.paths is not None:
            if self._row_paths is None:
                self._row_paths = [c.path for c in self.store.chunks(self._ids.tolist())]
            allowed = set(matching_rows(self._row_paths, query.paths))
            if not allowed:
                raise InputError(f"no indexed file matches {query.paths}")
        words = query.words if query.paths is not None else (query.words or query.text)
        found = self.store.keyword_search(words, None if allowed is not None else depth)
        out: list[tuple[int, float]] = []
        n = len(self._ids)
        for chunk_id, score in found:
            row = int(np.searchsorted(self._ids, chunk_id))
            if row < n and self._ids[row] == chunk_id and (allowed is None or row in allowed):
                out.append((row, score))
                if len(out) == depth:
                    break
        return out

    @_repairing
    @_locked
    def view(self, transform: str) -> tuple[Transform, NestedIndex]:
        """The loaded vectors under `transform` (one of `TRANSFORMS`): the loaded transform and
        index when it resolves to the same, else built from the stored vectors on first use and
        kept until the next load (one more copy of the vectors in memory)."""
        check_choice(transform)
        self.load()
        assert self.index is not None
        if transform not in self._views:
            generation, ids, vectors = self.store.load_snapshot(self._note)
            if generation != self._loaded_generation:
                raise _IndexMoved
            self._fit_ids = ids
            chosen = self._load_transform(vectors, self._loaded_generation, transform)
            if chosen.name == self.transform.name:
                self._views[transform] = (self.transform, self.index)
            else:
                device = index_device(self.embedder.device)
                self._views[transform] = (chosen, NestedIndex(chosen.apply(vectors), device=device))
        return self._views[transform]

    def _view_search(
        self, query: Query, dim: int, k: int, transform: str, mode: str, precision: str
    ) -> SearchResult:
        if mode == "graph" or precision != "float32":
            raise InputError("another transform is searched exact and in float32 only")
        chosen, index = self.view(transform)
        vector = chosen.apply(query.raw)
        started = time.perf_counter()
        found = index.search(vector, dim, k)
        elapsed = (time.perf_counter() - started) * 1000
        return SearchResult(query, dim, self._hits(found), elapsed, "exact")

    @_repairing
    @_locked
    def search_routed(self, query: Query, k: int = 10) -> tuple[SearchResult, Route]:
        """Top-k at the dimension the `router` picks for this query (exact scan, then reranks)."""
        if k < 1:
            raise InputError("k must be at least 1", settings=("k",))
        router = self.router()
        assert self.index is not None
        vector = self._index_vector(query)
        started = time.perf_counter()
        found, route = router.search(self.index, query.words or query.text, vector, k)
        elapsed = (time.perf_counter() - started) * 1000
        if self.engine is not None:  # the dim is picked here; the engine answers at it
            return self.search(query, route.dim, k), route
        if query.paths is not None:  # routed on the whole index, then ranked among the matches
            return self._filtered_search(query, route.dim, k), route
        return SearchResult(query, route.dim, self._hits(found), elapsed, "routed"), route

    @_locked
    def route(self, query: Query) -> Route:
        """The dimension this query needs and why (runs the routed search)."""
        return self.search_routed(query)[1]

    @property
    def router_ready(self) -> bool:
        """Whether `router()` returns without calibrating (made, or saved for this index)."""
        if self._router is not None:
            return True
        name = f"router_{self.transform.name}"
        return self.store.derived_path(name, self._loaded_generation, ".json").exists()

    @_repairing
    @_locked
    def router(self) -> Router:
        """Calibrated on this corpus on first use (about 200 query embeddings), kept as JSON next
        to the vectors for the generation and transform it was made for."""
        self.load()
        assert self.index is not None
        if self._router is not None:
            return self._router
        name, generation = f"router_{self.transform.name}", self._loaded_generation
        self._fit_ids = self._ids
        self._router = self._shelf().get(
            self.store.derived_path(name, generation, ".json"),
            (self.index.n, self.full_dim),
            load=lambda path: self._kept_fit(name, generation, Router.load(path), fresh=False),
            build=lambda: self._refit_or_reuse(name, generation, self._calibrate),
            writer=lambda router: artifacts.text_writer(router.to_json()),
            what="router",
        )
        self._start_background()
        return self._router

    def _calibrate(
        self,
        index: NestedIndex | None = None,
        ids: np.ndarray | None = None,
        transform: Transform | Adaptor | None = None,
    ) -> Router:
        """Calibrated on the loaded index, or on the one given (a background refit's). The
        router's ladder is the auto funnel, chosen on ten-word windows of the chunks; its stop
        rules are judged on short pseudo-queries (`pseudo`): both embedded in one batch."""
        index = index or self.index
        assert index is not None
        ids = self._ids if ids is None else ids
        transform = transform or self.transform
        texts = [c.text for c in self._chunks(ids)]
        short, windows = [], []
        if routable(index.n, self.full_dim):
            short, windows = pseudo_queries(texts, SHORT), pseudo_queries(texts, WINDOWS)
        embedded = transform.apply(
            self.embedder.embed_queries([text for _, text in short + windows])
        )
        vectors, window_vectors = embedded[: len(short)], embedded[len(short) :]
        funnel = None
        if windows:
            funnel, _ = auto_funnel(index, window_vectors, [row for row, _ in windows], 10)
        return Router.calibrate(
            index,
            TermStats.from_texts(texts),
            vectors,
            [row for row, _ in short],
            pseudo_texts=[text for _, text in short],
            funnel=funnel,
        )

    def _rescored_search(
        self, query: Query, dim: int, k: int, precision: str, rescore: int | None
    ) -> SearchResult:
        assert self.index is not None
        codes = self.codes(precision)
        vector = self._index_vector(query)
        started = time.perf_counter()
        found = rescored_search(
            self.index, codes, vector, dim, k, rescore or DEFAULT_RESCORE[precision]
        )
        elapsed = (time.perf_counter() - started) * 1000
        return SearchResult(query, dim, self._hits(found), elapsed, "rescored", precision)

    @_locked
    def codes(self, precision: str) -> Codes:
        """int8 or binary codes of the loaded index, made on first use (a pass over the vectors)."""
        self.load()
        assert self.index is not None
        if precision not in self._codes:
            self._codes[precision] = encode(self.index.vectors(), precision)
        return self._codes[precision]

    def _hits(self, found: Hits) -> list[Hit]:
        chunk_ids = self._ids[found.ids]
        chunks = self._chunks(chunk_ids)
        return [
            Hit(rank, int(cid), float(score), chunk)
            for rank, (cid, score, chunk) in enumerate(
                zip(chunk_ids, found.scores, chunks, strict=True), start=1
            )
        ]

    def _chunks(self, chunk_ids: np.ndarray) -> list[Chunk]:
        """The loaded rows' chunks; a missing one is damage, unless another process has
        committed a new generation meanwhile (then the caller loads it and tries again)."""
        try:
            return self.store.chunks(chunk_ids.tolist())
        except CacheDamaged:
            loaded = self._loaded_generation
            if self.index is None and self._rows_key is not None:
                loaded = self._rows_key[1]
            if self.store.generation != loaded:
                raise _IndexMoved from None
            raise

    @_repairing
    def info(self) -> LibraryInfo:
        return LibraryInfo(
            root=self.root,
            cache_dir=self.store.directory,
            embedder=self.embedder.info,
            transform=self.transform_name,
            files=len(self.store.files()),
            chunks=self.store.chunk_count(),
            messages=list(self.messages),
        )

    @property
    def transform_name(self) -> str:
        """What prefixes are taken of: "PCA", "adaptor", "native MRL" or "none (naive
        truncation)" (`TransformKind.label_for`)."""
        return self.transform_kind.label_for(self.embedder.spec.native_mrl)

    def close(self) -> None:
        self._closed = True  # a background refit stops at its next step (its errors unsaid)
        if self.engine is not None:
            self.engine.close()
        self.store.close()
