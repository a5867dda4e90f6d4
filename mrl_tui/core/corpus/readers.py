"""Turn a file into plain text plus a map back to the file's own line numbers.

Text comes back with "\\n" line endings. `Document.line_map` exists for formats whose text is
extracted (HTML, notebooks) so a search hit can still point at the right line of the file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from mrl_tui.core.errors import MrlError


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


PAGE_MARKER: str = "\f"  # a PDF page's text starts with the line PAGE_MARKER + "page N"
DEFAULT_MAX_FILE_BYTES: int = 4 * 1024 * 1024
BINARY_SNIFF_BYTES: int = 8192
# UTF-16/32 byte order marks, longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_WIDE_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# Never follow a final symlink (the path is already resolved), never wait on a FIFO or device.
_OPEN_FLAGS: int = os.O_RDONLY
for _flag in ("O_NONBLOCK", "O_NOFOLLOW", "O_NOCTTY", "O_CLOEXEC", "O_BINARY"):
    _OPEN_FLAGS |= getattr(os, _flag, 0)

_SUFFIX_KINDS: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    ".ipynb": "notebook",
    ".pdf": "pdf",
}
_CODE_SUFFIXES: frozenset[str] = _words(
    ".py .pyi .js .mjs .cjs .ts .tsx .jsx .go .rs .java .kt .kts .scala .c .h .cc .cpp .cxx .hpp"
    " .hh .cs .rb .php .swift .m .mm .lua .pl .pm .r .jl .dart .ex .exs .erl .hs .ml .sh .bash"
    " .zsh .fish .ps1 .sql .toml .yaml .yml .json .ini .cfg .conf .css .scss .sass .less .vue"
    " .svelte .proto .graphql .tf .xml"
)
# Extension-less files people expect to find: exact names, compared case-insensitively.
_TEXT_NAMES: frozenset[str] = _words(
    "readme license licence copying authors contributors changelog changes history notice todo"
    " install"
)
_CODE_NAMES: frozenset[str] = _words(
    "makefile gnumakefile dockerfile containerfile jenkinsfile vagrantfile gemfile rakefile"
    " procfile justfile"
)


@dataclass(frozen=True)
class Document:
    path: str  # relative posix path
    kind: str  # "markdown" | "text" | "rst" | "code" | "html" | "notebook" | "pdf"
    text: str  # extracted text, "\n" line endings
    # line_map[i] is the 1-based line in the ORIGINAL file for text line i+1; None = identity
    line_map: list[int] | None = None

    def original_line(self, index: int) -> int:
        """The original file's 1-based line number for 0-based text line `index`."""
        if self.line_map is None:
            return index + 1
        if not self.line_map:
            return 1
        return self.line_map[min(index, len(self.line_map) - 1)]


class ReadError(MrlError):
    """One file could not be read; the indexer records it as a skip with str(e) as reason."""


class UnreadableError(ReadError):
    """The file could not be opened or read this time (permissions, not a regular file, would
    block), as opposed to content that cannot be parsed: worth trying again on the next run."""


def document_kind(path: str | Path) -> str | None:
    """The kind of document a file name suggests, or None when it is not supported."""
    name = os.path.basename(os.fspath(path)).lower()  # string ops: called for every file walked
    suffix = os.path.splitext(name)[1]
    if suffix in _SUFFIX_KINDS:
        return _SUFFIX_KINDS[suffix]
    if suffix in _CODE_SUFFIXES:
        return "code"
    if name in _TEXT_NAMES:
        return "text"
    if name in _CODE_NAMES:
        return "code"
    return None


