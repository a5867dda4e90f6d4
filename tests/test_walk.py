from __future__ import annotations

import os
from pathlib import Path

import pytest

from mrl_tui.core.corpus.walk import Skipped, walk_folder
from mrl_tui.core.errors import InputError


def make(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def reasons(result) -> dict[str, str]:
    return {s.path: s.reason for s in result.skipped}


def test_lists_supported_files_sorted_with_posix_paths(tmp_path: Path) -> None:
    make(tmp_path, {"b/z.py": "x = 1\n", "a.md": "# A\n", "b/c/d.txt": "d\n", "README": "hi\n"})
    result = walk_folder(tmp_path)
    assert result.root == tmp_path.resolve()
    assert result.files == ["README", "a.md", "b/c/d.txt", "b/z.py"]
    assert result.skipped == []


def test_gitignore_and_ignore_files_root_and_nested(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            ".gitignore": "*.txt\n!keep.txt\nbuild/\n/only_root.md\n# comment\n\n",
            "notes.txt": "ignored\n",
            "keep.txt": "kept by negation\n",
            "only_root.md": "anchored: ignored at the root only\n",
            "build/out.md": "ignored folder\n",
            "sub/only_root.md": "not anchored here\n",
            "sub/build": "a file named build is not the build/ folder\n",
            "sub/.gitignore": "!*.txt\n/local.md\n",
            "sub/back.txt": "re-included by the nested negation\n",
            "sub/local.md": "ignored by the nested anchored rule\n",
            "sub/deeper/local.md": "anchored rule is relative to sub/\n",
            "sub/deeper/x.txt": "nested negation applies below too\n",
            "other/y.txt": "root rule still applies here\n",
            "docs/.ignore": "draft*.md\n",
            "docs/draft1.md": "ignored by .ignore\n",
            "docs/final.md": "kept\n",
        },
    )
    result = walk_folder(tmp_path)
    assert result.files == [
        "docs/final.md",
        "keep.txt",
        "sub/back.txt",
        "sub/deeper/local.md",
        "sub/deeper/x.txt",
        "sub/only_root.md",
    ]
    # Ignored files are left out silently; the extension-less "build" file is just unsupported.
    assert reasons(result) == {"sub/build": "unsupported type"}


def test_ignore_file_wins_over_gitignore_in_the_same_folder(tmp_path: Path) -> None:
    make(tmp_path, {".gitignore": "*.md\n", ".ignore": "!wanted.md\n", "wanted.md": "w\n"})
    make(tmp_path, {"other.md": "o\n"})
    assert walk_folder(tmp_path).files == ["wanted.md"]


def test_invalid_ignore_lines_are_dropped_like_git_does(tmp_path: Path) -> None:
    make(tmp_path, {".gitignore": "!\nbad\\\n*.txt\n", "a.txt": "a\n", "b.md": "b\n"})
    assert walk_folder(tmp_path).files == ["b.md"]


def test_ignored_folder_is_not_reentered_by_a_nested_negation(tmp_path: Path) -> None:
    make(tmp_path, {".gitignore": "vendor/\n", "vendor/.gitignore": "!*\n", "vendor/a.py": "a\n"})
    assert walk_folder(tmp_path).files == []


def test_hidden_files_and_folders_are_silently_left_out(tmp_path: Path) -> None:
    make(
        tmp_path,
        {".env.md": "secret\n", ".git/config.txt": "x\n", "a/.cache/b.md": "b\n", "a/c.md": "c\n"},
    )
    result = walk_folder(tmp_path)
    assert result.files == ["a/c.md"]
    assert result.skipped == []


def test_too_large_and_unsupported_are_skipped_with_reasons(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "data.txt": b"header\x00\x01\x02binary",  # binary: the reader's call, not the walk's
            "big.md": "x" * (3 * 1024 * 1024 // 2),
            "image.png": b"\x89PNG\r\n",
            "ok.md": "fine\n",
        },
    )
    os.mkfifo(tmp_path / "pipe.md")
    result = walk_folder(tmp_path, max_file_bytes=1024 * 1024)
    assert result.files == ["data.txt", "ok.md"]
    assert result.stats["ok.md"] == (5, (tmp_path / "ok.md").stat().st_mtime_ns)
    assert reasons(result) == {
        "big.md": "too large (1.5 MB)",
        "image.png": "unsupported type",
        "pipe.md": "not a regular file",
    }
    assert result.skipped == sorted(result.skipped, key=lambda s: s.path)
    assert all(isinstance(s, Skipped) for s in result.skipped)


