"""The app's retrieval toggle (`h`) and its watched folder."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Static
from ui_helpers import QUERY, wait_for, write_corpus

from mrl_tui.core.library import Library
from mrl_tui.core.search.compare import ids_of
from mrl_tui.ui.app import MrlApp
from mrl_tui.ui.widgets.preview import Preview
from mrl_tui.ui.widgets.ranking import RankingPane


async def _search(pilot, text: str = QUERY):  # type: ignore[no-untyped-def]
    screen = pilot.app.search_screen
    await wait_for(pilot, lambda: screen.library is not None)
    screen.query_one("#query", Input).value = text
    await pilot.click("#query")
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.comparison is not None)
    return screen


def _ids(pane: RankingPane) -> list[int]:
    return [int(key.value) for key in pane.table.rows]  # type: ignore[arg-type]


async def test_h_cycles_the_left_side_through_hybrid_and_keywords(embedder, tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "notes")
    library = Library(folder, embedder, cache_root=tmp_path / "cache")
    library.update()
    library.load()
    app = MrlApp(folder, device="cpu", library=library, auto_router=False, watch=False)
    async with app.run_test(size=(110, 34)) as pilot:
        screen = await _search(pilot)
        left, right = (
            screen.query_one("#left", RankingPane),
            screen.query_one("#right", RankingPane),
        )
        assert left.border_title == "at dim 64"
        for retrieval, title in (("hybrid", "hybrid @64"), ("lexical", "keywords only")):
            await pilot.press("h")
            await wait_for(pilot, lambda r=retrieval: screen.comparison.retrieval == r)  # type: ignore[union-attr]
            assert left.border_title == title
            assert right.border_title == "reference: dense dim 384"
            agreement = str(screen.query_one("#agreement", Static).render())
            assert agreement.startswith(f"{title} vs dense dim 384:")
            expected = library.retrieve(screen.state.query, 64, 10, retrieval).hits  # type: ignore[union-attr]
            assert _ids(left) == ids_of(expected)
        await pilot.press("h")
        await wait_for(pilot, lambda: screen.comparison.retrieval == "dense")  # type: ignore[union-attr]
        assert left.border_title == "at dim 64"


async def test_an_identifier_is_marked_whole_in_the_preview(embedder, tmp_path: Path) -> None:
    folder = write_corpus(
        tmp_path / "code", {"rates.py": "def parse_rate(text):\n    return parseRate(text)\n"}
    )
    library = Library(folder, embedder, cache_root=tmp_path / "cache")
    library.update()
    library.load()
    app = MrlApp(folder, device="cpu", library=library, auto_router=False, watch=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await _search(pilot, "parse_rate")
        body = app.search_screen.query_one(Preview).query_one("#preview-body", Static)
        text = body.content
        marked = {
            text.plain[span.start : span.end] for span in text.spans if "reverse" in str(span.style)
        }
        assert marked == {"parse_rate", "parseRate"}


async def test_a_saved_file_is_reindexed_and_the_results_follow(embedder, tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "notes")
    library = Library(folder, embedder, cache_root=tmp_path / "cache")
    library.update()
    app = MrlApp(folder, device="cpu", library=library, auto_router=False)
    async with app.run_test(size=(110, 34)) as pilot:
        screen = await _search(pilot, "levain hydration schedule")
        await wait_for(pilot, lambda: app.watcher is not None, timeout=15)
        before = screen.state
        message = screen.query_one("#message", Static)
        (folder / "levain.md").write_text(
            "# Levain\n\nA levain hydration schedule: feed at 100 % hydration every 12 hours.\n",
            encoding="utf-8",
        )
        # bounded: the watch may still be starting when the file is written; write it again
        for _ in range(30):
            try:
                await wait_for(
                    pilot, lambda: "Watching: 1 file changed" in str(message.render()), 1
                )
                break
            except AssertionError:
                (folder / "levain.md").touch()
        assert "re-indexed in" in str(message.render())
        await wait_for(
            pilot,
            lambda: screen.state is not before and screen.comparison.query is screen.state.query,
        )  # type: ignore[union-attr]
        top = screen.comparison.left[0]  # type: ignore[union-attr]
        assert top.chunk.path == "levain.md"
