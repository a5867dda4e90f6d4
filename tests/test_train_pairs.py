"""Training pairs cut from a corpus: kinds, de-duplication, held-out validation, BEIR corpus."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import write_files

from mrl_tui.core.corpus.chunking import ChunkSettings
from mrl_tui.core.errors import InputError
from mrl_tui.core.training.pairs import (
    MIN_PASSAGES,
    Passage,
    beir_fingerprint,
    beir_passages,
    folder_fingerprint,
    folder_passages,
    make_pairs,
    sentences,
)


def words(text: str) -> int:
    return len(text.split())


def topic_doc(i: int) -> str:
    return (
        f"# Topic {i}\n\n## Details of item {i}\n\n"
        f"Item {i} is stored in crate number {i * 7} near the north wall. "
        f"Workers check item {i} every {i + 2} days for damp and rust. "
        f"The crate for item {i} weighs {i * 3} kilograms when it is full.\n"
    )


def corpus(n: int) -> list[Passage]:
    out = []
    for i in range(n):
        body = (
            f"Passage {i} talks about subject {i} in plain words. "
            f"It adds a second sentence about number {i * 11} here. "
            f"A third sentence mentions the colour of box {i}."
        )
        out.append(Passage(f"Heading {i}\n{body}", body, f"Heading {i}"))
    return out


def test_folder_passages_are_the_indexers_chunks(tmp_path: Path) -> None:
    files = {f"docs/t{i}.md": topic_doc(i) for i in range(3)}
    files["image.png"] = "not really an image"
    root = write_files(tmp_path / "f", files)
    passages = folder_passages(root, words, ChunkSettings(max_tokens=256))
    assert len(passages) == 3
    assert {p.heading for p in passages} == {f"Topic {i} > Details of item {i}" for i in range(3)}
    for p in passages:
        assert p.text.startswith(p.heading + "\n")  # what the indexer embeds
        assert "crate number" in p.body


def test_each_kind_of_pair_is_what_it_says() -> None:
    pairs = make_pairs(corpus(40))
    by_kind = {p.kind for p in pairs.train}
    assert by_kind == {"heading", "sentence", "span"}
    for pair in pairs.train:
        passage = pairs.passages[pair.passage]
        if pair.kind == "heading":
            assert pair.query == passage.heading and pair.query not in pair.positive
        elif pair.kind == "sentence":
            assert pair.query in passage.body and pair.query not in pair.positive
        else:
            assert pair.query in " ".join(passage.body.split())
            assert pair.positive == passage.text
    assert sum(pairs.kinds.values()) == len(pairs.train)


def test_markdown_heading_line_is_not_in_the_heading_pairs_positive(tmp_path: Path) -> None:
    root = write_files(tmp_path / "f", {f"t{i}.md": topic_doc(i) for i in range(20)})
    pairs = make_pairs(folder_passages(root, words, ChunkSettings(max_tokens=256)))
    heading_pairs = [p for p in pairs.train if p.kind == "heading"]
    assert heading_pairs
    for pair in heading_pairs:
        assert "Details of item" not in pair.positive and "#" not in pair.positive


def test_first_sentence_stands_in_for_a_missing_heading() -> None:
    plain = [Passage(p.body, p.body) for p in corpus(20)]
    pairs = make_pairs(plain)
    first = [p for p in pairs.train if p.kind == "first-sentence"]
    assert first and all(p.query.startswith("Passage ") for p in first)
    assert not any(p.kind == "heading" for p in pairs.train)


def test_duplicates_count_once() -> None:
    twice = corpus(20) + corpus(20)
    pairs = make_pairs(twice)
    assert len(pairs.passages) == 20
    queries = [p.query.casefold() for p in pairs.train + pairs.validation]
    assert len(queries) == len(set(queries))


def test_validation_passages_are_never_seen_in_training() -> None:
    pairs = make_pairs(corpus(60))
    held = {p.passage for p in pairs.validation}
    assert len(held) >= 2
    assert not held & {p.passage for p in pairs.train}
    held_texts = {pairs.passages[i].body for i in held}
    assert not any(body in pair.positive for pair in pairs.train for body in held_texts)


def test_pairs_are_reproducible() -> None:
    assert make_pairs(corpus(30), seed=3).train == make_pairs(corpus(30), seed=3).train


def test_too_few_passages_say_how_many_are_needed() -> None:
    with pytest.raises(InputError, match=f"at least {MIN_PASSAGES}"):
        make_pairs(corpus(MIN_PASSAGES - 1))
    with pytest.raises(InputError, match="0 usable"):
        make_pairs([Passage("tiny", "tiny")] * 40)


def test_sentences_split_glued_and_listed_text() -> None:
    text = "The first one is here.The second one follows it.\n- a list item with words\n\nok"
    assert sentences(text) == [
        "The first one is here.",
        "The second one follows it.",
        "a list item with words",
    ]


def test_beir_passages_read_the_corpus_only(tmp_path: Path) -> None:
    beir = tmp_path / "set"
    (beir / "qrels").mkdir(parents=True)
    rows = [{"_id": str(i), "title": f"Title {i}", "text": corpus(1)[0].body} for i in range(3)]
    (beir / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    # Broken queries and judgements: reading them would fail, so this proves they are not read.
    (beir / "queries.jsonl").write_text("{not json", encoding="utf-8")
    (beir / "qrels" / "test.tsv").write_text("garbage", encoding="utf-8")
    passages = beir_passages(beir)
    assert [p.heading for p in passages] == ["Title 0", "Title 1", "Title 2"]
    assert passages[0].text == f"Title 0 {rows[0]['text']}"
    with pytest.raises(InputError, match=r"missing corpus\.jsonl"):
        beir_passages(tmp_path)


def test_fingerprints_follow_content_not_timestamps(tmp_path: Path) -> None:
    root = write_files(tmp_path / "f", {"a.md": topic_doc(1), "b.txt": "some words here"})
    first = folder_fingerprint(root)
    os.utime(root / "a.md", (1, 1))
    assert folder_fingerprint(root) == first
    (root / "b.txt").write_text("other words here", encoding="utf-8")
    assert folder_fingerprint(root) != first
    beir = write_files(tmp_path / "set", {"corpus.jsonl": '{"_id": "1", "text": "x"}\n'})
    before = beir_fingerprint(beir)
    (beir / "corpus.jsonl").write_text('{"_id": "1", "text": "y"}\n', encoding="utf-8")
    assert beir_fingerprint(beir) != before


def test_a_folder_with_a_name_that_is_not_utf8_has_a_fingerprint(tmp_path: Path) -> None:
    """The folder's names go into the hash as the bytes they are (they crashed `.encode()`)."""
    import os

    root = tmp_path / "notes"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nplain text here\n", encoding="utf-8")
    odd = os.path.join(os.fsencode(root), b"bad\xff.md")
    with open(odd, "wb") as fh:
        fh.write(b"# Bad\n\nundecodable name\n")
    first = folder_fingerprint(root)
    with open(odd, "wb") as fh:
        fh.write(b"# Bad\n\nother words now\n")
    assert folder_fingerprint(root) != first


