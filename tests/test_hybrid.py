"""Keyword and hybrid search: the FTS5 table follows the vectors, identifiers match, user text is
never FTS syntax, the JSON contract, and path filters in every mode."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, write_files
from fakes import LIBRARY_DIM, HashEmbedder

from mrl_tui.core.cache.store import DB_NAME, FileRecord, IndexStore
from mrl_tui.core.corpus.chunking import Chunk
from mrl_tui.core.library import Library
from mrl_tui.core.search import hybrid, lexical

FILES = {
    "src/rates.py": "def parse_rate(text):\n    return RateLimiter.fromConfig(text)\n",
    "src/clock.py": "class FakeClock:\n    def advance(self, seconds):\n        self.now += 1\n",
    "docs/guide.md": "# Guide\n\nThe sourdough starter wants flour and water twice a day.\n",
    "docs/other.md": "# Other\n\nPlanets, moons and a volcano called Olympus Mons.\n",
}
HOSTILE = ['"', '""', "*", "-", "-x", "NEAR(a b)", "a:b", "col:value", "AND", "OR NOT", "(", ")"]
HOSTILE += ["^start", "a + b", "'", "{x y}", "x*", "NEAR", "\\", "%_", "\x00", "…"]


def _keyword_ids(store: IndexStore) -> list[int]:
    return [r[0] for r in store._db.execute("SELECT rowid FROM chunks_fts ORDER BY rowid")]


def _chunk_ids(store: IndexStore) -> list[int]:
    return [r[0] for r in store._db.execute("SELECT id FROM chunks ORDER BY id")]


@pytest.fixture
def library(tmp_path: Path) -> Library:
    folder = write_files(tmp_path / "folder", FILES)
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    lib.update()
    return lib


def test_identifier_spellings_find_each_other() -> None:
    index = lexical.MemoryIndex(
        ["x = parse_rate(s)", "y = parseRate(s)", "import throttlekit.config", "nothing"]
    )
    for query in ("parse_rate", "parseRate", "parse.rate", "ParseRate"):
        assert {row for row, _ in index.search(query, 10)} == {0, 1}, query
    for query in ("throttlekit.config", "throttlekitConfig", "config"):
        assert [row for row, _ in index.search(query, 10)] == [2], query
    # the whole identifier outranks a text that has only one of its parts
    index = lexical.MemoryIndex(["rate of parse errors", "parse_rate", "rate card"])
    assert index.search("parse_rate", 10)[0][0] == 1


@pytest.mark.parametrize("query", HOSTILE)
def test_fts_syntax_in_a_query_is_never_an_error(library: Library, query: str) -> None:
    match = lexical.match_expression(query)
    assert match is None or re.fullmatch(r'"[^\W_]+"(?: OR "[^\W_]+")*', match)
    library.store.keyword_search(query)  # no sqlite3.OperationalError
    q = library.query(f"parse_rate {query}")
    for retrieval in hybrid.RETRIEVALS:
        result = library.retrieve(q, 32, 5, retrieval)
        if retrieval != "dense":
            assert result.hits and result.hits[0].chunk.path == "src/rates.py"


def test_an_interrupted_transaction_leaves_neither_vectors_nor_keywords(tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "c", {"m": 1}, 4)
    good = (FileRecord("a.py", 1, 1, "a"), [Chunk("a.py", 1, 1, "", "alpha_beta")], np.ones((1, 4)))
    store.apply(replace=[good])
    bad_vectors = np.ones((1, 3))  # the wrong shape fails after a.py's rows were written
    first = (
        FileRecord("b.py", 1, 1, "b"),
        [Chunk("b.py", 1, 1, "", "gamma_delta")],
        np.ones((1, 4)),
    )
    second = (FileRecord("c.py", 1, 1, "c"), [Chunk("c.py", 1, 1, "", "c")], bad_vectors)
    with pytest.raises(ValueError):
        store.apply(replace=[first, second])
    assert _keyword_ids(store) == _chunk_ids(store)
    assert store.keyword_search("gamma_delta") == []
    assert [cid for cid, _ in store.keyword_search("alpha_beta")] == _chunk_ids(store)


def test_a_cancelled_update_keeps_both_consistent(tmp_path: Path, monkeypatch) -> None:
    from mrl_tui.core.cache import indexer

    monkeypatch.setattr(indexer, "COMMIT_EVERY_CHUNKS", 1)
    folder = write_files(tmp_path / "f", {f"n{i}.md": f"note number{i} text" for i in range(6)})
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    report = lib.update(should_stop=lambda: lib.store.chunk_count() >= 3)
    assert report.cancelled and report.chunks_total == 3
    assert _keyword_ids(lib.store) == _chunk_ids(lib.store)
    lib.update()
    assert len(_keyword_ids(lib.store)) == 6 and _keyword_ids(lib.store) == _chunk_ids(lib.store)


def test_a_deleted_file_vanishes_from_both(library: Library) -> None:
    (library.root / "src/clock.py").unlink()
    library.update()
    assert library.store.keyword_search("FakeClock") == []
    assert _keyword_ids(library.store) == _chunk_ids(library.store)
    q = library.query("FakeClock advance")
    assert all(h.chunk.path != "src/clock.py" for h in library.retrieve(q, 32, 10, "hybrid").hits)


def test_a_corrupt_cache_is_rebuilt_with_its_keywords(library: Library, tmp_path: Path) -> None:
    directory = library.store.directory
    library.close()
    (directory / DB_NAME).write_bytes(b"this is not a database" * 100)
    for name in (f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
        (directory / name).unlink(missing_ok=True)
    again = Library(library.root, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    assert any("rebuilding" in m for m in again.messages)
    again.update()
    assert _keyword_ids(again.store) == _chunk_ids(again.store) != []
    hits = again.retrieve(again.query("FakeClock"), 32, 3, "lexical").hits
    assert hits[0].chunk.path == "src/clock.py"


def test_a_cache_from_before_the_keyword_index_gets_one_on_open(
    library: Library, tmp_path: Path
) -> None:
    directory = library.store.directory
    library.close()
    with sqlite3.connect(directory / DB_NAME) as db:
        db.execute("DROP TRIGGER chunks_fts_delete")
        db.execute("DROP TABLE chunks_fts")
    embedder = HashEmbedder(LIBRARY_DIM)
    again = Library(library.root, embedder, cache_root=tmp_path / "cache")
    assert [m for m in again.messages if m.startswith("building the keyword index")]
    assert again.update().chunks_embedded == 0 and embedder.embedded == []  # no re-embedding
    assert _keyword_ids(again.store) == _chunk_ids(again.store) != []
    assert again.retrieve(again.query("sourdough"), 32, 1, "lexical").hits[0].chunk.path == (
        "docs/guide.md"
    )


def test_path_filters_hold_in_every_mode(library: Library) -> None:
    for retrieval in hybrid.RETRIEVALS:
        result = library.retrieve(
            library.query("path:docs/ parse_rate sourdough"), 32, 10, retrieval
        )
        assert result.hits and {h.chunk.path for h in result.hits} <= {
            "docs/guide.md",
            "docs/other.md",
        }
        result = library.retrieve(library.query("-path:*.md parse_rate"), 32, 10, retrieval)
        assert all(h.chunk.path.endswith(".py") for h in result.hits)
    assert library.retrieve(library.query("path:src/ sourdough"), 32, 10, "lexical").hits == []


def test_ranks_of_each_list(library: Library) -> None:
    q = library.query("sourdough starter")
    dense = library.retrieve(q, 32, 10, "dense")
    assert [h.dense_rank for h in dense.hits] == [h.rank for h in dense.hits]
    assert all(h.lexical_rank is None for h in dense.hits)
    fused = library.retrieve(q, 32, 10, "hybrid")
    dense_order = {h.id: h.rank for h in library.retrieve(q, 32, 100, "dense").hits}
    for hit in fused.hits:
        assert hit.dense_rank == dense_order.get(hit.id)
    assert fused.hits[0].chunk.path == "docs/guide.md" and fused.hits[0].lexical_rank == 1
    lexical_hits = library.retrieve(q, 32, 10, "lexical").hits
    assert [h.lexical_rank for h in lexical_hits] == [1]  # one chunk has those words


def test_fusions_order_candidates() -> None:
    rows, _ = hybrid.fuse([3, 1, 2], [2, 5], [4.0, 1.0], "rrf", lambda ids: ids * 0.0)
    assert rows.tolist()[0] == 2 and set(rows.tolist()) == {1, 2, 3, 5}
    cosine = {1: 0.9, 2: 0.5, 3: 0.1, 5: 0.0}
    rows, _ = hybrid.fuse(
        [1, 2, 3], [5], [3.0], "mix", lambda ids: np.array([cosine[int(i)] for i in ids])
    )
    assert rows.tolist() == [1, 5, 2, 3]  # 0.5·1 + 0 vs 0 + 0.5·1: a tie, the lower row first


def test_hybrid_json_contract(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from test_cli import run

    folder = write_files(tmp_path / "f", FILES)
    for retrieval in hybrid.RETRIEVALS:
        code, out, err = run(
            [
                "search",
                str(folder),
                "parse_rate",
                "--json",
                "--retrieval",
                retrieval,
                "--dim",
                "64",
            ],
            capsys,
        )
        assert code == 0, err
        data = json.loads(out)
        assert data["retrieval"] == retrieval and data["dim"] == 64
        assert ("fusion" in data) == (retrieval == "hybrid")
        for hit in data["results"]:
            assert set(hit) >= {"rank", "path", "score", "dense_rank", "lexical_rank"}
            if retrieval == "dense":
                assert hit["dense_rank"] == hit["rank"] and hit["lexical_rank"] is None
            if retrieval == "lexical":
                assert hit["dense_rank"] is None and hit["lexical_rank"] == hit["rank"]
        assert data["results"][0]["path"] == "src/rates.py"
    code, out, err = run(
        ["search", str(folder), "x", "--retrieval", "lexical", "--precision", "int8"], capsys
    )
    assert code == 1 and "--precision" in err and len(err.strip().splitlines()) == 1


def test_an_exact_identifier_is_rank_one_in_hybrid_and_lexical(embedder, tmp_path: Path) -> None:
    lib = Library(SAMPLES / "codebase", embedder, cache_root=tmp_path / "cache")
    lib.update()
    for query in ("parse_rate", "WatchError", "refill_rate"):
        q = lib.query(query)
        for retrieval in ("lexical", "hybrid"):
            top = lib.retrieve(q, 64, 5, retrieval).hits[0]
            assert query.lower() in top.chunk.text.lower(), (query, retrieval, top.chunk.path)
    top = lib.retrieve(lib.query("parse_rate"), 64, 1, "hybrid").hits[0]
    assert top.chunk.path == "src/throttlekit/config.py"


def test_a_file_name_that_is_not_utf8_gets_keywords(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9-notes.md")  # Latin-1 bytes: not UTF-8
    (folder / name).write_text("# Menu\n\nquiche lorraine\n", encoding="utf-8")
    lib = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    lib.update()
    hits = lib.retrieve(lib.query("quiche"), 16, 5, "lexical").hits
    assert [h.chunk.path for h in hits] == [name]
    assert lib.retrieve(lib.query("notes"), 16, 5, "lexical").hits[0].chunk.path == name
