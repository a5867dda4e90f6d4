"""The engine under `watch` / `serve` (`Library.background_refit`): saves are synced by file in
the background, a background refit rewrites every point under the new fit, and no search ever
mixes two fits or two generations. Against real Qdrant: Edge and qdrant-client's local mode."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from fakes import LIBRARY_DIM, HashEmbedder, write_corpus

pytest.importorskip("qdrant_edge")
pytest.importorskip("qdrant_client")

from mrl_tui.core import library as library_module
from mrl_tui.core.cache.watch import FolderWatcher, WatchUpdate
from mrl_tui.core.embedding.choice import ModelChoice
from mrl_tui.core.engines import binding as binding_module
from mrl_tui.core.engines.base import EnginePoint
from mrl_tui.core.engines.binding import basis_of
from mrl_tui.core.library import Library

WAIT_S = 30.0
KINDS = ["edge", "memory"]


def _backend(tmp: Path, kind: str) -> str:
    if kind == "edge":
        return f"qdrant:{tmp / 'engine'}"
    return f"qdrant://:memory:/t{uuid.uuid4().hex[:8]}"  # the memory client is shared


def _local_ids(lib: Library, vector: np.ndarray, dim: int, k: int = 10) -> list[int]:
    """The local index's exact top-k at `dim`, as chunk ids."""
    return lib.row_chunk_ids[lib.index.search(vector, dim, k).ids].tolist()


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _many_changed(folder: Path, words: str) -> None:
    """More than `REFIT_FRACTION` of a 30-file corpus rewritten: a refit is due."""
    for i in range(int(library_module.REFIT_FRACTION * 30) + 3):
        (folder / f"notes/n{i:03d}.md").write_text(f"# C{i}\n\n{words} {i}\n", "utf-8")


@pytest.mark.parametrize("kind", KINDS)
def test_a_background_refit_rewrites_the_engine_and_no_search_mixes_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    folder = write_corpus(tmp_path / "folder", files=30)
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    lib.use_engine(_backend(tmp_path, kind))
    lib.update()
    lib.load()  # the first load syncs at once, even when watched
    first = lib.transform
    lib.background_refit = True
    said: list[str] = []
    lib.on_refit = said.append
    fit = threading.Event()
    real_fit = library_module.fit_pca
    monkeypatch.setattr(
        library_module, "fit_pca", lambda *a, **k: fit.wait(WAIT_S) and real_fit(*a, **k)
    )
    monkeypatch.setattr(binding_module, "SYNC_SLICE", 8)  # a rewrite in several slices

    _many_changed(folder, "soil compost")
    lib.update()
    lib.load()  # the old fit projects the new rows; the engine follows in the background
    assert lib.transform is first
    _until(lambda: lib.engine.serves(lib), "the new generation's files were never synced")
    query = lib.query("soil compost harvest")
    marker = lib.engine.engine.marker()
    assert marker["basis"] == basis_of(first, LIBRARY_DIM) and marker["state"] == "synced"
    assert marker["generation"] == lib.fit_status()["generation"]
    got = lib.search(query, 96, 10, mode="exact")
    assert got.backend != "local" and [h.id for h in got.hits] == _local_ids(lib, query.vector, 96)

    # The refit is swapped in, then the rewrite is held half-way: searches run here meanwhile.
    engine = lib.engine.engine
    real_upsert, slices = engine.upsert, []
    entered, gate = threading.Event(), threading.Event()

    def held_upsert(points):
        slices.append(len(points))
        if len(slices) == 2:  # one slice of the new fit written, the others still old
            entered.set()
            assert gate.wait(WAIT_S)
        real_upsert(points)

    monkeypatch.setattr(engine, "upsert", held_upsert)
    fit.set()
    assert entered.wait(WAIT_S)
    assert lib.transform is not first and not lib.engine.serves(lib)
    assert lib.engine.engine.marker()["rewrite"] is True
    for dim in (32, 64, 96):
        during = lib.search(query, dim, 10, mode="exact")
        assert during.backend == "local", dim
        assert [h.id for h in during.hits] == _local_ids(lib, lib.transform.apply(query.raw), dim)
    assert any("being brought level" in m for m in lib.take_messages())
    assert lib.fit_status()["engine"] == "syncing"

    gate.set()
    assert lib.wait_for_refits(WAIT_S)
    assert lib.engine.serves(lib) and lib.fit_status()["engine"] == "level"
    assert sum(slices) == lib.chunk_count and len(slices) > 2  # every point, in slices
    marker = lib.engine.engine.marker()
    assert marker["basis"] == basis_of(lib.transform, LIBRARY_DIM) != basis_of(first, LIBRARY_DIM)
    assert marker["state"] == "synced" and not marker.get("rewrite")
    assert any(line.startswith("engine synced") and "all points" in line for line in said)
    vector = lib.transform.apply(query.raw)
    for dim in (32, 64, 96):
        after = lib.search(query, dim, 10, mode="exact")
        assert after.backend != "local" and not after.note
        assert [h.id for h in after.hits] == _local_ids(lib, vector, dim), dim
    lib.close()


