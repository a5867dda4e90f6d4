from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mrl_tui.core.cache.store import FileRecord, IndexStore, index_dir_for
from mrl_tui.core.corpus.chunking import Chunk
from mrl_tui.core.errors import CacheError

SETTINGS: dict[str, object] = {"model": "m", "max_tokens": 64, "overlap_tokens": 8}


def _chunks(path: str, n: int) -> list[Chunk]:
    return [Chunk(path, i + 1, i + 1, "", f"{path} line {i}") for i in range(n)]


def test_index_dir_depends_on_folder_and_settings(tmp_path: Path) -> None:
    a = index_dir_for(tmp_path, Path("/x/notes"), SETTINGS)
    b = index_dir_for(tmp_path, Path("/y/notes"), SETTINGS)
    c = index_dir_for(tmp_path, Path("/x/notes"), {**SETTINGS, "model": "other"})
    assert len({a, b, c}) == 3
    assert a.parent == tmp_path and a.name.startswith("notes-")


def test_replace_and_load_round_trip(tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "ix", SETTINGS, dim=4)
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    store.apply(replace=[(FileRecord("a.md", 1, 1, "h"), _chunks("a.md", 3), vectors)])
    ids, loaded = store.load_vectors()
    np.testing.assert_array_equal(loaded, vectors)
    assert [c.text for c in store.chunks(ids[::-1].tolist())] == [
        "a.md line 2",
        "a.md line 1",
        "a.md line 0",
    ]
    # the snapshot is used on the next load, and equals the database
    assert store.derived_path("vectors", store.generation, ".npy").exists()
    ids2, loaded2 = store.load_vectors()
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(loaded2, vectors)


def test_replacing_a_file_drops_its_old_chunks_and_touch_keeps_them(tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "ix", SETTINGS, dim=2)
    ones = np.ones((2, 2), dtype=np.float32)
    store.apply(replace=[(FileRecord("a.md", 1, 1, "h1"), _chunks("a.md", 2), ones)])
    store.apply(replace=[(FileRecord("b.md", 1, 1, "h2"), _chunks("b.md", 2), ones)])
    store.apply(replace=[(FileRecord("a.md", 2, 2, "h3"), _chunks("a.md", 1), ones[:1])])
    assert store.chunk_count() == 3
    store.apply(touch=[FileRecord("b.md", 1, 99, "h2")])
    assert store.chunk_count() == 3
    assert store.files()["b.md"].mtime_ns == 99
    store.apply(remove=["b.md"])
    assert store.chunk_count() == 1
    assert set(store.files()) == {"a.md"}


def test_each_write_moves_the_generation_and_prunes_old_snapshots(tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "ix", SETTINGS, dim=2)
    ones = np.ones((1, 2), dtype=np.float32)
    store.apply(replace=[(FileRecord("a.md", 1, 1, "h"), _chunks("a.md", 1), ones)])
    store.load_vectors()
    first = store.generation
    store.apply(replace=[(FileRecord("b.md", 1, 1, "h"), _chunks("b.md", 1), ones)])
    assert store.generation == first + 1
    ids, _ = store.load_vectors()
    assert len(ids) == 2
    assert not store.derived_path("vectors", first, ".npy").exists()


def test_other_settings_or_garbage_are_cache_errors_and_get_rebuilt(tmp_path: Path) -> None:
    directory = tmp_path / "ix"
    store = IndexStore(directory, SETTINGS, dim=2)
    store.close()
    with pytest.raises(CacheError):
        IndexStore(directory, SETTINGS, dim=3)
    (directory / "index.db").write_bytes(b"this is not a database" * 100)
    for extra in directory.glob("index.db-*"):
        extra.unlink()
    with pytest.raises(CacheError):
        IndexStore(directory, SETTINGS, dim=2)
    rebuilt, message = IndexStore.open_or_rebuild(directory, SETTINGS, dim=2)
    assert message is not None and "rebuilding" in message
    assert rebuilt.chunk_count() == 0


def test_a_torn_snapshot_is_ignored_and_rebuilt_from_the_database(tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "ix", SETTINGS, dim=2)
    vectors = np.array([[1, 2], [3, 4]], dtype=np.float32)
    store.apply(replace=[(FileRecord("a.md", 1, 1, "h"), _chunks("a.md", 2), vectors)])
    store.load_vectors()
    snapshot = store.derived_path("vectors", store.generation, ".npy")
    snapshot.write_bytes(snapshot.read_bytes()[:-5])  # cut off mid-write
    _, loaded = store.load_vectors()
    np.testing.assert_array_equal(loaded, vectors)


def test_an_uncommitted_transaction_leaves_the_last_committed_state(tmp_path: Path) -> None:
    """A kill mid-transaction is a rollback: simulate one by failing inside `apply`."""
    store = IndexStore(tmp_path / "ix", SETTINGS, dim=2)
    ones = np.ones((1, 2), dtype=np.float32)
    store.apply(replace=[(FileRecord("a.md", 1, 1, "h"), _chunks("a.md", 1), ones)])
    generation = store.generation
    bad = np.ones((1, 3), dtype=np.float32)  # wrong width: fails after the DELETE ran
    with pytest.raises(ValueError):
        store.apply(replace=[(FileRecord("a.md", 2, 2, "h2"), _chunks("a.md", 1), bad)])
    assert store.generation == generation
    assert store.files()["a.md"].sha256 == "h"
    assert store.chunk_count() == 1
    # and the file on disk is a valid database another process can read
    with sqlite3.connect(tmp_path / "ix" / "index.db") as db:
        assert db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 1
