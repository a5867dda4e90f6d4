from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mrl_tui.core.library as library_module
from mrl_tui.core.errors import InputError
from mrl_tui.core.library import Library


def test_one_embedding_per_query_and_any_dim(topic_folder: Path, tmp_path: Path, embedder) -> None:
    library = Library(topic_folder, embedder, cache_root=tmp_path / "cache")
    library.update()
    query = library.query("lubricating a bicycle chain")
    calls = 0
    original = embedder.embed_query

    def counting(text: str) -> np.ndarray:
        nonlocal calls
        calls += 1
        return original(text)

    # What each dim must return: a brute-force cosine ranking over the first `dim` coordinates.
    assert library.index is not None
    vectors, row_ids = library.index.vectors(), library.row_chunk_ids
    embedder.embed_query = counting
    try:
        for dim in (1, 8, 13, 64, 200, 384):
            result = library.search(query, dim, 3)
            assert result.mode == "exact" and len(result.hits) == 3
            prefix, q = vectors[:, :dim], query.vector[:dim]
            cosine = prefix @ q / (np.linalg.norm(prefix, axis=1) * np.linalg.norm(q) + 1e-12)
            expected = row_ids[np.argsort(-cosine, kind="stable")[:3]].tolist()
            assert [h.id for h in result.hits] == expected, dim
            assert [h.score for h in result.hits] == pytest.approx(
                np.sort(cosine)[::-1][:3], abs=1e-4
            )
            if dim >= 64:  # enough of the embedding to rank the right note first
                assert result.hits[0].chunk.path == "bikes/chain.md"
    finally:
        del embedder.embed_query
    assert calls == 0
    with pytest.raises(InputError):
        library.search(query, 385, 3)
    with pytest.raises(InputError):
        library.search(query, 64, 3, mode="graph")  # small corpus: no graph
    library.close()


def test_large_corpora_get_an_hnsw_graph_that_is_cached(
    topic_folder: Path, tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library_module, "HNSW_MIN_CHUNKS", 2)
    library = Library(topic_folder, embedder, cache_root=tmp_path / "cache")
    library.update()
    library.load()
    assert library.graph is not None
    graph_files = sorted(library.store.directory.glob("hnsw_*.bin"))  # the tiers (`GRAPH_DIMS`)
    assert [p.name.split("-")[0] for p in graph_files] == [
        "hnsw_pca",
        "hnsw_pca_d128",
        "hnsw_pca_d256",
    ]
    query = library.query("budget and savings")
    graph = library.search(query, 384, 3)
    exact = library.search(query, 384, 3, mode="exact")
    assert graph.mode == "graph"
    # every row is a candidate in a corpus this small, so graph search equals exact search
    assert [h.id for h in graph.hits] == [h.id for h in exact.hits]
    old = library.search(query, 384, 3, mode="funnel")  # the older name of the mode
    assert old.mode == "graph" and [h.id for h in old.hits] == [h.id for h in graph.hits]
    assert library.search(query, 32, 3).mode == "exact"  # at or below the graph's dim
    library.close()

    again = Library(topic_folder, embedder, cache_root=tmp_path / "cache")
    mtime = graph_files[0].stat().st_mtime_ns
    again.load()
    assert again.graph is not None and graph_files[0].stat().st_mtime_ns == mtime
    again.close()


def test_a_query_made_before_a_reindex_still_searches_right(
    topic_folder: Path, tmp_path: Path, embedder
) -> None:
    """Re-indexing refits PCA; a stored query is re-projected, not compared across bases."""
    library = Library(topic_folder, embedder, cache_root=tmp_path / "cache")
    library.update()
    query = library.query("lubricating a bicycle chain")
    (topic_folder / "extra.md").write_text("# Tea\n\nGreen tea steeps at 80 C for two minutes.\n")
    library.update()
    moved = library.search(query, 384, 1)
    fresh = library.search(library.query("lubricating a bicycle chain"), 384, 1)
    assert moved.hits[0].chunk.path == fresh.hits[0].chunk.path == "bikes/chain.md"
    assert moved.hits[0].score == pytest.approx(fresh.hits[0].score, abs=1e-5)
    library.close()


def test_search_under_another_transform(topic_folder: Path, tmp_path: Path, embedder) -> None:
    library = Library(topic_folder, embedder, cache_root=tmp_path / "cache")  # PCA: not native MRL
    library.update()
    query = library.query("lubricating a bicycle chain")
    full = library.full_dim

    def ranking(dim: int, transform: str | None = None) -> list[int]:
        return [hit.id for hit in library.search(query, dim, 5, transform=transform).hits]

    # PCA is a rotation: at full dim, truncating nothing, both give the same scores and ranking.
    naive = library.search(query, full, 5, transform="naive").hits
    pca = library.search(query, full, 5, transform="pca").hits
    assert [h.id for h in naive] == [h.id for h in pca] == ranking(full)
    assert np.allclose([h.score for h in naive], [h.score for h in pca], atol=1e-5)
    # Prefixes differ: the first dims of the rotation are not the first dims of the model.
    assert ranking(2, "pca") == ranking(2)  # the loaded transform is PCA already
    assert any(ranking(d, "naive") != ranking(d, "pca") for d in (1, 2, 3, 4, 8))
    naive8 = sorted(h.score for h in library.search(query, 8, 5, transform="naive").hits)
    assert not np.allclose(naive8, sorted(h.score for h in library.search(query, 8, 5).hits))
    assert library.view("pca")[1] is library.index  # no second index for the loaded transform
    assert library.view("naive")[1] is not library.index
    with pytest.raises(InputError):
        library.search(query, 8, 5, precision="int8", transform="naive")
    with pytest.raises(InputError):
        library.view("umap")
    library.close()


def test_the_core_never_imports_textual() -> None:
    """The headless core is shared by the CLI, the TUI and the benchmarks: no UI in it."""
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, mrl_tui.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('mrl_tui.core.' + m.name)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('textual', 'mrl_tui.ui')]\n"
        "assert 'mrl_tui.ui' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_batched_query_embeddings_equal_one_at_a_time(embedder) -> None:
    """The router and bench embed their many queries in batches; each row must be the vector
    `embed_query` gives that text, in the order asked (batches are sorted by length inside)."""
    texts = ["dns", "how do I feed a sourdough starter twice a day", "mars moons", "a b c d e f"]
    seen: list[int] = []
    batched = embedder.embed_queries(texts, on_progress=seen.append)
    single = np.stack([embedder.embed_query(t) for t in texts])
    assert batched.shape == (4, embedder.full_dim) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert sum(seen) == len(texts)
    assert embedder.embed_queries([]).shape == (0, embedder.full_dim)
