"""Re-opening an unchanged folder: what `index` (or the first `search`) costs when nothing changed.

Builds a folder of many small Markdown files (100 files a folder, a root .gitignore with a dozen
rules) in a temporary directory, indexes it once, then re-opens and re-indexes it unchanged in a
fresh process, and prints wall times and that process's peak RSS: twice with the files' pages in
the page cache, once after dropping them (`posix_fadvise`, these files only), as a folder not read
for a while would be.

The embedder is the tests' hash stand-in (`tests/fakes.py`: deterministic vectors from each
text's sha256, 32 dims), so the model is not the cost: the figures are the walk, the fingerprint
check and the cache, which is what a re-open pays with any model (the real
model's load, ~8 s, comes on top in the CLI).

    python benchmarks/bench_reopen.py                   # 100k files
    python benchmarks/bench_reopen.py --files 20000     # a quicker run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from fakes import HashEmbedder  # noqa: E402  (the tests' stand-in; imports no mrl_tui)

GITIGNORE = (
    "node_modules/\n*.log\nbuild/\ndist/\n__pycache__/\n*.pyc\n.venv/\n*.tmp\ncoverage/\n"
    "target/\n*.swp\n/secrets.md\n"
)


def build_folder(root: Path, files: int) -> None:
    root.mkdir(parents=True)
    (root / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    for i in range(files):
        folder = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            folder.mkdir()
        (folder / f"note{i:06d}.md").write_text(
            f"# Note {i}\n\nThis is note number {i} about topic {i % 97} and item {i % 13}.\n",
            encoding="utf-8",
        )


def evict(root: Path) -> int:
    """Drop the folder's file contents from the page cache (these files only, not the system's
    caches), as after a reboot or when the folder has not been read for a while. Returns the
    number of files evicted; 0 where posix_fadvise is missing."""
    if not hasattr(os, "posix_fadvise"):
        return 0
    count = 0
    for folder, _, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fdatasync(fd)  # dirty pages cannot be dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(fd)
    return count


def child(root: Path, cache: Path) -> None:
    """One process: open the library, bring it up to date, load it; print JSON figures."""
    sys.path.insert(0, str(REPO))
    started = time.perf_counter()
    from mrl_tui.core.library import Library

    imported = time.perf_counter()
    rss_imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    library = Library(root, HashEmbedder(record=False), cache_root=cache)  # type: ignore[arg-type]
    generation = library.store.generation
    opened = time.perf_counter()
    report = library.update()
    updated = time.perf_counter()
    library.load()
    loaded = time.perf_counter()
    figures = {
        "import_s": imported - started,
        "open_s": opened - imported,
        "update_s": updated - opened,
        "load_s": loaded - updated,
        "files": report.files_seen,
        "files_changed": report.files_changed,
        "chunks": report.chunks_total,
        "generation_moved": library.store.generation != generation,
        "rss_after_import_mb": rss_imported / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    library.close()
    print(json.dumps(figures))


def run_child(root: Path, cache: Path) -> dict[str, float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(root), str(cache)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"the timed process failed:\n{proc.stderr}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["wall_s"] = time.perf_counter() - started
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    with tempfile.TemporaryDirectory(prefix="mrl-bench-reopen-") as tmp:
        root, cache = Path(tmp) / "folder", Path(tmp) / "cache"
        started = time.perf_counter()
        build_folder(root, args.files)
        print(f"built {args.files} files in {time.perf_counter() - started:.1f} s")
        first = run_child(root, cache)
        print(
            f"first index: {first['wall_s']:.1f} s wall ({first['chunks']} chunks), "
            f"peak RSS {first['peak_rss_mb']:.0f} MB"
        )
        for run in ("warm", "warm", "cold"):
            if run == "cold" and not evict(root):
                continue
            again = run_child(root, cache)
            print(
                f"re-open ({run} page cache): {again['wall_s']:.2f} s wall (process), "
                f"update {again['update_s']:.2f} s, load {again['load_s']:.2f} s, "
                f"open {again['open_s']:.2f} s, imports {again['import_s']:.2f} s; "
                f"{again['files_changed']} files changed, generation moved: "
                f"{again['generation_moved']}; peak RSS {again['peak_rss_mb']:.0f} MB "
                f"({again['rss_after_import_mb']:.0f} MB after imports)"
            )
        load = os.getloadavg()
        print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