def test_a_killed_rewrite_is_started_again(tmp_path: Path) -> None:
    """A rewrite killed half-way leaves points of the old fit under a marker of the new one;
    "rewrite" in the marker makes the next sync write every point again."""
    folder = write_corpus(tmp_path / "folder", files=12)
    backend = _backend(tmp_path, "edge")
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    lib.use_engine(backend)
    lib.update()
    lib.load()
    engine = lib.engine.engine
    ids = lib.row_chunk_ids.tolist()
    rng = np.random.default_rng(0)
    stale = [  # as if still of the old fit: other vectors, same files
        EnginePoint(cid, rng.standard_normal(LIBRARY_DIM).astype(np.float32), {"path": path})
        for cid, path in sorted(engine.point_paths().items())[: len(ids) // 2]
    ]
    engine.upsert(stale)
    engine.set_marker({**engine.marker(), "state": "syncing", "rewrite": True})
    lib.engine.close()
    lib.use_engine(backend)
    assert lib.engine.last_sync is not None and lib.engine.last_sync.full
    assert lib.engine.last_sync.upserted == len(ids)
    query = lib.query("planet moon volcano")
    got = lib.search(query, 96, len(ids), mode="exact")
    assert [h.id for h in got.hits] == _local_ids(lib, query.vector, 96, len(ids))
    assert np.allclose(
        [h.score for h in got.hits],
        np.sort(lib.index.search(query.vector, 96, len(ids)).scores)[::-1],
        atol=1e-5,
    )
    lib.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_watched_folder_is_followed_in_the_engine_by_file(tmp_path: Path, kind: str) -> None:
    folder = write_corpus(tmp_path / "folder", files=30)
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    lib.use_engine(_backend(tmp_path, kind))
    lib.update()
    lib.load()
    lib.background_refit = True  # as `watch` and `serve` run it
    said: list[str] = []
    lib.on_refit = said.append
    updates: queue.Queue[WatchUpdate] = queue.Queue()
    watcher = FolderWatcher(lib, updates.put, step_ms=50)
    ready = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(ready,), daemon=True)
    thread.start()
    try:
        assert ready.wait(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while True:  # the watch is in place shortly after `ready`
            (folder / "new.md").write_text(
                f"# Fresh\n\nzanzibar quokka lighthouse {time.monotonic()}\n", encoding="utf-8"
            )
            try:
                updates.get(timeout=0.5)
                break
            except queue.Empty:
                assert time.monotonic() < deadline, "the watcher never reported"
        (folder / "notes/n001.md").unlink()
        _until(
            lambda: (
                "notes/n001.md" not in set(lib.engine.engine.point_paths().values())
                and "new.md" in set(lib.engine.engine.point_paths().values())
            ),
            "the engine never followed the folder",
        )
        assert lib.wait_for_refits(WAIT_S) and lib.engine.serves(lib)
        held: dict[str, set[int]] = {}
        for cid, path in lib.engine.engine.point_paths().items():
            held.setdefault(path, set()).add(cid)
        local: dict[str, set[int]] = {}
        ids = lib.row_chunk_ids.tolist()
        for cid, chunk in zip(ids, lib.store.chunks(ids), strict=True):
            local.setdefault(chunk.path, set()).add(cid)
        assert held == local
        assert any(line.startswith("engine synced") and "files replaced" in line for line in said)
        query = lib.query("zanzibar quokka lighthouse")
        got = lib.search(query, 96, 5, mode="exact")
        assert got.backend != "local"
        assert [h.id for h in got.hits] == _local_ids(lib, query.vector, 96, 5)
    finally:
        watcher.stop.set()
        thread.join(WAIT_S)
        lib.close()


def test_serve_with_a_backend_answers_through_the_engine(tmp_path: Path) -> None:
    """A real server process on Qdrant Edge: a `search --backend` with the same engine is
    answered by it through the engine (no model is loaded by the client); one without, or with
    another engine, is refused by it and searched here."""
    from test_serve import _cli, _cold_env, _command, _env, _stop

    from mrl_tui import serve_client

    corpus = write_corpus(tmp_path / "corpus", files=6)
    engine = f"qdrant:{tmp_path / 'engine'}"
    import subprocess

    proc = subprocess.Popen(
        _command("serve", "--backend", engine, str(corpus)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while not serve_client.listening(serve_client.socket_path()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.05)
        args = ("search", str(corpus), "bread oven starter", "--json")
        warm = _cli(*args, "--backend", engine, STANDIN_NO_MODEL="1")
        assert warm.returncode == 0, warm.stderr
        # The server's first load synced the engine: its line comes with the first answer.
        assert all(line.startswith("mrl-tui: engine synced") for line in warm.stderr.splitlines())
        data = json.loads(warm.stdout)
        assert data["backend"] == "qdrant-edge"
        cold = _cli(*args, **_cold_env(tmp_path))  # the local index, in another process
        assert cold.returncode == 0, cold.stderr
        strip = lambda rows: [{**r, "score": round(r["score"], 4)} for r in rows]  # noqa: E731
        assert strip(data["results"]) == strip(json.loads(cold.stdout)["results"])
        local = _cli(*args)  # no --backend: this server does not answer it
        assert local.returncode == 0 and "runs --backend qdrant:" in local.stderr
        assert "backend" not in json.loads(local.stdout)
    finally:
        _stop(proc)


def test_watch_takes_a_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mrl-tui watch PATH --backend …`: indexed, synced, then watched with the engine bound."""
    from mrl_tui.cli import main

    monkeypatch.setattr(ModelChoice, "load", lambda *a, **k: HashEmbedder(LIBRARY_DIM))
    seen: list[tuple[bool, bool]] = []
    monkeypatch.setattr(
        FolderWatcher,
        "run",
        lambda self, ready=None: seen.append(
            (self.library.background_refit, self.library.engine.serves(self.library))
        ),
    )
    folder = write_corpus(tmp_path / "folder", files=6)
    engine = tmp_path / "engine"
    args = ["watch", str(folder), "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--backend", f"qdrant:{engine}"]) == 0
    err = capsys.readouterr().err
    assert seen == [(True, True)] and " on qdrant-edge)" in err
    assert err.index("engine synced") < err.index("watching")  # told before the watch starts
    assert any(engine.iterdir())


def test_an_edge_folder_held_by_another_process_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from mrl_tui.core.engines import EngineError, open_engine
    from mrl_tui.core.engines.base import CollectionSpec, tiers_for

    engine = open_engine(f"qdrant:{tmp_path}", "c")
    engine.ensure(CollectionSpec("m", "none", 96, tiers_for(96)))
    engine.close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, qdrant_edge; s = qdrant_edge.EdgeShard.load(sys.argv[1]); "
            "print('held', flush=True); sys.stdin.read()",
            str(tmp_path / "c"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(EngineError, match="is open in another process") as err:
            open_engine(f"qdrant:{tmp_path}", "c")
        assert "\n" not in str(err.value)
    finally:
        holder.communicate("", timeout=30)


def test_an_engine_failing_in_the_background_holds_up_no_refit(tmp_path: Path) -> None:
    """The engine unreachable during a background sync: one line, searches stay on the local
    index (equal to it), and the refit due is still made."""
    from mrl_tui.core.engines import EngineError

    folder = write_corpus(tmp_path / "folder", files=30)
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    lib.use_engine(_backend(tmp_path, "edge"))
    lib.update()
    lib.load()
    first = lib.transform
    lib.background_refit = True
    said: list[str] = []
    lib.on_refit = said.append

    def unreachable(*args, **kwargs):
        raise EngineError("qdrant at h:1 is unreachable or refused: connection refused")

    lib.engine.sync = unreachable
    _many_changed(folder, "river sail")
    lib.update()
    lib.load()
    assert lib.wait_for_refits(WAIT_S)
    assert lib.transform is not first and not lib.engine.serves(lib)
    assert any("unreachable" in line and "on the local index" in line for line in said)
    assert not any("refit failed" in line for line in said)
    query = lib.query("river sail harbour")
    got = lib.search(query, 96, 10, mode="exact")
    assert got.backend == "local" and [h.id for h in got.hits] == _local_ids(lib, query.vector, 96)
    lib.close()
