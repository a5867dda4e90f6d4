"""Shared by the UI tests: a tiny corpus on clearly different topics, and waiting helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

CORPUS = {
    "sourdough.md": "# Sourdough\n\nFeed the starter with flour and water twice a day; bake the "
    "loaf in a hot Dutch oven.\n",
    "mars.md": "# Mars\n\nThe red planet has two small moons, Phobos and Deimos, and Olympus Mons, "
    "the tallest volcano in the solar system.\n",
    "bikes.md": "# Bicycle chain\n\nClean and lube the chain every 300 km; replace it when a "
    "chain checker shows wear.\n",
    "budget.md": "# Budget\n\nSplit income between needs, wants and savings; automate the "
    "transfer to savings on payday.\n",
    "dns.md": "# DNS\n\nUse dig to query the resolver, check the TTL and whether the A record "
    "points at the right address.\n",
    "tomatoes.md": "# Tomatoes\n\nPrune the suckers of indeterminate tomatoes and water deeply "
    "at the base, never on the leaves.\n",
}
QUERY = "how do I feed my sourdough starter"


def write_corpus(root: Path, files: dict[str, str] = CORPUS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


async def wait_for(
    pilot: Pilot[object], condition: Callable[[], bool], timeout: float = 30
) -> None:
    """Let the app run until `condition()` holds (workers report through the event loop)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)


def screen_text(app: Any) -> str:
    """The active screen as the terminal would show it, one line per row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def shown_locations(app: Any, side: str = "#left") -> list[str]:
    """The "where" cells (path:line) of one ranking pane, top row first, as shown."""
    table = app.search_screen.query_one(side).table
    column = table.get_column_index("where")
    return [str(table.get_row_at(row)[column]) for row in range(table.row_count)]


async def submit_query(pilot: Pilot[object], text: str) -> None:
    """Put `text` in the query box (replacing what is there) and press Enter there (typing key by
    key is covered once, in test_ui's cancel test: it costs a frame a key)."""
    box = pilot.app.query_one("#query")
    box.value = text
    box.focus()
    await pilot.press("enter")
