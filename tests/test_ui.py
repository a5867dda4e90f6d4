"""The app driven through Textual's Pilot, with the real bundled model on a tiny corpus.

The model is loaded once per session (conftest's `embedder`); each test opens a `Library` over it,
so no test pays for a model load and none touches the user's cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input
from ui_helpers import QUERY, wait_for, write_corpus

import mrl_tui.ui.screens.search as search_module
from mrl_tui.core.corpus.chunking import Chunk
from mrl_tui.core.library import Hit, Library
from mrl_tui.core.search.compare import ids_of, movement_label, movements, power_of_two_dims
from mrl_tui.core.search.side_by_side import TOP_K
from mrl_tui.ui.app import MrlApp
from mrl_tui.ui.screens.help import HelpScreen
from mrl_tui.ui.screens.search import LIVE_DELAY, SearchScreen
from mrl_tui.ui.screens.skipped import SkippedScreen
from mrl_tui.ui.widgets.dim_slider import DimSlider
from mrl_tui.ui.widgets.panels import (
    CurvePlot,
    LatencyPanel,
    Routed,
    RouterPanel,
    StoragePanel,
    is_flat,
    plain_reasons,
    query_words,
    short_count,
    stages_lines,
    x_position,
)
from mrl_tui.ui.widgets.preview import trail_text
from mrl_tui.ui.widgets.ranking import RankingPane, short_locations, split_width


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("ui") / "notes")


@pytest.fixture(scope="module")
def library(corpus: Path, embedder, tmp_path_factory: pytest.TempPathFactory) -> Library:
    lib = Library(corpus, embedder, cache_root=tmp_path_factory.mktemp("cache"))
    lib.update()
    lib.load()
    return lib


def make_app(library: Library, *, auto_router: bool = False) -> MrlApp:
    """Manual mode unless asked: most tests drive the slider from its default dim."""
    return MrlApp(library.root, device="cpu", library=library, auto_router=auto_router)


async def search(pilot, text: str = QUERY) -> SearchScreen:
    screen = pilot.app.search_screen
    await wait_for(pilot, lambda: screen.library is not None)
    screen.query_one("#query", Input).value = text  # typing itself is covered by the cancel test
    await pilot.click("#query")
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.comparison is not None)
    return screen


def fake_hit(path: str, line: int) -> Hit:
    chunk = Chunk(path=path, start_line=line, end_line=line + 3, heading="", text="text")
    return Hit(rank=1, id=line, score=0.5, chunk=chunk)


def table_rows(pane: RankingPane) -> tuple[list[int], list[str]]:
    """(chunk ids, movement labels) as the table shows them."""
    table = pane.table
    ids = [int(key.value) for key in table.rows]  # type: ignore[arg-type]
    labels = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
    return ids, labels


def test_ui_import_is_light() -> None:
    code = (
        "import sys, mrl_tui.ui.app\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'numpy', 'mrl_tui.core.library')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_query_shows_both_rankings(library: Library) -> None:
    app = make_app(library)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        state = screen.state
        assert state is not None
        left_ids, _ = table_rows(screen.query_one("#left", RankingPane))
        right_ids, right_labels = table_rows(screen.query_one("#right", RankingPane))
        assert left_ids == ids_of(library.search(state.query, screen.dim, TOP_K).hits)
        assert right_ids == ids_of(library.search(state.query, library.full_dim, TOP_K).hits)
        top = library.store.chunks([right_ids[0]])[0]
        assert top.path == "sourdough.md"
        assert len(right_labels) == len(right_ids) > 0
        assert app.title == "mrl-tui · notes"
        assert "PCA" in app.sub_title and "cpu" in app.sub_title and "chunks" in app.sub_title


async def test_slider_keys_rescore_consistently_with_compare(library: Library) -> None:
    app = make_app(library)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        slider = screen.query_one(DimSlider)
        assert screen.focused is slider  # Enter hands the keyboard to the slider
        embeds = screen.state.query if screen.state else None
        for keys, expected_dim in ((("left",), 56), (("shift+left",), 32), (("shift+left",), 16)):
            await pilot.press(*keys)
            await wait_for(pilot, lambda d=expected_dim: screen.comparison.dim == d)  # type: ignore[union-attr]
            assert screen.state is not None and screen.state.query is embeds  # never re-embedded
            left = ids_of(library.search(screen.state.query, expected_dim, TOP_K).hits)
            right = ids_of(library.search(screen.state.query, library.full_dim, TOP_K).hits)
            ids, labels = table_rows(screen.query_one("#left", RankingPane))
            assert ids == left
            assert labels == [movement_label(m) for m in movements(left, right)]
        await pilot.press("shift+right", "shift+right")
        await wait_for(pilot, lambda: screen.comparison.dim == 64)  # type: ignore[union-attr]
        await pilot.press("right")
        await wait_for(pilot, lambda: screen.comparison.dim == 72)  # type: ignore[union-attr]


async def test_switch_reference(library: Library) -> None:
    app = make_app(library)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        assert screen.ref_dim == library.full_dim
        await pilot.press("r")  # full wraps round to the smallest power of two
        await wait_for(pilot, lambda: screen.comparison.ref_dim == 8)  # type: ignore[union-attr]
        pane = screen.query_one("#right", RankingPane)
        assert pane.border_title == "reference: dim 8"
        assert screen.state is not None
        ids, _ = table_rows(pane)
        assert ids == ids_of(library.search(screen.state.query, 8, TOP_K).hits)
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.comparison.ref_dim == 16)  # type: ignore[union-attr]


async def test_open_in_editor_passes_path_and_line(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "argv.txt"
    editor = tmp_path / "vim"  # a recorder named like an editor known to take +LINE
    script = f"import sys\nopen({str(record)!r}, 'w').write('\\n'.join(sys.argv[1:]))\n"
    editor.write_text(f"#!{sys.executable}\n{script}")
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.delenv("VISUAL", raising=False)
    app = make_app(library)
    # A headless terminal cannot suspend; the editor still runs, which is what we check.
    monkeypatch.setattr(app, "suspend", contextlib.nullcontext)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        hit = screen.selected_hit()
        assert hit is not None
        await pilot.press("o")
    # The chunk starts at "# Sourdough" (line 1); "Feed the starter …" (line 3) holds more of
    # the query's terms: the editor opens there.
    assert hit.chunk.path == "sourdough.md" and hit.chunk.start_line == 1
    assert record.read_text().splitlines() == ["+3", str(library.root / hit.chunk.path)]


async def test_open_in_editor_without_editor_says_so(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDITOR", raising=False)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setattr("mrl_tui.ui.editor.platform_opener", lambda: None)
    monkeypatch.setattr("sys.platform", "linux")
    app = make_app(library)
    async with app.run_test(size=(100, 32)) as pilot:
        await search(pilot)
        await pilot.press("o")
        await pilot.pause()
        assert any("set EDITOR" in n.message for n in app._notifications)


async def test_help_opens_and_closes(library: Library) -> None:
    app = make_app(library)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, SearchScreen)


async def test_side_keys_router_panels_skipped(library: Library) -> None:
    app = make_app(library)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        await pilot.press("p")
        assert not screen.query_one("#side").display
        await pilot.press("s")
        assert isinstance(app.screen, SkippedScreen)
        await pilot.press("escape")
        titles = [command.title for command in app.get_system_commands(screen)]
        assert {"Reindex", "Switch reference", "Other transform", "Toggle panels"} <= set(titles)


async def test_missing_folder_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    app = MrlApp(tmp_path / "gone", device="cpu", cache_root=tmp_path / "cache")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.failed)
        message = str(app.search_screen.query_one("#message").render())
        assert "no such folder" in message


class SlowEmbedder:
    """The real embedder, slowed down per batch so a test can press Escape mid-indexing."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def embed_documents(self, texts, **kwargs):
        time.sleep(0.1)
        return self._inner.embed_documents(texts, **kwargs)


