"""`mrl-tui search FOLDER QUERY --json` end to end, with a server running (warm) and without (cold),
dense and `--retrieval lexical`.

Starts `mrl-tui serve FOLDER` (the real bundled model, a temporary cache and runtime dir), waits
until it listens, then times whole `python -m mrl_tui search` processes (wall time, interpreter
start-up included), `--runs` each: `mrl-tui --version` (the interpreter's start, the floor); warm
dense; warm dense while another client holds a connection open without sending (one request at a
time would wait for it); warm lexical; then cold (`--no-server`; same cache, already indexed)
dense and lexical. A cold lexical search opens the index without the model
(`core.embedding.facts`): cold dense is what it cost before, the model's load included. Checks
each warm JSON answer equals its cold one apart from timings. Target: warm ≤ 150 ms. Bytecode is
cached (`PYTHONDONTWRITEBYTECODE` is dropped): without it each process compiles mrl-tui again.

    python benchmarks/bench_serve.py [--runs 10] [--folder sample_corpora/notes] [--query TEXT]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mrl_tui import serve_client  # noqa: E402  (this checkout's copy)


def timed(command: list[str], env: dict[str, str]) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, check=True)
    elapsed = (time.perf_counter() - started) * 1000
    if not done.stdout.startswith("{"):  # the baseline: `--version`
        return elapsed, {}
    data = json.loads(done.stdout)
    del data["timings_ms"]
    return elapsed, data


def beside_idle_client(command: list[str], env: dict[str, str]) -> tuple[float, dict[str, object]]:
    """`timed(command)` while another client is connected and sends nothing (a fresh one each
    run: a server answering one request at a time would wait `REQUEST_TIMEOUT_S` for it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.connect(str(serve_client.socket_path()))
        return timed(command, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--folder", type=Path, default=REPO / "sample_corpora" / "notes")
    parser.add_argument("--query", default="how do I keep sourdough starter alive")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Path(tmp, "runtime")
        env = {
            **os.environ,
            "MRL_TUI_CACHE_DIR": str(Path(tmp, "cache")),
            "MRL_TUI_RUNTIME_DIR": str(runtime),
            "HF_HUB_OFFLINE": "1",
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as an installed package runs
        os.environ["MRL_TUI_RUNTIME_DIR"] = str(runtime)  # for `serve_client.socket_path`
        server = subprocess.Popen(
            [sys.executable, "-m", "mrl_tui", "serve", str(args.folder)],
            env=env,
            cwd=REPO,
            stderr=subprocess.DEVNULL,
        )
        try:
            started = time.perf_counter()
            while not serve_client.listening(serve_client.socket_path()):
                if server.poll() is not None:
                    raise SystemExit("the server exited before it listened")
                time.sleep(0.2)
            up = time.perf_counter() - started
            print(f"server up (model loaded, folder indexed) in {up:.1f} s")
            search = [sys.executable, "-m", "mrl_tui", "search", str(args.folder), args.query]
            search.append("--json")
            lexical = [*search, "--retrieval", "lexical"]
            runs: dict[str, list[tuple[float, dict[str, object]]]] = {}
            version = [sys.executable, "-m", "mrl_tui", "--version"]
            runs["baseline: mrl-tui --version"] = [timed(version, env) for _ in range(args.runs)]
            runs["warm dense"] = [timed(search, env) for _ in range(args.runs)]
            runs["warm dense, another client idle"] = [
                beside_idle_client(search, env) for _ in range(args.runs)
            ]
            runs["warm lexical"] = [timed(lexical, env) for _ in range(args.runs)]
            runs["cold dense"] = [timed([*search, "--no-server"], env) for _ in range(args.runs)]
            runs["cold lexical"] = [timed([*lexical, "--no-server"], env) for _ in range(args.runs)]
        finally:
            server.terminate()
            server.wait(timeout=30)
    dense = [data for name, rs in runs.items() if "dense" in name for _, data in rs]
    words = [data for name, rs in runs.items() if "lexical" in name for _, data in rs]
    same = all(d == dense[0] for d in dense) and all(d == words[0] for d in words)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    medians = {}
    for name, timings in runs.items():
        ms = [t for t, _ in timings]
        medians[name] = statistics.median(ms)
        print(
            f"{name}: median {medians[name]:.0f} ms, min {min(ms):.0f}, max {max(ms):.0f} "
            f"({len(ms)} runs)"
        )
    print(
        f"cold dense / warm dense: {medians['cold dense'] / medians['warm dense']:.0f}x; "
        f"cold dense / cold lexical: {medians['cold dense'] / medians['cold lexical']:.1f}x"
    )
    print(f"JSON identical warm and cold apart from timings: {same}; load average {load}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