def test_symlinks_inside_followed_outside_loops_and_duplicates_skipped(tmp_path: Path) -> None:
    root = make(tmp_path / "root", {"a.md": "a\n", "z_real/b.md": "b\n", "sub/c.md": "c\n"})
    outside = make(tmp_path / "outside", {"o.md": "o\n"})
    os.symlink(root / "a.md", root / "link.md")
    os.symlink(root, root / "sub" / "loop")  # back into an ancestor
    os.symlink(root / "z_real", root / "a_dup")  # sorts before the real folder
    os.symlink(outside, root / "ext")
    os.symlink(outside / "o.md", root / "ext.md")
    os.symlink("../../outside/o.md", root / "sub" / "relative.md")
    os.symlink(root / "missing.md", root / "broken.md")
    result = walk_folder(root)
    assert result.files == ["a.md", "link.md", "sub/c.md", "z_real/b.md"]
    assert reasons(result) == {
        "a_dup": "symlink to a folder already walked",
        "broken.md": "broken symlink",
        "ext": "link leads outside the folder",
        "ext.md": "link leads outside the folder",
        "sub/loop": "symlink loop",
        "sub/relative.md": "link leads outside the folder",
    }


def test_self_loop_inside_symlinked_folder(tmp_path: Path) -> None:
    root = make(tmp_path / "root", {"x.md": "x\n", ".hidden/o.md": "o\n"})
    os.symlink(root / ".hidden", root / ".hidden" / "again")
    os.symlink(root / ".hidden", root / "ext")  # a hidden folder, reached by a visible link
    result = walk_folder(root)
    assert result.files == ["ext/o.md", "x.md"]
    assert reasons(result) == {"ext/again": "symlink loop"}


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file_and_folder_are_skipped(tmp_path: Path) -> None:
    make(tmp_path, {"secret.md": "s\n", "locked/x.md": "x\n", "ok.md": "ok\n"})
    (tmp_path / "secret.md").chmod(0)
    (tmp_path / "locked").chmod(0)
    try:
        result = walk_folder(tmp_path)
    finally:
        (tmp_path / "secret.md").chmod(0o644)
        (tmp_path / "locked").chmod(0o755)
    assert result.files == ["ok.md"]
    assert reasons(result) == {
        "locked": "unreadable: Permission denied",
        "secret.md": "unreadable: Permission denied",
    }


def test_bad_root_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Folder not found"):
        walk_folder(tmp_path / "nope")
    (tmp_path / "f.md").write_text("x")
    with pytest.raises(InputError, match="Not a folder"):
        walk_folder(tmp_path / "f.md")


def test_walking_writes_nothing(tmp_path: Path) -> None:
    make(tmp_path, {".gitignore": "*.log\n", "a.md": "a\n", "b/c.py": "c\n", "d.bin": b"\0"})

    def snapshot() -> list[tuple[str, int, int]]:
        return sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.rglob("*"))

    before = snapshot()
    walk_folder(tmp_path)
    assert snapshot() == before


def test_many_files_walk_quickly(tmp_path: Path) -> None:
    import time

    for d in range(20):
        folder = tmp_path / f"d{d}"
        folder.mkdir()
        for f in range(100):
            (folder / f"f{f}.py").write_text("x = 1\n")
    started = time.perf_counter()
    result = walk_folder(tmp_path)
    assert len(result.files) == 2000
    assert time.perf_counter() - started < 2.0


def test_sample_codebase_skips_what_its_gitignore_and_hidden_rules_say() -> None:
    """The bundled code sample carries files that must never be indexed (sentinels inside)."""
    root = Path(__file__).resolve().parent.parent / "sample_corpora" / "codebase"
    result = walk_folder(root)
    assert "README.md" in result.files and "notebooks/demo.ipynb" in result.files
    for rel in result.files:
        assert "MRL_SENTINEL" not in (root / rel).read_text(encoding="utf-8", errors="replace")
    assert not any(f.startswith(("build/", ".cache/")) or f.endswith(".log") for f in result.files)


def test_the_walk_opens_no_file_but_the_ignore_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-opening a folder must cost a stat walk: contents are the reader's business."""
    import builtins

    make(tmp_path, {".gitignore": "*.log\n", "a.md": "a\n", "b/c.txt": "c\n", "d.txt": b"\0"})
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open
    monkeypatch.setattr(
        builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k)
    )
    monkeypatch.setattr(
        os, "open", lambda f, *a, **k: opened.append(str(f)) or real_os_open(f, *a, **k)
    )
    result = walk_folder(tmp_path)
    assert result.files == ["a.md", "b/c.txt", "d.txt"]
    assert [Path(p).name for p in opened] == [".gitignore"]
