"""Training pairs cut from a corpus itself, with no labels: what `mrl-tui train` learns from.

A corpus is a list of `Passage`s: a folder's chunks (the indexer's own walk, reader and chunker),
or a BEIR set's documents (``corpus.jsonl`` only, never its queries or judgements). Each passage
gives up to three (pseudo-query, positive) pairs:

- *heading*: its heading trail (or a BEIR document's title) against its body; without one, its
  first sentence against the rest (*first-sentence*);
- *title*: for a folder's chunk, its file's name (the stem, ``_``/``-`` read as spaces) against
  the chunk, where it differs from the heading (de-duplication keeps one chunk per name);
- *sentence*: another sentence against the passage with that sentence taken out (the inverse
  cloze task: the answer must be found from its context, not by copying words);
- *span*: a run of a few words against the whole passage.

Pairs are de-duplicated by query text. Whole passages are held out for validation, so a
validation query's passage is never seen in training, as a query's or as a positive.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrl_tui.core.cache.artifacts import digest as file_digest
from mrl_tui.core.cache.indexer import embedding_text
from mrl_tui.core.corpus.chunking import ChunkSettings, chunk_document
from mrl_tui.core.corpus.readers import ReadError, read_bytes, read_document
from mrl_tui.core.corpus.walk import DEFAULT_MAX_FILE_BYTES as MAX_FILE_BYTES
from mrl_tui.core.corpus.walk import walk_folder
from mrl_tui.core.errors import InputError
from mrl_tui.core.evaluation.beir import read_corpus

MIN_PASSAGES = 16
"""Fewer distinct passages than this give too few in-batch negatives and validation queries."""
VALIDATION_SHARE = 0.1
MIN_VALIDATION_PASSAGES = 2
MAX_VALIDATION_PASSAGES = 100
MIN_WORDS = 4
"""A query or a positive needs at least this many words (a heading: at least one)."""
SPAN_WORDS = (4, 12)


@dataclass(frozen=True)
class Passage:
    text: str
    """What the model embeds as the document (heading trail, newline, body; as the indexer)."""
    body: str
    heading: str = ""
    title: str = ""
    """A folder chunk's file name as words (``sourdough_feeding.md`` → "sourdough feeding")."""


@dataclass(frozen=True)
class Pair:
    query: str
    positive: str
    passage: int
    """Index of the passage the pair was cut from, in `PairSet.passages`."""
    kind: str  # "heading" | "first-sentence" | "title" | "sentence" | "span"


@dataclass
class PairSet:
    passages: list[Passage]
    train: list[Pair]
    validation: list[Pair]
    """Queries whose relevant document is `passages[pair.passage]` (the whole passage)."""
    kinds: dict[str, int] = field(default_factory=dict)
    """Training pairs of each kind."""


# -- corpora -----------------------------------------------------------------------------------


def folder_passages(
    root: Path, count_tokens: Callable[[str], int], settings: ChunkSettings
) -> list[Passage]:
    """The chunks the indexer would make of `root` (same walk, readers and chunker)."""
    walked = walk_folder(root)
    passages = []
    for rel in walked.files:
        try:
            document = read_document(walked.root, rel)
        except ReadError:
            continue
        title = file_title(rel)
        for chunk in chunk_document(document, count_tokens, settings):
            passages.append(Passage(embedding_text(chunk), chunk.text, chunk.heading, title))
    return passages


_NAME_SEPARATORS = re.compile(r"[_\-.+]+")


def file_title(rel: str) -> str:
    """A file's name as a query: its stem with separators read as spaces ("" if no letters)."""
    words = " ".join(_NAME_SEPARATORS.sub(" ", Path(rel).stem).split())
    return words if any(ch.isalpha() for ch in words) else ""


def beir_passages(folder: Path) -> list[Passage]:
    """A BEIR set's documents, as `beir.load_beir` writes them (title + " " + text); the title is
    the heading. Only ``corpus.jsonl`` is read."""
    passages = []
    for row in read_corpus(folder):
        title, text = str(row.get("title") or "").strip(), str(row["text"] or "").strip()
        passages.append(Passage(f"{title} {text}".strip(), text, title))
    return passages


def folder_fingerprint(root: Path) -> str:
    """A hash of every indexable file's path and content: unchanged folder, unchanged hash."""
    walked = walk_folder(root)
    digest = hashlib.sha256()
    for rel in walked.files:
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\x00")  # names need not be UTF-8
        try:  # the indexer's own safe read: bounded, non-blocking, never outside the folder
            digest.update(hashlib.sha256(read_bytes(walked.root, rel, MAX_FILE_BYTES)).digest())
        except ReadError:
            digest.update(b"unreadable")
    return digest.hexdigest()


