"""The on-disk cache of one indexed folder, in the platform cache dir (never the user's folder).

Layout of one index directory:
- `index.db`: SQLite. `meta` (schema version, settings, generation), `files` (fingerprints),
  `chunks` (text, line range, heading trail and the full float32 vector as a BLOB) and
  `chunks_fts` (the keyword index, `core.search.lexical`; a trigger drops a chunk's row with the
  chunk). Every change is one transaction, so a process killed at any moment leaves the last
  committed state, vectors and keywords alike.
- `vectors-<db id>-<generation>.npy`: a snapshot of all vectors (rows in chunk-id order) for fast
  loading, rebuilt from SQLite whenever the generation moved on.
- other derived files (transforms, HNSW graphs, routers) named the same way. Each is written
  atomically and recorded in the `derived` table with its size, sha256 and shape, and is used only
  when it matches (`core.cache.artifacts`). The random database id binds them to the database
  that made them: a lost or replaced `index.db` never serves an old snapshot.
- `writer.lock`: held by the one process that indexes (`mrl_tui.core.cache.writer_lock`).
Damage found in the database is a `CacheDamaged` (the library rebuilds from the folder); a full
disk or a read-only folder is a `CacheUnwritable` (one line; what was committed stays). A cache on
a read-only mount opens read-only and is searchable. Nothing here is ever unpickled or executed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrl_tui.core.cache import artifacts
from mrl_tui.core.cache.writer_lock import WriterLock
from mrl_tui.core.corpus.chunking import Chunk
from mrl_tui.core.errors import CacheDamaged, CacheError, CacheUnwritable, MrlError
from mrl_tui.core.search import lexical

SCHEMA_VERSION = 1
CACHE_ENV = "MRL_TUI_CACHE_DIR"
DB_NAME = "index.db"
LOCK_NAME = "writer.lock"
BUSY_TIMEOUT_S = 30.0
"""How long a write waits for another process's transaction before saying the cache is busy."""

_DERIVED = re.compile(r"[a-z0-9_]+-(?:(?P<db>[0-9a-f]{8})-)?(?P<gen>\d+)\.(?:npy|npz|bin|json)")
_DB_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal")


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


def check_cache_root(cache_root: Path) -> None:
    """Fails fast (before any model loads) when the cache root is a file or inside one."""
    for path in (cache_root, *cache_root.parents):
        if path.exists():
            if not path.is_dir():
                raise CacheUnwritable(
                    f"cache folder {cache_root}: {path} is a file, not a folder; give another "
                    "cache folder (or set $MRL_TUI_CACHE_DIR)",
                    settings=("cache folder",),
                )
            return


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE,
    start_line INTEGER NOT NULL, end_line INTEGER NOT NULL,
    heading TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks(path)",
    """CREATE TABLE IF NOT EXISTS derived (
    name TEXT PRIMARY KEY, generation INTEGER NOT NULL, size INTEGER NOT NULL,
    sha256 TEXT NOT NULL, shape TEXT NOT NULL
)""",
    lexical.FTS_SCHEMA,
    # Every way a chunk goes (its file replaced, removed, forgotten: ON DELETE CASCADE too).
    f"""CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    DELETE FROM {lexical.FTS_TABLE} WHERE rowid = old.id;
END""",
)


class _Moved(Exception):
    """The generation moved on while a snapshot was being read; read it again."""


def _sqlite_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switching a new database to WAL needs it alone and SQLite does not wait for that (two
    processes creating one cache): retry for the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if _sqlite_code(exc) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _writable(directory: Path) -> bool:
    db = directory / DB_NAME
    return os.access(directory, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))


def _remove_cache_files(directory: Path) -> None:
    """The database and our derived files only: the lock file and anything else stay."""
    for name in _DB_FILES:
        (directory / name).unlink(missing_ok=True)
    for path in directory.iterdir():
        if _DERIVED.fullmatch(path.name):
            artifacts.remove(path)


