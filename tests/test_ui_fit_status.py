"""The status line of a watched folder says which fit its index uses: kept over a small change,
refitted in the background after a large one, and a large folder's graph rebuilt meanwhile
(`ui.fit_status`, `Library.fit_status`). Real `watchfiles` watches, the hash stand-in model."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import LIBRARY_DIM, HashEmbedder, held, write_corpus
from textual.widgets import Static
from ui_helpers import wait_for

from mrl_tui.core import library as library_module
from mrl_tui.core.library import Library
from mrl_tui.ui.app import MrlApp

WAIT_S = 30.0  # a loaded machine; each wait ends as soon as the line is there
FILES = 30


def _library(tmp_path: Path) -> Library:
    folder = write_corpus(tmp_path / "folder", files=FILES)
    library = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    library.update()
    library.load()
    return library


def _line(app: MrlApp) -> str:
    return str(app.search_screen.query_one("#message", Static).render())


async def _saved(pilot, app: MrlApp, files: int, words: str, expect: str) -> None:  # type: ignore[no-untyped-def]
    """Rewrite `files` notes until the watch has re-indexed them and the line shows `expect`
    (the watch may still be starting when they are first written)."""
    folder = app.library.root  # type: ignore[union-attr]
    for attempt in range(20):
        for i in range(files):
            text = f"# Changed {i}\n\n{words} {i} {attempt}\n"
            (folder / f"notes/n{i:03d}.md").write_text(text, encoding="utf-8")
        try:
            await wait_for(pilot, lambda: expect in _line(app), timeout=1.5)
            return
        except AssertionError:
            continue
    raise AssertionError(f"the status line never said {expect!r}: {_line(app)!r}")


async def test_the_status_line_says_which_fit_is_in_use_and_when_it_is_refitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = _library(tmp_path)
    rows = library.chunk_count
    app = MrlApp(library.root, device="cpu", library=library, auto_router=False, remember=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_for(pilot, lambda: app.watcher is not None, timeout=WAIT_S)
        await wait_for(pilot, lambda: f"PCA fit on {rows:,} chunks" in _line(app), WAIT_S)
        assert "changed since" not in _line(app) and "graph" not in _line(app)

        # A small change: the fit is kept, and the line says how much changed since.
        await _saved(pilot, app, 1, "river harbour", "changed since")
        assert f"PCA fit on {rows:,} chunks · " in _line(app) and "Watching: 1 file" in _line(app)

        # A large one: refitted in the background, the current fit in use meanwhile.
        release = held(monkeypatch, library_module, "fit_pca", wait_s=WAIT_S)
        many = int(library_module.REFIT_FRACTION * FILES) + 3
        await _saved(pilot, app, many, "soil compost", "refitting PCA in the background…")
        assert f"(the fit on {rows:,} chunks is in use)" in _line(app)
        assert library.transform is not None and not library.wait_for_refits(0)
        release.set()
        await wait_for(pilot, lambda: "PCA refitted on " in _line(app), timeout=WAIT_S)
        refitted = library.fit_status()["fits"]["pca"]
        assert f"PCA refitted on {refitted['fitted_rows']:,} chunks in " in _line(app)
        assert "refitting" not in _line(app) and refitted["changed_since"] == 0
        assert library.chunk_count != rows  # the notes were rewritten shorter: the header follows
        assert f" · {library.chunk_count:,} chunks, " in app.sub_title


async def test_the_status_line_says_the_graph_is_being_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library_module, "HNSW_MIN_CHUNKS", 2)  # a "large" folder: a graph
    library = _library(tmp_path)
    assert library.graph is not None
    app = MrlApp(library.root, device="cpu", library=library, auto_router=False, remember=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_for(pilot, lambda: app.watcher is not None, timeout=WAIT_S)
        await wait_for(pilot, lambda: "PCA fit on" in _line(app), WAIT_S)
        # The graph tiers, then tune.
        release = held(monkeypatch, library_module, "hnsw", "load_or_build", wait_s=WAIT_S)
        await _saved(
            pilot, app, 1, "lighthouse quokka", "graph: building, exact search until ready"
        )
        assert library.search(library.query("lighthouse"), LIBRARY_DIM).mode == "exact"
        release.set()
        await wait_for(pilot, lambda: "graph rebuilt in " in _line(app), timeout=WAIT_S)
        assert "building" not in _line(app) and library.graph is not None


async def test_no_fit_is_told_when_the_folder_is_not_watched(tmp_path: Path) -> None:
    library = _library(tmp_path)
    app = MrlApp(library.root, device="cpu", library=library, watch=False, remember=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_for(pilot, lambda: app.search_screen.library is not None, timeout=WAIT_S)
        await pilot.pause(0.2)
        assert app.search_screen.fit == "" and "fit on" not in _line(app)
        assert library.background_refit is False


async def test_a_fit_line_after_the_status_line_is_gone_is_dropped(tmp_path: Path) -> None:
    """A fit status read in a thread can answer while the app exits, its screen's widgets
    already removed (a clean-clone CI run's NoMatches): the late line is dropped."""
    library = _library(tmp_path)
    app = MrlApp(library.root, device="cpu", library=library, auto_router=False, remember=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_for(pilot, lambda: "PCA fit on" in _line(app), WAIT_S)
        screen = app.search_screen
        await screen.query_one("#message", Static).remove()
        screen.fit = "PCA fit on 1 chunk"  # must not raise
        await pilot.pause()
        assert screen.fit == "PCA fit on 1 chunk" and not screen.query("#message")
