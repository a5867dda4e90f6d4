from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import TOPICS, write_files
from fakes import HashEmbedder

from mrl_tui.core.cache.indexer import IndexProgress, update_index
from mrl_tui.core.cache.store import IndexStore
from mrl_tui.core.corpus.chunking import ChunkSettings

SETTINGS = ChunkSettings(max_tokens=64, overlap_tokens=8)
STORE_SETTINGS: dict[str, object] = {"model": "hash", "max_tokens": 64, "overlap_tokens": 8}


def _store(tmp_path: Path) -> IndexStore:
    return IndexStore(tmp_path / "cache", STORE_SETTINGS, dim=HashEmbedder.full_dim)


def test_first_run_embeds_everything_and_second_run_nothing(tmp_path: Path) -> None:
    root = write_files(tmp_path / "docs", TOPICS)
    store, emb = _store(tmp_path), HashEmbedder()
    seen: list[IndexProgress] = []
    report = update_index(store, root, emb, SETTINGS, on_progress=lambda p: seen.append(p))
    assert report.files_seen == len(TOPICS) and report.files_changed == len(TOPICS)
    assert report.chunks_embedded == report.chunks_total == store.chunk_count() > 0
    assert {p.phase for p in seen} >= {"scanning", "reading", "embedding", "done"}
    emb.embedded.clear()
    again = update_index(store, root, emb, SETTINGS)
    assert emb.embedded == [] and again.files_changed == 0
    assert again.chunks_total == report.chunks_total


def test_only_the_changed_file_is_re_embedded(tmp_path: Path) -> None:
    root = write_files(tmp_path / "docs", TOPICS)
    store, emb = _store(tmp_path), HashEmbedder()
    update_index(store, root, emb, SETTINGS)
    emb.embedded.clear()
    (root / "space/mars.md").write_text("# Mars\n\nA cold desert with dust storms.\n")
    report = update_index(store, root, emb, SETTINGS)
    assert report.files_changed == 1
    assert emb.embedded and all("dust storms" in t or "Mars" in t for t in emb.embedded)
    texts = [c.text for c in store.chunks(store.load_vectors()[0].tolist())]
    assert any("dust storms" in t for t in texts)
    assert not any("Olympus" in t for t in texts)


def test_touching_a_file_without_changing_it_embeds_nothing(tmp_path: Path) -> None:
    root = write_files(tmp_path / "docs", TOPICS)
    store, emb = _store(tmp_path), HashEmbedder()
    update_index(store, root, emb, SETTINGS)
    emb.embedded.clear()
    path = root / "bikes/chain.md"
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000_000))
    report = update_index(store, root, emb, SETTINGS)
    assert emb.embedded == [] and report.files_changed == 0
    assert store.files()["bikes/chain.md"].mtime_ns == path.stat().st_mtime_ns


def test_a_deleted_file_vanishes(tmp_path: Path) -> None:
    root = write_files(tmp_path / "docs", TOPICS)
    store, emb = _store(tmp_path), HashEmbedder()
    update_index(store, root, emb, SETTINGS)
    (root / "net/dns.md").unlink()
    report = update_index(store, root, emb, SETTINGS)
    assert report.files_removed == 1
    paths = {c.path for c in store.chunks(store.load_vectors()[0].tolist())}
    assert "net/dns.md" not in paths and len(paths) == len(TOPICS) - 1


def test_cancel_keeps_committed_work_and_the_next_run_finishes(tmp_path: Path) -> None:
    files = {f"f{i:03d}.md": f"# Note {i}\n\n" + f"word{i} " * 40 for i in range(40)}
    root = write_files(tmp_path / "docs", files)
    store, emb = _store(tmp_path), HashEmbedder()
    import mrl_tui.core.cache.indexer as indexer

    old = indexer.COMMIT_EVERY_CHUNKS
    indexer.COMMIT_EVERY_CHUNKS = 5
    try:
        report = update_index(
            store, root, emb, SETTINGS, should_stop=lambda: len(emb.embedded) >= 12
        )
    finally:
        indexer.COMMIT_EVERY_CHUNKS = old
    assert report.cancelled
    kept = store.chunk_count()
    assert 0 < kept < 40
    emb.embedded.clear()
    final = update_index(store, root, emb, SETTINGS)
    assert not final.cancelled and final.chunks_total == 40
    assert len(emb.embedded) == 40 - kept  # committed files were not embedded again


KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from fakes import HashEmbedder
import mrl_tui.core.cache.indexer as indexer
from mrl_tui.core.corpus.chunking import ChunkSettings
from mrl_tui.core.cache.store import IndexStore

class Slow(HashEmbedder):
    def embed_documents(self, texts, **kw):
        out = super().embed_documents(texts, **kw)
        print("batch", flush=True)
        time.sleep(0.2)
        return out

indexer.COMMIT_EVERY_CHUNKS = 3
store = IndexStore(Path({cache!r}), {settings!r}, dim=HashEmbedder.full_dim)
indexer.update_index(store, Path({root!r}), Slow(), ChunkSettings(64, 8))
"""


def test_a_process_killed_mid_indexing_leaves_a_usable_cache(tmp_path: Path) -> None:
    files = {f"f{i:03d}.md": f"# Note {i}\n\n" + f"text {i} " * 5 for i in range(60)}
    root = write_files(tmp_path / "docs", files)
    script = KILL_SCRIPT.format(
        tests=str(Path(__file__).parent),
        cache=str(tmp_path / "cache"),
        settings=STORE_SETTINGS,
        root=str(root),
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for _ in range(3):
        assert proc.stdout.readline().strip() == "batch"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = _store(tmp_path)  # opens without error
    kept = store.chunk_count()
    assert 0 < kept < 60
    ids, vectors = store.load_vectors()
    assert len(ids) == kept == len(vectors)
    emb = HashEmbedder()
    report = update_index(store, root, emb, SETTINGS)
    assert report.chunks_total == 60 and len(emb.embedded) == 60 - kept
