"""Walk a folder and decide which files to index.

Read-only: nothing here writes to disk. Every file that is not indexed is either silently
left out (hidden or ignored, like git would) or reported as a `Skipped` entry with a short
reason; nothing here raises for a bad file, only for a bad root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from mrl_tui.core.errors import InputError
from mrl_tui.core.readers import document_kind

DEFAULT_MAX_FILE_BYTES: int = 4 * 1024 * 1024
BINARY_SNIFF_BYTES: int = 8192
IGNORE_FILES: tuple[str, ...] = (".gitignore", ".ignore")  # later files win on conflicts


@dataclass(frozen=True)
class Skipped:
    path: str  # relative to root, posix separators
    reason: str  # short, human: "binary", "too large (5.2 MB)", "symlink loop", ...


@dataclass
class WalkResult:
    root: Path  # resolved absolute root
    files: list[str] = field(default_factory=list)  # relative posix paths to read, sorted
    skipped: list[Skipped] = field(default_factory=list)


# (folder the ignore file sits in, relative to root, "" for the root; its compiled rules)
_Rules = tuple[tuple[str, pathspec.GitIgnoreSpec], ...]
_DirKey = tuple[int, int]  # (st_dev, st_ino): identifies a real folder however it is reached


@dataclass(frozen=True)
class _Dir:
    path: str  # absolute path as reached (may run through symlinks)
    rel: str  # relative posix path from root, "" for the root
    rules: _Rules
    chain: tuple[_DirKey, ...]  # real identities of this folder and its ancestors


def walk_folder(root: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> WalkResult:
    """List the indexable files under `root`, and every file that was skipped and why."""
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise InputError(f"Folder not found: {root}")
    if not root_path.is_dir():
        raise InputError(f"Not a folder: {root}")
    root_path = root_path.resolve()
    try:
        root_key = _key(os.stat(root_path))
    except OSError as e:
        raise InputError(f"Cannot read folder {root}: {e.strerror}") from e

    result = WalkResult(root=root_path)
    visited: set[_DirKey] = {root_key}
    stack = [_Dir(str(root_path), "", (), (root_key,))]
    # Symlinked folders wait until every real folder is walked, so a link never "claims" a
    # folder before the folder itself is reached by its real path.
    links: list[tuple[os.DirEntry[str], _Dir]] = []
    while stack or links:
        if stack:
            _walk_dir(stack.pop(), result, stack, links, visited, max_file_bytes)
            continue
        entry, parent = links.pop(0)
        _follow_link(entry, parent, result, stack, visited)

    result.files.sort()
    result.skipped.sort(key=lambda s: s.path)
    return result


def _walk_dir(
    d: _Dir,
    result: WalkResult,
    stack: list[_Dir],
    links: list[tuple[os.DirEntry[str], _Dir]],
    visited: set[_DirKey],
    max_file_bytes: int,
) -> None:
    try:
        with os.scandir(d.path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        if not d.rel:
            raise InputError(f"Cannot read folder {d.path}: {e.strerror}") from e
        result.skipped.append(Skipped(d.rel, _unreadable(e)))
        return

    rules = d.rules
    spec = _read_ignore_rules(d.path, {e.name for e in entries})
    if spec is not None:
        rules = (*rules, (d.rel, spec))

    for entry in entries:
        if entry.name.startswith("."):
            continue
        rel = f"{d.rel}/{entry.name}" if d.rel else entry.name
        try:
            is_dir = entry.is_dir()
            if _is_ignored(rules, rel, is_dir):
                continue
            if is_dir:
                if entry.is_symlink():
                    links.append((entry, _Dir(entry.path, rel, rules, d.chain)))
                    continue
                key = _key(entry.stat())
                visited.add(key)
                stack.append(_Dir(entry.path, rel, rules, (*d.chain, key)))
                continue
            reason = _file_problem(entry, max_file_bytes)
        except OSError as e:
            reason = _unreadable(e)
        if reason is None:
            result.files.append(rel)
        else:
            result.skipped.append(Skipped(rel, reason))


def _follow_link(
    entry: os.DirEntry[str],
    d: _Dir,
    result: WalkResult,
    stack: list[_Dir],
    visited: set[_DirKey],
) -> None:
    try:
        key = _key(entry.stat())
    except OSError as e:
        result.skipped.append(Skipped(d.rel, _unreadable(e)))
        return
    if key in d.chain:
        result.skipped.append(Skipped(d.rel, "symlink loop"))
    elif key in visited:
        result.skipped.append(Skipped(d.rel, "symlink to a folder already walked"))
    else:
        visited.add(key)
        stack.append(_Dir(d.path, d.rel, d.rules, (*d.chain, key)))


def _file_problem(entry: os.DirEntry[str], max_file_bytes: int) -> str | None:
    """Why this file can't be indexed, or None if it can. May raise OSError."""
    if not entry.is_file():
        if entry.is_symlink() and not os.path.exists(entry.path):
            return "broken symlink"
        return "not a regular file"
    kind = document_kind(entry.name)
    if kind is None:
        return "unsupported type"
    size = entry.stat().st_size
    if size > max_file_bytes:
        return f"too large ({size / (1024 * 1024):.1f} MB)"
    if kind != "pdf":  # PDFs are binary by nature; pypdf reads them
        with open(entry.path, "rb") as f:
            if b"\0" in f.read(BINARY_SNIFF_BYTES):
                return "binary"
    return None


def _read_ignore_rules(folder: str, names: set[str]) -> pathspec.GitIgnoreSpec | None:
    lines: list[str] = []
    for name in IGNORE_FILES:
        if name not in names:
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                lines.extend(f.read().splitlines())
        except OSError:
            continue  # an unreadable ignore file ignores nothing
    if not lines:
        return None
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except ValueError:  # like git, drop the invalid lines ("!", a trailing "\\") and keep the rest
        return pathspec.GitIgnoreSpec.from_lines([line for line in lines if _valid_rule(line)])


def _valid_rule(line: str) -> bool:
    try:
        pathspec.GitIgnoreSpec.from_lines([line])
    except ValueError:
        return False
    return True


def _is_ignored(rules: _Rules, rel: str, is_dir: bool) -> bool:
    """Git semantics: the deepest ignore file with a matching rule decides; within a file the
    last matching rule wins, and a `!` rule re-includes."""
    for base, spec in reversed(rules):
        sub = rel[len(base) + 1 :] if base else rel
        if is_dir:
            sub += "/"
        for pattern in reversed(spec.patterns):
            if pattern.include is not None and pattern.match_file(sub) is not None:
                return pattern.include
    return False


def _key(st: os.stat_result) -> _DirKey:
    return (st.st_dev, st.st_ino)


def _unreadable(e: OSError) -> str:
    return f"unreadable: {e.strerror or e}"
