"""Split a Document into chunks that fit the embedding model.

A document is first cut into sections (by headings, or PDF pages) and each section into
units (paragraphs, fenced code blocks, blank-line blocks). Units are packed greedily into
chunks of at most `max_tokens` tokens; a unit too big for one chunk is split by lines, and a
line too big by words. A chunk's text is always a contiguous slice of the document's text
(whole lines, or part of one over-long line), so its line range shows exactly what it holds.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mrl_tui.core.corpus.readers import PAGE_MARKER, Document
from mrl_tui.core.errors import InputError


@dataclass(frozen=True)
class Chunk:
    path: str
    start_line: int  # 1-based, inclusive, in the ORIGINAL file (via line_map)
    end_line: int  # inclusive
    heading: str  # heading trail, e.g. "Sourdough > Feeding schedule"; "page 3" for PDFs
    text: str  # the chunk text exactly as embedded (without the heading trail)


@dataclass(frozen=True)
class ChunkSettings:
    max_tokens: int = 256
    overlap_tokens: int = 32

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InputError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.overlap_tokens < 0:
            raise InputError(f"overlap_tokens must not be negative, got {self.overlap_tokens}")


def chunk_document(
    doc: Document,
    count_tokens: Callable[[str], int],
    settings: ChunkSettings,
    *,
    limit: int | None = None,
) -> list[Chunk]:
    """Chunks of `doc`, in document order, none over `settings.max_tokens` tokens; at most
    `limit` of them (the first ones), so a caller can stop a huge file early."""
    lines = doc.text.split("\n")
    segment = _SEGMENTERS.get(doc.kind, _text_sections)
    sections = segment(lines)
    packer = _Packer(lines, count_tokens, settings)
    chunks: list[Chunk] = []
    carried: list[_Unit] = []
    for index, section in enumerate(sections):
        units = carried + section.units
        carried = []
        following = sections[index + 1] if index + 1 < len(sections) else None
        if not section.has_body and following is not None and following.depth > section.depth:
            # A title with nothing under it but subsections: fold it into the first subsection.
            carried = units
            continue
        for first, last, text in packer.pack(units):
            if not text.strip():
                continue
            start, end = doc.original_line(first), doc.original_line(last)
            chunks.append(Chunk(doc.path, min(start, end), max(start, end), section.heading, text))
            if limit is not None and len(chunks) >= limit:
                return chunks
    return chunks


# --- sections and units -----------------------------------------------------------------------

_Unit = tuple[int, int]  # first and last line (0-based, inclusive), never blank at either end


@dataclass
class _Section:
    heading: str
    depth: int = 0  # heading level nesting; 0 for the part before any heading
    units: list[_Unit] = field(default_factory=list)
    has_body: bool = False  # False while the section holds nothing but its own title


class _Builder:
    """Collects units into sections while a segmenter scans lines top to bottom."""

    def __init__(self) -> None:
        self.sections = [_Section("")]
        self.trail: list[tuple[int, str]] = []  # (level, title) of the open headings
        self.first: int | None = None  # first line of the open block
        self.last = 0

    def line(self, i: int) -> None:
        """Line i belongs to the open block (or starts one)."""
        if self.first is None:
            self.first = i
        self.last = i

    def end_block(self) -> None:
        if self.first is not None:
            self.sections[-1].units.append((self.first, self.last))
            self.sections[-1].has_body = True
            self.first = None

    def unit(self, first: int, last: int) -> None:
        """Lines first..last form one unit on their own (a fenced block, front matter)."""
        self.end_block()
        self.sections[-1].units.append((first, last))
        self.sections[-1].has_body = True

    def heading(self, level: int, title: str, first: int | None, last: int) -> None:
        """Start a new section; its title lines (if any) become its first unit."""
        self.end_block()
        while self.trail and self.trail[-1][0] >= level:
            self.trail.pop()
        self.trail.append((level, title))
        heading = " > ".join(t for _, t in self.trail if t)
        units = [(first, last)] if first is not None else []
        self.sections.append(_Section(heading, len(self.trail), units))

    def done(self) -> list[_Section]:
        self.end_block()
        return self.sections


def _text_sections(lines: list[str]) -> list[_Section]:
    """Blank-line blocks, no headings: plain text, HTML text, anything unknown."""
    b = _Builder()
    for i, line in enumerate(lines):
        if line.strip():
            b.line(i)
        else:
            b.end_block()
    return b.done()


# A top-level definition in common languages; only matched at column 0.
_TOP_LEVEL_DEF = re.compile(
    r"(?:export\s+)?(?:default\s+)?(?:pub(?:\([\w:]+\))?\s+)?(?:async\s+)?"
    r"(?:def|class|func|fn|function|interface|struct|enum|impl|trait|module|type)\b"
)


def _code_sections(lines: list[str]) -> list[_Section]:
    """Blank-line blocks, also cut before top-level def/class lines (and their decorators)."""
    b = _Builder()
    previous = ""
    for i, line in enumerate(lines):
        if not line.strip():
            b.end_block()
        else:
            starts_def = line.startswith("@") or _TOP_LEVEL_DEF.match(line) is not None
            if starts_def and not previous.startswith("@"):
                b.end_block()
            b.line(i)
        previous = line
    return b.done()


_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d+[.)])\s")


def _markdown_sections(lines: list[str]) -> list[_Section]:
    """ATX and (one-line) setext headings open sections; fenced code blocks stay whole."""
    b = _Builder()
    n = len(lines)
    i = 0
    if n and lines[0].strip() == "---":  # YAML front matter is one unit, not a setext heading
        end = next((j for j in range(1, n) if lines[j].strip() in ("---", "...")), None)
        if end is not None:
            b.unit(0, end)
            i = end + 1
    while i < n:
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            mark = fence.group(1)
            j = i + 1
            while j < n and not _closes_fence(lines[j], mark):
                j += 1
            b.unit(i, min(j, n - 1))
            i = j + 1
            continue
        atx = _ATX.match(line)
        if atx:
            b.heading(len(atx.group(1)), (atx.group(2) or "").strip(), i, i)
        elif not line.strip():
            b.end_block()
        elif (
            b.first is None
            and i + 1 < n
            and _SETEXT.match(lines[i + 1])
            and not _LIST_ITEM.match(line)
        ):
            level = 1 if lines[i + 1].strip().startswith("=") else 2
            b.heading(level, line.strip(), i, i + 1)
            i += 1
        else:
            b.line(i)
        i += 1
    return b.done()


def _closes_fence(line: str, mark: str) -> bool:
    s = line.strip()
    return s.startswith(mark) and s == mark[0] * len(s)


def _adornment(line: str) -> str | None:
    """The character of an reStructuredText title adornment line ("=====") or None."""
    s = line.rstrip()
    if len(s) >= 3 and s[0] in string.punctuation and s == s[0] * len(s):
        return s[0]
    return None


def _rst_sections(lines: list[str]) -> list[_Section]:
    """Titles are a text line underlined (and maybe overlined) by punctuation; levels follow
    the order in which adornment styles first appear, as in docutils."""
    b = _Builder()
    styles: list[tuple[str, bool]] = []
    n = len(lines)
    i = 0
    while i < n:
        line = lines[i]
        if not line.strip():
            b.end_block()
            i += 1
            continue
        char = _adornment(line)
        if b.first is None and i + 1 < n:
            title = lines[i + 1] if char else line
            under = _adornment(lines[i + 2]) if char and i + 2 < n else _adornment(lines[i + 1])
            title_ok = bool(title.strip()) and not title[0].isspace() and not _adornment(title)
            if char and title_ok and under == char:  # overline, title, underline
                style = (char, True)
            elif not char and title_ok and under and len(lines[i + 1]) >= len(title.rstrip()):
                style = (under, False)
            else:
                style = None
            if style is not None:
                if style not in styles:
                    styles.append(style)
                last = i + 2 if style[1] else i + 1
                b.heading(styles.index(style) + 1, title.strip(), i, last)
                i = last + 1
                continue
        b.line(i)
        i += 1
    return b.done()


def _pdf_sections(lines: list[str]) -> list[_Section]:
    """One section per page; the page marker line itself is not part of any chunk."""
    b = _Builder()
    for i, line in enumerate(lines):
        if line.startswith(PAGE_MARKER):
            b.heading(1, line[len(PAGE_MARKER) :].strip(), None, i)
        elif line.strip():
            b.line(i)
        else:
            b.end_block()
    return b.done()


_SEGMENTERS: dict[str, Callable[[list[str]], list[_Section]]] = {
    "markdown": _markdown_sections,
    "notebook": _markdown_sections,  # cells are read as Markdown with fenced code
    "rst": _rst_sections,
    "code": _code_sections,
    "pdf": _pdf_sections,
}


# --- packing ----------------------------------------------------------------------------------

_Piece = tuple[int, int, str]  # first line, last line (0-based, inclusive), exact text
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class _Fragment:
    """Part of one over-long line."""

    line: int
    text: str


class _Packer:
    """Greedy packing of units into chunks that never exceed max_tokens.

    Token counts of units are summed as an estimate (exact for tokenizers that split on
    whitespace first, like WordPiece); every finished chunk is counted once more and split
    line by line if the estimate was wrong, so the limit holds for any tokenizer.
    """

    def __init__(
        self, lines: list[str], count_tokens: Callable[[str], int], settings: ChunkSettings
    ) -> None:
        self.lines = lines
        self.count = count_tokens
        self.max = settings.max_tokens
        # Overlap beyond half a chunk would make chunks mostly repeats (and slow to advance).
        self.overlap = min(settings.overlap_tokens, settings.max_tokens // 2)
        self._line_tokens: dict[int, int] = {}

    def pack(self, units: list[_Unit]) -> Iterator[_Piece]:
        first: int | None = None  # the chunk being filled
        last = 0
        tokens = 0
        exact = False  # the chunk is one piece whose count is already exact
        previous: _Unit | None = None  # the last whole-line chunk emitted, for overlap
        for piece in self._pieces(units):
            if isinstance(piece, _Fragment):  # always a chunk of its own
                if first is not None:
                    yield from self._finish(first, last, exact)
                yield piece.line, piece.line, piece.text
                first, previous = None, None
                continue
            p_first, p_last, p_tokens = piece
            if first is not None and tokens + p_tokens <= self.max:
                last, tokens, exact = p_last, tokens + p_tokens, False
                continue
            if first is not None:
                yield from self._finish(first, last, exact)
                previous = (first, last)
            first, last, tokens, exact = p_first, p_last, p_tokens, True
            if previous is not None:
                o_first, o_tokens = self._overlap_start(previous, self.max - p_tokens)
                if o_first is not None:
                    first, tokens, exact = o_first, tokens + o_tokens, False
        if first is not None:
            yield from self._finish(first, last, exact)

    def _pieces(self, units: list[_Unit]) -> Iterator[tuple[int, int, int] | _Fragment]:
        """Units as (first, last, tokens) when they fit, else their lines, else fragments."""
        for first, last in units:
            if first == last:
                tokens = self.line_tokens(first)
            elif last - first + 1 > self.max:
                tokens = self.max + 1  # every non-blank line is at least one token
            else:
                tokens = self.count(self.text(first, last))
            if tokens <= self.max:
                yield first, last, tokens
                continue
            for i in range(first, last + 1):
                if not self.lines[i].strip():
                    continue
                tokens = self.line_tokens(i)
                if tokens <= self.max:
                    yield i, i, tokens
                else:
                    yield from self._fragments(i)

    def _finish(self, first: int, last: int, exact: bool) -> Iterator[_Piece]:
        """Emit lines first..last as one chunk, after checking the real count if needed."""
        text = self.text(first, last)
        if exact or first == last or self.count(text) <= self.max:
            yield first, last, text
            return
        start: int | None = None  # the estimate was low: rebuild line by line, exactly
        end = first
        for i in range(first, last + 1):
            if not self.lines[i].strip():
                continue
            if start is not None and self.count(self.text(start, i)) > self.max:
                yield start, end, self.text(start, end)
                start = None
            if start is None and self.line_tokens(i) > self.max:
                yield from ((f.line, f.line, f.text) for f in self._fragments(i))
                continue
            if start is None:
                start = i
            end = i
        if start is not None:
            yield start, end, self.text(start, end)

    def _overlap_start(self, previous: _Unit, room: int) -> tuple[int | None, int]:
        """First line of the trailing whole lines of `previous` worth at most overlap_tokens
        (and at most `room`), with their token count; (None, 0) when not even one fits."""
        budget = min(self.overlap, room)
        start: int | None = None
        total = 0
        for i in range(previous[1], previous[0], -1):  # never the whole previous chunk
            if not self.lines[i].strip():
                continue
            tokens = self.line_tokens(i)
            if total + tokens > budget:
                break
            start, total = i, total + tokens
        return start, total

    def _fragments(self, i: int) -> Iterator[_Fragment]:
        """Split over-long line i into runs of words of at most max_tokens, overlapping by
        about overlap_tokens. Run lengths are guessed from the line's tokens per word and
        shrunk until they fit, so a fragment costs one or two counts, not one per word."""
        line = self.lines[i]
        words = [m.span() for m in _WORD.finditer(line)]
        words_per_token = len(words) / max(1, self.line_tokens(i))
        guess = max(1, int(self.max * words_per_token * 0.95))
        start = 0
        while start < len(words):
            end = min(len(words), start + guess)
            while True:
                text = line[words[start][0] : words[end - 1][1]]
                tokens = self.count(text)
                if tokens <= self.max or end == start + 1:
                    break
                end = start + max(1, min(end - start - 1, (end - start) * self.max // tokens))
            if tokens > self.max:  # one word over the limit on its own (a URL, base64)
                for part in self._split_word(text, tokens):
                    yield _Fragment(i, part)
            else:
                yield _Fragment(i, text)
            if end == len(words):
                break
            back = self.overlap * (end - start) // max(1, tokens)  # about overlap_tokens
            start = max(start + 1, end - back)

    def _split_word(self, word: str, tokens: int) -> list[str]:
        """A single word over the limit (a URL, base64) cut into character slices."""
        size = max(1, len(word) * self.max // tokens)
        parts: list[str] = []
        pos = 0
        while pos < len(word):
            part = word[pos : pos + size]
            while len(part) > 1 and self.count(part) > self.max:
                size = max(1, size // 2)
                part = word[pos : pos + size]
            parts.append(part)
            pos += len(part)
        return parts

    def line_tokens(self, i: int) -> int:
        if i not in self._line_tokens:
            self._line_tokens[i] = self.count(self.lines[i])
        return self._line_tokens[i]

    def text(self, first: int, last: int) -> str:
        return "\n".join(self.lines[first : last + 1])
