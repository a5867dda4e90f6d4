"""The TUI while its folder changes under it: Ctrl+R re-indexes behind the results, searches go on
meanwhile, and a folder that vanishes is said in one line. Asserted on what the screen shows."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from fakes import LIBRARY_DIM, HashEmbedder
from ui_helpers import screen_text, shown_locations, submit_query, wait_for, write_corpus

from mrl_tui.core.library import Library
from mrl_tui.ui.app import MrlApp

TELESCOPE = (
    "# Telescopes\n\nGrind the mirror of a reflecting telescope, then collimate its optics.\n"
)


class Gated:
    """The real embedder, whose document batches wait at a gate once it is armed (queries do
    not): a re-index lasts exactly as long as the test wants."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self._inner = inner
        self.armed = False
        self.waiting = threading.Event()
        self.gate = threading.Event()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._inner, name)

    def embed_documents(self, texts, **kwargs):  # type: ignore[no-untyped-def]
        if self.armed:
            self.waiting.set()
            self.gate.wait(60)
        return self._inner.embed_documents(texts, **kwargs)


async def test_ctrl_r_reindexes_behind_the_results_and_the_new_file_is_found(
    embedder, tmp_path: Path
) -> None:
    folder = write_corpus(tmp_path / "notes")
    gated = Gated(embedder)
    library = Library(folder, gated, cache_root=tmp_path / "cache")
    # watch=False: Ctrl+R, not the watcher, is to index the new file
    app = MrlApp(
        folder, device="cpu", library=library, auto_router=False, watch=False, remember=False
    )
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_for(pilot, lambda: app.search_screen.library is not None)
        await submit_query(pilot, "grind a telescope mirror")
        await wait_for(pilot, lambda: len(shown_locations(app)) == 6)
        before = shown_locations(app)
        assert not any(row.startswith("telescope.md") for row in before)

        (folder / "telescope.md").write_text(TELESCOPE, encoding="utf-8")
        gated.armed = True
        await pilot.press("tab", "ctrl+r")
        try:
            await wait_for(pilot, gated.waiting.is_set)
            await wait_for(pilot, lambda: "embedding" in screen_text(app).lower())
            # the results stay on screen while the index is rebuilt behind them
            assert shown_locations(app) == before
            assert shown_locations(app, "#right")
            await pilot.press("ctrl+r")
            await wait_for(
                pilot, lambda: any(n.message == "Already indexing." for n in app._notifications)
            )
            # and the index that is loaded is still searched: a new query gets its answer now
            await submit_query(pilot, "the moons of mars")
            await wait_for(pilot, lambda: shown_locations(app)[:1] == ["mars.md:1"])
            await submit_query(pilot, "grind a telescope mirror")
            await wait_for(pilot, lambda: shown_locations(app) == before)
        finally:
            gated.gate.set()
        # the re-index finishes, the shown query runs again, and the new file comes first
        await wait_for(pilot, lambda: shown_locations(app)[:1] == ["telescope.md:1"], timeout=60)
        await wait_for(pilot, lambda: "embedding" not in screen_text(app).lower())
        assert len(shown_locations(app)) == 7
        assert "7 chunks" in app.sub_title


async def test_a_folder_that_vanishes_while_open_is_said_in_one_line(tmp_path: Path) -> None:
    """The watcher says why it cannot re-index; the index in memory still answers queries; Ctrl+R
    says the folder is gone. No traceback, and the app keeps running."""
    folder = write_corpus(tmp_path / "notes")
    library = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    app = MrlApp(folder, device="cpu", library=library, auto_router=False, remember=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_for(pilot, lambda: app.search_screen.library is not None)
        await submit_query(pilot, "sourdough starter")
        await wait_for(pilot, lambda: len(shown_locations(app)) == 6)
        await wait_for(pilot, lambda: app.watcher is not None)
        shown = shown_locations(app)

        shutil.rmtree(folder)
        gone = f"{folder}: the folder is gone"
        await wait_for(pilot, lambda: any(gone in n.message for n in app._notifications))
        assert shown_locations(app) == shown  # nothing on screen was lost

        await submit_query(pilot, "mars volcano")  # another order: answered from the index
        await wait_for(pilot, lambda: shown_locations(app) not in ([], shown))
        assert sorted(shown_locations(app)) == sorted(shown)

        await pilot.press("tab", "ctrl+r")
        await wait_for(pilot, lambda: gone in screen_text(app))
        assert "Traceback" not in screen_text(app) and app.is_running
        assert app.return_code is None
        # The failed re-index keeps the loaded index: the rows stay and a hit can be selected.
        assert sorted(shown_locations(app)) == sorted(shown)
        assert app.search_screen.library is not None and not app.failed
        await submit_query(pilot, "sourdough starter")
        await wait_for(pilot, lambda: shown_locations(app) == shown)
