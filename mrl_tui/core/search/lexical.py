"""Keyword search: SQLite FTS5 (bm25) over chunk text, heading and path, identifiers included.

FTS5's ``unicode61`` tokenizer splits ``parse_rate`` into ``parse`` and ``rate`` and folds
``parseRate`` into ``parserate``, so neither spelling would find the other. Each stored text is
therefore *expanded*: every compound identifier (``snake_case``, ``camelCase``, ``a.b.c``) adds
the parts and the joined form the tokenizer would not make by itself. The query is expanded the
same way, and every term is quoted: user text is never FTS5 syntax (``"``, ``*``, ``-``,
``NEAR``, ``:`` and ``AND`` are words or nothing, never an error).

The table lives in the index's own database (`mrl_tui.core.cache.store`), written in the same
transactions as the vectors; `MemoryIndex` is the same thing in memory, for benchmarks.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence

FTS_TABLE = "chunks_fts"
FTS_SCHEMA = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5("
    "path, heading, text, tokenize = 'unicode61 remove_diacritics 2')"
)
MAX_QUERY_TERMS = 64
"""A pasted page is searched by its first terms: bm25 over hundreds of OR terms is slow."""

_COMPOUND = re.compile(r"[^\W_][\w.]*[^\W_]")
_WORD = re.compile(r"[^\W_]+")
_COMPOUND_OR_WORD = re.compile(r"[^\W_](?:[\w.]*[^\W_])?")
_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def _words(text: str) -> list[str]:
    """What ``unicode61`` makes of `text`, near enough: runs of letters and digits, lowercased."""
    return [w.lower() for w in _WORD.findall(text)]


def _pieces(piece: str) -> list[str]:
    """camelCase parts of an ASCII run; other scripts stay whole."""
    return _PART.findall(piece) if piece.isascii() and piece.isalnum() else [piece]


def identifier_forms(token: str) -> list[str]:
    """``parseRate``, ``parse_rate``, ``parse.rate`` → ``["parse", "rate", "parserate"]``; a
    plain word gives itself."""
    parts = [p.lower() for piece in _WORD.findall(token) for p in _pieces(piece)]
    if len(parts) < 2 or token.replace(".", "").isdigit():  # a word, or a number like 3.14
        return _words(token)
    return [*parts, "".join(parts)]


def expand(text: str) -> str:
    """`text` plus the identifier forms the tokenizer would not make from it (see the module)."""
    extra: list[str] = []
    for match in _COMPOUND.finditer(text):
        token = match.group()
        made = set(_words(token))
        extra.extend(form for form in identifier_forms(token) if form not in made)
    return f"{text}\n{' '.join(extra)}" if extra else text


def query_terms(words: str) -> list[str]:
    """The distinct terms a query searches: its words and each identifier's parts and joined
    form, in order, at most `MAX_QUERY_TERMS`."""
    terms: dict[str, None] = {}
    for token in words.split():
        for match in _COMPOUND.finditer(token):
            for form in [*_words(match.group()), *identifier_forms(match.group())]:
                terms[form] = None
        for word in _words(token):
            terms[word] = None
    return list(terms)[:MAX_QUERY_TERMS]


def marked_spans(text: str, terms: Iterable[str]) -> list[tuple[int, int]]:
    """(start, end) of each word or identifier of `text` one of whose forms starts with one of
    `terms` (lowercase): ``parse`` marks ``parse_rate`` and ``parseRate`` whole."""
    wanted = tuple(terms)
    if not wanted:
        return []
    return [
        match.span()
        for match in _COMPOUND_OR_WORD.finditer(text)
        if any(form.startswith(wanted) for form in identifier_forms(match.group()))
    ]


def match_expression(words: str) -> str | None:
    """An FTS5 MATCH string: every term quoted, any of them may match (bm25 ranks). None when
    the query has no word at all (``"*"``, ``--``)."""
    terms = query_terms(words)
    if not terms:
        return None
    return " OR ".join(f'"{term}"' for term in terms)  # terms are letters and digits only


def row_values(path: str, heading: str, text: str) -> tuple[str, str, str]:
    """The three FTS columns of one chunk; the path's separators are spaces so its words match.
    A name that is not UTF-8 (surrogate escapes, as `os` gives it) is indexed with U+FFFD."""
    path = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return expand(re.sub(r"[/\\]", " ", path)), expand(heading), expand(text)


def search(db: sqlite3.Connection, words: str, limit: int | None = None) -> list[tuple[int, float]]:
    """(rowid, score) best first; the score is bm25's, sign flipped (higher is better)."""
    match = match_expression(words)
    if match is None:
        return []
    sql = (
        f"SELECT rowid, -bm25({FTS_TABLE}) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ? "
        "ORDER BY rank LIMIT ?"
    )
    rows = db.execute(sql, (match, -1 if limit is None else int(limit)))
    return [(int(r), float(s)) for r, s in rows]


def fill(db: sqlite3.Connection, rows: Iterable[tuple[int, str, str, str]]) -> None:
    """Insert (rowid, path, heading, text) rows (the caller owns the transaction)."""
    db.executemany(
        f"INSERT INTO {FTS_TABLE} (rowid, path, heading, text) VALUES (?, ?, ?, ?)",
        ((rowid, *row_values(path, heading, text)) for rowid, path, heading, text in rows),
    )


class MemoryIndex:
    """An in-memory FTS5 index of `texts` (rowid = position), for benchmarks."""

    def __init__(self, texts: Sequence[str]) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute(FTS_SCHEMA)
        with self._db:
            fill(self._db, ((i, "", "", t) for i, t in enumerate(texts)))

    def search(self, words: str, limit: int) -> list[tuple[int, float]]:
        return search(self._db, words, limit)
