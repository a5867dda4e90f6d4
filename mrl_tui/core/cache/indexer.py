"""Bring a folder's cache up to date: walk, fingerprint, read and chunk what changed, embed, commit.

Work is committed in groups of files, one transaction each, so cancelling (or a crash) keeps every
group already embedded; the next run starts from there. Unchanged files are never re-read, and
one file that fails to read, decode or chunk, for whatever reason, is a skip, never a failure.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from mrl_tui import __version__
from mrl_tui.core.cache.store import FileRecord, IndexStore
from mrl_tui.core.corpus.chunking import Chunk, ChunkSettings, chunk_document
from mrl_tui.core.corpus.readers import ReadError, UnreadableError, parse_document, read_bytes
from mrl_tui.core.corpus.walk import DEFAULT_MAX_FILE_BYTES, Skipped, walk_folder
from mrl_tui.core.errors import Cancelled

COMMIT_EVERY_CHUNKS = 256
"""Chunks embedded between commits: a cancel loses little, and batches stay full."""
MAX_CHUNKS_PER_FILE = 2000
"""A file that would make more chunks is skipped whole (a 4 MB minified bundle or data dump):
one file must not cost the embedding time of two thousand notes, nor half-fill the results."""
SKIPS_META_KEY = "read_skips"
"""Meta key of the content skips (binary, unparsable, too many chunks), so that an unchanged
skipped file is not read again on every run: re-opening stays a stat walk."""


class DocumentEmbedder(Protocol):
    def count_tokens(self, text: str) -> int: ...

    def embed_documents(
        self,
        texts: list[str],
        *,
        on_progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray: ...


@dataclass
class IndexProgress:
    """A snapshot of indexing for progress bars; rates and ETAs are the display's business."""

    phase: str  # "scanning" | "reading" | "embedding" | "done"
    files_done: int = 0
    files_total: int = 0
    chunks_done: int = 0
    chunks_total: int = 0
    current: str = ""
    elapsed_s: float = 0.0


@dataclass
class IndexReport:
    files_seen: int = 0
    files_changed: int = 0
    files_removed: int = 0
    chunks_embedded: int = 0
    chunks_total: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False


def embedding_text(chunk: Chunk) -> str:
    """What the model sees: the heading trail gives a chunk its context ("Sourdough > Feeding")."""
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text