def test_a_beir_title_is_the_query_of_a_pair_against_its_text(tmp_path: Path) -> None:
    beir = tmp_path / "set"
    beir.mkdir()
    rows = [
        {"_id": str(i), "title": f"Entity number {i}", "text": p.body}
        for i, p in enumerate(corpus(MIN_PASSAGES + 4))
    ]
    (beir / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    pairs = make_pairs(beir_passages(beir))
    titled = [p for p in pairs.train + pairs.validation if p.kind == "heading"]
    assert len(titled) == len(rows)
    for pair in titled:
        assert pair.query == rows[pair.passage]["title"]
        assert pair.positive == rows[pair.passage]["text"]


def test_a_file_name_is_the_query_of_a_pair_against_one_of_its_chunks(tmp_path: Path) -> None:
    files = {f"sourdough_feeding-{i}.txt": corpus(1)[0].body for i in range(MIN_PASSAGES)}
    files = {
        name: f"Plain text number {i} without a heading. " + body
        for i, (name, body) in enumerate(files.items())
    }
    files["2024.txt"] = "Digits only make no title at all. " + corpus(1)[0].body
    root = write_files(tmp_path / "f", files)
    passages = folder_passages(root, words, ChunkSettings(max_tokens=400))
    assert {p.title for p in passages} >= {"sourdough feeding 0", ""}
    pairs = make_pairs(passages)
    titled = [p for p in pairs.train + pairs.validation if p.kind == "title"]
    assert {p.query for p in titled} == {f"sourdough feeding {i}" for i in range(MIN_PASSAGES)}
    for pair in titled:
        assert pair.positive == pairs.passages[pair.passage].text
