"""Screenshots of fixed states: the search screen after a query, and the indexing screen.

The search screens use a copy of three topics of `sample_corpora/notes` (cooking, first aid,
cycling: 156 chunks, enough for the router to route rather than scan exactly), where rankings
visibly change between dims. Timings are frozen (`frozen_timings=True`,
and the latency plot gets a fixed profile), the indexing progress is a fixed snapshot, and the
header shows the folder's name only, so the SVGs do not depend on the machine's speed or paths.
Regenerate with `pytest tests/test_ui_snapshots.py --snapshot-update` after a deliberate change.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES
from textual.widgets import Input
from ui_helpers import wait_for

from mrl_tui.core.cache.indexer import IndexProgress
from mrl_tui.core.library import Library
from mrl_tui.ui.app import MrlApp

TOPICS = ("cooking", "first-aid", "cycling")
QUERY = "what to do after an injury"
LATENCY = {8: 0.05, 16: 0.06, 32: 0.07, 64: 0.09, 128: 0.12, 256: 0.2, 384: 0.27}


@pytest.fixture(scope="module")
def library(embedder, tmp_path_factory: pytest.TempPathFactory) -> Library:
    corpus = tmp_path_factory.mktemp("snap") / "notes"
    for topic in TOPICS:
        shutil.copytree(SAMPLES / "notes" / topic, corpus / topic)
    lib = Library(corpus, embedder, cache_root=tmp_path_factory.mktemp("cache"))
    lib.update()
    lib.load()
    return lib


def searched_app(
    library: Library, *, auto: bool, other_transform: bool = False
) -> tuple[MrlApp, object]:
    """After the query: in auto mode at the routed dim (the router panel shows its stages), or
    in manual mode at 16, where rankings differ; `other_transform` puts naive truncation on the
    reference side (`t`)."""
    app = MrlApp(library.root, device="cpu", library=library, frozen_timings=True, auto_router=auto)

    async def run_before(pilot) -> None:
        screen = app.search_screen
        await wait_for(pilot, lambda: screen.library is not None)
        screen.show_latency_profile(LATENCY)
        screen.query_one("#query", Input).value = QUERY
        await pilot.click("#query")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.comparison is not None)
        if not auto:
            await pilot.press("shift+left", "shift+left")  # 64 -> 16
            await wait_for(pilot, lambda: screen.comparison.dim == 16)  # type: ignore[union-attr]
        if other_transform:
            await pilot.press("t")
            await wait_for(pilot, lambda: screen.comparison.ref_transform == "naive")  # type: ignore[union-attr]
        await pilot.press("tab", "down")  # the left table: select the second hit
        await pilot.pause()

    return app, run_before


def test_search_screen(snap_compare, library: Library) -> None:
    """Auto mode, the reference side showing naive truncation at the routed dim (`t`)."""
    app, run_before = searched_app(library, auto=True, other_transform=True)
    assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)


def test_search_screen_small_terminal(snap_compare, library: Library) -> None:
    app, run_before = searched_app(library, auto=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_search_screen_huge_terminal(snap_compare, library: Library) -> None:
    app, run_before = searched_app(library, auto=True)
    assert snap_compare(app, terminal_size=(200, 50), run_before=run_before)


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
        app.search_screen.query_one("#query", Input).value = "typed while indexing"

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
