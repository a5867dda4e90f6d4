"""The help screen cannot drift from the keys: every binding a user presses on the search screen
is listed, with the text its binding carries (no model needed)."""

from __future__ import annotations

from pathlib import Path

from textual.binding import Binding

from mrl_tui.ui.app import MrlApp
from mrl_tui.ui.screens.help import HelpScreen, key_name
from mrl_tui.ui.screens.search import SearchScreen
from mrl_tui.ui.widgets.dim_slider import DimSlider
from mrl_tui.ui.widgets.query_input import QueryInput
from mrl_tui.ui.widgets.ranking import RankingTable

OWNERS = (MrlApp, SearchScreen, DimSlider, QueryInput, RankingTable)


async def test_f1_lists_every_binding_of_the_app_the_screen_and_its_widgets(tmp_path: Path) -> None:
    app = MrlApp(tmp_path, device="cpu", autostart=False, remember=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        rows = list(app.screen.rows)  # (keys, help): "↑ / ↓" twice, the query box's and tables'
    helps = {what: keys for keys, what in rows}
    for owner in OWNERS:
        for binding in Binding.make_bindings(owner.BINDINGS):
            assert binding.tooltip, f"{owner.__name__}: {binding.key} has no help text"
            assert key_name(binding.key) in helps[binding.tooltip].split(" / ")
    by_keys = dict(rows)
    assert by_keys["h / H"].startswith("h: left side") and "H: reference side" in by_keys["h / H"]
    assert by_keys["m / M"] == "ten more / fewer results per side (10 to 100)"
    assert helps["query box: earlier / later queries"] == "↑ / ↓"