def beir_fingerprint(folder: Path) -> str:
    return file_digest(Path(folder) / "corpus.jsonl")


# -- pairs -------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[a-z][.!?])(?=[A-Z])|\n\s*\n|\n(?=\s*[-*#>|\d])")
_MARKUP = re.compile(r"^[\s#>*\-+|`]+|[\s|`]+$")


def sentences(text: str) -> list[str]:
    """Sentences and list items of `text`, markup stripped at their ends, short ones dropped."""
    out = []
    for part in _SENTENCE_END.split(text):
        clean = " ".join(_MARKUP.sub("", part).split())
        if len(clean.split()) >= MIN_WORDS:
            out.append(clean)
    return out


def passage_pairs(passage: Passage, index: int, rng: np.random.Generator) -> list[Pair]:
    """Up to three pairs from one passage; none where the passage is too short to split."""
    pairs = []
    heading = " ".join(passage.heading.split())
    # A markdown chunk repeats its heading as a line of its body: the heading pair would be a copy.
    titles = {_key(part) for part in heading.split(" > ")}
    lines = [line for line in passage.body.split("\n") if _key(_MARKUP.sub("", line)) not in titles]
    body = " ".join(" ".join(lines).split())
    said = sentences("\n".join(lines))
    if heading and len(body.split()) >= MIN_WORDS:
        pairs.append(Pair(heading, body, index, "heading"))
    elif len(said) >= 2:
        pairs.append(Pair(said[0], " ".join(said[1:]), index, "first-sentence"))
    title = " ".join(passage.title.split())
    if title and _key(title) not in titles and len(passage.body.split()) >= MIN_WORDS:
        pairs.append(Pair(title, passage.text, index, "title"))
    if len(said) >= 3:
        pick = int(rng.integers(1, len(said)))
        rest = " ".join(s for i, s in enumerate(said) if i != pick)
        pairs.append(Pair(said[pick], f"{heading}\n{rest}" if heading else rest, index, "sentence"))
    words = body.split()
    if len(words) >= 2 * SPAN_WORDS[0]:
        size = int(rng.integers(SPAN_WORDS[0], min(SPAN_WORDS[1], len(words) // 2) + 1))
        start = int(rng.integers(0, len(words) - size + 1))
        pairs.append(Pair(" ".join(words[start : start + size]), passage.text, index, "span"))
    return pairs


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def unique_passages(passages: Iterable[Passage]) -> list[Passage]:
    """Passages in order, each text once (copied files and repeated documents count once)."""
    seen: set[str] = set()
    out = []
    for passage in passages:
        key = _key(passage.text)
        if key and key not in seen:
            seen.add(key)
            out.append(passage)
    return out


def make_pairs(passages: Sequence[Passage], seed: int = 0) -> PairSet:
    """De-duplicated pairs of `passages`, with whole passages held out for validation.

    Raises `InputError` when there are fewer than `MIN_PASSAGES` distinct passages that give pairs.
    """
    unique = unique_passages(passages)
    rng = np.random.default_rng(seed)
    by_passage = [passage_pairs(p, i, rng) for i, p in enumerate(unique)]
    useful = [i for i, pairs in enumerate(by_passage) if pairs]
    if len(useful) < MIN_PASSAGES:
        raise InputError(
            f"too few chunks to make training pairs: {len(useful)} usable "
            f"(of {len(unique)} distinct); training needs at least {MIN_PASSAGES}"
        )
    held = round(VALIDATION_SHARE * len(useful))
    held = min(MAX_VALIDATION_PASSAGES, max(MIN_VALIDATION_PASSAGES, held))
    held_out = {int(i) for i in rng.permutation(useful)[:held]}
    train: list[Pair] = []
    validation: list[Pair] = []
    seen: set[str] = set()
    for i in useful:
        for pair in by_passage[i]:
            key = _key(pair.query)
            if key in seen or key == _key(pair.positive):
                continue
            seen.add(key)
            (validation if i in held_out else train).append(pair)
    kinds: dict[str, int] = {}
    for pair in train:
        kinds[pair.kind] = kinds.get(pair.kind, 0) + 1
    return PairSet(list(unique), train, validation, kinds)
