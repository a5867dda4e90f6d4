"""An indexed folder, ready to search: the one object the CLI, the TUI and the benchmarks share.

Data flows one way: folder → `update()` (chunks and vectors in the cache) → `load()` (transform and
nested index in memory) → `query()` (one embedding per query) → `search(query, dim)` (ranked hits).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrl_tui.core.chunking import Chunk, ChunkSettings
from mrl_tui.core.embed import Embedder, EmbedderInfo
from mrl_tui.core.errors import InputError
from mrl_tui.core.index import NestedIndex
from mrl_tui.core.indexer import IndexProgress, IndexReport, update_index
from mrl_tui.core.store import IndexStore, default_cache_root, index_dir_for
from mrl_tui.core.transform import IDENTITY, Transform, fit_pca
from mrl_tui.core.walk import DEFAULT_MAX_FILE_BYTES


@dataclass(frozen=True)
class Query:
    """A query embedded once, already in the index's basis; moving the slider only re-scores it."""

    text: str
    vector: np.ndarray
    embed_ms: float


@dataclass(frozen=True)
class Hit:
    rank: int  # 1-based
    id: int  # chunk id in the cache
    score: float
    chunk: Chunk


@dataclass(frozen=True)
class SearchResult:
    query: Query
    dim: int
    hits: list[Hit]
    search_ms: float


@dataclass
class LibraryInfo:
    root: Path
    cache_dir: Path
    embedder: EmbedderInfo
    transform: str
    files: int
    chunks: int
    messages: list[str] = field(default_factory=list)


def check_folder(root: Path | str) -> Path:
    """The folder to index, resolved; a clear error for anything else."""
    path = Path(root).expanduser()
    if not path.exists():
        raise InputError(f"{root}: no such folder")
    if not path.is_dir():
        raise InputError(f"{root}: is a file; mrl-tui indexes a folder (give its parent folder)")
    return path.resolve()


class Library:
    def __init__(
        self,
        root: Path,
        embedder: Embedder,
        *,
        cache_root: Path | None = None,
        chunk_settings: ChunkSettings | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.root = check_folder(root)
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
        directory = index_dir_for(cache_root or default_cache_root(), self.root, settings)
        self.store, message = IndexStore.open_or_rebuild(directory, settings, embedder.full_dim)
        self.messages: list[str] = [message] if message else []
        self.transform: Transform = IDENTITY
        self.index: NestedIndex | None = None
        self._ids = np.zeros(0, dtype=np.int64)
        self._loaded_generation = -1

    @classmethod
    def open(
        cls,
        root: Path | str,
        *,
        model: str | None = None,
        device: str = "auto",
        trust_remote_code: bool = False,
        cache_root: Path | None = None,
    ) -> Library:
        """Check the folder first (fast), then load the model (slow)."""
        folder = check_folder(root)
        embedder = Embedder(model, device=device, trust_remote_code=trust_remote_code)
        return cls(folder, embedder, cache_root=cache_root)

    @property
    def full_dim(self) -> int:
        return self.embedder.full_dim

    # -- indexing ------------------------------------------------------------------------------

    def update(
        self,
        on_progress: Callable[[IndexProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> IndexReport:
        """Embed what changed since the last run; afterwards `load()` picks up the new state."""
        self.check_root_still_there()
        return update_index(
            self.store,
            self.root,
            self.embedder,
            self.chunk_settings,
            max_file_bytes=self.max_file_bytes,
            on_progress=on_progress,
            should_stop=should_stop,
        )

    def check_root_still_there(self) -> None:
        if not self.root.is_dir():
            raise InputError(f"{self.root}: the folder is gone")

    def load(self) -> None:
        """Build the transform and the in-memory index for the cache's current generation."""
        generation = self.store.generation
        if generation == self._loaded_generation:
            return
        ids, vectors = self.store.load_vectors()
        self.transform = self._load_transform(vectors, generation)
        device = self.embedder.device if self.embedder.device == "cuda" else "cpu"
        self.index = NestedIndex(self.transform.apply(vectors), device=device)
        self._ids = ids
        self._loaded_generation = generation

    def _load_transform(self, vectors: np.ndarray, generation: int) -> Transform:
        """Native MRL models are searched as they are; others get a PCA rotation of the corpus."""
        if self.embedder.spec.native_mrl or len(vectors) < 2:
            return IDENTITY
        path = self.store.derived_path("transform", generation, ".npz")
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as arrays:
                    return Transform.from_arrays("pca", dict(arrays))
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)
        transform = fit_pca(vectors)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, **transform.to_arrays())
        tmp.replace(path)
        return transform

    @property
    def chunk_count(self) -> int:
        return 0 if self.index is None else self.index.n

    # -- searching -----------------------------------------------------------------------------

    def query(self, text: str) -> Query:
        if not text.strip():
            raise InputError("the query is empty")
        started = time.perf_counter()
        vector = self.transform.apply(self.embedder.embed_query(text))
        return Query(text, vector, (time.perf_counter() - started) * 1000)

    def check_dim(self, dim: int) -> int:
        if not 1 <= dim <= self.full_dim:
            raise InputError(
                f"--dim must be between 1 and {self.full_dim} for {self.embedder.name}"
            )
        return dim

    def search(self, query: Query, dim: int, k: int = 10) -> SearchResult:
        if k < 1:
            raise InputError("--k must be at least 1")
        self.check_dim(dim)
        self.load()
        assert self.index is not None
        started = time.perf_counter()
        found = self.index.search(query.vector, dim, k)
        elapsed = (time.perf_counter() - started) * 1000
        chunk_ids = self._ids[found.ids]
        chunks = self.store.chunks(chunk_ids.tolist())
        hits = [
            Hit(rank, int(cid), float(score), chunk)
            for rank, (cid, score, chunk) in enumerate(
                zip(chunk_ids, found.scores, chunks, strict=True), start=1
            )
        ]
        return SearchResult(query, dim, hits, elapsed)

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
        if self.embedder.spec.native_mrl:
            return "native MRL"
        return "PCA" if self.transform.name == "pca" else "none"

    def close(self) -> None:
        self.store.close()
