"""Time to the app's first frame: `mrl-tui PATH` must draw before the ML stack is loaded.

Starts a fresh Python process that imports the app, mounts it headless (Textual's test driver)
and stops at the first painted screen; the figure includes interpreter start-up and imports.
Model loading and indexing happen afterwards in a worker, so they are not part of it.

    python benchmarks/bench_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import asyncio, sys
from mrl_tui.ui.app import MrlApp

async def main() -> None:
    app = MrlApp(sys.argv[1], cache_root=sys.argv[2], autostart=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        heavy = [m for m in ("torch", "sentence_transformers") if m in sys.modules]
        print("heavy modules at first frame:", heavy or "none")

asyncio.run(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=REPO / "sample_corpora" / "notes")
    args = parser.parse_args()
    times = []
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(args.runs):
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(args.folder), cache],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            times.append(time.perf_counter() - started)
    print(out.strip())
    print(
        f"first frame: median {statistics.median(times):.2f} s over {args.runs} runs "
        f"(min {min(times):.2f}, max {max(times):.2f})"
    )


if __name__ == "__main__":
    main()
