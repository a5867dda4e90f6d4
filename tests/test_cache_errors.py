"""File-system trouble is one line saying what to do (issue 16 item 6): a full disk while indexing
keeps what was committed, a derived file that cannot be saved is used from memory, a cache dir
that is a file fails before any model loads, a read-only cache is searched as it is."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import LIBRARY_DIM, HashEmbedder, write_corpus

import mrl_tui.core.cache.artifacts as artifacts
import mrl_tui.core.cache.indexer as indexer
from mrl_tui import cli
from mrl_tui.core.cache.store import IndexStore
from mrl_tui.core.embedding.choice import ModelChoice
from mrl_tui.core.library import Library


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mrl-tui: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> list[HashEmbedder]:
    made: list[HashEmbedder] = []

    def make(*args: object, **kwargs: object) -> HashEmbedder:
        made.append(HashEmbedder(LIBRARY_DIM))
        return made[-1]

    monkeypatch.setattr(ModelChoice, "load", make)
    return made


def test_a_full_disk_while_indexing_keeps_what_was_committed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_model: list[HashEmbedder],
) -> None:
    """SQLite's own "database or disk is full", from a page limit on the database."""
    folder = write_corpus(tmp_path / "folder", files=30, paragraphs=3)
    monkeypatch.setattr(indexer, "COMMIT_EVERY_CHUNKS", 4)
    connect = IndexStore._connect

    def small_disk(self: IndexStore) -> sqlite3.Connection:
        db = connect(self)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {max(pages, 8) + 12}")
        return db

    monkeypatch.setattr(IndexStore, "_connect", small_disk)
    args = ["index", str(folder), "--cache-dir", str(tmp_path / "cache")]
    assert cli.main(args) == 1
    line = _one_line(capsys.readouterr().err)
    assert "is full" in line and "free some space" in line and "kept" in line
    [db] = (tmp_path / "cache").glob("*/index.db")
    with contextlib.closing(sqlite3.connect(db)) as connection:
        kept = connection.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    assert 0 < kept < 90

    monkeypatch.setattr(IndexStore, "_connect", connect)  # space freed: the run finishes
    assert cli.main(args) == 0
    assert "90 chunks in the index" in capsys.readouterr().out
    assert len(fake_model[-1].embedded) == 90 - kept  # the committed part was not redone


def test_no_space_for_a_derived_file_uses_it_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_corpus(tmp_path / "folder", files=4)

    def full_disk(array: object) -> artifacts.Writer:
        def write(tmp: Path) -> None:
            tmp.write_bytes(b"\x93NUMPY partial")
            raise OSError(errno.ENOSPC, "No space left on device")

        return write

    monkeypatch.setattr(artifacts, "npy_writer", full_disk)
    library = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    library.update()
    hits = library.search(library.query("bread oven"), 16, 3).hits
    [message] = library.take_messages()
    directory = library.store.directory
    library.close()
    assert len(hits) == 3
    assert "No space left on device" in message and "used from memory" in message
    assert not list(directory.glob("vectors-*")) and not list(directory.glob(".*.tmp"))

    monkeypatch.undo()  # space again: saved, quietly
    library = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    library.load()
    assert library.take_messages() == [] and list(directory.glob("vectors-*.npy"))
    library.close()


def test_a_cache_dir_that_is_a_file_fails_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_model: list[HashEmbedder]
) -> None:
    folder = write_corpus(tmp_path / "folder", files=1)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    for cache in (blocker, blocker / "below"):
        assert cli.main(["search", str(folder), "q", "--cache-dir", str(cache)]) == 1
        line = _one_line(capsys.readouterr().err)
        assert "is a file, not a folder" in line and "--cache-dir" in line
    assert fake_model == [] and blocker.read_text() == "mine"


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[Path]:
    """`folder` seen read-only: a read-only bind mount where we may mount (as root), else
    permissions (as anyone else)."""
    if os.geteuid() != 0:
        for path in (folder, *folder.rglob("*")):
            path.chmod(path.stat().st_mode & ~0o222)
        try:
            yield folder
        finally:
            for path in (folder, *folder.rglob("*")):
                path.chmod(path.stat().st_mode | 0o200)
        return
    view = folder.with_name(folder.name + "-ro")
    view.mkdir()
    mount = shutil.which("mount")
    bound = mount and subprocess.run([mount, "--bind", str(folder), str(view)]).returncode == 0
    if not bound:
        pytest.skip("root without the right to mount: cannot make a folder read-only")
    try:
        remount = [mount, "-o", "remount,bind,ro", str(view)]
        assert subprocess.run(remount).returncode == 0
        yield view
    finally:
        subprocess.run(["umount", str(view)])


def test_a_read_only_cache_is_searched_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_model: list[HashEmbedder]
) -> None:
    folder = write_corpus(tmp_path / "folder", files=4)
    other = write_corpus(tmp_path / "other", files=2, seed=3)
    cache = tmp_path / "cache"
    args = ["search", str(folder), "bread oven", "--dim", "16", "--json"]
    assert cli.main([*args, "--cache-dir", str(cache)]) == 0
    expected = json.loads(capsys.readouterr().out)["results"]
    with _read_only(cache) as view:
        before = sorted(p.name for p in view.rglob("*"))
        assert cli.main([*args, "--cache-dir", str(view)]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["results"] == expected
        line = _one_line(err)
        assert "read-only: searching what it holds" in line and "unreadable" not in line
        assert sorted(p.name for p in view.rglob("*")) == before  # nothing written

        # a folder it holds no index of: one line, and what to do
        assert cli.main(["index", str(other), "--cache-dir", str(view)]) == 1
        assert "writable --cache-dir" in _one_line(capsys.readouterr().err)
