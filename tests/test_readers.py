from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mrl_tui.core.corpus.readers import (
    PAGE_MARKER,
    ReadError,
    decode_text,
    document_kind,
    page_marker,
    read_document,
)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("notes.md", "markdown"),
        ("deep/dir/NOTES.MARKDOWN", "markdown"),
        ("a.txt", "text"),
        ("README", "text"),
        ("LICENSE", "text"),
        ("guide.rst", "rst"),
        ("app.py", "code"),
        ("x.tsx", "code"),
        ("main.rs", "code"),
        ("conf.yaml", "code"),
        ("Makefile", "code"),
        ("Dockerfile", "code"),
        ("page.HTML", "html"),
        ("page.htm", "html"),
        ("analysis.ipynb", "notebook"),
        ("paper.pdf", "pdf"),
        ("photo.png", None),
        ("archive.tar.gz", None),
        ("random_name", None),
    ],
)
def test_document_kind(name: str, kind: str | None) -> None:
    assert document_kind(name) == kind
    assert document_kind(Path(name)) == kind


def test_plain_files_normalise_line_endings_and_bom(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_bytes(b"\xef\xbb\xbf# Title\r\n\r\nBody\rold mac\n")
    doc = read_document(tmp_path, "a.md")
    assert doc.kind == "markdown"
    assert doc.path == "a.md"
    assert doc.text == "# Title\n\nBody\nold mac\n"
    assert doc.line_map is None
    assert doc.original_line(2) == 3


def test_non_utf8_text_is_decoded_not_dropped(tmp_path: Path) -> None:
    (tmp_path / "cp.txt").write_bytes("café “quoted” – 5 €\n".encode("cp1252"))
    assert read_document(tmp_path, "cp.txt").text == "café “quoted” – 5 €\n"
    # 0x81 is undefined in cp1252, so this falls through to latin-1, which never fails.
    (tmp_path / "latin.txt").write_bytes(b"na\xefve \x81\n")
    assert read_document(tmp_path, "latin.txt").text == "na\xefve \x81\n"
    assert decode_text("ünïcode ✓".encode()) == "ünïcode ✓"


def test_binary_is_told_by_an_early_nul_except_for_utf16_and_32_text(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_bytes(b"header\x00\x01\x02binary")
    with pytest.raises(ReadError, match=r"^binary$"):
        read_document(tmp_path, "data.txt")
    (tmp_path / "late_nul.txt").write_bytes(b"a" * 9000 + b"\x00")  # after the first 8 KB
    assert read_document(tmp_path, "late_nul.txt").text.startswith("aaa")
    for encoding in ("utf-16", "utf-16-be", "utf-32", "utf-32-be"):
        bom = "\ufeff" if encoding.endswith("-be") else ""  # the plain codecs write their own
        (tmp_path / "wide.md").write_bytes((bom + "# Größe\r\nnaïve ✓\n").encode(encoding))
        assert read_document(tmp_path, "wide.md").text == "# Größe\nnaïve ✓\n", encoding


def test_missing_and_unsupported_files_raise_read_error(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="unreadable"):
        read_document(tmp_path, "gone.md")
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(ReadError, match="unsupported type"):
        read_document(tmp_path, "x.png")


HTML = """<!DOCTYPE html>
<html>
<head>
  <title>Bread notes</title>
  <style>body { color: red; }</style>
  <script>
    var secret = "do not index";
  </script>
</head>
<body>
  <h1>Sourdough &amp; rye</h1>
  <p>Feed the starter
     twice a day.</p><p>Same line, new paragraph.</p>
  <!-- a comment that is not visible -->
  <ul><li>flour</li><li>water</li></ul>
  <noscript>enable js</noscript>
</body>
</html>
"""


def test_html_keeps_visible_text_with_original_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(HTML)
    doc = read_document(tmp_path, "page.html")
    assert doc.kind == "html"
    for hidden in ("secret", "color", "comment", "enable js", "<p>"):
        assert hidden not in doc.text
    text_lines = doc.text.split("\n")
    assert doc.line_map is not None and len(doc.line_map) == len(text_lines)
    source = HTML.split("\n")
    expected = {
        "Bread notes": 4,
        "Sourdough & rye": 11,
        "Feed the starter": 12,
        "twice a day.": 13,
        "Same line, new paragraph.": 13,
        "flour": 15,
        "water": 15,
    }
    for text, line in expected.items():
        i = text_lines.index(text)
        assert doc.line_map[i] == line
        assert text.replace("&", "&amp;") in source[line - 1]
    # Block boundaries become blank lines so the chunker sees paragraphs.
    assert text_lines[text_lines.index("twice a day.") + 1] == ""


def _notebook() -> dict:
    return {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Analysis\n", "\n", "Intro."]},
            {
                "cell_type": "code",
                "execution_count": 1,
                "metadata": {},
                "outputs": [{"name": "stdout", "output_type": "stream", "text": ["OUTPUT\n"]}],
                "source": ["# a comment\n", "x = 1\n", "print(x)"],
            },
            {"cell_type": "raw", "metadata": {}, "source": ["raw cell"]},
            {"cell_type": "code", "metadata": {}, "outputs": [], "source": "y = 'single string'"},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def test_notebook_reads_cells_and_maps_lines_to_the_json(tmp_path: Path) -> None:
    raw = json.dumps(_notebook(), indent=1, ensure_ascii=False) + "\n"
    (tmp_path / "nb.ipynb").write_text(raw)
    doc = read_document(tmp_path, "nb.ipynb")
    assert doc.kind == "notebook"
    assert "OUTPUT" not in doc.text and "raw cell" not in doc.text
    assert doc.text == (
        "# Analysis\n\nIntro.\n\n```\n# a comment\nx = 1\nprint(x)\n```\n\n"
        "```\ny = 'single string'\n```"
    )
    raw_lines = raw.split("\n")
    assert doc.line_map is not None
    for i, line in enumerate(doc.text.split("\n")):
        json_line = raw_lines[doc.line_map[i] - 1]
        if line.strip() and line != "```":
            assert json.dumps(line)[1:-1] in json_line, (line, json_line)
    # A source saved as one string maps to its "source" line.
    single = doc.text.split("\n").index("y = 'single string'")
    assert raw_lines[doc.line_map[single] - 1].strip().startswith('"source"')


def test_invalid_notebook_raises_read_error(tmp_path: Path) -> None:
    (tmp_path / "bad.ipynb").write_text("{not json")
    with pytest.raises(ReadError, match="not a valid notebook"):
        read_document(tmp_path, "bad.ipynb")
    (tmp_path / "list.ipynb").write_text("[1, 2]")
    with pytest.raises(ReadError, match="not a valid notebook"):
        read_document(tmp_path, "list.ipynb")


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: one Helvetica text line per entry, one page per list."""
    page_ids = [4 + 2 * i for i in range(len(pages))]
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for page_id, lines in zip(page_ids, pages, strict=True):
        shows = " ".join(f"({line}) Tj 0 -16 Td" for line in lines)
        stream = f"BT /F1 12 Tf 72 720 Td {shows} ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {page_id + 1} 0 R"
            " /Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return out


def test_pdf_text_with_page_markers(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    (tmp_path / "paper.pdf").write_bytes(make_pdf([["Hello PDF world", "second line"], ["Two"]]))
    doc = read_document(tmp_path, "paper.pdf")
    assert doc.kind == "pdf" and doc.line_map is None
    lines = doc.text.split("\n")
    assert lines[0] == page_marker(1) == f"{PAGE_MARKER}page 1"
    assert lines[1:3] == ["Hello PDF world", "second line"]
    assert page_marker(2) in lines
    assert lines[lines.index(page_marker(2)) + 1] == "Two"


def test_damaged_pdf_raises_read_error(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    with pytest.raises(ReadError, match="PDF"):
        read_document(tmp_path, "bad.pdf")


def test_pdf_without_pypdf_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "paper.pdf").write_bytes(make_pdf([["x"]]))
    monkeypatch.setitem(sys.modules, "pypdf", None)  # makes `import pypdf` fail
    with pytest.raises(ReadError, match=r"pip install 'mrl-tui\[pdf\]'"):
        read_document(tmp_path, "paper.pdf")
