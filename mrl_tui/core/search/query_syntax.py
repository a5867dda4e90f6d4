"""What a typed query asks for: the words to embed, and an optional filter on file paths.

``path:docs/ sourdough`` searches only files under a ``docs/`` folder; ``path:*.py`` only Python
files; ``-path:tests/`` leaves a folder out. Several ``path:`` terms widen the search (any may
match); ``-path:`` terms narrow it (none may match). Quote a pattern with spaces:
``path:"my notes/"``. Matching ignores case. A pattern with ``*``, ``?`` or ``[`` is a glob over
the whole relative path (``*`` also crosses ``/``); any other pattern matches where a path
component starts: ``docs/`` matches ``docs/a.md`` and ``src/docs/b.md``, not ``mydocs/c.md``.

Pure Python, no numpy: the CLI parses a query before it loads anything.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import NamedTuple

_TERM = re.compile(r'(?<!\S)(-?)path:(?:"([^"]*)"|(\S*))', re.IGNORECASE)
_GLOB = re.compile(r"[*?\[]")


class PathFilter(NamedTuple):
    """Paths a query keeps (any of `include`, if given) and leaves out (any of `exclude`).
    A NamedTuple, not a dataclass: the warm `search` checks the query without importing
    dataclasses (and the `inspect` it pulls in)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def matches(self, path: str) -> bool:
        if self.include and not any(_match(p, path) for p in self.include):
            return False
        return not any(_match(p, path) for p in self.exclude)

    def __str__(self) -> str:
        return " ".join(
            [*(f"path:{p}" for p in self.include), *(f"-path:{p}" for p in self.exclude)]
        )


class ParsedQuery(NamedTuple):
    words: str
    """The query without its ``path:`` terms: what is embedded."""
    paths: PathFilter | None = None


def parse_query(text: str) -> ParsedQuery:
    """Split ``path:`` terms from the words. An empty pattern (``path:`` alone) is ignored."""
    include: list[str] = []
    exclude: list[str] = []
    for negated, quoted, bare in _TERM.findall(text):
        pattern = (quoted or bare).strip()
        if pattern:
            (exclude if negated else include).append(pattern)
    words = " ".join(_TERM.sub(" ", text).split())
    paths = PathFilter(tuple(include), tuple(exclude)) if include or exclude else None
    return ParsedQuery(words, paths)


def matching_rows(paths: Iterable[str], wanted: PathFilter) -> list[int]:
    """Positions in `paths` (one per index row) whose path the filter keeps; each distinct path
    is matched once."""
    verdict: dict[str, bool] = {}
    rows = []
    for row, path in enumerate(paths):
        if path not in verdict:
            verdict[path] = wanted.matches(path)
        if verdict[path]:
            rows.append(row)
    return rows


def _match(pattern: str, path: str) -> bool:
    pattern, path = pattern.lower().removeprefix("./"), path.lower()
    if _GLOB.search(pattern):
        return fnmatch.fnmatchcase(path, pattern)
    return f"/{pattern}" in f"/{path}"
