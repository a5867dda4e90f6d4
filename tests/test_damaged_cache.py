"""A cache damaged after it was written is detected and rebuilt, with one line: never a traceback,
never wrong hits (issue 16). Each case damages a complete cache in one way, then a new `Library`
on it must return exactly a clean index's hits."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from fakes import LIBRARY_DIM, HashEmbedder, write_corpus

import mrl_tui.core.library as library_module
from mrl_tui import cli
from mrl_tui.core.embedding.choice import ModelChoice
from mrl_tui.core.library import Library
from mrl_tui.core.search import hnsw
from mrl_tui.core.search.hnsw import FunnelSetting

QUERIES = ("bread oven flour", "planet moon volcano", "river bridge harbour")


def _use_graphs(mp: pytest.MonkeyPatch) -> None:
    """A small corpus gets an HNSW graph too, and graph search asks it for 100 candidates of the
    160 rows, so a damaged graph would reach hnswlib's search. That fixed setting stands in for
    `tune`, whose timed choice could differ between the clean and the repaired cache."""
    mp.setattr(library_module, "HNSW_MIN_CHUNKS", 2)
    mp.setattr(hnsw, "tune", _wide_beams)


def _wide_beams(index, graphs: hnsw.GraphSet, dims, *args, **kwargs) -> None:
    graphs.table = {d: {graphs.dim: FunnelSetting(100, 100, 1.0, 1.0, graphs.dim)} for d in dims}


@pytest.fixture(autouse=True)
def _small_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_graphs(monkeypatch)


def _corpus(root: Path) -> Path:
    return write_corpus(root, files=40, paragraphs=4)


Hit = tuple[str, int, str, float]


def _hits(library: Library) -> dict[str, list[Hit]]:
    """Top hits of every query: exact at a prefix dim and at full dim, HNSW graph search at full
    dim and routed."""
    out: dict[str, list[Hit]] = {"exact": [], "graph": [], "routed": []}
    for text in QUERIES:
        query = library.query(text)
        results = {
            "exact": [library.search(query, 16, 5), library.search(query, 96, 5, mode="exact")],
            "graph": [library.search(query, 96, 5)],
            "routed": [library.search_routed(query, 5)[0]],
        }
        for kind, found in results.items():
            assert kind != "graph" or found[0].mode == "graph"
            for result in found:
                out[kind] += [
                    (h.chunk.path, h.chunk.start_line, h.chunk.text, h.score) for h in result.hits
                ]
    return out


def _same_hits(a: dict[str, list[Hit]], b: dict[str, list[Hit]], kinds: Iterable[str]) -> None:
    for kind in kinds:
        assert [h[:3] for h in a[kind]] == [h[:3] for h in b[kind]], kind
        np.testing.assert_allclose([h[3] for h in a[kind]], [h[3] for h in b[kind]], atol=1e-5)


ALL = ("exact", "graph", "routed")
EXACT = ("exact",)
"""Re-embedding a few files appends their rows, so the graph and the router's pseudo-queries are
made in another row order than a clean run's: approximate and routed hits may then differ."""


def _open(folder: Path, cache: Path) -> Library:
    library = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=cache)
    library.update()
    library.load()
    return library


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    folder = _corpus(tmp_path_factory.mktemp("corpus"))
    with pytest.MonkeyPatch.context() as mp:
        _use_graphs(mp)
        library = _open(folder, tmp_path_factory.mktemp("clean-cache"))
        hits = _hits(library)
        assert library.graph is not None and library.transform.name == "pca"
        assert library.chunk_count == 160
        assert library.take_messages() == []
        library.close()
    return folder, hits


def _one(directory: Path, pattern: str) -> Path:
    [path] = directory.glob(pattern)
    return path


def _sql(directory: Path, statement: str, *args: object) -> None:
    with sqlite3.connect(directory / "index.db") as db:
        db.execute(statement, args)
    db.close()


def _chunk_ids(directory: Path) -> list[int]:
    with sqlite3.connect(directory / "index.db") as db:
        ids = [r[0] for r in db.execute("SELECT id FROM chunks ORDER BY id")]
    db.close()
    return ids


