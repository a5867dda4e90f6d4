"""Readers for the two evaluation layouts `mrl-tui bench` accepts.

A BEIR folder holds ``corpus.jsonl`` (``{"_id", "title", "text"}``), ``queries.jsonl``
(``{"_id", "text"}``) and ``qrels/test.tsv`` (``query-id corpus-id score``, with or without a
header line). A plain folder to index holds ``queries.tsv`` (header ``query<TAB>relevant_file``)
next to the files it judges.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from mrl_tui.core.errors import InputError
from mrl_tui.core.evaluation.metrics import has_relevant

QRELS = Path("qrels") / "test.tsv"
FOLDER_QUERIES = "queries.tsv"


@dataclass(frozen=True)
class BeirSet:
    """A BEIR test set; ``queries`` holds only the queries with a relevant judgement."""

    name: str
    doc_ids: list[str]
    doc_texts: list[str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, float]]


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or any(key not in row for key in required):
                raise InputError(f"{path}:{number}: needs the keys {', '.join(required)}")
            rows.append(row)
    return rows


def read_qrels(path: Path) -> dict[str, dict[str, float]]:
    """``query-id corpus-id score`` lines, tab or space separated; an optional header line."""
    qrels: dict[str, dict[str, float]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 3:
                raise ValueError
            grade = float(parts[2])
        except ValueError:
            if number == 1:
                continue  # the header line
            raise InputError(f"{path}:{number}: expected 'query-id corpus-id score'") from None
        qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


def read_corpus(folder: Path | str) -> list[dict]:
    """The rows of a BEIR folder's ``corpus.jsonl`` (``_id``, ``text``, optional ``title``) and
    nothing else: its queries and qrels are not even opened (training must never see them)."""
    path = Path(folder).expanduser() / "corpus.jsonl"
    if not path.is_file():
        raise InputError(f"{folder}: not a BEIR folder, missing corpus.jsonl")
    rows = _read_jsonl(path, ("_id", "text"))
    if not rows:
        raise InputError(f"{path}: the corpus is empty")
    return rows


def load_beir(folder: Path | str) -> BeirSet:
    """Read a BEIR folder; missing files and a set with no judged query are `InputError`s."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"{folder}: no such folder")
    paths = [root / "corpus.jsonl", root / "queries.jsonl", root / QRELS]
    missing = [str(p.relative_to(root)) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{folder}: not a BEIR folder, missing {', '.join(missing)}")
    corpus = _read_jsonl(paths[0], ("_id", "text"))
    if not corpus:
        raise InputError(f"{paths[0]}: the corpus is empty")
    doc_ids = [str(row["_id"]) for row in corpus]
    texts = [f"{row.get('title') or ''} {row['text'] or ''}".strip() for row in corpus]
    all_queries = {
        str(row["_id"]): str(row["text"]) for row in _read_jsonl(paths[1], ("_id", "text"))
    }
    qrels = {
        q: grades
        for q, grades in read_qrels(paths[2]).items()
        if q in all_queries and has_relevant(grades)
    }
    if not qrels:
        raise InputError(f"{folder}: no query in queries.jsonl has a relevant judgement in {QRELS}")
    queries = {q: text for q, text in all_queries.items() if q in qrels}
    return BeirSet(root.resolve().name, doc_ids, texts, queries, qrels)


def read_folder_queries(folder: Path) -> list[tuple[str, str]]:
    """(query, relevant file relative to the folder) pairs from ``queries.tsv``."""
    path = Path(folder) / FOLDER_QUERIES
    if not path.is_file():
        raise InputError(
            f"{folder}: no {FOLDER_QUERIES} (tab-separated 'query<TAB>relevant_file'); "
            "for a BEIR folder use beir DIR",
            settings=("beir",),
        )
    pairs = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for row in reader:
            cells = [cell.strip() for cell in row]
            if not any(cells) or (reader.line_num == 1 and cells[:2] == ["query", "relevant_file"]):
                continue
            if len(cells) < 2 or not cells[0] or not cells[1]:
                raise InputError(f"{path}:{reader.line_num}: expected 'query<TAB>relevant_file'")
            pairs.append((cells[0], cells[1]))
    if not pairs:
        raise InputError(f"{path}: no queries")
    return pairs
