"""Make docs/screenshot.svg: the notes sample after a query, at dim 64 under PCA against naive
truncation at 64 (`t`).

Run from anywhere: `python docs/make_screenshot.py`. It indexes `sample_corpora/notes` into a
temporary cache (a minute or so on a CPU), so it never touches your own cache.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from textual.widgets import Input

from mrl_tui.ui.app import MrlApp
from mrl_tui.ui.widgets.dim_slider import DimSlider

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "sample_corpora" / "notes"
OUT = REPO / "docs" / "screenshot.svg"
QUERY = "what to do after an injury"
SIZE = (140, 40)


async def wait_for(pilot, condition, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        await pilot.pause(0.1)


async def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        app = MrlApp(
            CORPUS, device="cpu", cache_root=Path(cache), auto_router=False, remember=False
        )
        async with app.run_test(size=SIZE) as pilot:
            screen = app.search_screen
            await wait_for(pilot, lambda: screen.library is not None or app.failed)
            screen.query_one("#query", Input).value = QUERY
            await pilot.click("#query")
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.latency_profile is not None)
            screen.query_one(DimSlider).value = 64
            await wait_for(pilot, lambda: screen.comparison is not None)
            await wait_for(pilot, lambda: screen.comparison.dim == 64)
            await pilot.press("t")  # the reference side: naive truncation at 64
            await wait_for(pilot, lambda: screen.comparison.ref_transform == "naive")
            await pilot.press("tab", "down")  # select the second hit of the left table
            await pilot.pause(0.5)
            OUT.write_text(app.export_screenshot(title="mrl-tui"), encoding="utf-8")
        if app.library is not None:
            app.library.close()
    print(f"wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    asyncio.run(main())
