"""How long the router's calibration takes: the wait behind "calibrating the router…".

Indexes a folder once per embedding backend (into a temporary cache, outside the folder), then
times the calibration (pseudo-queries cut from the chunks, embedded in one batch, the auto funnel
chosen on them, the stop rules fitted) interleaved across backends, and prints the median.

    python benchmarks/bench_calibration.py                       # the notes sample corpus
    python benchmarks/bench_calibration.py PATH --backend torch --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=REPO / "sample_corpora" / "notes")
    parser.add_argument(
        "--backend",
        action="append",
        help="embedding backend (repeatable; default: torch and onnx-int8)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from mrl_tui.core.embedding.choice import ModelChoice
    from mrl_tui.core.library import Library

    backends = args.backend or ["torch", "onnx-int8"]
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as cache:
        libraries = {}
        for backend in backends:
            library = Library.open(
                args.folder,
                model_choice=ModelChoice(embed_backend=backend),
                cache_root=Path(cache),
            )
            library.update()
            library.load()
            libraries[backend] = library
        times: dict[str, list[float]] = {backend: [] for backend in backends}
        for _ in range(args.rounds):
            for backend, library in libraries.items():
                started = time.perf_counter()
                library._calibrate()
                times[backend].append(time.perf_counter() - started)
        chunks = next(iter(libraries.values())).chunk_count
        print(f"{args.folder.name}: {chunks} chunks; calibration, median of {args.rounds} rounds:")
        for backend, seconds in times.items():
            each = ", ".join(f"{s:.1f}" for s in seconds)
            print(f"  {backend:>10}: {statistics.median(seconds):5.1f} s  ({each})")
        for library in libraries.values():
            library.close()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