async def test_cancel_indexing_keeps_work_and_reopens(
    embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mrl_tui.core.cache.indexer as indexer

    monkeypatch.setattr(indexer, "COMMIT_EVERY_CHUNKS", 4)  # commit often, so a cancel keeps some
    files = {
        f"note{i:02d}.md": f"# Note {i}\n\nThis note is about topic number {i}: "
        + ("sourdough bread and starters." if i % 5 == 0 else "the weather on day {i}.")
        for i in range(60)
    }
    folder = write_corpus(tmp_path / "big", files)
    cache = tmp_path / "cache"

    slow = SlowEmbedder(embedder)
    app = MrlApp(folder, device="cpu", library=Library(folder, slow, cache_root=cache))
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.search_screen
        await pilot.press(*"sourdough", "enter")  # typed while indexing: waits for the index
        panel = screen.indexing_panel
        await wait_for(
            pilot, lambda: panel.last_progress is not None and panel.last_progress.chunks_done >= 4
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen.comparison is not None)
        assert app.report is not None and app.report.cancelled
        kept = app.report.chunks_total
        assert 0 < kept < len(files)
        assert "Indexing stopped" in str(screen.query_one("#message").render())

    app = MrlApp(folder, device="cpu", library=Library(folder, embedder, cache_root=cache))
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot, "sourdough")
        assert app.report is not None and not app.report.cancelled
        assert app.report.chunks_total == len(files)
        assert app.report.files_changed == len(files) - kept  # committed work was not redone


