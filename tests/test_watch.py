"""The watched folder: a real `watchfiles` watcher sees add / modify / delete and the search
results follow; cache and hidden paths are ignored; fits are kept over small changes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_files
from fakes import LIBRARY_DIM, HashEmbedder, held, write_corpus

from mrl_tui.core import library as library_module
from mrl_tui.core.cache.watch import FolderWatcher, WatchUpdate
from mrl_tui.core.library import Library

WAIT_S = 15.0  # a loaded machine; each wait ends as soon as the update is in


def _paths(lib: Library, words: str) -> set[str]:
    return {h.chunk.path for h in lib.retrieve(lib.query(words), 16, 10, "lexical").hits}


@pytest.fixture
def watched(tmp_path: Path):
    folder = write_files(tmp_path / "folder", {"a.md": "# A\n\nalpha note about bread\n"})
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    lib.update()
    lib.load()
    updates: queue.Queue[WatchUpdate] = queue.Queue()
    watcher = FolderWatcher(lib, updates.put, step_ms=50)
    ready = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(ready,), daemon=True)
    thread.start()
    assert ready.wait(WAIT_S)
    # The watch is in place shortly after `ready`: touch a probe until its update comes.
    probe = folder / "probe.md"
    deadline = time.monotonic() + WAIT_S
    writes = 0
    while True:
        probe.write_text(f"probe {time.monotonic()}\n", encoding="utf-8")
        writes += 1
        try:
            updates.get(timeout=0.5)
            break
        except queue.Empty:
            assert time.monotonic() < deadline, "the watcher never reported"
    while writes > 1:  # the probe's later writes may come in an update of their own: let it pass
        try:
            updates.get(timeout=2.0)
        except queue.Empty:
            break
    yield folder, lib, updates
    watcher.stop.set()
    thread.join(WAIT_S)
    assert not thread.is_alive()


def test_add_modify_delete_are_followed(watched) -> None:
    folder, lib, updates = watched
    (folder / "new.md").write_text("# New\n\nzeppelin hangar\n", encoding="utf-8")
    update = updates.get(timeout=WAIT_S)
    assert update.files_changed == 1 and update.line.startswith("1 file changed, re-indexed in")
    assert _paths(lib, "zeppelin") == {"new.md"}

    (folder / "new.md").write_text("# New\n\nsubmarine dock\n", encoding="utf-8")
    updates.get(timeout=WAIT_S)
    assert _paths(lib, "submarine") == {"new.md"} and _paths(lib, "zeppelin") == set()

    (folder / "new.md").rename(folder / "moved.md")
    update = updates.get(timeout=WAIT_S)
    while update.files_removed == 0:  # a rename may come as two batches
        update = updates.get(timeout=WAIT_S)
    assert _paths(lib, "submarine") == {"moved.md"}

    (folder / "moved.md").unlink()
    update = updates.get(timeout=WAIT_S)
    assert update.files_removed == 1 and "1 removed" in update.line
    assert _paths(lib, "submarine") == set()
    assert _paths(lib, "alpha") == {"a.md"}


def test_hidden_and_cache_paths_are_not_relevant(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "folder", {"a.md": "alpha\n"})
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=folder / "cache")
    watcher = FolderWatcher(lib, lambda _: None)
    root = lib.root
    assert watcher.relevant(str(root / "notes" / "b.md"))
    assert not watcher.relevant(str(lib.store.directory / "index.db-wal"))
    assert not watcher.relevant(str(root / "cache" / "other-index" / "index.db"))
    assert not watcher.relevant(str(root / ".git" / "index"))
    assert not watcher.relevant(str(root / "notes" / ".b.md.swp"))
    assert not watcher.relevant(str(tmp_path / "elsewhere.md"))
    # a cache root that holds the folder: only the folder's own index is left out
    inside = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path)
    watcher = FolderWatcher(inside, lambda _: None)
    assert watcher.relevant(str(root / "a.md"))
    assert not watcher.relevant(str(inside.store.directory / "index.db"))


def test_a_small_change_keeps_the_fit_a_large_one_refits(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "folder", files=30)
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    lib.update()
    lib.load()
    first = lib.transform
    assert lib.transform.name == "pca" and "this generation" in lib.fit_notes["pca"]
    rows = lib.chunk_count

    (folder / "notes/n000.md").write_text("# Changed\n\nbread oven flour\n", encoding="utf-8")
    lib.update()
    lib.load()
    assert lib.transform is first  # projected with the current fit
    assert "changed since" in lib.fit_notes["pca"]
    ids, raw = lib.store.load_vectors()
    row = int(np.flatnonzero(ids == max(ids))[0])  # the changed file's new chunk
    assert np.allclose(lib.index.vectors(np.array([row]))[0], first.apply(raw[row]), atol=1e-5)

    for i in range(1, 1 + int(library_module.REFIT_FRACTION * 30) + 2):
        (folder / f"notes/n{i:03d}.md").write_text(
            f"# C{i}\n\nsoil compost {i}\n", encoding="utf-8"
        )
    lib.update()
    lib.load()
    assert lib.transform is not first and "this generation" in lib.fit_notes["pca"]
    assert lib.chunk_count < rows  # the changed files are shorter: rows were removed too


_AS_IN_A_TERMINAL = """
import runpy, signal
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
runpy.run_module("mrl_tui", run_name="__main__", alter_sys=True)
"""
"""`python -m mrl_tui` with Ctrl-C as in a terminal, even when pytest runs as a background job of a
shell, which starts it with SIGINT ignored (and its children then never see a Ctrl-C)."""


def test_watch_command_prints_a_line_per_update_and_ctrl_c_exits_130(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "folder", {"a.md": "# A\n\nalpha\n"})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _AS_IN_A_TERMINAL, "watch", str(folder), "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        said: list[str] = []  # stderr, read all along: a full pipe would block the process
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
        threading.Thread(target=lambda: [said.append(x) for x in proc.stderr], daemon=True).start()
        deadline = time.monotonic() + 180
        while "watching" not in "".join(said):  # the model loads, then the watch starts
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        line = ""
        while "changed" not in line:
            (folder / "b.md").write_text(f"# B\n\nbeta {time.monotonic()}\n", encoding="utf-8")
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                assert time.monotonic() < deadline
        assert line.startswith("1 file changed, re-indexed in")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        time.sleep(0.2)  # the reader thread takes the last lines
        assert "Traceback" not in "".join(said)
    finally:
        proc.kill()


def test_a_large_change_is_refitted_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_corpus(tmp_path / "folder", files=30)
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    lib.update()
    lib.load()
    lib.router()
    first = lib.transform
    lib.background_refit = True
    said: list[str] = []
    heard: list[bool] = []  # whether the status still said "refitting" when the line was said

    def told(line: str) -> None:
        said.append(line)
        heard.append(lib.fit_status()["fits"]["pca"]["refitting"])

    lib.on_refit = told
    release = held(monkeypatch, library_module, "fit_pca", wait_s=WAIT_S)
    for i in range(int(library_module.REFIT_FRACTION * 30) + 3):
        (folder / f"notes/n{i:03d}.md").write_text(f"# C{i}\n\nsoil compost {i}\n", "utf-8")
    lib.update()
    lib.load()  # at once: the current fit projects the new vectors
    assert lib.transform is first and "refitting in the background" in lib.fit_notes["pca"]
    before = lib.query("bread oven flour")  # projected with the current (old) fit
    status = lib.fit_status()["fits"]["pca"]
    assert status["refitting"] and status["changed_since"] > 3
    assert lib.retrieve(lib.query("soil compost"), 32, 3, "hybrid").hits  # searching meanwhile
    ids, raw = lib.store.load_vectors()
    newest = int(np.flatnonzero(ids == max(ids))[0])
    assert np.allclose(
        lib.index.vectors(np.array([newest]))[0], first.apply(raw[newest]), atol=1e-5
    )

    release.set()
    assert lib.wait_for_refits(WAIT_S)
    assert lib.transform is not first and said[0].startswith("pca refitted in the background")
    assert heard[0] is False  # the status is true by the time the line is heard (UI lines)
    status = lib.fit_status()
    assert status["fits"]["pca"]["fitted_generation"] == status["generation"]
    assert status["fits"]["pca"]["changed_since"] == 0 and not status["fits"]["pca"]["refitting"]
    assert status["fits"]["pca"]["refit_s"] > 0
    # A query embedded before the swap is projected with the new fit, as a new one is.
    again = lib.query("bread oven flour")
    assert [h.id for h in lib.search(before, 32).hits] == [h.id for h in lib.search(again, 32).hits]
    # The router, calibrated on the old fit's vectors, is calibrated again (in the background).
    assert lib.fit_status()["fits"]["router_pca"]["fitted_generation"] == status["generation"]
    # What another process loads for this generation is the new fit.
    other = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    other.load()
    assert np.allclose(other.transform.apply(raw[0]), lib.transform.apply(raw[0]), atol=1e-6)
    other.close()
    lib.close()


def test_a_new_generation_searches_exactly_while_its_graph_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library_module, "HNSW_MIN_CHUNKS", 2)
    folder = write_corpus(tmp_path / "folder", files=30)
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    lib.update()
    lib.load()
    query = lib.query("planet moon volcano")
    assert lib.graph is not None and lib.search(query, 96).mode == "graph"
    lib.background_refit = True
    # The graph tiers, then tune.
    release = held(monkeypatch, library_module, "hnsw", "load_or_build", wait_s=WAIT_S)
    (folder / "notes/n000.md").write_text("# One\n\nriver bridge harbour\n", encoding="utf-8")
    lib.update()
    lib.load()
    assert lib.graph is None and lib.fit_status()["graph"] == "building"
    found = lib.search(query, 96)
    assert found.mode == "exact" and found.hits
    # The answer says so (a one-shot search would build the graph first and use it); a dim the
    # graph would not serve, and keywords alone, are as they always are.
    assert found.note == library_module.GRAPH_BUILDING_NOTE
    assert lib.retrieve(query, 96, 3, "hybrid").note == library_module.GRAPH_BUILDING_NOTE
    assert lib.search(query, 32).note == "" and lib.retrieve(query, 96, 3, "lexical").note == ""
    assert lib.search(query, 96, mode="graph").mode == "exact"  # the `f` key's, meanwhile
    release.set()
    assert lib.wait_for_refits(WAIT_S)
    assert lib.fit_status()["graph"] == "ready" and lib.search(query, 96).mode == "graph"
    assert lib.search(query, 96).note == "" and lib.fit_status()["graph_built_s"] > 0
    generation = lib.fit_status()["generation"]
    assert lib.store.derived_path("hnsw_pca", generation, ".bin").exists()
    lib.close()


def test_a_fit_saved_stale_is_refitted_by_the_next_watching_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_corpus(tmp_path / "folder", files=30)
    first = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    first.update()
    first.load()
    first.background_refit = True
    release = held(monkeypatch, library_module, "fit_pca", wait_s=WAIT_S)
    for i in range(int(library_module.REFIT_FRACTION * 30) + 3):
        (folder / f"notes/n{i:03d}.md").write_text(f"# C{i}\n\nriver sail {i}\n", "utf-8")
    first.update()
    first.load()  # the current fit is saved as this generation's; its refit never finishes
    first.close()
    release.set()
    cold = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    cold.load()  # a one-shot command: the saved fit, as it is
    assert cold.fit_status()["fits"]["pca"]["changed_since"] > 3 and cold.wait_for_refits(0)
    cold.close()
    again = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    again.background_refit = True
    again.load()
    assert again.wait_for_refits(WAIT_S)
    assert again.fit_status()["fits"]["pca"]["changed_since"] == 0
    again.close()
