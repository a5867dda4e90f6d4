"""Walk a folder and decide which files to index.

Read-only: nothing here writes to disk, and no file is opened but the ignore files: the walk is
one stat per entry, so re-opening an unchanged folder costs no more. Every file that is not
indexed is either silently left out (hidden or ignored, like git would) or reported as a
`Skipped` entry with a short reason; nothing here raises for a bad file, only for a bad root.
A symlink is followed only when its target, resolved, stays under the root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from mrl_tui.core.corpus.readers import (
    DEFAULT_MAX_FILE_BYTES,
    ReadError,
    document_kind,
    is_within,
    read_bytes,
    unreadable,
)
from mrl_tui.core.errors import InputError

__all__ = ["DEFAULT_MAX_FILE_BYTES", "Skipped", "WalkResult", "printable", "walk_folder"]

IGNORE_FILES: tuple[str, ...] = (".gitignore", ".ignore")  # later files win on conflicts
MAX_IGNORE_FILE_BYTES: int = 1024 * 1024
OUTSIDE: str = "link leads outside the folder"


@dataclass(frozen=True)
class Skipped:
    path: str  # relative to root, posix separators
    reason: str  # short, human: "binary", "too large (5.2 MB)", "symlink loop", ...


@dataclass
class WalkResult:
    root: Path  # resolved absolute root
    files: list[str] = field(default_factory=list)  # relative posix paths to read, sorted
    skipped: list[Skipped] = field(default_factory=list)
    # (size, mtime_ns) of each file in `files`, from the walk's own stat
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)


def printable(path: str) -> str:
    """A file name fit for a terminal: bytes that are not UTF-8 (kept in `path` as surrogate
    escapes, as `os` gives them) shown as U+FFFD instead of failing to encode."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass(frozen=True)
class _Spec:
    """One ignore file's rules, last first (the last matching rule wins), and one regex that
    matches wherever any of them does: most paths match no rule, and are told so in one search
    instead of one per rule (a per-file cost that dominated re-opening a large folder)."""

    rules: tuple[pathspec.Pattern, ...]
    any_rule: re.Pattern[str] | None  # None when the rules could not be combined


_NAMED_GROUP = re.compile(r"\(\?P<\w+>")  # the same group name twice cannot be combined

# (folder the ignore file sits in, relative to root, "" for the root; its compiled rules)
_Rules = tuple[tuple[str, _Spec], ...]
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
        result.skipped.append(Skipped(d.rel, unreadable(e)))
        return

    rules = d.rules
    spec = _read_ignore_rules(result.root, d.rel, {e.name for e in entries})
    if spec is not None:
        rules = (*rules, (d.rel, _combined(spec)))

    root = str(result.root)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        rel = f"{d.rel}/{entry.name}" if d.rel else entry.name
        try:
            is_dir = entry.is_dir()
            if _is_ignored(rules, rel, is_dir):
                continue
            if entry.is_symlink() and not is_within(os.path.realpath(entry.path), root):
                result.skipped.append(Skipped(rel, OUTSIDE))
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
            if reason is None:
                st = entry.stat()  # cached by the DirEntry: the one stat of this file
                result.files.append(rel)
                result.stats[rel] = (st.st_size, st.st_mtime_ns)
                continue
        except OSError as e:
            reason = unreadable(e)
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
        result.skipped.append(Skipped(d.rel, unreadable(e)))
        return
    if key in d.chain:
        result.skipped.append(Skipped(d.rel, "symlink loop"))
    elif key in visited:
        result.skipped.append(Skipped(d.rel, "symlink to a folder already walked"))
    else:
        visited.add(key)
        stack.append(_Dir(d.path, d.rel, d.rules, (*d.chain, key)))


def _file_problem(entry: os.DirEntry[str], max_file_bytes: int) -> str | None:
    """Why this file can't be indexed, or None if it can, from its name and stat alone (the
    content, binary or not, is the reader's business). May raise OSError."""
    if not entry.is_file():
        if entry.is_symlink() and not os.path.exists(entry.path):
            return "broken symlink"
        return "not a regular file"  # a FIFO, device or socket: reading one could block
    if document_kind(entry.name) is None:
        return "unsupported type"
    size = entry.stat().st_size
    if size > max_file_bytes:
        return f"too large ({size / (1024 * 1024):.1f} MB)"
    return None


def _read_ignore_rules(root: Path, rel: str, names: set[str]) -> pathspec.GitIgnoreSpec | None:
    lines: list[str] = []
    for name in IGNORE_FILES:
        if name not in names:
            continue
        try:
            data = read_bytes(root, f"{rel}/{name}" if rel else name, MAX_IGNORE_FILE_BYTES)
        except ReadError:
            continue  # an unreadable (or oversized, or outside) ignore file ignores nothing
        lines.extend(data.decode("utf-8", errors="replace").splitlines())
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


def _combined(spec: pathspec.GitIgnoreSpec) -> _Spec:
    rules = tuple(p for p in reversed(spec.patterns) if p.include is not None)
    regexes = [getattr(p, "regex", None) for p in rules]
    any_rule = None
    if all(isinstance(r, re.Pattern) and isinstance(r.pattern, str) for r in regexes):
        alternatives = "|".join(f"(?:{_NAMED_GROUP.sub('(?:', r.pattern)})" for r in regexes)
        try:
            any_rule = re.compile(alternatives or "(?!)")
        except re.error:
            any_rule = None  # keep the exact rule-by-rule check
    return _Spec(rules, any_rule)


def _is_ignored(rules: _Rules, rel: str, is_dir: bool) -> bool:
    """Git semantics: the deepest ignore file with a matching rule decides; within a file the
    last matching rule wins, and a `!` rule re-includes."""
    for base, spec in reversed(rules):
        sub = rel[len(base) + 1 :] if base else rel
        if is_dir:
            sub += "/"
        if spec.any_rule is not None and spec.any_rule.search(sub) is None:
            continue
        for pattern in spec.rules:
            if pattern.match_file(sub) is not None:
                return bool(pattern.include)
    return False


def _key(st: os.stat_result) -> _DirKey:
    return (st.st_dev, st.st_ino)
