"""The reference side as hybrid search (`H`), against dense or hybrid on the left (`h`), and the
preview marking what keyword search (FTS5) matched in the selected chunk (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input, Static
from ui_helpers import CORPUS, wait_for, write_corpus

from mrl_tui.core.library import Library
from mrl_tui.core.search.compare import ids_of, movement_label, movements
from mrl_tui.ui.app import MrlApp
from mrl_tui.ui.widgets.preview import Preview
from mrl_tui.ui.widgets.ranking import RankingPane

LEVAIN = "Feed the starter at night. Feeding schedules vary; starters like warmth.\n"
QUERY = "feed starter"


@pytest.fixture(scope="module")
def library(embedder, tmp_path_factory: pytest.TempPathFactory) -> Library:
    folder = write_corpus(tmp_path_factory.mktemp("hyb") / "notes", {**CORPUS, "levain.md": LEVAIN})
    lib = Library(folder, embedder, cache_root=tmp_path_factory.mktemp("cache"))
    lib.update()
    lib.load()
    return lib


def rows(pane: RankingPane) -> tuple[list[int], list[str]]:
    """The table's chunk ids and its Δ column, as drawn."""
    table = pane.table
    ids = [int(key.value) for key in table.rows]  # type: ignore[arg-type]
    marks = [str(table.get_row(key)[1]) for key in table.rows]
    return ids, marks


def expected_marks(ids: list[int], other: list[int], absent: str) -> list[str]:
    return [absent if m is None else movement_label(m) for m in movements(ids, other)]


def preview_marks(app: MrlApp) -> list[str]:
    content = app.search_screen.query_one(Preview).query_one("#preview-body", Static).content
    return [content.plain[s.start : s.end] for s in content.spans if "reverse" in str(s.style)]


async def test_the_reference_side_is_hybrid_at_full_and_the_preview_marks_fts5_matches(
    library: Library, tmp_path: Path
) -> None:
    app = MrlApp(library.root, device="cpu", library=library, auto_router=False, watch=False)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.search_screen
        await wait_for(pilot, lambda: screen.library is not None)
        screen.query_one("#query", Input).value = QUERY
        await pilot.click("#query")
        await pilot.press("enter")  # the slider has the keyboard now: letter keys act
        await wait_for(pilot, lambda: screen.comparison is not None)
        left, right = (
            screen.query_one("#left", RankingPane),
            screen.query_one("#right", RankingPane),
        )
        query, full = screen.state.query, library.full_dim  # type: ignore[union-attr]

        await pilot.press("H")  # reference: hybrid at full; left: dense at 64
        await wait_for(pilot, lambda: screen.comparison.ref_retrieval == "hybrid")  # type: ignore[union-attr]
        dense = ids_of(library.search(query, 64, 10).hits)
        hybrid_full = ids_of(library.retrieve(query, full, 10, "hybrid").hits)
        assert right.border_title == f"reference: hybrid @{full}"
        assert rows(left) == (dense, expected_marks(dense, hybrid_full, "NEW"))
        assert rows(right) == (hybrid_full, expected_marks(hybrid_full, dense, "out"))
        agreement = str(screen.query_one("#agreement", Static).render())
        assert agreement.startswith(f"dim 64 vs hybrid @{full}:")

        await pilot.press("h")  # left: hybrid at 64, against hybrid at full
        await wait_for(pilot, lambda: screen.comparison.retrieval == "hybrid")  # type: ignore[union-attr]
        hybrid_64 = ids_of(library.retrieve(query, 64, 10, "hybrid").hits)
        assert (left.border_title, right.border_title) == (
            "hybrid @64",
            f"reference: hybrid @{full}",
        )
        assert rows(left) == (hybrid_64, expected_marks(hybrid_64, hybrid_full, "NEW"))
        assert rows(right) == (hybrid_full, expected_marks(hybrid_full, hybrid_64, "out"))

        # the levain chunk, selected: only the words FTS5 matched are marked, and named
        levain = next(
            i for i, hit in enumerate(screen.comparison.left) if hit.chunk.path == "levain.md"
        )  # type: ignore[union-attr]
        await pilot.press("tab")  # into the left table
        left.table.move_cursor(row=levain)
        await pilot.pause()
        assert screen.selected_hit().chunk.path == "levain.md"  # type: ignore[union-attr]
        assert preview_marks(app) == ["Feed", "starter"]  # not "Feeding", "starters"
        assert str(screen.query_one(Preview).border_subtitle).endswith("keywords: feed, starter")

        app.action_export_comparison(tmp_path / "out")
        record = json.loads(next((tmp_path / "out").glob("*.json")).read_text(encoding="utf-8"))
        assert record["retrieval"] == "hybrid"
        assert record["reference"] == {"dim": full, "mode": "exact", "retrieval": "hybrid"}

        await pilot.press("r")  # the next power of two: still hybrid
        await wait_for(pilot, lambda: screen.comparison.ref_dim == 8)  # type: ignore[union-attr]
        assert right.border_title == "reference: hybrid @8"
        assert rows(right)[0] == ids_of(library.retrieve(query, 8, 10, "hybrid").hits)

        await pilot.press("h", "h", "H")  # dense on both sides: the query's words are marked
        await wait_for(
            pilot,
            lambda: not screen.comparison.keywords and screen.comparison.retrieval == "dense",  # type: ignore[union-attr]
        )
        assert right.border_title == "reference: dim 8"
        screen._show_selected()
        assert preview_marks(app) == ["Feed", "starter", "Feeding", "starters"]
        assert str(screen.query_one(Preview).border_subtitle).startswith("score ")
        assert "keywords" not in str(screen.query_one(Preview).border_subtitle)
