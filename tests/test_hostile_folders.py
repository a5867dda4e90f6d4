"""Hostile folders: links out of the folder, special files, damaged files and odd names.

Each case asserts the outcome: the rest of the folder is indexed, the bad file is a skip with its
reason, nothing from outside the folder reaches the index, nothing blocks, and the folder itself
is left untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import write_files
from fakes import HashEmbedder

from mrl_tui.core.cache import indexer
from mrl_tui.core.cache.indexer import IndexReport, update_index
from mrl_tui.core.cache.store import IndexStore
from mrl_tui.core.corpus import readers
from mrl_tui.core.corpus.chunking import ChunkSettings
from mrl_tui.core.corpus.readers import ReadError, UnreadableError, read_bytes

SETTINGS = ChunkSettings(max_tokens=64, overlap_tokens=8)
STORE_SETTINGS: dict[str, object] = {"model": "hash", "max_tokens": 64, "overlap_tokens": 8}
BAD_NAME = b"bad\xff name.md"  # not valid UTF-8
posix_only = pytest.mark.skipif(os.name != "posix", reason="symlinks, FIFOs and byte names")


def _store(tmp_path: Path) -> IndexStore:
    return IndexStore(tmp_path / "cache", STORE_SETTINGS, dim=HashEmbedder.full_dim)


def _index(tmp_path: Path, root: Path, **kwargs: object) -> tuple[IndexStore, IndexReport]:
    store = _store(tmp_path)
    return store, update_index(store, root, HashEmbedder(), SETTINGS, **kwargs)  # type: ignore[arg-type]


def _all_text(store: IndexStore) -> str:
    ids, _ = store.load_vectors()
    return "\n".join(c.text for c in store.chunks(ids))


def _reasons(report: IndexReport) -> dict[str, str]:
    return {s.path: s.reason for s in report.skipped}


def _tree_hash(root: Path) -> str:
    """Names, kinds, sizes, mtimes and contents of everything under root, links not followed."""
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(os.fsencode(root))):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(folder, name)
            st = os.lstat(path)
            digest.update(b"%s %o %d %d\n" % (path, st.st_mode, st.st_size, st.st_mtime_ns))
            if os.path.islink(path):
                digest.update(os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as fh:
                    digest.update(fh.read())
    return digest.hexdigest()


@posix_only
def test_links_out_of_the_folder_are_skipped_and_nothing_outside_is_read(
    tmp_path: Path,
) -> None:
    outside = write_files(tmp_path / "outside", {"secret.txt": "OUTSIDE_SENTINEL shadow\n"})
    root = write_files(tmp_path / "root", {"a.md": "# A\n\ninside text\n", "in/b.md": "bee\n"})
    os.symlink(outside, root / "e")  # a folder outside
    os.symlink(outside / "secret.txt", root / "s.txt")  # a file outside
    os.symlink("../../outside/secret.txt", root / "in" / "rel.txt")  # relative, up and out
    os.symlink(root / "a.md", root / "in" / "alias.md")  # inside: followed
    os.symlink("/proc/self/status", root / "proc.txt")  # a /proc file: size 0, outside anyway
    before = _tree_hash(root)
    store, report = _index(tmp_path, root)
    assert set(store.files()) == {"a.md", "in/b.md", "in/alias.md"}
    outside_reason = "link leads outside the folder"
    assert _reasons(report) == {
        "e": outside_reason,
        "s.txt": outside_reason,
        "in/rel.txt": outside_reason,
        "proc.txt": outside_reason,
    }
    assert "OUTSIDE_SENTINEL" not in _all_text(store) and "inside text" in _all_text(store)
    assert _tree_hash(root) == before


@posix_only
def test_a_link_swapped_in_after_the_walk_is_refused_at_read_time(tmp_path: Path) -> None:
    outside = write_files(tmp_path / "outside", {"secret.md": "OUTSIDE_SENTINEL\n"})
    root = write_files(tmp_path / "root", {"note.md": "inside\n"})
    (root / "note.md").unlink()
    os.symlink(outside / "secret.md", root / "note.md")
    with pytest.raises(UnreadableError, match="link leads outside the folder"):
        read_bytes(root, "note.md", 1024)


def test_reads_are_capped_by_bytes_read_not_by_the_reported_size() -> None:
    status = Path("/proc/self/status")
    if not status.is_file() or status.stat().st_size != 0:
        pytest.skip("needs a /proc file that reports size 0")
    with pytest.raises(ReadError, match=r"too large \(over"):
        read_bytes(Path("/proc/self"), "status", 64)  # st_size says 0; it holds more than 64
    assert b"Name:" in read_bytes(Path("/proc/self"), "status", 1 << 20)


@posix_only
def test_fifos_are_skipped_and_never_block(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {"ok.md": "fine\n"})
    os.mkfifo(root / "pipe.md")
    os.symlink(root / "pipe.md", root / "to_pipe.txt")
    results: list[object] = []

    def run() -> None:
        try:
            read_bytes(root, "pipe.md", 1024)  # as if the walk had seen a regular file there
        except ReadError as exc:
            results.append(exc)
        results.append(_index(tmp_path, root)[1])

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "reading a FIFO blocked"
    refused, report = results
    assert isinstance(refused, UnreadableError) and str(refused) == "not a regular file"
    assert isinstance(report, IndexReport) and report.files_changed == 1
    assert _reasons(report) == {
        "pipe.md": "not a regular file",
        "to_pipe.txt": "not a regular file",
    }


def _damaged_folder(root: Path) -> Path:
    cell = {"cell_type": "markdown", "metadata": {}, "source": ["# Kept cell\n", "good text"]}
    write_files(
        root,
        {
            "good.md": "# Good\n\nthe rest of the folder\n",
            "five.ipynb": json.dumps({"cells": [{"cell_type": "code", "source": 5}, cell]}),
            "null.ipynb": json.dumps({"cells": [{"cell_type": "markdown", "source": None}]}),
            "deep.ipynb": "[" * 200_000 + "]" * 200_000,
            "deep.json": "[" * 200_000 + "]" * 200_000,
            "page.html": "<p>visible html</p>",
        },
    )
    (root / "wide.txt").write_bytes("UTF-16 text with a BOM: naïve\n".encode("utf-16"))
    (root / "blob.txt").write_bytes(b"\x00\x01binary")
    return root


def test_one_bad_file_never_aborts_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _damaged_folder(tmp_path / "root")

    def broken_html(text: str) -> tuple[str, list[int]]:
        raise RuntimeError("a reader bug")

    monkeypatch.setattr(readers, "html_to_text", broken_html)  # any failure at all
    store, report = _index(tmp_path, root)
    assert _reasons(report) == {
        "deep.ipynb": "not a valid notebook: nested too deeply",
        "blob.txt": "binary",
        "page.html": "could not be read (RuntimeError: a reader bug)",
    }
    # deep.json is code: its text is indexed as is; the notebooks keep what they can.
    assert set(store.files()) == {"good.md", "five.ipynb", "null.ipynb", "deep.json", "wide.txt"}
    text = _all_text(store)
    assert "the rest of the folder" in text and "good text" in text
    assert "UTF-16 text with a BOM: naïve" in text  # decoded, not "binary"


@posix_only
def test_names_that_are_not_utf8_are_indexed_and_stored_losslessly(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {"plain.md": "plain\n"})
    with open(os.path.join(os.fsencode(root), BAD_NAME), "wb") as fh:
        fh.write(b"# Odd name\n\ncontent of the odd file\n")
    _, report = _index(tmp_path, root)
    assert report.skipped == [] and report.files_changed == 2
    reopened = _store(tmp_path)  # from the database, not from memory
    (odd,) = [p for p in reopened.files() if p != "plain.md"]
    assert os.fsencode(odd) == BAD_NAME
    ids, _ = reopened.load_vectors()
    chunk = next(c for c in reopened.chunks(ids) if "odd file" in c.text)
    assert os.fsencode(chunk.path) == BAD_NAME and (root / chunk.path).read_bytes().startswith(b"#")
    again = update_index(reopened, root, HashEmbedder(), SETTINGS)
    assert again.files_changed == 0 and again.files_removed == 0  # found unchanged, by its bytes


def test_a_file_over_the_chunk_cap_is_skipped_whole(tmp_path: Path) -> None:
    root = write_files(
        tmp_path / "root",
        {"one_line.js": " ".join(f"w{i}" for i in range(5000)), "small.md": "small\n"},
    )
    store, report = _index(tmp_path, root, max_chunks_per_file=20)
    assert _reasons(report) == {"one_line.js": "too many chunks (over 20)"}
    assert set(store.files()) == {"small.md"}


def test_reopening_an_unchanged_folder_reads_no_file_and_keeps_the_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _damaged_folder(tmp_path / "root")
    store, first = _index(tmp_path, root)
    generation = store.generation
    reads: list[str] = []
    real_read = indexer.read_bytes
    monkeypatch.setattr(
        indexer, "read_bytes", lambda r, rel, n: reads.append(rel) or real_read(r, rel, n)
    )
    again = update_index(store, root, HashEmbedder(), SETTINGS)
    assert reads == []  # skipped files too: their reasons are remembered while unchanged
    assert again.skipped == first.skipped and again.files_changed == 0
    assert store.generation == generation
    os.utime(root / "good.md", ns=(1, 1))  # touched, same content: read, nothing to rebuild
    touched = update_index(store, root, HashEmbedder(), SETTINGS)
    assert reads == ["good.md"] and touched.files_changed == 0
    assert store.generation == generation
    (root / "blob.txt").write_text("now it is text\n")  # a skipped file that changed is read
    fixed = update_index(store, root, HashEmbedder(), SETTINGS)
    assert "blob.txt" in store.files() and "blob.txt" not in _reasons(fixed)


def test_a_file_that_turns_unreadable_loses_its_old_chunks(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {"a.md": "OLD_CONTENT here\n", "b.md": "b\n"})
    store, _ = _index(tmp_path, root)
    (root / "a.md").write_bytes(b"\x00binary now")
    report = update_index(store, root, HashEmbedder(), SETTINGS)
    assert _reasons(report) == {"a.md": "binary"}
    assert "OLD_CONTENT" not in _all_text(store) and set(store.files()) == {"b.md"}


# The real CLI in a child process (real stdout, real exit code), with the hash stand-in for the
# model so it costs well under a second of model time.
_DRIVER = """
import sys
sys.path.insert(0, sys.argv[1])
from fakes import HashEmbedder
from mrl_tui.core.embedding.choice import ModelChoice