class IndexStore:
    """SQLite-backed chunks and vectors of one folder, plus generation-stamped snapshots.

    Also the manifest of its derived files (`artifacts.Manifest`)."""

    def __init__(self, directory: Path, settings: dict[str, object], dim: int) -> None:
        self.directory = directory
        self.dim = dim
        self.settings = settings
        self.db_id = ""
        self.keyword_rows_built = 0
        """Chunks given keyword rows on open (a cache made before the keyword index existed)."""
        self.has_keywords = True
        self._lock = threading.RLock()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise artifacts.unwritable(directory, exc) from exc
        self.read_only = not _writable(directory)
        if self.read_only and not (directory / DB_NAME).is_file():
            raise CacheUnwritable(
                f"the cache folder {directory} is read-only and holds no index of this folder: "
                "give a writable cache folder",
                settings=("cache folder",),
            )
        self._db = self._connect()
        try:
            self._init()
        except BaseException:
            self._db.close()
            raise
        if not self.read_only:
            artifacts.prune_temp(directory)

    @classmethod
    def open_or_rebuild(
        cls, directory: Path, settings: dict[str, object], dim: int
    ) -> tuple[IndexStore, str | None]:
        """Open the cache; a damaged or incompatible one is rebuilt, with a message.

        Only for those: a busy database or a failed constraint (another process creating it at
        the same moment) is never a reason to delete anything. The rebuild holds the writer lock
        and first tries again, in case another process rebuilt it meanwhile. Only our files in
        `directory` are removed, and it is always a folder inside our cache root.
        """
        try:
            return cls(directory, settings, dim), None
        except CacheError as exc:
            if not _writable(directory):
                raise CacheUnwritable(
                    f"{exc}, and read-only: give a writable cache folder",
                    settings=("cache folder",),
                ) from exc
            with WriterLock(directory / LOCK_NAME):
                try:
                    return cls(directory, settings, dim), None
                except CacheError:
                    _remove_cache_files(directory)
                store = cls(directory, settings, dim)
            return store, f"{exc}; rebuilding it from the folder"

    def _connect(self) -> sqlite3.Connection:
        path = self.directory / DB_NAME
        try:
            if self.read_only:
                return self._connect_read_only(path)
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
            db.execute("PRAGMA foreign_keys = ON")
            _enable_wal(db)
            db.execute("PRAGMA synchronous = NORMAL")
            return db
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _connect_read_only(self, path: Path) -> sqlite3.Connection:
        """`mode=ro`; on read-only media a WAL database without its -shm file opens only as
        `immutable` (nothing can change it there)."""
        for flag in ("mode=ro", "immutable=1"):
            db = sqlite3.connect(f"{path.absolute().as_uri()}?{flag}", uri=True)
            try:
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if _sqlite_code(exc) != sqlite3.SQLITE_CANTOPEN:
                    raise
        raise sqlite3.OperationalError("unable to open database file")

    def _init(self) -> None:
        """Create the schema and meta race-free (INSERT OR IGNORE in one transaction, then read
        back: two processes creating the same cache agree), then check them."""
        wanted = {
            "schema": str(SCHEMA_VERSION),
            "settings": json.dumps(self.settings, sort_keys=True),
            "dim": str(self.dim),
        }
        with self._sql() as db:
            if not self.read_only:
                db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA:
                        db.execute(statement)
                    self._sync_keywords(db)
                    fresh = [("generation", "0"), ("db_id", secrets.token_hex(4))]
                    db.executemany(
                        "INSERT OR IGNORE INTO meta VALUES (?, ?)", [*wanted.items(), *fresh]
                    )
                    db.commit()
                except BaseException:
                    db.rollback()
                    raise
            meta = dict(db.execute("SELECT key, value FROM meta"))
            self._has_manifest = bool(
                db.execute("SELECT 1 FROM sqlite_master WHERE name = 'derived'").fetchone()
            )
            self.has_keywords = bool(
                db.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = ?", (lexical.FTS_TABLE,)
                ).fetchone()
            )
        for key, value in wanted.items():
            if meta.get(key) != value:
                raise CacheError(f"cache at {self.directory} was written with another {key}")
        db_id = meta.get("db_id", "")
        if not re.fullmatch(r"[0-9a-f]{8}", db_id) and not (self.read_only and db_id == ""):
            raise CacheDamaged(f"the cache at {self.directory} is damaged (its database id)")
        self.db_id = db_id
        self._parse_generation(meta.get("generation"))

    def _sync_keywords(self, db: sqlite3.Connection) -> None:
        """In the open transaction: give keyword rows to chunks without any (a cache of an
        mrl-tui before the keyword index, or one that wrote chunks without them). Cheap when
        they agree: two lookups of the largest id."""
        top = db.execute("SELECT MAX(id) FROM chunks").fetchone()[0]
        table = lexical.FTS_TABLE
        if top is None or db.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0] == top:
            return
        db.execute(f"DELETE FROM {table}")
        rows = db.execute("SELECT id, path, heading, text FROM chunks").fetchall()
        lexical.fill(db, ((r[0], _py_path(r[1]), r[2], r[3]) for r in rows))
        self.keyword_rows_built = len(rows)

    @contextlib.contextmanager
    def _sql(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; SQLite errors become one-line errors."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.Error) -> MrlError:
        code, text, where = _sqlite_code(exc), str(exc), self.directory
        damaged = ("malformed", "Could not decode to UTF-8")  # the latter: a text cell's bytes
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or any(
            d in text for d in damaged
        ):
            return CacheDamaged(f"the cache at {where} is damaged ({text})")
        if code == sqlite3.SQLITE_FULL:
            return CacheUnwritable(
                f"the disk holding the cache {where} is full ({text}): free some space and run "
                "again; everything indexed so far is kept"
            )
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
            return CacheUnwritable(
                f"cannot write the cache at {where} ({text}): give a writable cache folder",
                settings=("cache folder",),
            )
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return MrlError(
                f"the cache at {where} is busy ({text}): another mrl-tui is writing it; try again"
            )
        if code == sqlite3.SQLITE_IOERR:
            return CacheUnwritable(f"cannot use the cache at {where} ({text}): check that disk")
        return MrlError(f"the cache at {where} could not be used ({text})")

    def _parse_generation(self, value: object) -> int:
        try:
            return int(str(value))
        except ValueError:
            raise CacheDamaged(
                f"the cache at {self.directory} is damaged (generation {value!r})"
            ) from None

    def wipe(self) -> None:
        """Rebuild the database empty after damage found after open (the caller holds the
        writer lock). Kept as it is when another process already rebuilt it (a new db id)."""
        with self._lock:
            self._db.close()
            if self._same_database_on_disk():
                _remove_cache_files(self.directory)
            self._db = self._connect()
            self._init()

    def _same_database_on_disk(self) -> bool:
        try:
            with contextlib.closing(sqlite3.connect(self.directory / DB_NAME)) as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'db_id'").fetchone()
        except sqlite3.Error:
            return True  # still unreadable
        return row is None or row[0] == self.db_id

    def writer_lock(self) -> WriterLock:
        return WriterLock(self.directory / LOCK_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading -------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        with self._sql() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return self._parse_generation(None if row is None else row[0])

    def files(self) -> dict[str, FileRecord]:
        with self._sql():
            rows = self._db.execute("SELECT path, size, mtime_ns, sha256 FROM files").fetchall()
        records = (FileRecord(_py_path(r[0]), *r[1:]) for r in rows)
        return {record.path: record for record in records}

    def chunk_count(self) -> int:
        with self._sql():
            return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def chunks(self, ids: Sequence[int]) -> list[Chunk]:
        """Chunks by id, in the order asked."""
        if len(ids) == 0:
            return []
        wanted = [int(i) for i in ids]
        found: dict[int, Chunk] = {}
        with self._sql():
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
            raise CacheDamaged(f"the cache at {self.directory} lost chunk ids {missing[:5]}")
        return [found[i] for i in wanted]

    def ids_of_chunks(self, chunks: Sequence[Chunk]) -> list[int | None]:
        """The id of each chunk this cache holds exactly (same file, lines and text), else None:
        how two indexes of one folder (two models' caches) name the same chunk."""
        query = (
            "SELECT id FROM chunks WHERE path = ? AND start_line = ? AND end_line = ? "
            "AND text = ? LIMIT 1"
        )
        found: list[int | None] = []
        with self._sql():
            for chunk in chunks:
                spot = (_sql_path(chunk.path), chunk.start_line, chunk.end_line, chunk.text)
                row = self._db.execute(query, spot).fetchone()
                found.append(None if row is None else int(row[0]))
        return found

    def keyword_search(self, words: str, limit: int | None = None) -> list[tuple[int, float]]:
        """(chunk id, bm25 score) best first for the query's words (`lexical.search`)."""
        if not self.has_keywords:
            raise MrlError(
                f"the cache at {self.directory} has no keyword index (read-only, and made by an "
                "older mrl-tui): search it with retrieval dense",
                settings=("retrieval",),
            )
        with self._sql() as db:
            return lexical.search(db, words, limit)

    def get_meta(self, key: str) -> str | None:
        with self._sql():
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def load_ids(self) -> tuple[int, np.ndarray]:
        """(generation, chunk ids sorted) of one committed state, without the vectors."""
        return self._ids()

    def load_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (N,), vectors float32 (N, D)) by id; from the snapshot when it is current."""
        _, ids, vectors = self.load_snapshot()
        return ids, vectors

    def load_snapshot(
        self, note: Callable[[str], None] | None = None
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """(generation, ids, vectors) of one committed state. The ids come from the database;
        the vectors from the verified snapshot of that generation, else from the database (and
        a new snapshot). `note` gets a line when a recorded snapshot had to be rebuilt."""
        while True:
            generation, ids = self._ids()
            path = self.derived_path("vectors", generation, ".npy")
            entry = self.entry(path.name)
            if entry is not None and entry.shape[:1] != (len(ids),):
                raise CacheDamaged(
                    f"the cache at {self.directory} is damaged: it lost chunks "
                    f"({len(ids)} rows, {entry.shape[0]} recorded)"
                )

            def build(generation: int = generation) -> np.ndarray:
                moved, _, vectors = self._read_vectors()
                if moved != generation:
                    raise _Moved
                return vectors

            try:
                vectors = artifacts.load_or_build(
                    path,
                    self,
                    (len(ids), self.dim),
                    load=self._load_npy,
                    build=build,
                    writer=artifacts.npy_writer,
                    what="vector snapshot",
                    note=note or (lambda _: None),
                    keep=not self.read_only,
                )
            except _Moved:
                continue
            self.prune_derived(generation)
            return generation, ids, vectors

    def _load_npy(self, path: Path) -> np.ndarray:
        vectors = artifacts.load_npy(path)
        if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"{path.name}: {vectors.dtype} {vectors.shape}")
        return vectors

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query in it sees the same committed state."""
        with self._sql() as db:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.commit()

    def _ids(self) -> tuple[int, np.ndarray]:
        with self._reading() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            ids = [r[0] for r in db.execute("SELECT id FROM chunks ORDER BY id")]
        return self._parse_generation(row and row[0]), np.array(ids, dtype=np.int64)

    def _read_vectors(self) -> tuple[int, np.ndarray, np.ndarray]:
        """All vectors from the database; rows of the wrong size or not finite are damage."""
        with self._reading() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            rows = db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.zeros((len(rows), self.dim), dtype=np.float32)
        bad: list[int] = []
        for i, (chunk_id, blob) in enumerate(rows):
            if not isinstance(blob, bytes) or len(blob) != 4 * self.dim:
                bad.append(chunk_id)
                continue
            vectors[i] = np.frombuffer(blob, dtype=np.float32)
            if not np.isfinite(vectors[i]).all():
                bad.append(chunk_id)
        if bad:
            raise CacheDamaged(
                f"the cache at {self.directory} holds {len(bad)} damaged vectors", tuple(bad)
            )
        return self._parse_generation(row and row[0]), ids, vectors

    def derived_path(self, name: str, generation: int, suffix: str) -> Path:
        stem = f"{name}-{self.db_id}-{generation}" if self.db_id else f"{name}-{generation}"
        return self.directory / f"{stem}{suffix}"

    def prune_derived(self, keep_generation: int) -> None:
        """Remove derived files of older generations or of another database (our own files
        only), and their manifest entries. Newer ones (another process's) stay."""
        if self.read_only:
            return
        for path in self.directory.iterdir():
            match = _DERIVED.fullmatch(path.name)
            if match and (
                match.group("db") != self.db_id or int(match.group("gen")) < keep_generation
            ):
                artifacts.remove(path)
        with self._sql(), self._db:
            self._db.execute("DELETE FROM derived WHERE generation < ?", (keep_generation,))

    # -- the manifest of derived files ---------------------------------------------------------

    def entry(self, name: str) -> artifacts.Entry | None:
        if not self._has_manifest:
            return None
        with self._sql():
            row = self._db.execute(
                "SELECT size, sha256, shape FROM derived WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        try:
            shape = tuple(int(x) for x in json.loads(row[2]))
            return artifacts.Entry(name, int(row[0]), str(row[1]), shape)
        except (TypeError, ValueError):
            return None

    def record(self, entry: artifacts.Entry) -> None:
        match = _DERIVED.fullmatch(entry.name)
        generation = int(match.group("gen")) if match else 0
        with self._sql(), self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO derived VALUES (?, ?, ?, ?, ?)",
                (entry.name, generation, entry.size, entry.sha256, json.dumps(entry.shape)),
            )

    def recorded(self, path: Path) -> bool:
        """Whether `path` is recorded and has its recorded size (cheap: no checksum)."""
        entry = self.entry(path.name)
        try:
            return entry is not None and path.stat().st_size == entry.size
        except OSError:
            return False

    def forget_files_of(self, chunk_ids: Sequence[int]) -> None:
        """Drop the files holding these (damaged) chunks, so the next update embeds them again."""
        wanted = [int(i) for i in chunk_ids]
        with self._sql(), self._db:
            for start in range(0, len(wanted), 900):
                part = wanted[start : start + 900]
                marks = ",".join("?" * len(part))
                damaged = f"SELECT path FROM chunks WHERE id IN ({marks})"
                self._db.execute(f"DELETE FROM files WHERE path IN ({damaged})", part)
            self._db.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
            )

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
        with self._sql(), self._db:
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
                keywords = []
                for c, v in zip(chunks, vectors, strict=True):
                    row = (stored, c.start_line, c.end_line, c.heading, c.text, self._blob(v))
                    cursor = self._db.execute(
                        "INSERT INTO chunks (path, start_line, end_line, heading, text, vector) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        row,
                    )
                    keywords.append((int(cursor.lastrowid or 0), record.path, c.heading, c.text))
                lexical.fill(self._db, keywords)
            if remove or replace:  # a touch alone changes no chunk: derived files stay valid
                self._db.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
                )

    def set_meta(self, key: str, value: str) -> None:
        with self._sql(), self._db:
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
