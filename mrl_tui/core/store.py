"""The on-disk cache of one indexed folder, in the platform cache dir (never the user's folder).

Layout of one index directory:
- `index.db`: SQLite. `meta` (schema version, settings, generation), `files` (fingerprints) and
  `chunks` (text, line range, heading trail and the full float32 vector as a BLOB). Every change
  is one transaction, so a process killed at any moment leaves the last committed state.
- `vectors-<generation>.npy` / `ids-<generation>.npy`: a snapshot of all vectors for fast loading,
  rebuilt from SQLite whenever the generation moved on. Loaded with `allow_pickle=False`.
- other derived files (transform, HNSW graphs) named by the same generation, written atomically.
Nothing here is ever unpickled or executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrl_tui.core.chunking import Chunk
from mrl_tui.core.errors import CacheError

SCHEMA_VERSION = 1
CACHE_ENV = "MRL_TUI_CACHE_DIR"


def default_cache_root() -> Path:
    """`$MRL_TUI_CACHE_DIR`, else the platform's user cache dir (e.g. ~/.cache/mrl-tui)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mrl-tui", appauthor=False))


def index_dir_for(cache_root: Path, root: Path, settings: dict[str, object]) -> Path:
    """One directory per (folder, model, chunking settings); readable name, collision-free hash."""
    key = json.dumps({"root": str(root), **settings, "schema": SCHEMA_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", root.name or "root")[:40]
    return cache_root / f"{name}-{digest}"


def _sql_path(path: str) -> str | bytes:
    """A file name for SQLite: one that is not valid UTF-8 (`os` hands it over with surrogate
    escapes, which SQLite cannot store as text) is kept as its raw bytes, a BLOB: lossless."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _py_path(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


@dataclass(frozen=True)
class FileRecord:
    path: str
    size: int
    mtime_ns: int
    sha256: str


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE,
    start_line INTEGER NOT NULL, end_line INTEGER NOT NULL,
    heading TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks(path);
"""


class IndexStore:
    """SQLite-backed chunks and vectors of one folder, plus generation-stamped snapshots."""

    def __init__(self, directory: Path, settings: dict[str, object], dim: int) -> None:
        self.directory = directory
        self.dim = dim
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(directory / "index.db", check_same_thread=False)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            with self._db:
                self._db.executescript(_SCHEMA)
            self._check_meta(settings)
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"cache at {directory} is unreadable ({exc})") from exc

    @classmethod
    def open_or_rebuild(
        cls, directory: Path, settings: dict[str, object], dim: int
    ) -> tuple[IndexStore, str | None]:
        """Open the cache; an unreadable or incompatible one is removed and rebuilt, with a message.

        Only `directory` itself is removed, and it is always a folder inside our cache root.
        """
        try:
            return cls(directory, settings, dim), None
        except CacheError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            return cls(directory, settings, dim), f"{exc}; rebuilding it"

    def _check_meta(self, settings: dict[str, object]) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        wanted = {"schema": str(SCHEMA_VERSION), "settings": json.dumps(settings, sort_keys=True)}
        wanted["dim"] = str(self.dim)
        if not meta:
            with self._db:
                self._db.executemany(
                    "INSERT INTO meta VALUES (?, ?)", [*wanted.items(), ("generation", "0")]
                )
            return
        for key, value in wanted.items():
            if meta.get(key) != value:
                raise CacheError(f"cache at {self.directory} was written with another {key}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading -------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def files(self) -> dict[str, FileRecord]:
        with self._lock:
            rows = self._db.execute("SELECT path, size, mtime_ns, sha256 FROM files").fetchall()
        records = (FileRecord(_py_path(r[0]), *r[1:]) for r in rows)
        return {record.path: record for record in records}

    def chunk_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def chunks(self, ids: Sequence[int]) -> list[Chunk]:
        """Chunks by id, in the order asked."""
        if len(ids) == 0:
            return []
        wanted = [int(i) for i in ids]
        found: dict[int, Chunk] = {}
        with self._lock:
            for start in range(0, len(wanted), 900):
                part = wanted[start : start + 900]
                marks = ",".join("?" * len(part))
                query = (
                    "SELECT id, path, start_line, end_line, heading, text "
                    f"FROM chunks WHERE id IN ({marks})"
                )
                for row in self._db.execute(query, part):
                    found[row[0]] = Chunk(_py_path(row[1]), *row[2:])
        missing = [i for i in wanted if i not in found]
        if missing:
            raise CacheError(f"cache at {self.directory} lost chunk ids {missing[:5]}")
        return [found[i] for i in wanted]

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def load_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (N,), vectors float32 (N, D)) by id; from the snapshot when it is current."""
        generation = self.generation
        ids_path = self.derived_path("ids", generation, ".npy")
        vec_path = self.derived_path("vectors", generation, ".npy")
        try:
            ids = np.load(ids_path, allow_pickle=False)
            vectors = np.load(vec_path, allow_pickle=False, mmap_mode="r")
            if vectors.shape == (len(ids), self.dim) and vectors.dtype == np.float32:
                return ids, np.ascontiguousarray(vectors)
        except (OSError, ValueError):
            pass
        ids, vectors = self._read_vectors()
        atomic_save_npy(vec_path, vectors)
        atomic_save_npy(ids_path, ids)
        self.prune_derived(generation)
        return ids, vectors

    def _read_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            rows = self._db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.empty((len(rows), self.dim), dtype=np.float32)
        for i, (_, blob) in enumerate(rows):
            row = np.frombuffer(blob, dtype=np.float32)
            if row.shape != (self.dim,):
                raise CacheError(f"cache at {self.directory} holds a vector of the wrong size")
            vectors[i] = row
        return ids, vectors

    def derived_path(self, name: str, generation: int, suffix: str) -> Path:
        return self.directory / f"{name}-{generation}{suffix}"

    def prune_derived(self, keep_generation: int) -> None:
        """Remove snapshots and derived files of older generations (our own files only)."""
        for path in self.directory.iterdir():
            match = re.fullmatch(r"[a-z0-9_]+-(\d+)\.[a-z0-9.]+", path.name)
            if match and int(match.group(1)) != keep_generation:
                path.unlink(missing_ok=True)

    # -- writing -------------------------------------------------------------------------------

    def apply(
        self,
        *,
        remove: Iterable[str] = (),
        touch: Iterable[FileRecord] = (),
        replace: Iterable[tuple[FileRecord, list[Chunk], np.ndarray]] = (),
    ) -> None:
        """One transaction: drop removed files, refresh fingerprints, swap in new chunks/vectors."""
        remove, replace = list(remove), list(replace)
        with self._lock, self._db:
            for path in remove:
                self._db.execute("DELETE FROM files WHERE path = ?", (_sql_path(path),))
            for record in touch:
                self._upsert_file(record)
            for record, chunks, vectors in replace:
                if len(chunks) != len(vectors):
                    raise ValueError("one vector per chunk")
                stored = _sql_path(record.path)  # its chunks' path too
                self._db.execute("DELETE FROM chunks WHERE path = ?", (stored,))
                self._upsert_file(record)
                self._db.executemany(
                    "INSERT INTO chunks (path, start_line, end_line, heading, text, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (stored, c.start_line, c.end_line, c.heading, c.text, self._blob(v))
                        for c, v in zip(chunks, vectors, strict=True)
                    ],
                )
            if remove or replace:  # a touch alone changes no chunk: derived files stay valid
                self._db.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
                )

    def set_meta(self, key: str, value: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _upsert_file(self, record: FileRecord) -> None:
        self._db.execute(
            "INSERT INTO files (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET "
            "size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256",
            (_sql_path(record.path), record.size, record.mtime_ns, record.sha256),
        )

    def _blob(self, vector: np.ndarray) -> bytes:
        row = np.asarray(vector, dtype=np.float32)
        if row.shape != (self.dim,):
            raise ValueError(f"vector of shape {row.shape}, expected ({self.dim},)")
        return row.tobytes()
