"""The app as a newcomer and a returning user meet it: a visible trade-off on the first query,
what is remembered between runs, more results, path filters, and opening the editor."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import SAMPLES
from textual.widgets import Input, Static
from ui_helpers import QUERY, wait_for, write_corpus

from mrl_tui.core.corpus.chunking import Chunk
from mrl_tui.core.library import Library
from mrl_tui.core.search.compare import ids_of
from mrl_tui.ui import editor
from mrl_tui.ui.app import MrlApp
from mrl_tui.ui.reference import default_reference
from mrl_tui.ui.screens.search import SearchScreen
from mrl_tui.ui.state import HISTORY_MAX, Remembered, state_dir
from mrl_tui.ui.widgets.dim_slider import DimSlider
from mrl_tui.ui.widgets.ranking import RankingPane


@pytest.fixture(scope="module")
def library(embedder, tmp_path_factory: pytest.TempPathFactory) -> Library:
    corpus = write_corpus(tmp_path_factory.mktemp("ux") / "notes")
    lib = Library(corpus, embedder, cache_root=tmp_path_factory.mktemp("cache"))
    lib.update()
    lib.load()
    return lib


async def search(pilot, text: str = QUERY) -> SearchScreen:
    screen = pilot.app.search_screen
    await wait_for(pilot, lambda: screen.library is not None)
    screen.query_one("#query", Input).value = text
    await pilot.click("#query")
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.comparison is not None and screen.state is not None)
    await wait_for(pilot, lambda: screen.comparison.query is screen.state.query)  # type: ignore[union-attr]
    return screen


def table_ids(screen: SearchScreen, side: str) -> list[int]:
    return [int(key.value) for key in screen.query_one(side, RankingPane).table.rows]  # type: ignore[arg-type]


def agreement_text(screen: SearchScreen) -> str:
    return str(screen.query_one("#agreement", Static).render())


# -- the first screen shows a trade-off --------------------------------------------------------


def test_default_reference_is_full_unless_the_chosen_dim_is() -> None:
    assert default_reference(128, 384) == (384, "")
    ref, why = default_reference(384, 384)
    assert ref == 64 and why == "reference: 64-d, because the chosen dim is full"
    assert default_reference(32, 32)[0] == 16  # a small model: the largest power of two below
    assert default_reference(8, 8) == (8, "")  # nothing smaller to compare with


async def test_at_full_dim_the_reference_moves_to_a_small_prefix_and_says_why(
    library: Library,
) -> None:
    app = MrlApp(library.root, device="cpu", library=library, auto_router=False)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        await pilot.press("shift+right", "shift+right", "shift+right")  # 64 -> 384
        await wait_for(pilot, lambda: screen.comparison.dim == 384)  # type: ignore[union-attr]
        assert screen.comparison is not None and screen.comparison.ref_dim == 64
        assert "reference: 64-d, because the chosen dim is full" in agreement_text(screen)
        assert screen.query_one("#right", RankingPane).border_title == "reference: dim 64"
        await pilot.press("r")  # the user's choice from here on: the next power of two
        await wait_for(pilot, lambda: screen.comparison.ref_dim == 128)  # type: ignore[union-attr]
        assert "because" not in agreement_text(screen)


async def test_the_first_query_on_the_notes_sample_shows_two_different_sides(
    notes_library: Library,
) -> None:
    """Auto mode, as a new user starts: on this sample the router picks full for its queries,
    and full against full would show two identical tables."""
    corpus = SAMPLES / "notes"
    with open(corpus / "queries.tsv", newline="", encoding="utf-8") as fh:
        first_query = list(csv.reader(fh, delimiter="\t"))[1][0]
    notes = notes_library
    app = MrlApp(corpus, device="cpu", library=notes)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await search(pilot, first_query)
        comparison = screen.comparison
        assert comparison is not None and comparison.dim != comparison.ref_dim
        assert table_ids(screen, "#left") != table_ids(screen, "#right")
        if comparison.dim == notes.full_dim:
            assert "because the chosen dim is full" in agreement_text(screen)


# -- remembered between runs -------------------------------------------------------------------


async def test_up_recalls_the_last_query_in_this_run_and_the_next(library: Library) -> None:
    app = MrlApp(library.root, device="cpu", library=library, auto_router=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await search(pilot, "red planet moons")
        screen = await search(pilot, QUERY)
        box = screen.query_one("#query", Input)
        box.value = "draft"
        box.focus()
        await pilot.press("up")
        assert box.value == QUERY
        await pilot.press("up")
        assert box.value == "red planet moons"
        await pilot.press("down", "down")
        assert box.value == "draft"
    again = MrlApp(library.root, device="cpu", library=library, auto_router=False)
    async with again.run_test(size=(100, 32)) as pilot:
        box = again.search_screen.query_one("#query", Input)
        box.focus()
        await pilot.press("up")
        assert box.value == QUERY


async def test_a_second_run_restores_the_dim_panels_and_theme(library: Library) -> None:
    app = MrlApp(library.root, device="cpu", library=library, auto_router=False)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        await pilot.press("shift+left")  # 64 -> 32
        await wait_for(pilot, lambda: screen.comparison.dim == 32)  # type: ignore[union-attr]
        await pilot.press("p")  # hide the panels
        app.theme = "nord"
    again = MrlApp(library.root, device="cpu", library=library)  # auto_router: as left
    async with again.run_test(size=(100, 32)) as pilot:
        screen = again.search_screen
        await wait_for(pilot, lambda: screen.library is not None and bool(screen.query(DimSlider)))
        assert screen.dim == 32 and screen.query_one(DimSlider).value == 32
        assert not screen.auto_router  # it was left in manual mode
        assert not screen.query_one("#side").display
        assert again.theme == "nord"


def test_a_damaged_state_file_is_ignored_and_replaced() -> None:
    path = state_dir() / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"history": ["ok", 3], "folders": {"/x": {"dim": "big"}}', encoding="utf-8")
    assert Remembered.load().history == []  # not JSON at all: nothing remembered
    path.write_text(json.dumps({"history": ["ok", 3], "folders": {"/x": {"dim": "big"}}}))
    remembered = Remembered.load()
    assert remembered.history == ["ok"] and remembered.folder(Path("/x")).dim is None
    for i in range(HISTORY_MAX + 5):
        remembered.add_query(f"q{i % (HISTORY_MAX + 2)}")
    remembered.add_query("q3")
    assert remembered.history[0] == "q3" and len(remembered.history) == HISTORY_MAX
    assert len(set(remembered.history)) == HISTORY_MAX
    remembered.save()
    assert json.loads(path.read_text(encoding="utf-8"))["history"][0] == "q3"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary file left


# -- more results and path filters -------------------------------------------------------------


async def test_m_shows_ten_more_results_on_each_side(library: Library, tmp_path: Path) -> None:
    files = {f"n{i}.md": f"# Note {i}\n\nbread and flour, note number {i}\n" for i in range(30)}
    folder = write_corpus(tmp_path / "many", files)
    many = Library(folder, library.embedder, cache_root=tmp_path / "cache")
    many.update()
    many.load()
    app = MrlApp(folder, device="cpu", library=many, auto_router=False)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot, "bread and flour")
        assert len(table_ids(screen, "#left")) == 10
        await pilot.press("m")
        await wait_for(pilot, lambda: screen.comparison.k == 20)  # type: ignore[union-attr]
        assert screen.state is not None
        left = table_ids(screen, "#left")
        assert left == ids_of(many.search(screen.state.query, screen.dim, 20).hits)
        assert len(table_ids(screen, "#right")) == 20 and "overlap@20" in agreement_text(screen)
        await pilot.press("M")
        await wait_for(pilot, lambda: screen.comparison.k == 10)  # type: ignore[union-attr]
    many.close()


async def test_a_path_filter_in_the_query_box_limits_both_sides(library: Library) -> None:
    app = MrlApp(library.root, device="cpu", library=library, auto_router=False)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot, "path:mars feed the starter")
        assert screen.comparison is not None
        hits = [*screen.comparison.left, *screen.comparison.right]
        assert hits and {h.chunk.path for h in hits} == {"mars.md"}
        assert "only path:mars" in agreement_text(screen)


# -- opening the editor ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        ("nvim", ["nvim", "+7", "/d/a.md"]),
        ("emacsclient -t", ["emacsclient", "-t", "+7", "/d/a.md"]),
        ("/usr/bin/code --wait", ["/usr/bin/code", "--wait", "-g", "/d/a.md:7"]),
        ("subl", ["subl", "/d/a.md:7"]),
        ("hx", ["hx", "/d/a.md:7"]),
        ("kak", ["kak", "+7", "/d/a.md"]),
        ("someeditor", ["someeditor", "/d/a.md"]),  # unknown: no line it might misread
    ],
)
def test_editor_commands(program: str, expected: list[str]) -> None:
    argv, at_line = editor.editor_command(program, Path("/d/a.md"), 7)
    assert argv == expected and at_line == (program != "someeditor")


def test_best_line_is_the_line_with_the_most_query_terms() -> None:
    lines = ["# Bread", "", "Mix flour and water.", "Feed the starter flour and water daily."]
    assert editor.best_line(lines, 10, "feed starter with flour") == 13
    assert editor.best_line(lines, 10, "flour") == 12  # a tie: the first line that has it
    assert editor.best_line(lines, 10, "telescope") == 10  # no term anywhere: the chunk's start


def test_best_line_reads_the_file_within_the_chunk(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("intro\nstarter here\n# Part\nother\nfeed the starter\n")
    chunk = Chunk(path="a.md", start_line=3, end_line=5, heading="", text="ignored")
    assert editor.chunk_best_line(tmp_path, chunk, "feed starter") == 5
    (tmp_path / "a.md").unlink()  # gone since indexing: the chunk's own text is used
    chunk = Chunk(path="a.md", start_line=3, end_line=4, heading="", text="x\nfeed starter")
    assert editor.chunk_best_line(tmp_path, chunk, "feed starter") == 4


async def test_without_an_editor_the_platform_opener_is_used_and_said(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDITOR", raising=False)
    monkeypatch.delenv("VISUAL", raising=False)
    opened: list[list[str]] = []
    monkeypatch.setattr(editor, "platform_opener", lambda: ["xdg-open"])
    monkeypatch.setattr(editor.subprocess, "Popen", lambda argv, **kw: opened.append(argv))
    app = MrlApp(library.root, device="cpu", library=library, auto_router=False)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        await pilot.press("o")
        await pilot.pause()
        hit = screen.selected_hit()
        assert hit is not None
        assert opened == [["xdg-open", str(library.root / hit.chunk.path)]]
        messages = [n.message for n in app._notifications]
        assert any("No $VISUAL or $EDITOR" in m and "xdg-open" in m for m in messages)
