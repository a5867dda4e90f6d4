"""The app as a newcomer meets it (issue 15): the user's text shown literally, screens with real
content, keys that work where the screen says, re-indexing behind the results, one timing
procedure, a router panel in plain words.

What the terminal would show is read from the screen's compositor (`screen_text`), so a test sees
the rendered cells, not what a widget was handed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes import LIBRARY_DIM, HashEmbedder
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Input
from ui_helpers import wait_for, write_corpus

from mrl_tui.core.corpus.chunking import Chunk
from mrl_tui.core.library import Hit, Library
from mrl_tui.ui.app import MrlApp
from mrl_tui.ui.screens.about import AboutScreen
from mrl_tui.ui.screens.help import HelpScreen, key_name
from mrl_tui.ui.screens.search import SearchScreen
from mrl_tui.ui.screens.skipped import SkippedScreen
from mrl_tui.ui.widgets.panels import (
    LatencyPanel,
    RouterPanel,
    StoragePanel,
    fmt_ms,
    plain_reasons,
    query_words,
    smaller_text,
)
from mrl_tui.ui.widgets.preview import Preview, SelectedHit
from mrl_tui.ui.widgets.ranking import RankingPane, fit_list, fit_path

MARKUP = "[/b] [b] [red] [link=https://x] [@click=app.quit] [/] arr[i] = cfg[key]"
"""Rich / Textual markup that would crash ([/b]), vanish ([red], arr[i]) or act ([@click])."""
FILES = {
    "[draft] plan.md": f"# Plan [b]v2[/b]\n\n{MARKUP} sourdough bread plan.\n",
    "[red]/[b]notes.md": f"# Notes [/]\n\n{MARKUP} bread flour water.\n",
    "plain.md": "# Plain\n\nNothing special about the weather today.\n",
    "[@click=app.quit].bin": "\x00\x01binary",
}


def screen_text(app: MrlApp) -> str:
    """The active screen as the terminal would show it, one line per row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def region_text(app: MrlApp, widget: Widget) -> str:
    """What `widget` shows on screen, one line per row."""
    region = widget.region
    strips = app.screen._compositor.render_strips()[region.y : region.bottom]
    return "\n".join(strip.crop(region.x, region.right).text for strip in strips)


@pytest.fixture(scope="module")
def markup_library(embedder, tmp_path_factory: pytest.TempPathFactory) -> Library:
    folder = tmp_path_factory.mktemp("markup") / "[draft] folder"
    for rel, text in FILES.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    lib = Library(folder, embedder, cache_root=tmp_path_factory.mktemp("cache"))
    lib.update()
    lib.load()
    return lib


async def run_query(pilot, text: str) -> SearchScreen:
    screen = pilot.app.search_screen
    await wait_for(pilot, lambda: screen.library is not None)
    screen.query_one("#query", Input).value = text
    await pilot.click("#query")
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.comparison is not None)
    await pilot.pause()
    return screen


async def test_text_from_files_is_shown_literally_in_the_app(markup_library: Library) -> None:
    app = MrlApp(markup_library.root, device="cpu", library=markup_library, auto_router=False)
    async with app.run_test(size=(200, 50)) as pilot:
        screen = await run_query(pilot, "sourdough bread plan")
        shown = screen_text(app)
        assert "[draft] plan.md:1" in shown and "[red]/[b]notes.md:1" in shown  # the tables
        assert "[/b] [b] [red] [link=https://x] [@click=app.quit] [/] arr[i] = cfg[key]" in shown
        assert "mrl-tui · [draft] folder" in shown  # the header
        for pane in ("#left", "#right"):  # each table, as drawn
            table = region_text(app, screen.query_one(pane, RankingPane).table)
            assert "[draft] plan.md:1" in table and "Plan [b]v2[/b] [/b] [b] [red]" in table
            assert "Notes [/] [/b] [b] [red]" in table
        preview = screen.query_one(Preview)
        for row in range(screen.query_one("#left", RankingPane).table.row_count):
            hit = screen.comparison.left[row]  # type: ignore[union-attr]
            screen._selected = hit.id
            screen._show_selected()
            await pilot.pause()
            title = Content.from_markup(preview.border_title or "").plain
            assert title == f"{hit.chunk.path}:{hit.chunk.start_line}-{hit.chunk.end_line}"
            if hit.chunk.path != "plain.md":
                assert MARKUP in screen_text(app) and "# Notes [/]" not in title
        await pilot.press("f3")  # the skipped file's name, literally
        assert isinstance(app.screen, SkippedScreen)
        await pilot.pause()
        assert "[@click=app.quit].bin" in screen_text(app)
        await pilot.press("escape")
        assert app.is_running and isinstance(app.screen, SearchScreen)