def update_index(
    store: IndexStore,
    root: Path,
    embedder: DocumentEmbedder,
    settings: ChunkSettings,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_chunks_per_file: int = MAX_CHUNKS_PER_FILE,
    on_progress: Callable[[IndexProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> IndexReport:
    started = time.perf_counter()
    progress = IndexProgress("scanning")
    report = IndexReport()

    def tell(**changes: object) -> None:
        for key, value in changes.items():
            setattr(progress, key, value)
        progress.elapsed_s = time.perf_counter() - started
        if on_progress is not None:
            on_progress(replace(progress))  # a copy: the receiver may be another thread

    def stop_requested() -> bool:
        return should_stop is not None and should_stop()

    tell()
    walked = walk_folder(root, max_file_bytes=max_file_bytes)
    report.skipped = list(walked.skipped)
    report.files_seen = len(walked.files)
    known = store.files()
    removed = [p for p in known if p not in walked.stats]
    if removed:
        store.apply(remove=removed)
    report.files_removed = len(removed)

    # Fingerprint: size + mtime from the walk; only files where those moved are read at all.
    old_skips = _saved_skips(store)
    skips: dict[str, tuple[int, int, str]] = {}  # content skips, kept while the file is unchanged
    to_read: list[str] = []
    for rel in walked.files:
        stat = walked.stats[rel]
        old = known.get(rel)
        if old is not None and (old.size, old.mtime_ns) == stat:
            continue
        skip = old_skips.get(rel)
        if skip is not None and skip[:2] == stat:
            skips[rel] = skip
            report.skipped.append(Skipped(rel, skip[2]))
            continue
        to_read.append(rel)

    # Read, hash and chunk each once; any failure of one file is a skip with a reason.
    tell(phase="reading", files_total=len(to_read))
    touched: list[FileRecord] = []  # same content, new size/mtime
    dropped: list[str] = []  # indexed before, unreadable now: its old chunks must go
    pending: deque[tuple[FileRecord, list[Chunk]]] = deque()
    for i, rel in enumerate(to_read):
        if stop_requested():
            return _finish(report, store, started, cancelled=True)
        tell(files_done=i, current=rel)
        size, mtime_ns = walked.stats[rel]
        old = known.get(rel)
        try:
            data = read_bytes(walked.root, rel, max_file_bytes)
            record = FileRecord(rel, size, mtime_ns, hashlib.sha256(data).hexdigest())
            if old is not None and old.sha256 == record.sha256:
                touched.append(record)
                continue
            chunks = _chunk_file(rel, data, embedder, settings, max_chunks_per_file)
        except Exception as exc:  # one file's failure, whatever it is, is a skip
            reason = str(exc) if isinstance(exc, ReadError) else _failure(exc)
            report.skipped.append(Skipped(rel, reason))
            if not isinstance(exc, UnreadableError):  # remembered; unreadable: tried next run
                skips[rel] = (size, mtime_ns, reason)
            if old is not None:
                dropped.append(rel)
            continue
        pending.append((record, chunks))
    if touched or dropped:
        store.apply(remove=dropped, touch=touched)
    if skips != old_skips:
        _save_skips(store, skips)
    report.skipped.sort(key=lambda s: s.path)
    report.files_changed = len(pending)

    # Embed in groups of whole files; each group is one transaction.
    total = sum(len(chunks) for _, chunks in pending)
    tell(phase="embedding", files_done=0, files_total=len(pending), chunks_total=total)
    done_files = 0
    while pending:
        group: list[tuple[FileRecord, list[Chunk]]] = []
        size = 0
        while pending and size < COMMIT_EVERY_CHUNKS:
            group.append(pending.popleft())
            size += len(group[-1][1])
        texts = [embedding_text(c) for _, chunks in group for c in chunks]
        tell(current=group[-1][0].path)
        try:
            vectors = embedder.embed_documents(
                texts,
                on_progress=lambda n: tell(chunks_done=progress.chunks_done + n),
                should_stop=stop_requested,
            )
        except Cancelled:
            return _finish(report, store, started, cancelled=True)
        rows: list[tuple[FileRecord, list[Chunk], np.ndarray]] = []
        offset = 0
        for record, chunks in group:
            rows.append((record, chunks, vectors[offset : offset + len(chunks)]))
            offset += len(chunks)
        store.apply(replace=rows)
        report.chunks_embedded += len(texts)
        done_files += len(group)
        tell(files_done=done_files)
    tell(phase="done", current="")
    return _finish(report, store, started, cancelled=False)


def _chunk_file(
    rel: str, data: bytes, embedder: DocumentEmbedder, settings: ChunkSettings, cap: int
) -> list[Chunk]:
    document = parse_document(rel, data)
    chunks = chunk_document(document, embedder.count_tokens, settings, limit=cap + 1)
    if len(chunks) > cap:
        raise ReadError(f"too many chunks (over {cap})")
    return chunks


def _failure(exc: Exception) -> str:
    """One line for an unexpected failure (a reader's bug, a RecursionError, MemoryError)."""
    detail = " ".join(str(exc).split())[:160]
    return f"could not be read ({type(exc).__name__}{': ' + detail if detail else ''})"


def _saved_skips(store: IndexStore) -> dict[str, tuple[int, int, str]]:
    """Content skips of earlier runs by path: (size, mtime_ns, reason). Anything odd in the
    saved value, or another mrl-tui version (which may read those files), means none."""
    try:
        saved = json.loads(store.get_meta(SKIPS_META_KEY) or "{}")
        if saved.get("version") != __version__:
            return {}
        return {str(p): (int(s), int(m), str(r)) for p, (s, m, r) in saved["files"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def _save_skips(store: IndexStore, skips: dict[str, tuple[int, int, str]]) -> None:
    # json escapes the surrogates of names that are not UTF-8, and reads them back the same.
    store.set_meta(SKIPS_META_KEY, json.dumps({"version": __version__, "files": skips}))


def _finish(
    report: IndexReport, store: IndexStore, started: float, *, cancelled: bool
) -> IndexReport:
    report.cancelled = cancelled
    report.chunks_total = store.chunk_count()
    report.seconds = time.perf_counter() - started
    return report
