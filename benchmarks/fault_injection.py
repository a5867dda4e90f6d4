"""Kill -9 the CLI at random moments, then check the cache converges on a clean index.

Each trial runs `mrl-tui index` or `mrl-tui search` (through a small driver that swaps the model
for a fast deterministic embedder, so the model is not the cost) on a folder and kills it after a
random delay; the next trial goes on from whatever the kill left. Before each trial a fifth of
the folder's files are rewritten (now and then one removed and one added), so every run has work
to be killed in: embedding, commits, the vector snapshot, the PCA and the HNSW graph. At the end
one run must finish cleanly, and its database (files, chunks, vectors) and search results must
equal a clean index of the final folder, with no stray temporary files. A trial fails on a
traceback, a non-zero exit of a run that was not killed, or a folder changed by a run. Prints
one line per trial, then trials and failures.

    python benchmarks/fault_injection.py --trials 30
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from fakes import WORDS, write_corpus  # noqa: E402

DRIVER = """
import os, sys
sys.path[:0] = [{repo!r}, {tests!r}]
from fakes import LIBRARY_DIM, HashEmbedder
import mrl_tui.core.cache.artifacts as artifacts
import mrl_tui.core.cache.indexer as indexer
import mrl_tui.core.library as library_module
from mrl_tui.core.embedding.choice import ModelChoice
ModelChoice.load = lambda self, **k: HashEmbedder(LIBRARY_DIM, delay_s={delay})
library_module.HNSW_MIN_CHUNKS = 50  # graphs are written (and killed) too
indexer.COMMIT_EVERY_CHUNKS = 8
if os.environ.get("PRUNE_NOW"):
    artifacts.STALE_TEMP_S = 0.0
from mrl_tui import cli
sys.exit(cli.main(sys.argv[1:]))
"""
QUERY = "river bridge harbour"


def folder_digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        sha.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            sha.update(path.read_bytes())
    return sha.hexdigest()


def database_state(cache: Path) -> tuple[list[tuple], list[tuple]]:
    [db] = cache.glob("*/index.db")
    with sqlite3.connect(db) as connection:
        files = connection.execute("SELECT path, size, sha256 FROM files ORDER BY path").fetchall()
        chunks = connection.execute(
            "SELECT path, start_line, end_line, heading, text, vector FROM chunks "
            "ORDER BY path, start_line, end_line"
        ).fetchall()
    connection.close()
    return files, chunks


def change_folder(folder: Path, rng: random.Random, trial: int) -> None:
    """Rewrite a fifth of the notes; now and then remove one and add another."""
    notes = sorted((folder / "notes").iterdir())
    for path in rng.sample(notes, max(1, len(notes) // 5)):
        words = " ".join(rng.choice(WORDS) for _ in range(120))
        path.write_text(f"# Rewritten in trial {trial}\n\n{words}\n", encoding="utf-8")
    if trial % 7 == 0:
        rng.choice(notes).unlink()
        (folder / f"notes/new{trial}.md").write_text(f"# New {trial}\n\nsail river\n")


def run(driver: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(driver), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def search_results(driver: Path, folder: Path, cache: Path, env: dict[str, str]) -> list:
    args = ["search", str(folder), QUERY, "--cache-dir", str(cache), "--dim", "96", "--json"]
    done = run(driver, args, env)
    if done.returncode != 0 or "Traceback" in done.stderr:
        raise SystemExit(f"search failed: rc {done.returncode}\n{done.stderr}")
    return [
        (r["path"], r["start_line"], round(r["score"], 4))
        for r in json.loads(done.stdout)["results"]
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds per embedded batch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="mrl-fault-"))
    folder = write_corpus(work / "folder", files=args.files, paragraphs=3)
    driver = work / "driver.py"
    driver.write_text(
        DRIVER.format(repo=str(REPO), tests=str(REPO / "tests"), delay=args.delay), encoding="utf-8"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cache = work / "cache"

    started = time.perf_counter()
    timing = run(driver, ["search", str(folder), QUERY, "--cache-dir", str(work / "timing")], env)
    full_run = time.perf_counter() - started
    assert timing.returncode == 0, timing.stderr
    print(f"a full index + search takes {full_run:.2f} s; kills fall in 0..{1.2 * full_run:.2f} s")

    failures = 0
    killed = 0
    for trial in range(1, args.trials + 1):
        change_folder(folder, rng, trial)  # so every run has work to be killed in
        command = rng.choice(["index", "search"])
        argv = [command, str(folder), *([QUERY] if command == "search" else [])]
        argv += ["--cache-dir", str(cache)]
        before = folder_digest(folder)
        process = subprocess.Popen(
            [sys.executable, str(driver), *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        delay = rng.uniform(0, 1.2 * full_run)
        try:
            process.wait(delay)
            was_killed = False
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            was_killed = True
        killed += was_killed
        err = process.stderr.read() if process.stderr else ""
        problems = []
        if "Traceback" in err:
            problems.append("traceback")
        if not was_killed and process.returncode != 0:
            problems.append(f"exit {process.returncode}: {err.strip()[-200:]}")
        if folder_digest(folder) != before:
            problems.append("the folder changed")
        failures += bool(problems)
        what = "killed" if was_killed else f"exit {process.returncode}"
        verdict = "; ".join(problems) or "ok"
        print(f"trial {trial:3d}: {command:6s} {what:8s} after {delay:5.2f} s  {verdict}")

    # One run to the end must converge on a clean index of the final folder.
    final = search_results(driver, folder, cache, {**env, "PRUNE_NOW": "1"})
    clean = search_results(driver, folder, work / "clean", env)
    converged = database_state(cache) == database_state(work / "clean") and final == clean
    temps = [p.name for p in cache.glob("*/.*.tmp")]
    if not converged:
        failures += 1
        print("FAILED: the cache after the kills differs from a clean index")
    if temps:
        failures += 1
        print(f"FAILED: temporary files left: {temps}")
    print(
        f"trials: {args.trials}, killed: {killed}, finished: {args.trials - killed}, "
        f"converged on a clean index: {converged}, stray temp files: {len(temps)}, "
        f"failures: {failures}  ({time.perf_counter() - started:.0f} s, work dir {work})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