def read_document(
    root: Path, rel_path: str, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> Document:
    """Read `root / rel_path` into a Document. Raises ReadError for any per-file failure."""
    if document_kind(rel_path) is None:
        raise ReadError("unsupported type")
    return parse_document(rel_path, read_bytes(root, rel_path, max_bytes))


def parse_document(rel_path: str, data: bytes) -> Document:
    """A file's bytes as a Document. Raises ReadError for content that cannot be read; any other
    exception here (a reader's bug, a RecursionError) is for the caller to turn into a skip."""
    kind = document_kind(rel_path)
    if kind is None:
        raise ReadError("unsupported type")
    if kind == "pdf":  # PDFs are binary by nature; pypdf reads them
        return Document(rel_path, kind, _read_pdf(data))
    if is_binary(data):
        raise ReadError("binary")
    text = decode_text(data)
    if kind == "html":
        text, line_map = html_to_text(text)
        return Document(rel_path, kind, text, line_map)
    if kind == "notebook":
        text, line_map = notebook_to_text(text)
        return Document(rel_path, kind, text, line_map)
    return Document(rel_path, kind, text)


def read_bytes(root: Path, rel_path: str, max_bytes: int) -> bytes:
    """The bytes of a regular file under `root`, read without blocking and never more than
    `max_bytes` (+1 to tell): sizes are not trusted, /proc files report 0.

    The path is resolved first and must stay under `root` (a symlink may point anywhere).
    """
    real = os.path.realpath(os.path.join(root, rel_path))
    if not is_within(real, os.path.realpath(root)):
        raise UnreadableError("link leads outside the folder")
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as e:
        raise UnreadableError(unreadable(e)) from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnreadableError("not a regular file")
        blocks: list[bytes] = []
        total = 0
        while total <= max_bytes:
            block = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not block:
                break
            blocks.append(block)
            total += len(block)
    except BlockingIOError as e:
        raise UnreadableError("would block") from e
    except OSError as e:
        raise UnreadableError(unreadable(e)) from e
    finally:
        os.close(fd)
    if total > max_bytes:
        raise ReadError(f"too large (over {max_bytes / (1024 * 1024):.1f} MB)")
    return b"".join(blocks)


def is_within(path: str, root: str) -> bool:
    """Whether absolute `path` is `root` or lies under it (both already resolved)."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


def unreadable(e: OSError) -> str:
    return f"unreadable: {e.strerror or e}"


def is_binary(data: bytes) -> bool:
    """A NUL byte early on means binary, unless a byte order mark says UTF-16/32 text."""
    if any(data.startswith(bom) for bom, _ in _WIDE_BOMS):
        return False
    return b"\0" in data[:BINARY_SNIFF_BYTES]


def decode_text(data: bytes) -> str:
    """Bytes to text: by the byte order mark when there is one (UTF-8/16/32), else UTF-8, else
    cp1252, else latin-1 (which never fails), so a file in an old encoding is still indexed
    rather than dropped. Line endings become "\\n"."""
    wide = next((enc for bom, enc in _WIDE_BOMS if data.startswith(bom)), None)
    if wide is not None:
        text = data.decode(wide, errors="replace")  # the codec reads and drops the mark
        return text.replace("\r\n", "\n").replace("\r", "\n")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for encoding in ("utf-8", "cp1252"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- HTML -------------------------------------------------------------------------------------

_INVISIBLE_TAGS: frozenset[str] = frozenset({"script", "style", "noscript", "template"})
_BLOCK_TAGS: frozenset[str] = _words(
    "address article aside blockquote br dd div dl dt fieldset figcaption figure footer form h1"
    " h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tbody td tfoot th thead title"
    " tr ul"
)


class _VisibleText(HTMLParser):
    """Collects visible text as (original line, text) lines, with blank lines between blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[list[str]] = []  # pieces of each output line
        self.line_map: list[int] = []
        self.hidden_depth = 0
        self.block_break = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE_TAGS:
            self.hidden_depth += 1
        elif tag in _BLOCK_TAGS:
            self.block_break = True

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE_TAGS:
            self.hidden_depth = max(0, self.hidden_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.block_break = True

    def handle_data(self, data: str) -> None:
        if self.hidden_depth or not data.strip():
            return
        first_line = self.getpos()[0]
        for offset, piece in enumerate(data.split("\n")):
            if not piece.strip():
                continue
            line = first_line + offset
            if self.block_break and self.lines:
                self.lines.append([])
                self.line_map.append(line)
            if self.block_break or not self.lines or self.line_map[-1] != line:
                self.lines.append([])
                self.line_map.append(line)
            self.block_break = False
            self.lines[-1].append(piece)


def html_to_text(html: str) -> tuple[str, list[int]]:
    """Visible text of an HTML page (no script/style), one output line per source line."""
    parser = _VisibleText()
    try:
        parser.feed(html)
        parser.close()
    except Exception as e:  # html.parser is lenient, but older versions assert on odd markup
        raise ReadError(f"could not parse HTML: {e}") from e
    lines = [" ".join("".join(pieces).split()) for pieces in parser.lines]
    return "\n".join(lines), parser.line_map


# --- Jupyter notebooks ------------------------------------------------------------------------


def notebook_to_text(raw: str) -> tuple[str, list[int]]:
    """Markdown and code cell sources (no outputs), code fenced so it reads as Markdown.

    Each text line maps to the JSON line holding that source string when it can be found
    (nbformat writes one string per line), else to the cell's "source" line.
    """
    try:
        nb = json.loads(raw)
    except ValueError as e:
        raise ReadError(f"not a valid notebook: {e}") from e
    except RecursionError as e:  # nested deeper than the parser's stack
        raise ReadError("not a valid notebook: nested too deeply") from e
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise ReadError("not a valid notebook: no list of cells")

    raw_lines = raw.split("\n")
    cursor = 0  # raw line index; cells and their sources appear in file order
    out: list[str] = []
    line_map: list[int] = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        source_line = _find_line(raw_lines, cursor, ('"source"',), -1)
        if source_line >= 0:
            cursor = source_line + 1
        parts = _source_parts(cell.get("source"))
        if cell.get("cell_type") not in ("markdown", "code") or not "".join(parts).strip():
            continue
        cell_line = source_line + 1 if source_line >= 0 else (line_map[-1] if line_map else 1)
        fenced = cell["cell_type"] == "code"
        if out:
            out.append("")
            line_map.append(cell_line)
        if fenced:
            out.append("```")
            line_map.append(cell_line)
        cell_lines = [""]
        cell_map = [cell_line]
        for part in parts:
            encodings = (json.dumps(part, ensure_ascii=False), json.dumps(part))
            found = _find_line(raw_lines, cursor, encodings, -1)
            if found >= 0:
                cursor = found + 1
            line_no = found + 1 if found >= 0 else cell_line
            pieces = part.split("\n")
            if not cell_lines[-1]:  # this part is what fills the line
                cell_map[-1] = line_no
            cell_lines[-1] += pieces[0]
            cell_lines.extend(pieces[1:])
            cell_map.extend([line_no] * (len(pieces) - 1))
        if len(cell_lines) > 1 and not cell_lines[-1]:
            cell_lines.pop()
            cell_map.pop()
        out.extend(cell_lines)
        line_map.extend(cell_map)
        if fenced:
            out.append("```")
            line_map.append(cell_map[-1])
    return "\n".join(out), line_map


def _source_parts(source: object) -> list[str]:
    """A cell's source as nbformat allows it (a string or a list of strings); anything else a
    damaged notebook holds there (a number, null, nested lists) counts as no text."""
    if isinstance(source, str):
        return [source]
    if isinstance(source, list):
        return [part for part in source if isinstance(part, str)]
    return []


def _find_line(lines: list[str], start: int, starts: tuple[str, ...], default: int) -> int:
    """Index of the first line at or after `start` whose stripped text begins with one of
    `starts`, or `default`."""
    for i in range(start, len(lines)):
        stripped = lines[i].lstrip()
        if stripped.startswith(starts):
            return i
    return default


# --- PDF --------------------------------------------------------------------------------------


def page_marker(page: int) -> str:
    return f"{PAGE_MARKER}page {page}"


def _read_pdf(data: bytes) -> str:
    try:
        import pypdf
    except ImportError as e:
        raise ReadError("PDF support needs the pdf extra: pip install 'mrl-tui[pdf]'") from e
    # pypdf warns through logging about harmless oddities; unhandled, those reach stderr.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ReadError("encrypted PDF")
        lines: list[str] = []
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").replace("\0", "")
            lines.append(page_marker(number))
            lines.extend(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    except ReadError:
        raise
    except OSError as e:
        raise ReadError(f"unreadable: {e.strerror or e}") from e
    except Exception as e:  # pypdf raises many kinds of errors for damaged files
        raise ReadError(f"unreadable PDF: {e}") from e
    return "\n".join(lines)
