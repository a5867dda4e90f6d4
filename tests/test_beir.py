"""Reading BEIR folders and queries.tsv: both qrels flavours, and one clear error per bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrl_tui.core.errors import InputError
from mrl_tui.core.evaluation.beir import load_beir, read_folder_queries, read_qrels


def write_beir(root: Path, docs: dict, queries: dict, qrels: str) -> Path:
    """A BEIR folder: docs {id: (title, text)}, queries {id: text}, qrels as the file's text."""
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for doc_id, (title, text) in docs.items():
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for query_id, text in queries.items():
            fh.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return root


@pytest.mark.parametrize("header", ["query-id\tcorpus-id\tscore\n", ""])
def test_qrels_with_and_without_a_header(tmp_path: Path, header: str) -> None:
    path = tmp_path / "test.tsv"
    path.write_text(header + "q1\td1\t2\nq1\td2\t0\nq2 d3 1\n", encoding="utf-8")
    assert read_qrels(path) == {"q1": {"d1": 2.0, "d2": 0.0}, "q2": {"d3": 1.0}}


def test_a_bad_qrels_line_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("q1\td1\t1\nq1\td2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"test.tsv:2"):
        read_qrels(path)


def test_load_beir_keeps_judged_queries_and_joins_title_and_text(tmp_path: Path) -> None:
    data = load_beir(
        write_beir(
            tmp_path / "set",
            {"d1": ("Mars", "The red planet."), "d2": ("", " Bread dough. ")},
            {"q1": "planet", "q2": "bread", "q3": "unjudged"},
            "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0\n",
        )
    )
    assert data.name == "set"
    assert data.doc_ids == ["d1", "d2"]
    assert data.doc_texts == ["Mars The red planet.", "Bread dough."]
    assert data.queries == {"q1": "planet"}  # q2 has only a grade-0 judgement, q3 none
    assert data.qrels == {"q1": {"d1": 1.0}}


def test_missing_files_and_no_judged_query_are_input_errors(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "set", {"d1": ("", "x")}, {"q1": "x"}, "q1\td1\t0\n")
    with pytest.raises(InputError, match=r"no query .* relevant judgement"):
        load_beir(root)
    (root / "qrels" / "test.tsv").unlink()
    with pytest.raises(InputError, match=r"missing qrels/test.tsv"):
        load_beir(root)
    with pytest.raises(InputError, match="no such folder"):
        load_beir(tmp_path / "nope")


def test_folder_queries(tmp_path: Path) -> None:
    (tmp_path / "queries.tsv").write_text(
        "query\trelevant_file\nred planet\tspace/mars.md\n\nbread\tcooking/bread.md\n"
    )
    assert read_folder_queries(tmp_path) == [
        ("red planet", "space/mars.md"),
        ("bread", "cooking/bread.md"),
    ]
    (tmp_path / "queries.tsv").write_text("query\trelevant_file\nonly a query\n")
    with pytest.raises(InputError, match="expected"):
        read_folder_queries(tmp_path)
    with pytest.raises(InputError, match=r"no queries\.tsv"):
        read_folder_queries(tmp_path / "elsewhere")