async def test_latency_profile_and_storage_follow_the_query(library: Library) -> None:
    app = make_app(library)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await search(pilot)
        await wait_for(pilot, lambda: screen.latency_profile is not None)
        profile = screen.latency_profile
        assert profile is not None
        assert list(profile) == power_of_two_dims(library.full_dim)
        assert all(ms > 0 for ms in profile.values())
        storage = str(screen.query_one(StoragePanel).query_one(".numbers").render())
        assert "top 10 shared with full" in storage and "–" not in storage
        assert f"int8 {screen.dim} B" in storage  # one byte per dimension
        # Six rows: every dim should search in about the same time, which the panel then says
        # instead of plotting. Timer jitter on a busy machine can still spread them, so check that
        # the panel says what the measured profile is, either way.
        latency = screen.query_one(LatencyPanel)
        legend = str(latency.query_one(".legend").render())
        flat = is_flat(profile)
        assert ("too small for timings to differ (6 rows)" in legend) == flat
        assert latency.query_one(CurvePlot).display == (not flat)
        await pilot.press("r")  # another reference: the profile is kept, not measured again
        await wait_for(pilot, lambda: screen.comparison.ref_dim == 8)  # type: ignore[union-attr]
        assert screen.latency_profile is profile


async def test_graph_reference_without_graph_says_why(library: Library) -> None:
    assert library.graph is None
    app = make_app(library)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        await pilot.press("f")
        await pilot.pause()
        assert screen.ref_mode == "exact"
        assert any("HNSW graph" in n.message for n in app._notifications)


