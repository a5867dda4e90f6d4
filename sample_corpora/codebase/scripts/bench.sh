#!/usr/bin/env bash
# Micro-benchmark: how many limiter decisions per second each algorithm makes
# with in-memory storage, for a single hot key and for many distinct keys.
#
# Usage: scripts/bench.sh [number_of_hits]     (default 200000)
# Output: one line per algorithm/scenario, e.g.
#   token_bucket    hot-key     1,234,567 hits/s
set -euo pipefail

HITS="${1:-200000}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"

python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import throttlekit' 2>/dev/null; then
    echo "error: cannot import throttlekit from $ROOT/src" >&2
    exit 1
fi

echo "throttlekit $("$python_bin" -c 'import throttlekit; print(throttlekit.__version__)')," \
     "$("$python_bin" --version 2>&1), $HITS hits per run"

"$python_bin" - "$HITS" <<'PY'
import sys
import time

from throttlekit import FixedWindow, ManualClock, MemoryStorage, SlidingWindow, TokenBucket

hits = int(sys.argv[1])


def make(name, clock):
    storage = MemoryStorage(max_keys=hits + 1)
    if name == "token_bucket":
        return TokenBucket(1_000_000, 1_000_000.0, storage=storage, clock=clock)
    if name == "sliding_window":
        return SlidingWindow(1_000_000, 60.0, storage=storage, clock=clock)
    return FixedWindow(1_000_000, 60.0, storage=storage, clock=clock)


for name in ("token_bucket", "sliding_window", "fixed_window"):
    for scenario in ("hot-key", "many-keys"):
        clock = ManualClock()
        limiter = make(name, clock)
        keys = ["hot"] * hits if scenario == "hot-key" else [f"k{i}" for i in range(hits)]
        start = time.perf_counter()
        for key in keys:
            limiter.hit(key)
        elapsed = time.perf_counter() - start
        print(f"{name:<15} {scenario:<10} {hits / elapsed:>12,.0f} hits/s")
PY