ModelChoice.load = lambda self, **kwargs: HashEmbedder(native_mrl=True)
from mrl_tui.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # stdout as on a desktop's UTF-8 locale (strict; the C.UTF-8 locale would escape instead)
    env = {**os.environ, "COLUMNS": "200", "PYTHONIOENCODING": "utf-8:strict"}
    tests = str(Path(__file__).resolve().parent)
    return subprocess.run(
        [sys.executable, "-c", _DRIVER, tests, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=120,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )


@posix_only
def test_cli_on_a_hostile_folder_exits_0_without_a_traceback(tmp_path: Path) -> None:
    root = _damaged_folder(tmp_path / "root")
    with open(os.path.join(os.fsencode(root), BAD_NAME), "wb") as fh:
        fh.write(b"odd name content\n")
    os.symlink("/etc", root / "etc")
    before = _tree_hash(root)

    index = _cli("index", str(root), "--json")
    assert index.returncode == 0 and "Traceback" not in index.stderr, index.stderr
    summary = json.loads(index.stdout)
    skipped = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert skipped["etc"] == "link leads outside the folder" and skipped["blob.txt"] == "binary"

    table = _cli("search", str(root), "odd name content", "--k", "20")
    assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr
    assert "bad\ufffd name.md" in table.stdout  # shown, with U+FFFD for the byte that is not UTF-8

    found = _cli("search", str(root), "odd name content", "--k", "20", "--json")
    assert found.returncode == 0 and "Traceback" not in found.stderr, found.stderr
    paths = {hit["path"] for hit in json.loads(found.stdout)["results"]}
    assert BAD_NAME in {os.fsencode(p) for p in paths}  # lossless through JSON
    assert _tree_hash(root) == before
