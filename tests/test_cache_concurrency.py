"""Two processes on one cache (issue 16 item 4, issue 15 item 8): creating it at the same moment
loses nothing, a lock error never deletes it, and one writer at a time: the second waits, or a
search uses what is committed and says so."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import LIBRARY_DIM, HashEmbedder, write_corpus

import mrl_tui.core.cache.store as store_module
from mrl_tui import cli
from mrl_tui.core.cache.indexer import IndexProgress
from mrl_tui.core.cache.store import FileRecord, IndexStore
from mrl_tui.core.corpus.chunking import Chunk
from mrl_tui.core.embedding.choice import ModelChoice
from mrl_tui.core.errors import MrlError
from mrl_tui.core.library import Library

SETTINGS: dict[str, object] = {"model": "m", "max_tokens": 64, "overlap_tokens": 8}


def _open_and_write(directory: str, name: str, barrier: object) -> tuple[str | None, str]:
    barrier.wait()  # type: ignore[attr-defined]
    store, message = IndexStore.open_or_rebuild(Path(directory), SETTINGS, dim=2)
    chunk = Chunk(name, 1, 1, "", name)
    store.apply(replace=[(FileRecord(name, 1, 1, "h"), [chunk], np.ones((1, 2), np.float32))])
    db_id = store.db_id
    store.close()
    return message, db_id


def test_two_processes_creating_one_cache_lose_nothing(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with context.Manager() as manager, context.Pool(2) as pool:
        barrier = manager.Barrier(2)  # both open at the same moment
        for trial in range(20):
            directory = str(tmp_path / f"ix{trial}")
            a = pool.apply_async(_open_and_write, (directory, "a.md", barrier))
            b = pool.apply_async(_open_and_write, (directory, "b.md", barrier))
            (message_a, id_a), (message_b, id_b) = a.get(30), b.get(30)
            assert message_a is None and message_b is None  # nobody "rebuilt" it
            assert id_a == id_b
            store = IndexStore(Path(directory), SETTINGS, dim=2)
            assert set(store.files()) == {"a.md", "b.md"}  # both kept their work
            store.close()


def test_a_busy_database_is_an_error_never_a_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "ix"
    store = IndexStore(directory, SETTINGS, dim=2)
    one = np.ones((1, 2), np.float32)
    store.apply(replace=[(FileRecord("a.md", 1, 1, "h"), [Chunk("a.md", 1, 1, "", "a")], one)])
    store.close()
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
    other = sqlite3.connect(directory / "index.db")
    other.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
    try:
        with pytest.raises(MrlError, match="busy"):
            IndexStore.open_or_rebuild(directory, SETTINGS, dim=2)
    finally:
        other.rollback()
        other.close()
    store = IndexStore(directory, SETTINGS, dim=2)
    assert set(store.files()) == {"a.md"}  # nothing deleted
    store.close()


WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from fakes import LIBRARY_DIM, HashEmbedder
import mrl_tui.core.cache.indexer as indexer
from mrl_tui.core.library import Library

indexer.COMMIT_EVERY_CHUNKS = 2
slow = HashEmbedder(LIBRARY_DIM, delay_s=0.25)
library = Library(Path({folder!r}), slow, cache_root=Path({cache!r}))
told = False
go = Path({go!r})
def progress(p):
    global told
    if p.phase == "embedding" and p.files_done and not told:
        told = True
        print("committed", flush=True)
        deadline = time.monotonic() + 60
        while not go.exists() and time.monotonic() < deadline:  # the test says when to go on
            time.sleep(0.02)
report = library.update(on_progress=progress)
print("done", report.chunks_total, flush=True)
"""


def test_one_writer_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_corpus(tmp_path / "folder", files=8, paragraphs=2)
    cache = tmp_path / "cache"
    go = tmp_path / "go"  # the writer holds the lock, one file committed, until this exists
    script = WRITER.format(
        tests=str(Path(__file__).parent), folder=str(folder), cache=str(cache), go=str(go)
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "committed"

        # A search does not wait: it uses what is committed, and says so.
        monkeypatch.setattr(ModelChoice, "load", lambda *a, **k: HashEmbedder(LIBRARY_DIM))
        args = ["search", str(folder), "bread oven", "--cache-dir", str(cache), "--dim", "16"]
        assert cli.main(args) == 0
        out, err = capsys.readouterr()
        assert "another mrl-tui is indexing this folder; searching what it has committed" in err
        assert "notes/" in out and "Traceback" not in err

        # An update waits for the writer, says so, then has nothing left to embed.
        embedder = HashEmbedder(LIBRARY_DIM)
        library = Library(folder, embedder, cache_root=cache)
        phases: list[IndexProgress] = []

        def progress(p: IndexProgress) -> None:
            phases.append(p)
            if p.phase == "waiting":
                go.touch()  # the writer goes on only once this update is waiting for it

        report = library.update(on_progress=progress)
        assert phases[0].phase == "waiting" and "waiting" in phases[0].current
        assert writer.wait(30) == 0
        assert writer.stdout.read().split() == ["done", str(report.chunks_total)]
        assert report.chunks_embedded == 0 and embedder.embedded == []
        assert report.chunks_total == library.store.chunk_count() == 16
        library.close()
    finally:
        writer.kill()
        writer.wait()


async def test_the_app_shows_that_it_waits_for_another_indexer(tmp_path: Path) -> None:
    from ui_helpers import wait_for

    from mrl_tui.ui.app import MrlApp

    folder = write_corpus(tmp_path / "folder", files=4)
    library = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    other = library.store.writer_lock()  # as another process would hold it
    assert other.try_acquire()
    app = MrlApp(folder, device="cpu", library=library)
    async with app.run_test(size=(100, 32)) as pilot:
        panel = app.search_screen.indexing_panel
        status = panel.query_one("#indexing-status")
        await wait_for(pilot, lambda: "waiting" in str(status.render()))
        assert "another mrl-tui is indexing this folder" in str(status.render())
        assert app.report is None
        other.release()
        await wait_for(pilot, lambda: app.report is not None)
        assert app.report.chunks_total == library.store.chunk_count() > 0
