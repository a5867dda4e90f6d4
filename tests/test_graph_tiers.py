"""The library's graph tiers: tuned once on the corpus, kept with the graphs, used per d."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fakes import LIBRARY_DIM, HashEmbedder, write_corpus

import mrl_tui.core.library as library_module
from mrl_tui.core.library import Library
from mrl_tui.core.search import hnsw
from mrl_tui.core.search.hnsw import HnswGraph


@pytest.fixture
def tuned(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Graphs for any corpus, tiers at 64 and 80 of the 96 dims; the dims of each `tune` call."""
    monkeypatch.setattr(library_module, "HNSW_MIN_CHUNKS", 2)
    monkeypatch.setattr(hnsw, "GRAPH_DIMS", (64, 80))
    calls: list[list[int]] = []
    real = hnsw.tune

    def counting(index, graph, dims, *args, **kwargs):
        calls.append(list(dims))
        return real(index, graph, dims, *args, **kwargs)

    monkeypatch.setattr(hnsw, "tune", counting)
    return calls


def _open(tmp_path: Path) -> Library:
    folder = tmp_path / "folder"
    if not folder.exists():
        write_corpus(folder, files=30, paragraphs=4)
    library = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    library.update()
    library.load()
    return library


def _settings_file(library: Library) -> tuple[Path, dict]:
    (path,) = library.store.directory.glob("hnswtune_*.json")
    return path, json.loads(path.read_text(encoding="utf-8"))


def test_settings_are_tuned_once_kept_with_the_graphs_and_used_per_dim(
    tmp_path: Path, tuned: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    library = _open(tmp_path)
    graphs = library.graph
    assert graphs is not None and list(graphs.graphs) == [64, 80]
    assert tuned == [hnsw.tune_dims(LIBRARY_DIM)] == [[32, 64, 96]]
    assert sorted(p.name.split("-")[0] for p in library.store.directory.glob("hnsw_*.bin")) == [
        "hnsw_pca",
        "hnsw_pca_d80",
    ]
    # The settings file names the graph files it was measured on, by their recorded checksum.
    _, data = _settings_file(library)
    graph_files = library._graph_paths("pca", library.store.generation)[:2]
    for tier, graph_path in zip((64, 80), graph_files, strict=True):
        entry = library.store.entry(graph_path.name)
        assert entry is not None and data["graphs"][str(tier)] == entry.sha256
    assert {(row["dim"], row["graph"]) for row in data["settings"]} == {
        (32, 64),
        (64, 64),
        (96, 64),
        (96, 80),
    }
    # A search at d takes the tuned d at or above it, on its fastest tier no larger than d.
    asked: list[tuple[int, int, int]] = []
    for tier in graphs.graphs.values():
        real = tier._knn  # under both `candidates` and `nearest`
        monkeypatch.setattr(
            tier,
            "_knn",
            lambda q, c, ef, t=tier.dim, real=real: asked.append((t, c, ef)) or real(q, c, ef),
        )
    query = library.query("bread oven flour")
    for dim in (70, 96):
        asked.clear()
        result = library.search(query, dim, 5)
        want = graphs.setting(dim)
        assert want is not None and result.mode == "graph"
        assert want.graph <= dim and want == min(
            (s for g, s in graphs.table[96].items() if g <= dim), key=lambda s: s.ms
        )
        if want.candidates < library.index.n:
            assert asked == [(want.graph, want.candidates, want.ef)]
        exact = library.search(query, dim, 5, mode="exact")
        overlap = len({h.id for h in result.hits} & {h.id for h in exact.hits})
        assert overlap >= 4  # tuned for 99 % of the top-10 on probe queries
    table = graphs.table
    library.close()

    # Reopened: the kept settings are read back, not measured again.
    again = _open(tmp_path)
    assert again.graph is not None and again.graph.table == table
    assert len(tuned) == 1
    again.close()


def test_a_rebuilt_graph_is_tuned_again(
    tmp_path: Path, tuned: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _open(tmp_path).close()
    assert len(tuned) == 1
    first = _open(tmp_path)
    _, before = _settings_file(first)
    path = first._graph_paths("pca", first.store.generation)[1]
    first.close()
    # The 80-d graph's file is damaged; it is rebuilt, here with other links (as a rebuild on
    # several threads gets), so its settings no longer hold and are measured again.
    path.write_bytes(path.read_bytes()[:-100])
    real = HnswGraph.build
    monkeypatch.setattr(
        HnswGraph,
        "build",
        classmethod(lambda cls, x, dim, **kw: real(x, dim, M=6, ef_construction=20, **kw)),
    )
    rebuilt = _open(tmp_path)
    assert len(tuned) == 2
    _, after = _settings_file(rebuilt)
    assert after["graphs"]["64"] == before["graphs"]["64"]
    assert after["graphs"]["80"] != before["graphs"]["80"]
    entry = rebuilt.store.entry(path.name)
    assert entry is not None and after["graphs"]["80"] == entry.sha256
    assert any("HNSW graph" in m for m in rebuilt.take_messages())  # the damage was told
    rebuilt.close()
    _open(tmp_path).close()  # and those new settings are kept
    assert len(tuned) == 2
    np.testing.assert_equal(len(after["settings"]), 4)


def test_a_first_load_reports_the_build_then_the_measurement(
    tmp_path: Path, tuned: list[list[int]]
) -> None:
    """`on_graph_progress` over both tiers' rows, then `on_tune_progress` over tune's steps (32:
    the 64-d tier; 64: 64; 96: 64 and 80); a load from the kept files reports neither."""
    folder = write_corpus(tmp_path / "folder", files=30, paragraphs=4)
    built: list[tuple[int, int]] = []
    steps: list[tuple[int, int]] = []

    def load() -> Library:
        library = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
        library.update()
        library.load(
            on_graph_progress=lambda done, total: built.append((done, total)),
            on_tune_progress=lambda done, total: steps.append((done, total)),
        )
        return library

    library = load()
    assert library.index is not None and library.graph is not None
    n = library.index.n
    assert built[-1] == (2 * n, 2 * n) and all(t == 2 * n for _, t in built)
    assert [d for d, _ in built] == sorted(d for d, _ in built)
    assert steps == [(step, 4) for step in range(5)] and len(tuned) == 1
    library.close()
    built.clear(), steps.clear()
    again = load()
    assert again.graph is not None and built == steps == [] and len(tuned) == 1
    again.close()