async def test_graph_reference_with_graph(
    corpus: Path, embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mrl_tui.core.library as library_module

    monkeypatch.setattr(library_module, "HNSW_MIN_CHUNKS", 1)  # a graph even for 6 chunks
    lib = Library(corpus, embedder, cache_root=tmp_path / "cache")
    lib.update()
    lib.load()
    assert lib.graph is not None
    app = make_app(lib)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        await pilot.press("f")
        await wait_for(pilot, lambda: screen.comparison.ref_mode == "graph")  # type: ignore[union-attr]
        pane = screen.query_one("#right", RankingPane)
        assert pane.border_title == f"reference: graph @{lib.full_dim}"
        assert screen.state is not None
        graph = lib.search(screen.state.query, lib.full_dim, TOP_K, mode="graph")
        assert graph.mode == "graph" and table_rows(pane)[0] == ids_of(graph.hits)
        await pilot.press("r")  # back to exact at the same dim
        await wait_for(pilot, lambda: screen.comparison.ref_mode == "exact")  # type: ignore[union-attr]
        assert screen.ref_dim == lib.full_dim


async def test_a_first_graph_build_and_its_tuning_show_on_the_status_line(
    corpus: Path, embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's own load builds the graph tiers (their rows) and measures their settings (one
    step per d and tier), and says how far each has got while it does."""
    import mrl_tui.core.library as library_module

    monkeypatch.setattr(library_module, "HNSW_MIN_CHUNKS", 1)
    lib = Library(corpus, embedder, cache_root=tmp_path / "cache")
    app = make_app(lib)
    said: list[str] = []
    post = app._post

    def recording(message: Any) -> None:
        if isinstance(message, MrlApp.Status):
            said.append(message.text)
        post(message)

    monkeypatch.setattr(app, "_post", recording)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(
            pilot, lambda: app.search_screen.library is not None and lib.graph is not None
        )
    assert lib.index is not None
    built = [t for t in said if t.startswith("building the search graphs… ")]
    tuned = [t for t in said if t.startswith("measuring graph search settings… ")]
    shares = [int(t.removeprefix("building the search graphs… ").removesuffix(" %")) for t in built]
    assert shares == sorted(shares) and 0 <= shares[0] < 100 and shares[-1] == 100
    assert tuned[0].endswith(" 0/13") and tuned[-1].endswith(" 13/13")  # 7 dims, 1-3 tiers each
    assert said.index(built[-1]) < said.index(tuned[0])


def panel_text(screen: SearchScreen) -> str:
    return str(screen.query_one(RouterPanel).render())


async def test_auto_mode_routes_each_query_and_shows_why(library: Library) -> None:
    app = make_app(library, auto_router=True)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await search(pilot)
        assert screen.state is not None and screen.comparison is not None
        route = library.route(screen.state.query)
        assert screen.dim == route.dim == screen.query_one(DimSlider).value
        assert screen.comparison.dim == route.dim and screen.auto_router
        text = panel_text(screen)
        assert f"auto: dim {route.dim}" in text and query_words(route.features) in text
        assert all(reason in text for reason in plain_reasons(route, library.full_dim))
        width = screen.query_one(RouterPanel).content_size.width
        assert all(line in text for line in stages_lines(route, library.full_dim, width))
        assert "of a full scan" in text
        left, _ = table_rows(screen.query_one("#left", RankingPane))
        assert left == ids_of(library.search(screen.state.query, route.dim, TOP_K).hits)

        await pilot.press("a")  # manual: the dim stays where the router put it
        assert not screen.auto_router and f"manual: dim {route.dim}" in panel_text(screen)
        await pilot.press("a")  # auto again: the route is shown again, not recomputed
        assert screen.auto_router and f"auto: dim {route.dim}" in panel_text(screen)

        slider = screen.query_one(DimSlider)
        slider.focus()
        key, moved = ("left", route.dim - 8) if route.dim > 8 else ("right", route.dim + 8)
        await pilot.press(key)  # a hand on the slider ends auto mode, and says so
        await wait_for(pilot, lambda: screen.comparison.dim == moved)  # type: ignore[union-attr]
        assert not screen.auto_router and "manual" in panel_text(screen)
        assert any("by hand" in n.message for n in app._notifications)


async def test_a_query_made_in_manual_mode_is_routed_when_auto_is_turned_on(
    library: Library,
) -> None:
    app = make_app(library)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await search(pilot)
        assert screen.dim == 64 and screen.state is not None and screen.state.route is None
        assert "manual: dim 64" in panel_text(screen)
        await pilot.press("a")
        await wait_for(pilot, lambda: screen.state is not None and screen.state.route is not None)
        route = library.route(screen.state.query)  # type: ignore[union-attr]
        await wait_for(pilot, lambda: screen.comparison.dim == route.dim)  # type: ignore[union-attr]
        assert f"auto: dim {route.dim}" in panel_text(screen)


async def test_transform_reference_searches_the_same_dim_under_another_transform(
    library: Library,
) -> None:
    assert library.transform.name == "pca"
    app = make_app(library)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.comparison.ref_transform == "naive")  # type: ignore[union-attr]
        pane = screen.query_one("#right", RankingPane)
        assert pane.border_title == "reference: naive @64"
        assert screen.state is not None
        naive = library.search(screen.state.query, 64, TOP_K, transform="naive")
        assert table_rows(pane)[0] == ids_of(naive.hits)
        await pilot.press("shift+left")  # the reference follows the slider
        await wait_for(pilot, lambda: screen.comparison.dim == 32)  # type: ignore[union-attr]
        naive = library.search(screen.state.query, 32, TOP_K, transform="naive")
        assert table_rows(pane)[0] == ids_of(naive.hits)
        assert not library.transform_ready("adaptor")
        await pilot.press("t")  # PCA is loaded: naive, then the adaptor (fitted now), then back
        await wait_for(pilot, lambda: screen.comparison.ref_transform == "adaptor", timeout=60)  # type: ignore[union-attr]
        assert pane.border_title == "reference: adaptor @32"
        adaptor = library.search(screen.state.query, 32, TOP_K, transform="adaptor")
        assert table_rows(pane)[0] == ids_of(adaptor.hits) and library.transform_ready("adaptor")
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.comparison.ref_transform is None)  # type: ignore[union-attr]
        assert pane.border_title == f"reference: dim {library.full_dim}"


def test_run_app_passes_transform_and_mrl_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mrl_tui.core.library as library_module
    import mrl_tui.ui.app as app_module
    from mrl_tui import cli
    from mrl_tui.core.errors import InputError

    seen: dict[str, object] = {}

    def fake_open(path, **kwargs):  # stands in for loading a model
        seen.update(kwargs)
        raise InputError("stop here")

    monkeypatch.setattr(library_module.Library, "open", staticmethod(fake_open))

    async def run_headless(self: MrlApp) -> None:  # MrlApp.run, without a terminal
        async with self.run_test() as pilot:
            await wait_for(pilot, lambda: self.failed)

    monkeypatch.setattr(MrlApp, "run", lambda self: asyncio.run(run_headless(self)))
    args = dict(model=None, device="cpu", cache_root=tmp_path, trust_remote_code=False)
    assert app_module.run_app(tmp_path, **args, transform="naive", mrl=True) == 1
    assert seen["transform"] == "naive" and seen["model_choice"].mrl is True

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(app_module, "run_app", lambda path, **kwargs: calls.append(kwargs) or 0)
    (tmp_path / "note.md").write_text("something to index", encoding="utf-8")  # not empty
    assert cli.main([str(tmp_path), "--transform", "pca", "--mrl"]) == 0
    assert calls[-1]["transform"] == "pca" and calls[-1]["mrl"] is True
    assert cli.main(["open", str(tmp_path)]) == 0
    assert calls[-1]["transform"] == "auto" and calls[-1]["mrl"] is False


def test_short_locations_keep_as_much_of_each_path_as_fits() -> None:
    hits = [fake_hit("cooking/steak-searing.md", 26), fake_hit("cooking/pan-sauces.md", 1)]
    assert short_locations(hits, 40) == ["cooking/steak-searing.md:26", "cooking/pan-sauces.md:1"]
    assert short_locations(hits, 20) == ["steak-searing.md:26", "…/pan-sauces.md:1"]
    assert short_locations(hits, 16) == ["steak-searin…:26", "pan-sauces.md:1"]
    assert short_locations(hits, 10) == ["steak-…:26", "pan-sau…:1"]


def test_split_width_gives_the_snippet_most_of_the_room() -> None:
    assert split_width(60, 27) == (24, 34)  # 40 % for the location, the rest for text
    assert split_width(60, 10) == (10, 48)  # short paths take only what they need
    assert split_width(24, 27) == (24, 0)  # no room for a useful snippet: location only


def test_trail_text_aligns_dims_and_ranks() -> None:
    text = trail_text({8: 14, 16: 3, 32: 1, 384: None}, depth=50, dim=16, k=10)
    dims, ranks = text.plain.split("\n")
    assert dims == "dim    8 16 32 384"
    assert ranks == "rank  14  3  1 >50"


def test_x_position_interpolates_between_powers_of_two() -> None:
    dims = [8, 16, 32, 64, 128, 256, 384]
    assert x_position(8, dims) == 0 and x_position(64, dims) == 3
    assert x_position(384, dims) == 6
    assert 3 < x_position(96, dims) < 4


async def test_export_comparison_writes_both_sides_outside_the_folder(
    library: Library, tmp_path: Path
) -> None:
    import json

    app = make_app(library)
    async with app.run_test(size=(100, 32)) as pilot:
        app.action_export_comparison(tmp_path / "out")  # nothing to export yet: a warning
        assert not (tmp_path / "out").exists()
        screen = await search(pilot)
        app.action_export_comparison(tmp_path / "out")
        [saved] = (tmp_path / "out").glob("mrl-tui-comparison-*.json")
        record = json.loads(saved.read_text())
        assert screen.comparison is not None
        assert record["query"] == QUERY and record["dim"] == screen.dim
        assert [r["path"] for r in record["left"]] == [h.chunk.path for h in screen.comparison.left]
        assert record["reference"] == {"dim": library.full_dim, "mode": "exact"}
        left = ids_of(screen.comparison.left)
        right = ids_of(screen.comparison.right)
        assert [r["moved"] for r in record["left"]] == [
            movement_label(m) for m in movements(left, right)
        ]
        # a target inside the searched folder is redirected to the cache
        app.action_export_comparison(library.root / "exports")
        assert not (library.root / "exports").exists()
        assert list(library.store.directory.glob("mrl-tui-comparison-*.json"))


def test_slider_moves_reuse_a_fixed_reference(library: Library) -> None:
    """Moving the slider searches the left side only; the full-dim reference is not re-run."""
    from mrl_tui.core.search.side_by_side import compare_at, embed_and_rank

    state = embed_and_rank(library, QUERY)
    calls: list[int] = []
    search = library.search

    def counting(query, dim, k=10, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(dim)
        return search(query, dim, k, **kwargs)

    library.search = counting  # type: ignore[method-assign]
    try:
        first = compare_at(library, state, 32, library.full_dim)
        moved = compare_at(library, state, 40, library.full_dim, previous=first)
        other_ref = compare_at(library, state, 40, 128, previous=moved)
    finally:
        del library.search
    assert calls == [32, library.full_dim, 40, 40, 128]
    assert ids_of(moved.right) == ids_of(first.right)
    assert ids_of(other_ref.right) == ids_of(library.search(state.query, 128, TOP_K).hits)


def test_slider_stops_include_the_models_trained_dims() -> None:
    slider = DimSlider(768, 64, trained_dims=(48, 96, 768, 2048))
    assert slider.stops == [8, 16, 32, 48, 64, 96, 128, 256, 512, 768]
    assert DimSlider(384, 64).stops == [8, 16, 32, 64, 128, 256, 384]


def record_embeds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts the search screen embeds, in order."""
    import mrl_tui.ui.screens.search as search_module

    texts: list[str] = []
    embed = search_module.embed_and_rank

    def recording(library: Library, text: str):  # type: ignore[no-untyped-def]
        texts.append(text)
        return embed(library, text)

    monkeypatch.setattr(search_module, "embed_and_rank", recording)
    return texts


async def test_live_search_runs_when_typing_pauses(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded = record_embeds(monkeypatch)
    app = make_app(library)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.search_screen
        await wait_for(pilot, lambda: screen.library is not None)
        await pilot.click("#query")
        await pilot.press(*"sourdough starter")  # no Enter
        await pilot.pause(LIVE_DELAY + 0.1)
        await wait_for(pilot, lambda: screen.comparison is not None)
        assert embedded == ["sourdough starter"]  # one search for the whole burst of keys
        assert screen.comparison.right[0].chunk.path == "sourdough.md"
        assert screen.focused is screen.query_one("#query")  # the user can type on

        await pilot.press(*" and flour", "wait:100", *" water")  # a short hesitation: no search
        await pilot.pause(LIVE_DELAY + 0.1)
        text = "sourdough starter and flour water"
        await wait_for(pilot, lambda: screen.state is not None and screen.state.query.text == text)
        assert embedded == ["sourdough starter", text]


async def test_live_search_skips_short_and_repeated_text_and_can_be_turned_off(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded = record_embeds(monkeypatch)
    # a longer pause than the app's: on a loaded machine two key presses can lie 0.25 s apart
    delay = 1.0
    monkeypatch.setattr(search_module, "LIVE_DELAY", delay)
    app = make_app(library)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.search_screen
        await wait_for(pilot, lambda: screen.library is not None)
        await pilot.click("#query")
        await pilot.press("s")
        await pilot.pause(delay * 2)
        assert embedded == [] and screen.state is None  # one letter: no search
        await pilot.press(*"ourdough")
        await wait_for(pilot, lambda: screen.comparison is not None)
        await pilot.press("x", "backspace")  # back to the text searched
        await pilot.pause(delay * 2)
        await pilot.press("enter")  # its results are shown: Enter only moves to the slider
        assert embedded == ["sourdough"]
        assert isinstance(screen.focused, DimSlider)

        await pilot.press("slash", "end", *["backspace"] * 8, "enter")  # Enter: any length
        await wait_for(pilot, lambda: screen.state is not None and screen.state.query.text == "s")
        assert embedded == ["sourdough", "s"]

        titles = [command.title for command in app.get_system_commands(screen)]
        assert "Live search on/off" in titles
        screen.action_toggle_live_search()
        assert not screen.live_search
        await pilot.press("slash", "end", *"ourdough bread")
        await pilot.pause(LIVE_DELAY * 2)
        assert embedded == ["sourdough", "s"]  # off: typing alone searches nothing
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.state.query.text == "sourdough bread")  # type: ignore[union-attr]


async def test_the_selected_hit_stays_selected_across_slider_moves_and_queries(
    library: Library,
) -> None:
    """Six chunks: every ranking has them all, so the selection is always found again."""
    app = make_app(library)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        await pilot.press("tab", "down", "down")  # the left table's third hit
        chosen = screen.selected_hit()
        assert chosen is not None and chosen.id == screen.comparison.left[2].id  # type: ignore[union-attr]
        left = screen.query_one("#left", RankingPane).table
        right = screen.query_one("#right", RankingPane).table

        def on_chosen() -> bool:
            hit = screen.selected_hit()
            assert screen.comparison is not None and hit is not None
            left_ids, right_ids = ids_of(screen.comparison.left), ids_of(screen.comparison.right)
            return (
                hit.id == chosen.id
                and left.cursor_row == left_ids.index(chosen.id)
                and right.cursor_row == right_ids.index(chosen.id)
            )

        screen.query_one(DimSlider).value = 8  # rankings change: the cursors follow the hit
        await wait_for(pilot, lambda: screen.comparison.dim == 8)  # type: ignore[union-attr]
        await pilot.pause()
        assert on_chosen()

        await pilot.press("slash", "end", *" please")  # a new query, found by live search
        await wait_for(pilot, lambda: screen.comparison.query.text.endswith("please"))  # type: ignore[union-attr]
        await pilot.pause()
        assert on_chosen()


@dataclass
class FakeRoute:
    """What the router panel reads of a route: a long one over a large index."""

    dim: int = 192
    reasons: list[str] = field(default_factory=lambda: ["plain keyword query"])
    features: dict[str, Any] = field(default_factory=lambda: {"content_words": 4})
    stages: list[tuple[int, int]] = field(
        default_factory=lambda: [(12, 52_340), (24, 800), (48, 200), (96, 200), (192, 200)]
    )
    values_read: int = 12 * 52_340 + 24 * 800 + 48 * 200 + 96 * 200 + 192 * 200

    @property
    def summary(self) -> str:
        return f"{self.dim}-d: " + "; ".join(self.reasons)


def test_stages_lines_fit_the_width_and_break_only_before_an_arrow() -> None:
    route = FakeRoute()
    chain = "12d×52k → 24×800 → 48×200 → 96 → 192"
    assert stages_lines(route, 384) == [f"read 4% of a full scan: {chain}"]
    assert stages_lines(route, 384, 61) == [f"read 4% of a full scan: {chain}"]
    assert stages_lines(route, 384, 47) == ["read 4% of a full scan:", chain]
    assert stages_lines(route, 384, 28) == [
        "read 4% of a full scan:",
        "12d×52k → 24×800 → 48×200",
        "→ 96 → 192",
    ]
    assert [short_count(n) for n in (552, 5000, 5250, 52_340, 1_000_000, 1_250_000)] == [
        "552",
        "5k",
        "5.2k",
        "52k",
        "1M",
        "1.2M",
    ]


async def test_router_panel_lays_stages_out_again_when_resized(tmp_path: Path) -> None:
    app = MrlApp(write_corpus(tmp_path / "notes"), device="cpu", autostart=False)
    async with app.run_test(size=(200, 40)) as pilot:
        panel = app.search_screen.query_one(RouterPanel)
        panel.decision = Routed(FakeRoute(), 384)
        await pilot.pause()
        lines = str(panel.render()).splitlines()
        assert lines[-1].startswith("read 4% of a full scan: 12d×52k → 24×800")
        await pilot.resize_terminal(120, 40)
        await wait_for(pilot, lambda: str(panel.render()).splitlines() != lines)
        lines = str(panel.render()).splitlines()
        assert lines[-2:] == ["read 4% of a full scan:", "12d×52k → 24×800 → 48×200 → 96 → 192"]
        assert max(map(len, lines[-2:])) <= panel.content_size.width


def test_a_latency_profile_is_flat_when_the_slowest_dim_is_not_twice_the_fastest() -> None:
    assert is_flat({8: 0.09, 64: 0.14, 384: 0.12})
    assert not is_flat({8: 0.05, 64: 0.09, 384: 0.27})


def test_header_line_names_the_embedding_backend_unless_torch() -> None:
    from mrl_tui.core.embedding.embed import EmbedderInfo
    from mrl_tui.ui.app import header_line

    name = "sentence-transformers/all-MiniLM-L6-v2"
    info = EmbedderInfo(name, "cpu", "int8", 384, 256, False, backend="onnx-int8")
    assert header_line(info, "PCA") == "all-MiniLM-L6-v2 · cpu onnx-int8 · PCA"
    torch_info = EmbedderInfo(name, "cuda", "float16", 384, 256, False)
    assert header_line(torch_info, "naive", "qdrant") == "all-MiniLM-L6-v2 · cuda · naive · qdrant"


def test_header_line_names_a_trained_model_by_its_base(tmp_path: Path) -> None:
    """A model folder mrl-tui trained (its provenance next to it) reads as "trained <base>", not
    as the folder's long keyed name; any other folder keeps its name."""
    from mrl_tui.core.embedding.embed import EmbedderInfo
    from mrl_tui.core.training.trained import PROVENANCE_FILE
    from mrl_tui.ui.app import header_line

    folder = tmp_path / "notes-all-MiniLM-L6-v2-191b57db63-20261203-011028"
    folder.mkdir()
    info = EmbedderInfo(str(folder), "cpu", "float32", 384, 256, True)
    assert header_line(info, "naive") == f"{folder.name} · cpu · naive"
    record = {"format": 1, "dims": [32, 64, 128, 256, 384]}
    record["base_model"] = "sentence-transformers/all-MiniLM-L6-v2"
    (folder / PROVENANCE_FILE).write_text(json.dumps(record), encoding="utf-8")
    assert header_line(info, "naive") == "trained all-MiniLM-L6-v2 · cpu · naive"


def test_the_header_drops_the_size_then_the_apps_name_where_the_width_is_short() -> None:
    from mrl_tui.ui.app import HEADER_FRAME, fit_header

    line = "all-MiniLM-L6-v2 · cpu onnx-int8 · PCA"
    whole = fit_header("rich", line, "1,745 chunks", "3 MB at full dim", 120)
    assert whole == ("mrl-tui · rich", f"{line} · 1,745 chunks, 3 MB at full dim")
    assert fit_header("rich", line, "1,745 chunks", "3 MB at full dim", 95) == (
        "mrl-tui · rich",
        f"{line} · 1,745 chunks",
    )
    title, sub_title = fit_header("rich", line, "1,745 chunks", "3 MB at full dim", 80)
    assert (title, sub_title) == ("rich", f"{line} · 1,745 chunks")
    assert len(f"{title} — {sub_title}") <= 80 - HEADER_FRAME
    trained = "trained all-MiniLM-L6-v2 · cpu · native MRL"
    # Before the index is counted: the model line alone, the app's name dropped where needed.
    assert fit_header("codebase", trained, "", "", 80) == ("codebase", trained)
    assert fit_header("codebase", trained, "", "", 120) == ("mrl-tui · codebase", trained)
    assert fit_header("notes", trained, "552 chunks", "809 KB at full dim", 80) == (
        "notes",
        trained,
    )


async def test_the_header_reads_whole_at_80_columns_and_in_full_at_120(library: Library) -> None:
    """What the header shows at each width, as drawn (the title widget's text), resized live."""
    from textual.widgets._header import HeaderTitle

    from mrl_tui.ui.app import HEADER_FRAME, header_line

    app = make_app(library)
    async with app.run_test(size=(80, 24)) as pilot:
        await search(pilot)
        drawn = str(app.query_one(HeaderTitle).render())
        count = f"{library.chunk_count:,} chunks"
        line = header_line(library.embedder.info, library.transform_name)
        assert drawn.endswith(f" — {line} · {count}") and len(drawn) <= 80 - HEADER_FRAME, drawn
        await pilot.resize_terminal(120, 36)
        await pilot.pause()
        drawn = str(app.query_one(HeaderTitle).render())
        assert drawn.startswith("mrl-tui · notes — ") and drawn.endswith(" at full dim"), drawn


def test_a_long_model_path_keeps_its_end_in_the_training_box() -> None:
    """The training box cuts a long model path with `fit_path` (the tables' own rule): its last
    folders behind "…/", so the model's name stays whole."""
    from mrl_tui.ui.widgets.ranking import fit_path

    path = "/tmp/cache/models/notes-all-MiniLM-L6-v2-191b57db63-20261203-011028"
    assert fit_path(path, "", 80) == path
    assert fit_path(path, "", 60) == "…/models/notes-all-MiniLM-L6-v2-191b57db63-20261203-011028"
    assert fit_path(path, "", 55) == "…/notes-all-MiniLM-L6-v2-191b57db63-20261203-011028"
    assert len(fit_path(path, "", 40)) <= 40


async def test_switching_models_clears_the_old_models_results(library: Library) -> None:
    """While another model's index is on its way, the old model's hits, preview, times and route
    are not left on screen under the new model's header."""
    from mrl_tui.ui.widgets.panels import LatencyPanel, RouterPanel, StoragePanel
    from mrl_tui.ui.widgets.preview import Preview

    app = make_app(library, auto_router=True)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await search(pilot)
        left, right = (
            screen.query_one("#left", RankingPane),
            screen.query_one("#right", RankingPane),
        )
        assert table_rows(left)[0] and table_rows(right)[0]
        assert str(left.border_title).startswith("at dim ")
        await screen.model_switching()
        await pilot.pause()
        assert table_rows(left) == ([], []) and table_rows(right) == ([], [])
        assert (str(left.border_title), str(right.border_title)) == ("at dim", "reference")
        body = str(screen.query_one(Preview).query_one("#preview-body").render())
        assert body == "Select a hit to see it here."
        numbers = str(screen.query_one(LatencyPanel).query_one(".numbers").render())
        assert numbers == "no query yet"
        legend = str(screen.query_one(LatencyPanel).query_one(".legend").render())
        assert legend == "search times: measured with the next query"
        assert str(screen.query_one("#agreement").render()) == ""
        storage = screen.query_one(StoragePanel).storage
        assert storage is not None and storage.agreement == {} and storage.current is None
        assert "shared with full –" in str(
            screen.query_one(StoragePanel).query_one(".numbers").render()
        )
        router = str(screen.query_one(RouterPanel).render())
        assert router == "auto: the next query is routed", router