def _random_page(directory: Path, which: str) -> None:
    """Random bytes over one whole page of the chunks table: its root or a middle leaf."""
    with sqlite3.connect(directory / "index.db") as db:
        size = db.execute("PRAGMA page_size").fetchone()[0]
        if which == "root":
            page = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'chunks'").fetchone()
        else:
            leaves = db.execute(
                "SELECT pageno FROM dbstat WHERE name = 'chunks' AND pagetype = 'leaf'"
            ).fetchall()
            page = leaves[len(leaves) // 2]
    db.close()
    with open(directory / "index.db", "r+b") as fh:
        fh.seek((page[0] - 1) * size)
        fh.write(np.random.default_rng(1).bytes(size))


def _db_root_page(d: Path) -> None:
    _random_page(d, "root")


def _db_leaf_page(d: Path) -> None:
    _random_page(d, "leaf")


def _db_header_page(d: Path) -> None:
    with open(d / "index.db", "r+b") as fh:
        fh.write(np.random.default_rng(2).bytes(4096))


def _snapshot_replaced_by_npz(d: Path) -> None:
    path = _one(d, "vectors-*.npy")
    vectors = np.load(path)
    with open(path, "wb") as fh:
        np.savez(fh, vectors=vectors)


def _snapshot_rows_in_another_order(d: Path) -> None:
    path = _one(d, "vectors-*.npy")
    np.save(path, np.load(path)[::-1].copy())


def _nan_in_snapshot(d: Path) -> None:
    path = _one(d, "vectors-*.npy")
    vectors = np.load(path)
    vectors[3] = np.nan
    np.save(path, vectors)


def _snapshot_is_a_folder(d: Path) -> None:
    path = _one(d, "vectors-*.npy")
    path.unlink()
    (path / "inside").mkdir(parents=True)


def _truncated_transform(d: Path) -> None:
    path = _one(d, "transform_pca-*.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _transform_of_another_dim(d: Path) -> None:
    path = _one(d, "transform_pca-*.npz")
    with open(path, "wb") as fh:
        np.savez(fh, matrix=np.eye(16, dtype=np.float32), mean=np.zeros(16, np.float32))


def _edited_graph(d: Path) -> None:
    """Entry point and link lists overwritten: hnswlib crashed (exit 139) on this before."""
    path = _one(d, "hnsw_pca-*.bin")
    data = bytearray(path.read_bytes())
    data[40:48] = (10**9).to_bytes(8, "little")  # near the header's entry point
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def _edited_router(d: Path) -> None:
    path = _one(d, "router_pca-*.json")
    path.write_text(path.read_text().replace('"k": 10', '"k": 1'))


def _nan_in_database(d: Path) -> None:
    _one(d, "vectors-*.npy").unlink()  # else the verified snapshot is used, not the rows
    nan = np.full(LIBRARY_DIM, np.nan, np.float32).tobytes()
    _sql(d, "UPDATE chunks SET vector = ? WHERE id = ?", nan, _chunk_ids(d)[4])


def _odd_sized_blob(d: Path) -> None:
    _one(d, "vectors-*.npy").unlink()
    _sql(d, "UPDATE chunks SET vector = ? WHERE id = ?", b"\x01\x02\x03\x04\x05", _chunk_ids(d)[2])


def _lost_chunk_ids(d: Path) -> None:
    ids = _chunk_ids(d)
    _sql(d, "DELETE FROM chunks WHERE id IN (?, ?)", ids[1], ids[-1])


def _generation_not_a_number(d: Path) -> None:
    _sql(d, "UPDATE meta SET value = 'seven' WHERE key = 'generation'")


DAMAGE: dict[str, tuple[Callable[[Path], None], str, tuple[str, ...]]] = {
    # case: (damage, words of the one line expected, hits that must equal a clean index's)
    "db-root-page": (_db_root_page, "rebuilding it from the folder", ALL),
    "db-leaf-page": (_db_leaf_page, "rebuilding it from the folder", ALL),
    "db-header-page": (_db_header_page, "rebuilding it from the folder", ALL),
    "snapshot-replaced-by-npz": (_snapshot_replaced_by_npz, "vector snapshot", ALL),
    "snapshot-rows-in-another-order": (_snapshot_rows_in_another_order, "vector snapshot", ALL),
    "nan-in-snapshot": (_nan_in_snapshot, "vector snapshot", ALL),
    "snapshot-is-a-folder": (_snapshot_is_a_folder, "vector snapshot", ALL),
    "truncated-transform": (_truncated_transform, "pca transform", ALL),
    "transform-of-another-dim": (_transform_of_another_dim, "pca transform", ALL),
    "edited-hnsw-graph": (_edited_graph, "HNSW graph", ALL),
    "edited-router": (_edited_router, "router", ALL),
    "nan-in-database": (_nan_in_database, "embedding their files again", EXACT),
    "odd-sized-vector-blob": (_odd_sized_blob, "embedding their files again", EXACT),
    "lost-chunk-ids": (_lost_chunk_ids, "rebuilding it from the folder", ALL),
    "generation-not-a-number": (_generation_not_a_number, "rebuilding it from the folder", ALL),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damage_is_rebuilt_with_one_line(
    case: str, clean: tuple[Path, list], tmp_path: Path
) -> None:
    folder, clean_hits = clean
    damage, expected, kinds = DAMAGE[case]
    cache = tmp_path / "cache"
    library = _open(folder, cache)
    _hits(library)  # every derived file made: snapshot, PCA, graph, router
    directory = library.store.directory
    library.close()

    damage(directory)

    library = _open(folder, cache)
    hits = _hits(library)
    messages = library.take_messages()
    library.close()
    _same_hits(hits, clean_hits, kinds)
    assert len(messages) == 1 and expected in messages[0], messages
    assert "\n" not in messages[0]

    again = _open(folder, cache)  # repaired for good: the next run is quiet
    _same_hits(_hits(again), clean_hits, kinds)
    assert again.take_messages() == []
    again.close()


def test_damage_found_while_searching_is_rebuilt(tmp_path: Path) -> None:
    """Damage the database where only a search reads it: the overflow page of a long chunk's
    text (loading reads ids and the verified snapshot only). The search still answers right."""
    folder = write_corpus(tmp_path / "folder", files=4)
    (folder / "long.md").write_text(" ".join(["x" * 90 + str(i) for i in range(60)]) + "\n")
    clean = _open(folder, tmp_path / "clean")
    everything = clean.chunk_count
    expected = clean.search(clean.query(QUERIES[0]), 16, everything).hits
    clean.close()
    library = _open(folder, tmp_path / "cache")
    directory = library.store.directory
    library.close()
    with sqlite3.connect(directory / "index.db") as db:
        size = db.execute("PRAGMA page_size").fetchone()[0]
        [(page,)] = db.execute(
            "SELECT pageno FROM dbstat WHERE name = 'chunks' AND pagetype = 'overflow' LIMIT 1"
        ).fetchall()
    db.close()
    with open(directory / "index.db", "r+b") as fh:
        fh.seek((page - 1) * size)
        fh.write(b"\xff" * size)

    library = _open(folder, tmp_path / "cache")
    assert library.take_messages() == []  # nothing read the damaged page yet
    hits = library.search(library.query(QUERIES[0]), 16, everything).hits
    [message] = library.take_messages()
    assert "is damaged" in message and "rebuilding it from the folder" in message
    assert [(h.chunk.path, h.chunk.text) for h in hits] == [
        (h.chunk.path, h.chunk.text) for h in expected
    ]
    library.close()


@pytest.mark.parametrize("case", ["db-leaf-page", "edited-hnsw-graph"])
def test_cli_says_one_line_and_succeeds(
    case: str,
    clean: tuple[Path, list],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, clean_hits = clean
    monkeypatch.setattr(ModelChoice, "load", lambda *a, **k: HashEmbedder(LIBRARY_DIM))
    args = ["search", str(folder), QUERIES[1], "--cache-dir", str(tmp_path), "--k", "5"]
    assert cli.main([*args, "--dim", "96"]) == 0
    [directory] = [p for p in tmp_path.iterdir() if p.is_dir()]
    DAMAGE[case][0](directory)
    capsys.readouterr()
    assert cli.main([*args, "--dim", "96", "--json"]) == 0
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mrl-tui: ") and "Traceback" not in err
    assert DAMAGE[case][1] in lines[0]
    paths = [r["path"] for r in json.loads(out)["results"]]
    assert paths == [h[0] for h in clean_hits["graph"][5:10]]  # QUERIES[1], full dim


def test_a_lost_database_never_serves_old_vectors(tmp_path: Path) -> None:
    """Derived files are bound to the database that made them: index, lose index.db (or get a
    0-byte one), index other content in the same folder: the new content is found."""
    folder = tmp_path / "folder"
    write_corpus(folder, files=6, seed=0)
    library = _open(folder, tmp_path / "cache")
    directory = library.store.directory
    old_text = library.search(library.query(QUERIES[0]), 16, 1).hits[0].chunk.text
    library.close()
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (directory / name).unlink(missing_ok=True)
    (directory / "index.db").write_bytes(b"")  # a 0-byte database: a valid empty one
    for path in (folder / "notes").iterdir():
        path.unlink()
    write_corpus(folder, files=6, seed=1)  # same names, other words
    library = _open(folder, tmp_path / "cache")
    hits = library.search(library.query(QUERIES[0]), 16, 3).hits
    texts = {c.text for c in library.store.chunks(library.row_chunk_ids.tolist())}
    assert all(h.chunk.text in texts for h in hits) and old_text not in texts
    # and the vectors are the new content's, not the old snapshot's
    expected = HashEmbedder(LIBRARY_DIM).vector(f"{hits[0].chunk.heading}\n{hits[0].chunk.text}")
    _, vectors = library.store.load_vectors()
    row = list(library.row_chunk_ids).index(hits[0].id)
    np.testing.assert_allclose(vectors[row], expected)
    assert not [p for p in directory.glob("vectors-*.npy") if library.store.db_id not in p.name]
    library.close()


def test_old_temporary_files_are_pruned_and_live_ones_kept(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "folder", files=2)
    library = _open(folder, tmp_path / "cache")
    directory = library.store.directory
    library.close()
    old = os.path.getmtime(directory / "index.db") - 3600
    dead = directory / ".vectors-ab12cd34-3.npy.999999999.1.tmp"  # no such pid
    legacy = directory / ".transform_pca-3.npz.tmp.npz"
    live = directory / f".vectors-ab12cd34-3.npy.{os.getpid()}.7.tmp"  # this process
    fresh = directory / ".router_pca-3.json.999999999.2.tmp"  # dead, but just written
    user = directory / "notes.tmp"  # not one of our names
    for path in (dead, legacy, live, fresh, user):
        path.write_bytes(b"x" * 100)
    for path in (dead, legacy, live, user):
        os.utime(path, (old, old))
    Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache").close()
    assert not dead.exists() and not legacy.exists()
    assert live.exists() and fresh.exists() and user.exists()
