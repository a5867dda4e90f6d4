"""Screenshots of fixed states: the search screen after a query, and the indexing screen.

The search screens use a copy of three topics of `sample_corpora/notes` (cooking, first aid,
cycling: 156 chunks) embedded by the hash stand-in (`fakes.HashEmbedder`, 384 dims), in manual
mode: the rankings, scores and moves depend on neither the model nor the router, so neither's
changes regenerate these files. Each shows two sides that differ (dim 32, 16 and 128 against
full), so the rows show moves. Timings are frozen
(`frozen_timings=True`, and the latency plot gets a fixed profile), the indexing progress is a
fixed snapshot, and the header shows the folder's name only, so the SVGs do not depend on the
machine's speed or paths.
Regenerate with `pytest tests/test_ui_snapshots.py --snapshot-update` after a deliberate change.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES
from fakes import HashEmbedder
from textual.widgets import Input
from ui_helpers import wait_for

from mrl_tui.core.cache.indexer import IndexProgress
from mrl_tui.core.library import Library
from mrl_tui.ui.app import MrlApp

TOPICS = ("cooking", "first-aid", "cycling")
QUERY = "what to do after an injury"
LATENCY = {8: 0.05, 16: 0.06, 32: 0.07, 64: 0.09, 128: 0.12, 256: 0.2, 384: 0.27}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    corpus = tmp_path_factory.mktemp("snap") / "notes"
    for topic in TOPICS:
        shutil.copytree(SAMPLES / "notes" / topic, corpus / topic)
    lib = Library(corpus, HashEmbedder(384), cache_root=tmp_path_factory.mktemp("cache"))
    lib.update()
    lib.load()
    return lib


def searched_app(library: Library, *, dim: int) -> tuple[MrlApp, object, list[str]]:
    """After the query, in manual mode at `dim` against full, the second hit selected. The list
    gets the left table's Δ column as shown."""
    app = MrlApp(
        library.root,
        device="cpu",
        library=library,
        frozen_timings=True,
        auto_router=False,
        remember=False,
    )
    keys = {128: ["shift+right"], 64: [], 32: ["shift+left"], 16: ["shift+left"] * 2}[dim]
    shown: list[str] = []

    async def run_before(pilot) -> None:
        screen = app.search_screen
        await wait_for(pilot, lambda: screen.library is not None)
        await wait_for(pilot, lambda: bool(screen.fit))  # the watched folder's fit, told
        screen.show_latency_profile(LATENCY)
        screen.query_one("#query", Input).value = QUERY
        await pilot.click("#query")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.comparison is not None)
        await pilot.press(*keys)  # the slider starts at 64; shift+arrows double or halve
        await wait_for(pilot, lambda: screen.comparison.dim == dim)  # type: ignore[union-attr]
        await pilot.press("tab", "down")  # the left table: select the second hit
        await pilot.pause()
        shown.extend(moves(app))

    return app, run_before, shown


def moves(app: MrlApp) -> list[str]:
    """The Δ column of the left table as shown."""
    table = app.search_screen.query_one("#left").table
    return [str(table.get_row_at(i)[1]).strip() for i in range(table.row_count)]


def test_search_screen(snap_compare, library: Library) -> None:
    """Dim 32 against full 384: rows moved, new and dropped."""
    app, run_before, shown = searched_app(library, dim=32)
    assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)
    assert set(shown) - {"="}, "the two sides agree: a degenerate state"


def test_search_screen_small_terminal(snap_compare, library: Library) -> None:
    app, run_before, shown = searched_app(library, dim=16)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
    assert set(shown) - {"="}


def test_search_screen_huge_terminal(snap_compare, library: Library) -> None:
    """Dim 128 against full, with the score column."""
    app, run_before, shown = searched_app(library, dim=128)
    assert snap_compare(app, terminal_size=(200, 50), run_before=run_before)
    assert set(shown) - {"="}


def test_indexing_screen(snap_compare, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    app = MrlApp(folder, device="cpu", autostart=False)
    app.animation_level = "none"  # the "starting…" bar would be caught mid-animation

    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: bool(app.screen.query("#indexing")))
        app.sub_title = "sentence-transformers/all-MiniLM-L6-v2 · cpu · PCA"
        progress = IndexProgress(
            phase="embedding",
            files_done=12,
            files_total=40,
            chunks_done=120,
            chunks_total=400,
            current="astronomy/star-hopping.md",
            elapsed_s=4.0,
        )
        app.search_screen.indexing_panel.show_progress(progress)
        box = app.search_screen.query_one("#query", Input)
        box.cursor_blink = False  # a blinking cursor is caught on or off: a flaky snapshot
        box.value = "typed while indexing"

    assert snap_compare(app, terminal_size=(100, 32), run_before=run_before)


def test_help_screen(snap_compare, tmp_path: Path) -> None:
    """F1 at 80x24: the keys, listed from the bindings, in a box with content."""
    folder = tmp_path / "notes"
    folder.mkdir()
    app = MrlApp(folder, device="cpu", autostart=False)
    app.animation_level = "none"  # the "starting…" bar would be caught mid-animation

    async def run_before(pilot) -> None:
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_skipped_screen(snap_compare, tmp_path: Path) -> None:
    """F3: skipped files with their reasons, names shown literally (markup-like, undecodable)."""
    folder = tmp_path / "notes"
    folder.mkdir()
    app = MrlApp(folder, device="cpu", autostart=False)
    app.animation_level = "none"  # the "starting…" bar would be caught mid-animation
    app.skipped = [
        ("[draft] data.bin", "unsupported type"),
        ("docs/[red]huge[/red].md", "too large (12.0 MB > 5.0 MB)"),
        ("bad\udcff.md", "unsupported type"),
    ]

    async def run_before(pilot) -> None:
        await pilot.press("f3")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
