"""Bring a folder's cache up to date: walk, fingerprint, read and chunk what changed, embed, commit.

Work is committed in groups of files, one transaction each, so cancelling (or a crash) keeps every
group already embedded; the next run starts from there. Unchanged files are never re-read.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from mrl_tui.core.chunking import Chunk, ChunkSettings, chunk_document
from mrl_tui.core.errors import Cancelled
from mrl_tui.core.readers import ReadError, read_document
from mrl_tui.core.store import FileRecord, IndexStore
from mrl_tui.core.walk import DEFAULT_MAX_FILE_BYTES, Skipped, walk_folder

COMMIT_EVERY_CHUNKS = 256
"""Chunks embedded between commits: a cancel loses little, and batches stay full."""


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def update_index(
    store: IndexStore,
    root: Path,
    embedder: DocumentEmbedder,
    settings: ChunkSettings,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
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
    present = set(walked.files)
    removed = [p for p in known if p not in present]

    # Fingerprint: size + mtime first; the content hash only where those moved.
    touched: list[FileRecord] = []
    changed: list[FileRecord] = []
    for rel in walked.files:
        path = walked.root / rel
        try:
            st = path.stat()
            old = known.get(rel)
            if old is not None and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns):
                continue
            record = FileRecord(rel, st.st_size, st.st_mtime_ns, _sha256(path))
        except OSError as exc:
            report.skipped.append(Skipped(rel, f"unreadable: {exc.strerror or exc}"))
            continue
        if old is not None and old.sha256 == record.sha256:
            touched.append(record)
        else:
            changed.append(record)
    if removed or touched:
        store.apply(remove=removed, touch=touched)
    report.files_removed = len(removed)

    # Read and chunk what changed; unreadable files become skips, never failures.
    tell(phase="reading", files_total=len(changed))
    pending: deque[tuple[FileRecord, list[Chunk]]] = deque()
    for i, record in enumerate(changed):
        if stop_requested():
            return _finish(report, store, started, cancelled=True)
        tell(files_done=i, current=record.path)
        try:
            document = read_document(walked.root, record.path)
        except ReadError as exc:
            report.skipped.append(Skipped(record.path, str(exc)))
            continue
        chunks = chunk_document(document, embedder.count_tokens, settings)
        pending.append((record, chunks))
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


def _finish(
    report: IndexReport, store: IndexStore, started: float, *, cancelled: bool
) -> IndexReport:
    report.cancelled = cancelled
    report.chunks_total = store.chunk_count()
    report.seconds = time.perf_counter() - started
    return report
