"""HNSW candidate graph: recall against exact search, persistence, and the funnel's exact limit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mrl_tui.core.errors import CacheError, InputError
from mrl_tui.core.search import hnsw
from mrl_tui.core.search.hnsw import FunnelSetting, GraphSet, HnswGraph, graph_search
from mrl_tui.core.search.index import NestedIndex


def clustered(n: int, dim: int = 48, seed: int = 0) -> np.ndarray:
    """Clusters whose spread decays over the coordinates, like PCA-rotated embeddings."""
    rng = np.random.default_rng(seed)
    scale = 0.93 ** np.arange(dim)
    centres = np.random.default_rng(99).standard_normal((40, dim)) * scale
    x = centres[rng.integers(40, size=n)] + 0.4 * rng.standard_normal((n, dim)) * scale
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, NestedIndex, HnswGraph]:
    x = clustered(2000)
    return x, NestedIndex(x), HnswGraph.build(x, 32, M=12, ef_construction=100, threads=2)


def test_recall_at_10_against_exact(data: tuple[np.ndarray, NestedIndex, HnswGraph]) -> None:
    _, index, graph = data
    queries = clustered(50, seed=1)
    recalls = []
    for q in queries:
        truth = set(index.search(q, 32, 10).ids.tolist())
        recalls.append(len(truth & set(graph.candidates(q, 10).tolist())) / 10)
    assert np.mean(recalls) >= 0.9


def test_funnel_recall_at_other_dims(data: tuple[np.ndarray, NestedIndex, HnswGraph]) -> None:
    _, index, graph = data
    for dim in (16, 48):
        recalls = []
        for q in clustered(20, seed=2):
            truth = set(index.search(q, dim, 10).ids.tolist())
            got = graph_search(index, graph, q, dim, 10, candidates=200)
            recalls.append(len(truth & set(got.ids.tolist())) / 10)
            np.testing.assert_allclose(got.scores, index.score_ids(q, dim, got.ids), atol=1e-6)
        assert np.mean(recalls) >= 0.9


def test_funnel_is_exact_when_candidates_cover_everything(
    data: tuple[np.ndarray, NestedIndex, HnswGraph],
) -> None:
    _, index, graph = data
    q = clustered(1, seed=3)[0]
    for dim in (5, 32, 48):
        exact = index.search(q, dim, 10)
        got = graph_search(index, graph, q, dim, 10, candidates=index.n)
        np.testing.assert_array_equal(got.ids, exact.ids)
        np.testing.assert_allclose(got.scores, exact.scores, atol=1e-6)


def test_save_load_round_trip(data, tmp_path) -> None:
    x, _, graph = data
    path = tmp_path / "graph.hnsw"
    graph.save(path)
    assert path.exists() and not (tmp_path / "graph.hnsw.tmp").exists()
    loaded = HnswGraph.load(path, 32, len(x))
    assert loaded.dim == 32 and loaded.n == len(x)
    q = clustered(1, seed=4)[0]
    np.testing.assert_array_equal(loaded.candidates(q, 10), graph.candidates(q, 10))
    with pytest.raises(CacheError):
        HnswGraph.load(path, 32, len(x) + 1)
    (tmp_path / "junk").write_bytes(b"not a graph")
    with pytest.raises(CacheError):
        HnswGraph.load(tmp_path / "junk", 32, len(x))


def test_build_reports_progress_and_validates() -> None:
    x = clustered(25_000 // 10, dim=8)
    calls: list[tuple[int, int]] = []
    graph = HnswGraph.build(
        x, 8, M=8, ef_construction=20, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (len(x), len(x))
    assert graph.candidates(x[0], 5).dtype == np.int64
    assert len(graph.candidates(x[0], 10_000)) == len(x)
    with pytest.raises(InputError):
        HnswGraph.build(x, 9)
    with pytest.raises(InputError):
        HnswGraph.build(x.astype(np.int32), 4)


def test_tune_measures_a_setting_per_dim_and_graph_search_uses_it(
    data: tuple[np.ndarray, NestedIndex, HnswGraph], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, index, _ = data
    graph = HnswGraph.build(x, 32, M=12, ef_construction=100, threads=2)  # fresh settings
    assert graph.setting(48) is None
    chosen = hnsw.tune(index, graph, [16, 48], k=10, target=0.95, queries=40)
    assert sorted(chosen) == [16, 48] and graph.settings == chosen
    for dim, setting in chosen.items():
        assert 10 <= setting.candidates <= setting.ef and setting.ef in hnsw.TUNE_EFS
        assert setting.recall >= 0.95 and setting.ms > 0
        # The measured recall holds on fresh queries.
        recalls = []
        for q in clustered(30, seed=5):
            truth = set(index.search(q, dim, 10).ids.tolist())
            recalls.append(len(truth & set(graph_search(index, graph, q, dim, 10).ids.tolist())))
        assert np.mean(recalls) / 10 >= 0.9
    # Without candidates, graph_search takes the setting of the smallest tuned d >= the d asked
    # (a d between two tuned ones is nearer the graph than the larger: its recall holds), else
    # of the largest; a larger k than tuned for widens it in proportion.
    asked = []
    real = graph.candidates
    monkeypatch.setattr(
        graph, "candidates", lambda q, c, ef: asked.append((c, ef)) or real(q, c, ef)
    )
    graph_search(index, graph, x[0], 8, 10)
    graph_search(index, graph, x[0], 17, 10)
    graph_search(index, graph, x[0], 30, 20)
    graph_search(index, graph, x[0], 30, 10, candidates=20)  # explicit: no floor of 200 any more
    low, high = chosen[16], chosen[48]
    assert asked == [
        (low.candidates, low.ef),
        (high.candidates, high.ef),
        (max(2 * high.candidates, 20), max(2 * high.ef, 20)),
        (20, 20),
    ]


def test_tune_falls_back_to_the_best_recall_when_the_target_is_out_of_reach(
    data: tuple[np.ndarray, NestedIndex, HnswGraph], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, _, _ = data
    graph = HnswGraph.build(x[:300], 32, M=4, ef_construction=10, threads=1)
    small = NestedIndex(x[:300])
    walked: list[int] = []
    walk = HnswGraph.candidates_many

    def counted(self: HnswGraph, queries: np.ndarray, k: int, ef: int | None = None, **kw):
        walked.append(k)
        return walk(self, queries, k, ef, **kw)

    monkeypatch.setattr(HnswGraph, "candidates_many", counted)
    probes = hnsw.probe_queries(small, 10)
    (setting,) = hnsw.tune(small, graph, [48], k=10, target=1.01, probes=probes).values()
    assert np.isnan(setting.ms)
    # The widest beam below N (256), every candidate reranked: no narrower beam does better.
    assert (setting.ef, setting.candidates) == (256, 256)
    truth = [set(h.ids.tolist()) for h in small.search_many(probes, 48, 10)]
    for ef in [ef for ef in hnsw.TUNE_EFS if ef < 300]:
        found = walk(graph, probes, ef, ef)
        recall = np.mean([len(t & set(f.tolist())) / 10 for t, f in zip(truth, found, strict=True)])
        assert recall <= setting.recall + 1e-9
    assert len(walked) == len(set(walked)) <= 5  # the bisection's beams, each walked once


@pytest.fixture(scope="module")
def tiers(data: tuple[np.ndarray, NestedIndex, HnswGraph]) -> tuple[NestedIndex, GraphSet]:
    """Tiers at 16 and 32 of the 48-d set, tuned at 16, 24, 32 and 48 for recall 0.95."""
    x, index, _ = data
    graphs = GraphSet(
        [HnswGraph.build(x, d, M=12, ef_construction=100, threads=2) for d in (32, 16)]
    )
    hnsw.tune(index, graphs, [16, 24, 32, 48], k=10, target=0.95, queries=40)
    return index, graphs


def test_tiers_are_tuned_per_dim_on_graphs_no_larger_and_keep_their_recall(
    tiers: tuple[NestedIndex, GraphSet], monkeypatch: pytest.MonkeyPatch
) -> None:
    index, graphs = tiers
    assert graphs.dim == 16 and list(graphs.graphs) == [16, 32]
    assert sorted(graphs.table) == [16, 24, 32, 48]
    assert list(graphs.table[16]) == [16] and list(graphs.table[24]) == [16]
    assert list(graphs.table[32]) == [16, 32] and list(graphs.table[48]) == [16, 32]
    for dim, row in graphs.table.items():
        for tier, setting in row.items():
            assert setting.graph == tier and setting.recall >= 0.95 and setting.ms > 0
        assert graphs.settings[dim] == min(row.values(), key=lambda s: s.ms)
    # What graph search at each d then asks, of which tier: the tuned d at or above it, on the
    # fastest tier no larger than d (a d between 24 and 32 may not use the 32-d graph).
    asked: list[tuple[int, int, int]] = []
    for tier in graphs.graphs.values():
        real = tier._knn  # under both `candidates` and `nearest`
        monkeypatch.setattr(
            tier,
            "_knn",
            lambda q, c, ef, t=tier.dim, real=real: asked.append((t, c, ef)) or real(q, c, ef),
        )
    queries = clustered(30, seed=6)
    for dim in (16, 20, 28, 32, 40, 48):
        tuned = min(d for d in graphs.table if d >= dim)
        fits = [s for g, s in graphs.table[tuned].items() if g <= dim]
        want = min(fits, key=lambda s: s.ms)
        assert graphs.setting(dim) == want
        asked.clear()
        recalls = []
        for q in queries:
            truth = set(index.search(q, dim, 10).ids.tolist())
            got = graph_search(index, graphs, q, dim, 10)
            recalls.append(len(truth & set(got.ids.tolist())))
            # At a tier's own d its cosine is the exact score (no rerank needed), best first.
            np.testing.assert_allclose(got.scores, index.score_ids(q, dim, got.ids), atol=1e-6)
            assert (np.diff(got.scores) <= 0).all()
        assert set(asked) == {(want.graph, want.candidates, want.ef)}, dim
        assert np.mean(recalls) / 10 >= 0.9, dim  # what tune promised on probe queries (0.95)


def test_tuned_settings_round_trip_only_for_the_graph_files_they_were_measured_on(
    tiers: tuple[NestedIndex, GraphSet], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, graphs = tiers
    sha = {16: "a" * 64, 32: "b" * 64}
    path = tmp_path / "tuned.json"
    path.write_text(graphs.to_json(sha))
    fresh = GraphSet(list(graphs.graphs.values()))
    assert fresh.setting(48) is None
    assert fresh.read_table(path, sha) == graphs.table and fresh.k == 10
    assert fresh.setting(40) == graphs.setting(40)
    assert not hnsw.settings_are_stale(path, sha)
    rebuilt = {16: "a" * 64, 32: "c" * 64}  # the 32-d graph was built again
    assert hnsw.settings_are_stale(path, rebuilt)
    with monkeypatch.context() as m:  # measured for another recall than tune now wants
        m.setattr(hnsw, "TUNE_RECALL", 0.9)
        assert hnsw.settings_are_stale(path, sha)
    with pytest.raises(CacheError):
        fresh.read_table(path, rebuilt)
    with pytest.raises(CacheError):  # a graph never saved has no file to vouch for
        fresh.read_table(path, {16: "a" * 64, 32: ""})
    only_low = GraphSet([graphs.graphs[16]])
    with pytest.raises(CacheError):  # names a tier this set does not have
        only_low.read_table(path, {16: "a" * 64, 32: "b" * 64})


def test_a_dim_takes_a_setting_whose_recall_holds_there() -> None:
    """Between tuned dims: the larger one's, on a tier no larger than d. Below the lowest tier:
    the lowest tier's for the largest tuned d at or below (further below the tier is harder)."""
    x = clustered(50, dim=128)
    graphs = GraphSet([HnswGraph.build(x, d, M=4, ef_construction=10, threads=1) for d in (64, 96)])
    assert graphs.setting(100) is None

    def s(ms: float, graph: int) -> FunnelSetting:
        return FunnelSetting(ef=int(ms * 10), candidates=10, recall=0.99, ms=ms, graph=graph)

    graphs.table = {
        32: {64: s(1.0, 64)},
        64: {64: s(2.0, 64)},
        128: {64: s(9.0, 64), 96: s(3.0, 96)},
    }
    assert graphs.setting(8) == graphs.setting(32) == graphs.setting(48) == s(1.0, 64)
    assert graphs.setting(64) == s(2.0, 64)
    assert graphs.setting(80) == s(9.0, 64)  # the 96-d tier's recall at 128 says nothing at 80
    assert graphs.setting(96) == graphs.setting(128) == graphs.setting(200) == s(3.0, 96)
    graphs.table = {128: {64: s(9.0, 64)}}  # a new table: nothing remembered from the old one
    assert graphs.setting(128) == graphs.setting(8) == s(9.0, 64)