async def test_undecodable_file_names_are_drawn_with_a_replacement_character(
    tmp_path: Path,
) -> None:
    """A name read with surrogateescape ('bad\\udcff.md') cannot be written to a terminal."""
    app = MrlApp(write_corpus(tmp_path / "notes"), device="cpu", autostart=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(SkippedScreen([("bad\udcff.md", "not UTF-8 \udcfe")]))
        await pilot.pause()
        text = screen_text(app)
        assert "bad\ufffd.md" in text and "\udcff" not in text and "\udcfe" not in text
    chunk = Chunk(path="dir\udcff/bad\udcff.md", start_line=3, end_line=4, heading="", text="x")
    assert fit_path(chunk.path, ":3", 40) == "dir\ufffd/bad\ufffd.md:3"
    hit = Hit(rank=1, id=1, score=0.5, chunk=chunk)
    app = MrlApp(tmp_path / "notes", device="cpu", autostart=False)
    async with app.run_test(size=(100, 30)) as pilot:
        preview = app.search_screen.query_one(Preview)
        preview.selected = SelectedHit(hit, "x", None, depth=50, dim=64, k=10)
        await pilot.pause()
        assert Content.from_markup(preview.border_title or "").plain == "dir\ufffd/bad\ufffd.md:3-4"


def test_cli_search_prints_text_from_files_literally(
    markup_library: Library,
    embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mrl_tui.cli import main
    from mrl_tui.core.embedding.choice import ModelChoice

    monkeypatch.setattr(ModelChoice, "load", lambda *args, **kwargs: embedder)
    monkeypatch.setenv("COLUMNS", "250")
    folder = str(markup_library.root)
    code = main(["search", folder, "sourdough [b]bread", "--cache-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "[draft] plan.md:1" in out and "[red]/[b]notes.md:1" in out
    assert MARKUP in out and "'sourdough [b]bread'" in out


async def test_help_and_skipped_screens_have_content_and_list_the_real_bindings(
    markup_library: Library,
) -> None:
    app = MrlApp(markup_library.root, device="cpu", library=markup_library, auto_router=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await run_query(pilot, "bread")
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.pause()
        box = app.screen.query_one("#help-box")
        assert box.content_size.width > 60 and box.content_size.height > 10
        text = screen_text(app)
        for key, what in (("Ctrl+R", "re-index"), ("F3 / s", "skipped"), ("Ctrl+Q", "quit")):
            assert any(key in line and what in line for line in text.splitlines()), key
        assert any(key == "t" and "adaptor" in what for key, what in app.screen.rows)
        await pilot.press("escape", "tab")  # out of the query box: s works
        await pilot.press("s")
        assert isinstance(app.screen, SkippedScreen)
        await pilot.pause()
        box = app.screen.query_one("#skipped-box")
        assert box.content_size.width > 40 and box.content_size.height >= 1
        assert "[@click=app.quit].bin" in screen_text(app)


def test_key_names_read_as_keys() -> None:
    names = ["ctrl+r", "question_mark", "shift+left", "f3", "escape", "slash", "t", "ctrl+p"]
    assert [key_name(k) for k in names] == [
        "Ctrl+R",
        "?",
        "Shift+←",
        "F3",
        "Esc",
        "/",
        "t",
        "Ctrl+P",
    ]


class SlowEmbedder:
    """The real embedder, slowed per batch: indexing lasts long enough to press keys in it."""

    def __init__(self, inner, delay: float = 0.2) -> None:
        self._inner, self.delay = inner, delay

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def embed_documents(self, texts, **kwargs):
        time.sleep(self.delay)
        return self._inner.embed_documents(texts, **kwargs)


def many_notes(n: int) -> dict[str, str]:
    return {f"note{i:02d}.md": f"# Note {i}\n\nAbout sourdough loaf number {i}." for i in range(n)}


async def test_keys_the_indexing_panel_advertises_work_from_the_query_box(
    embedder, tmp_path: Path
) -> None:
    folder = write_corpus(tmp_path / "big", many_notes(40))
    library = Library(folder, SlowEmbedder(embedder), cache_root=tmp_path / "cache")
    app = MrlApp(folder, device="cpu", library=library)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.search_screen
        panel = screen.indexing_panel
        await wait_for(pilot, lambda: panel.last_progress is not None)
        box = screen.query_one("#query", Input)
        await pilot.press(*"loaf")
        assert screen.focused is box
        hint = str(panel.query_one("#indexing-hint").render())
        assert "F3 lists skipped files" in hint
        await pilot.press("f3")
        assert isinstance(app.screen, SkippedScreen)
        await pilot.press("escape", "f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "f2")
        assert isinstance(app.screen, AboutScreen)
        await pilot.press("escape")
        assert box.value == "loaf" and screen.focused is box
        # The footer shows no key the query box would type instead.
        shown = [b for b in app.active_bindings.values() if b.binding.show]
        assert shown and all(len(b.binding.key) > 1 for b in shown)
        await pilot.press("escape")  # Esc, advertised while indexing, stops it
        await wait_for(pilot, lambda: not screen.indexing, timeout=60)


async def test_latency_figures_all_come_from_one_measurement(markup_library: Library) -> None:
    app = MrlApp(markup_library.root, device="cpu", library=markup_library, auto_router=False)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await run_query(pilot, "bread")
        await wait_for(pilot, lambda: screen.latency_profile is not None)
        full = markup_library.full_dim
        await wait_for(pilot, lambda: "search @64" in panel_numbers(screen))
        numbers = panel_numbers(screen)
        profile = screen.latency_profile
        assert profile is not None
        assert f"search @64   {fmt_ms(profile[64])}" in numbers
        assert f"search @{full}  {fmt_ms(profile[full])}" in numbers
        await pilot.press("tab", "shift+tab")  # to the slider
        screen.query_one("#dim").focus()
        await pilot.press("right")  # 72: not in the profile, measured the same way
        await wait_for(pilot, lambda: 72 in screen.latency_more)
        await wait_for(pilot, lambda: "search @72" in panel_numbers(screen))
        numbers = panel_numbers(screen)
        assert f"search @72   {fmt_ms(screen.latency_more[72])}" in numbers
        assert f"search @{full}  {fmt_ms(profile[full])}" in numbers  # the same figure as before
        assert numbers.count("search @") == 2


def panel_numbers(screen: SearchScreen) -> str:
    return str(screen.query_one(LatencyPanel).query_one(".numbers").render())


async def test_router_panel_speaks_plainly_and_explains_itself(markup_library: Library) -> None:
    app = MrlApp(markup_library.root, device="cpu", library=markup_library, auto_router=True)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await run_query(pilot, "how do I feed my sourdough starter")
        assert screen.state is not None and screen.state.route is not None
        route = screen.state.route
        text = str(screen.query_one(RouterPanel).render())
        assert "keyword" not in text and "F2 explains" in text
        assert f"auto: dim {route.dim} of {markup_library.full_dim}" in text
        await pilot.press("f2")  # from the query box
        assert isinstance(app.screen, AboutScreen)
        await pilot.pause()
        about = screen_text(app)
        box = app.screen.query_one("#about-box")
        while box.scroll_y < box.max_scroll_y:  # all of it, by keyboard
            await pilot.press("pagedown")
            await pilot.pause()
            about += screen_text(app)
        for word in ("dim", "prefix", "routing", "scan", "stages", "32d×552"):
            assert word in about
        # The whole route, which the 80x24 panel crops, is in the about screen.
        assert "3 meaningful words (of 7)" in about
        assert f"scored all {markup_library.chunk_count} chunks" in about


def test_query_words_and_reasons_in_plain_words() -> None:
    features = {"content_words": 3, "tokens": 7, "rare_terms": [], "clauses": 1}
    assert query_words(features) == "3 meaningful words (of 7); nothing rare, exact or negated"
    features = {"content_words": 2, "tokens": 2, "rare_terms": ["wireguard"], "numbers": ["51"]}
    assert query_words(features) == "2 meaningful words; rare here: wireguard; exact: 51"

    class R:
        def __init__(self, *reasons: str) -> None:
            self.reasons = list(reasons)

    stable = R("short keyword query", "top-10 stable between 32 and 64 (9 shared)")
    assert plain_reasons(stable, 384) == [  # type: ignore[arg-type]
        "its top 10 settled (9 of 10 the same at 32 and 64 dims): stopped at 64"
    ]
    unstable = R("rare terms x", "top-10 unstable up to 128: full")
    assert plain_reasons(unstable, 384) == [  # type: ignore[arg-type]
        "its top 10 still changed at 128 dims: went on to the full 384"
    ]


def test_storage_says_something_sensible_near_full() -> None:
    assert smaller_text(376, 384) == "2% smaller"
    assert smaller_text(64, 384) == "6.0× smaller"
    assert smaller_text(192, 384) == "2.0× smaller"
    assert smaller_text(384, 384) == "full size"


def test_paths_keep_their_folders_as_far_as_they_fit() -> None:
    path = "textual/widgets/_data_table.py"
    assert fit_path(path, ":12", 60) == "textual/widgets/_data_table.py:12"
    assert fit_path(path, ":12", 28) == "…/widgets/_data_table.py:12"
    assert fit_path(path, ":12", 20) == "…/_data_table.py:12"
    assert fit_path(path, ":12", 17) == "_data_table.py:12"
    assert fit_path(path, ":12", 10) == "_data_…:12"
    assert fit_path("a/__init__.py", ":1", 40) != fit_path("b/__init__.py", ":1", 40)


def test_lists_under_the_tables_say_how_many_they_leave_out() -> None:
    items = [f"folder/file{i}.md:1" for i in range(6)]
    assert fit_list("dropped at 64", items, 200, 1) == [f"dropped at 64: {', '.join(items)}"]
    [line] = fit_list("dropped at 64", items, 60, 1)
    assert len(line) <= 60 and line.endswith("more") and "+4 more" in line
    assert fit_list("dropped at 64", items, 30, 1) == ["dropped at 64: +6 more"]
    two = fit_list("dropped at 64", items, 60, 2)
    assert len(two) == 2 and all(len(line) <= 60 for line in two) and "+2 more" in two[1]


async def test_dim_label_follows_the_model_and_says_when_there_is_no_index(
    embedder, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    app = MrlApp(empty, device="cpu", library=Library(empty, embedder, cache_root=tmp_path / "c"))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.search_screen
        await wait_for(pilot, lambda: not screen.indexing)
        label = str(screen.query_one("#dim-label").render())
        assert "waiting" not in label and "no index" in label
        assert "F3 lists skipped files" in str(screen.query_one("#message").render())


async def test_panes_are_equally_tall_and_storage_reads_sensibly(markup_library: Library) -> None:
    app = MrlApp(markup_library.root, device="cpu", library=markup_library, auto_router=False)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await run_query(pilot, "bread")
        left, right = screen.query_one("#left"), screen.query_one("#right")
        assert left.size.height == right.size.height
        storage = str(screen.query_one(StoragePanel).query_one(".numbers").render())
        assert "6.0× smaller than full 384" in storage


async def test_a_repair_made_while_searching_is_said_at_once(
    markup_library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core notes a repair (e.g. a damaged snapshot rebuilt) during a search: the user reads
    it with the results, not at the next indexing."""
    import mrl_tui.ui.screens.search as search_module

    line = "cache at X: the vector snapshot was damaged; rebuilt it from the database"
    original = search_module.compare_at

    def compare_noting(library, *args, **kwargs):
        library._note(line)
        return original(library, *args, **kwargs)

    monkeypatch.setattr(search_module, "compare_at", compare_noting)
    app = MrlApp(markup_library.root, device="cpu", library=markup_library, auto_router=False)
    async with app.run_test(size=(120, 36)) as pilot:
        markup_library.take_messages()  # what opening said is not this test's business
        await run_query(pilot, "sourdough bread plan")
        await wait_for(pilot, lambda: any(n.message == line for n in app._notifications))


SOURCE = (
    "def describe(obj, console):\n"
    + "".join(f"    rows.append(row(obj,{i}))\n" for i in range(30))  # a token a line
    + '    console.print("[b cyan]hello[/]")\n'
    + '    console.print("[/]")\n'
    + "    return rows\n"
)
"""A chunk longer than the preview whose last lines hold Rich markup (`[b cyan]…[/]`, `[/]`)."""


async def test_markup_below_the_fold_of_the_preview_is_shown_literally(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "inspect_panel.py").write_text(SOURCE, encoding="utf-8")
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    lib.update()
    lib.load()
    app = MrlApp(folder, device="cpu", library=lib, auto_router=False, remember=False, watch=False)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await run_query(pilot, "describe console rows")
        preview = screen.query_one(Preview)
        await wait_for(pilot, lambda: preview.selected is not None)
        chunk = preview.selected.hit.chunk  # type: ignore[union-attr]
        assert "[b cyan]hello[/]" in chunk.text and chunk.end_line - chunk.start_line > 30
        await pilot.pause()
        assert "[b cyan]" not in region_text(app, preview)  # below the fold at first
        preview.scroll_end(animate=False)
        await pilot.pause()
        shown = region_text(app, preview)
        assert 'console.print("[b cyan]hello[/]")' in shown, shown
        assert 'console.print("[/]")' in shown