def test_tune_on_given_queries_keeps_their_exact_top_k_at_the_chosen_setting(
    data: tuple[np.ndarray, NestedIndex, HnswGraph],
) -> None:
    """``probes`` replaces the probe queries: what tune reports is the recall on them, which
    graph search then reproduces against the exact top-10, best first as the exact scores."""
    x, index, _ = data
    graphs = GraphSet([HnswGraph.build(x, 32, M=12, ef_construction=100, threads=2)])
    queries = clustered(40, seed=8)
    chosen = hnsw.tune(index, graphs, [16, 32, 48], k=10, target=0.97, probes=queries)
    for dim, setting in chosen.items():
        assert setting.recall >= 0.97 and setting.ef in hnsw.TUNE_EFS
        counts = {min(setting.ef, int(np.ceil(m * 10))) for m in hnsw.TUNE_CANDIDATES}
        assert setting.candidates in counts | {setting.ef}
        kept = []
        for q in queries:
            exact = index.search(q, dim, 10)
            got = graph_search(index, graphs, q, dim, 10)
            kept.append(len(set(exact.ids.tolist()) & set(got.ids.tolist())) / 10)
            np.testing.assert_allclose(got.scores, index.score_ids(q, dim, got.ids), atol=1e-6)
            assert (np.diff(got.scores) <= 0).all()
            shared = [i for i in exact.ids if i in set(got.ids.tolist())]
            assert [i for i in got.ids if i in set(shared)] == shared  # the exact order
        assert np.mean(kept) == pytest.approx(setting.recall)
    with pytest.raises(InputError):
        hnsw.tune(index, graphs, [32], probes=queries[:, :16])
    with pytest.raises(InputError):
        hnsw.tune(index, graphs, [32], probes=np.full((2, 48), np.nan, np.float32))
    assert hnsw.tune(index, graphs, [32], probes=queries[:0]) == {}


def test_the_beam_is_the_one_asked_never_below_k_and_answers_as_a_fresh_graph(
    data: tuple[np.ndarray, NestedIndex, HnswGraph],
) -> None:
    _, _, graph = data
    q = clustered(1, seed=9)[0]
    first = graph.candidates(q, 10, ef=16)
    assert graph._index.ef == 16
    wide = graph.candidates(q, 60, ef=16)  # the beam is never narrower than k
    assert graph._index.ef == 60 and len(wide) == 60
    np.testing.assert_array_equal(graph.candidates(q, 10, ef=16), first)
    assert graph._index.ef == 16
    rewrapped = HnswGraph(graph._index, graph.dim)  # the same hnswlib index, a new wrapper
    np.testing.assert_array_equal(rewrapped.candidates(q, 10), graph.candidates(q, 10))
    assert graph._index.ef == hnsw.DEFAULT_EF


def test_tune_times_a_wider_beam_only_where_it_reranks_fewer(
    data: tuple[np.ndarray, NestedIndex, HnswGraph], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timing settings 1/8 apart picks by the noise: a wider beam is timed only where it needs
    fewer candidates, and the first timed is the narrowest beam that reaches the target."""
    _, index, graph = data
    queries = clustered(40, seed=10)
    timed: list[tuple[int, int]] = []

    def wider_looks_faster(search, _queries) -> float:
        ef, c = search.__defaults__
        timed.append((ef, c))
        return 1.0 / ef

    monkeypatch.setattr(hnsw, "_median_ms", wider_looks_faster)
    graphs = GraphSet([graph])
    chosen = hnsw.tune(index, graphs, [48], k=10, target=0.97, probes=queries)
    assert timed and (chosen[48].ef, chosen[48].candidates) == timed[-1]
    assert all(e1 < e2 and c1 > c2 for (e1, c1), (e2, c2) in itertools.pairwise(timed))
    assert len(timed) <= hnsw.TUNE_TIMED and timed[-1][0] <= hnsw.TUNE_REACH * timed[0][0]
    truth = [set(index.search(q, 48, 10).ids.tolist()) for q in queries]

    def kept(ef: int, c: int) -> float:
        got = [graph_search(index, graph, q, 48, 10, c, ef).ids.tolist() for q in queries]
        return float(np.mean([len(set(g) & t) / 10 for g, t in zip(got, truth, strict=True)]))

    assert kept(*timed[0]) >= 0.97
    assert all(kept(ef, ef) < 0.97 for ef in hnsw.TUNE_EFS if 10 <= ef < timed[0][0])


def test_tune_reports_progress_per_dim_and_tier(
    tiers: tuple[NestedIndex, GraphSet], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One step per (d, tier) measured, announced before the first: at 8 and 24 only the 16-d
    tier serves, at 48 both; each step is reported once that tier's setting is in hand."""
    index, graphs = tiers
    fresh = GraphSet(list(graphs.graphs.values()))
    measured: list[tuple[int, int]] = []
    real = hnsw._tune_tier

    def counting(index, tier, dim, *args):
        measured.append((dim, tier.dim))
        return real(index, tier, dim, *args)

    monkeypatch.setattr(hnsw, "_tune_tier", counting)
    calls: list[tuple[int, int, int]] = []
    hnsw.tune(
        index,
        fresh,
        [8, 24, 48],
        k=10,
        target=0.95,
        queries=20,
        progress=lambda done, total: calls.append((done, total, len(measured))),
    )
    assert measured == [(8, 16), (24, 16), (48, 16), (48, 32)]
    assert calls == [(step, 4, step) for step in range(5)]
    assert sorted(fresh.table) == [8, 24, 48] and sorted(fresh.table[48]) == [16, 32]


def test_tiers_are_timed_against_each_other_query_by_query() -> None:
    """Each query runs every search in turn, the order reversed every other round."""
    ran: list[tuple[int, int]] = []
    searches = [lambda q, i=i: ran.append((i, int(q[0]))) for i in range(2)]
    queries = np.arange(3, dtype=np.float32)[:, None]
    ms = hnsw._interleaved_ms(searches, queries, rounds=2)
    assert len(ms) == 2 and all(m >= 0 for m in ms)
    first = [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
    assert ran == [*first, (1, 0), (0, 0), (1, 1), (0, 1), (1, 2), (0, 2)]


def test_tune_picks_the_tier_that_is_faster_when_timed_together(
    tiers: tuple[NestedIndex, GraphSet], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 48 both tiers reach the target; which one serves is what the interleaved timing says,
    whatever each tier's own timing said, and the table keeps those ms."""
    index, graphs = tiers
    for together in ([5.0, 1.0], [1.0, 5.0]):
        fresh = GraphSet(list(graphs.graphs.values()))
        calls: list[int] = []

        def fixed(searches, queries, rounds, together=together, calls=calls):
            calls.append(len(searches))
            assert rounds == hnsw.TUNE_TIER_ROUNDS and len(queries) <= hnsw.TUNE_TIMED_QUERIES
            return together

        monkeypatch.setattr(hnsw, "_interleaved_ms", fixed)
        chosen = hnsw.tune(index, fresh, [24, 48], k=10, target=0.95, queries=40)
        assert calls == [2]  # at 24 only the 16-d tier serves: nothing to time against
        assert [fresh.table[48][g].ms for g in (16, 32)] == together
        assert chosen[48].graph == (32 if together[1] < together[0] else 16)
        assert fresh.setting(48) == chosen[48]


def test_candidates_for_many_queries_are_each_querys_own(
    data: tuple[np.ndarray, NestedIndex, HnswGraph], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, graph = data
    monkeypatch.setattr(hnsw, "BEAM_BATCH", 7)  # several calls, a short last one
    queries = clustered(30, seed=11)
    for ef in (10, 48, 200):
        many = graph.candidates_many(queries, ef, ef=ef)
        assert many.shape == (30, ef) and many.dtype == np.int64
        for q, row in zip(queries, many, strict=True):
            assert np.array_equal(row, graph.candidates(q, ef, ef=ef))
    assert graph.candidates_many(queries[:0], 10).shape == (0, 10)
    with pytest.raises(InputError):
        graph.candidates_many(queries[:, :16], 10)
    with pytest.raises(InputError):
        graph.candidates_many(np.full((2, 48), np.inf, np.float32), 10)


def test_tune_counts_a_tied_duplicate_as_graph_search_does() -> None:
    """Duplicate rows tie; the exact top-k keeps the lower id, and tune's recall (the true rows'
    places in the beam) is the recall graph search then gets at every setting it tried."""
    x = clustered(1500, seed=12)
    x[1000:1300] = x[:300]  # 300 rows twice
    index = NestedIndex(x)
    graphs = GraphSet([HnswGraph.build(x, 16, M=8, ef_construction=40, threads=2)])
    queries = x[:300:10] + 0.01
    chosen = hnsw.tune(index, graphs, [32, 48], k=10, target=0.9, probes=queries)
    for dim, setting in chosen.items():
        kept = [
            len(set(index.search(q, dim, 10).ids.tolist())
                & set(graph_search(index, graphs, q, dim, 10).ids.tolist())) / 10
            for q in queries
        ]  # fmt: skip
        assert np.mean(kept) == pytest.approx(setting.recall)
