"""The router: query features, explainable and deterministic routes, and confidence escalation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import run

from mrl_tui.core.search.funnel import Funnel, auto_funnel, staged_search, values_read
from mrl_tui.core.search.index import NestedIndex
from mrl_tui.core.search.pseudo import SHORT, WINDOWS, pseudo_queries
from mrl_tui.core.search.query_features import (
    FEATURE_GROUPS,
    TermStats,
    query_features,
    tokenize,
)
from mrl_tui.core.search.rerank import rerank_head
from mrl_tui.core.search.router import (
    Route,
    Router,
    Rung,
    keeps_quality,
    ladder,
    risky_groups,
    routable,
)

CORPUS = [
    "The cat sat on the mat.",
    "A dog and a cat play in the garden.",
    "Parse the config with load_config before you start the server.",
    "The garden has roses and a pond.",
]


def stats() -> TermStats:
    return TermStats.from_texts(CORPUS)


def test_tokenize_and_document_frequency() -> None:
    assert tokenize("Hello, World-2024!") == ["hello", "world", "2024"]
    s = stats()
    assert s.docs == 4 and s.df["cat"] == 2 and s.df["the"] == 4 and s.df["pond"] == 1
    assert s.idf("pond") > s.idf("cat") > s.idf("the")
    assert s.idf("unseen") > s.idf("pond")  # an unseen term is rarest of all
    assert s.is_rare("unseen") and not s.is_rare("cat")


def test_features_of_hand_made_queries() -> None:
    f = query_features("cat", stats())
    assert (f.tokens, f.content_words, f.clauses) == (1, 1, 1)
    assert not (f.negations or f.qualifiers or f.numbers or f.identifiers or f.names)

    f = query_features("gardens without a pond, except the ones that aren't small", stats())
    assert f.negations == ["without", "except", "n't"]
    assert f.clauses == 2  # the comma starts a second clause

    f = query_features("only errors from load_config, parseJSON or os.path.join in 2024", stats())
    assert f.identifiers == ["load_config", "parseJSON", "os.path.join"]
    assert f.numbers == ["2024"] and f.qualifiers == ["only"]

    f = query_features("where did Hugh Downs work in New York", stats())
    assert f.names == ["Hugh", "Downs", "New", "York"]
    assert f.content_words == 5  # where/did/in are stop words
    assert query_features("Cats in the garden", stats()).names == []  # a capital at the start

    f = query_features("cat pond", stats())
    assert f.max_idf == pytest.approx(stats().idf("pond"))
    assert f.mean_idf == pytest.approx((stats().idf("cat") + stats().idf("pond")) / 2)


def unstable_vectors() -> tuple[NestedIndex, np.ndarray]:
    """Rows 0–9 win on the first 8 coordinates; rows 10–19 win once coordinates 8–16 count."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 32)).astype(np.float32) * 0.01
    x[:10, 0] = 1.0  # aligned with the query's head only
    x[10:20, 0:2] = 0.7  # half aligned with the head
    x[10:20, 8:16] = 1.0  # but aligned with the next coordinates too
    q = np.zeros(32, np.float32)
    q[0], q[8:16] = 1.0, 1.0
    return NestedIndex(x), q


def router(rungs: list[Rung]) -> Router:
    return Router(stats(), full_dim=32, scan_dim=8, scan_keep=100, rungs=rungs, candidates=50)


def test_escalates_when_the_top_k_changes_and_not_when_it_is_stable() -> None:
    index, q = unstable_vectors()
    r = router([Rung(16, 0.8, 0.0), Rung(32, None, 0.0)])
    found, route = r.search(index, "cat", q)
    # At 8 dims rows 0–9 lead, at 16 rows 10–19: nothing shared, so the route climbs to full.
    assert route.dim == 32 and route.stages == [(8, 300), (16, 100), (32, 50)]
    assert "unstable up to 16" in route.summary
    assert set(found.ids.tolist()) == set(range(10, 20))
    assert route.values_read == 8 * 300 + 16 * 100 + 32 * 50

    # The same query on vectors whose top 10 is the same at every prefix stops at the first rung.
    x = np.asarray(index.vectors())
    x[:10, 8:16] = 2.0
    found, route = r.search(NestedIndex(x), "cat", q)
    assert route.dim == 16 and route.stages == [(8, 300), (16, 100)]
    assert "stable between 8 and 16 (10 shared)" in route.summary
    assert set(found.ids.tolist()) == set(range(10))


def test_a_thin_margin_escalates_too() -> None:
    index, q = unstable_vectors()
    x = np.asarray(index.vectors())
    x[:10, 8:16] = 2.0
    stable = NestedIndex(x)
    assert router([Rung(16, 0.8, 0.0), Rung(32, None, 0.0)]).search(stable, "cat", q)[1].dim == 16
    assert router([Rung(16, 0.8, 10.0), Rung(32, None, 0.0)]).search(stable, "cat", q)[1].dim == 32


def test_risky_feature_groups_climb_higher_and_hard_queries_go_to_full() -> None:
    index, q = unstable_vectors()
    x = np.asarray(index.vectors())
    x[:10, 8:16] = 2.0
    stable = NestedIndex(x)
    r = router([Rung(16, 0.8, 0.0, ("negation",)), Rung(24, 0.8, 0.0), Rung(32, None, 0.0)])
    assert r.search(stable, "cat", q)[1].dim == 16
    route = r.search(stable, "cat without pond", q)[1]  # negation is risky at 16, not at 24
    assert route.dim == 24 and route.reasons[0].startswith("negation/qualifier without")
    assert "negation queries need more than 16 here" in route.reasons
    assert r.search(stable, "cat pond 2024", q)[1].dim == 16  # exact tokens: not risky here
    route = r.search(stable, "only zebra_count not in 2024, unless quagga", q)[1]
    assert route.dim == 32 and "hard: no early stop" in route.reasons
    assert [d for d, _ in route.stages] == [8, 16, 32]  # the first rung still narrows
    # A group risky at every rung that can stop keeps the query from stopping before full.
    r = router([Rung(16, 0.8, 0.0, ("negation",)), Rung(32, None, 0.0)])
    route = r.search(stable, "cat without pond", q)[1]
    assert route.dim == 32 and "top-10 not trusted up to 16: full" in route.summary


def test_quality_must_be_kept_with_confidence_not_just_on_average() -> None:
    assert keeps_quality(np.ones(50), np.ones(50))  # nothing lost
    assert not keeps_quality(np.zeros(50), np.ones(50))  # everything lost
    # 1 of 50 pseudo-queries loses its source: 98 % on average, below the 99 % asked for.
    gains = np.ones(50)
    gains[0] = 0.0
    assert not keeps_quality(gains, np.ones(50))
    # 100 % on average, but from 4 queries of which one gained and one lost a lot: not sure enough.
    assert not keeps_quality(np.array([1.0, 0.2, 1.0, 1.0]), np.array([0.2, 1.0, 1.0, 1.0]))
    assert not keeps_quality(np.array([]), np.array([]))


def test_a_group_is_risky_when_its_stable_pseudo_queries_lose_quality() -> None:
    n = 40
    chosen = np.array([True] * 30 + [False] * 10)
    reference = np.ones(n)
    gains = np.ones(n)
    gains[:12] = 0.5  # the numbered queries among the stable ones lose half their nDCG
    has = {g: np.zeros(n, bool) for g in FEATURE_GROUPS}
    has["exact"][:12] = True
    has["rare"][12:30] = True  # stable and as good as at full
    has["negation"][:5] = True  # too few to judge
    has["long"][30:] = True  # shown only by queries that were not stable
    risky, unknown = risky_groups(chosen, gains, reference, has)
    assert risky == ["exact"]
    assert "rare" not in risky and set(unknown) == {"negation", "long", "clauses"}


def corpus_600() -> tuple[np.ndarray, NestedIndex, list[str]]:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((600, 64)) * np.linspace(3, 0.2, 64)).astype(np.float32)
    texts = [" ".join(f"w{(i * 7 + j) % 97}" for j in range(12)) for i in range(600)]
    return x, NestedIndex(x), texts


def noisy(x: np.ndarray, rows: list[int], seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return x[rows] + 0.3 * rng.standard_normal((len(rows), x.shape[1])).astype(np.float32)


def test_routes_are_deterministic_and_explained() -> None:
    x, index, texts = corpus_600()
    pseudo = pseudo_queries(texts, SHORT, count=60)
    assert all(2 <= len(t.split()) <= 6 for _, t in pseudo)
    rows = [row for row, _ in pseudo]
    r = Router.calibrate(index, TermStats.from_texts(texts), noisy(x, rows), rows)
    # Here the doubling ladder reads less on the pseudo-queries than the auto funnel's cascade.
    costs = r.notes["pseudo_scan"]
    assert r.notes["ladder"] == "doubling" and costs["doubling"] < costs["funnel"]
    assert [g.dim for g in r.rungs] == ladder(r.scan_dim, 64)
    funnel, _ = auto_funnel(index, noisy(x, rows), rows, 10)
    for i, text in enumerate(["w3 w10", "w5 without w6", "only w1_x in 2024, not w2"]):
        q = x[i * 50] + 0.3
        a_hits, a = r.search(index, text, q, depth=20)
        b_hits, b = r.search(index, text, q, depth=20)
        assert a == b and np.array_equal(a_hits.ids, b_hits.ids)
        assert a.reasons and a.summary.startswith(f"{a.dim}-d: ")
        assert r.scan_dim < a.dim <= 64 and a.values_read <= values_read(funnel, 600, 64)
        assert len(a_hits) == 20
        assert set(a.to_dict()) >= {"dim", "reasons", "features"}


def test_a_route_is_the_funnel_unless_it_stops_early_and_then_reads_less() -> None:
    x, index, texts = corpus_600()
    funnel = Funnel(((8, 200), (32, 40)))
    stats = TermStats.from_texts(texts)
    never = Router(stats, 64, 8, 200, [Rung(32, None, 0.0), Rung(64, None, 0.0)], 10, 40)
    always = Router(stats, 64, 8, 200, [Rung(32, 0.0, 0.0), Rung(64, None, 0.0)], 10, 40)
    for q in noisy(x, [5, 123, 444], seed=3):
        found, route = never.search(index, "w1 w2", q, depth=30)
        assert np.array_equal(found.ids, staged_search(index, q, funnel, 30))
        assert route.values_read == values_read(funnel, 600, 64) and route.dim == 64
        assert route.stages == [(8, 600), (32, 200), (64, 40)]
        found, route = always.search(index, "w1 w2", q, depth=30)
        assert route.dim == 32 and route.values_read == 600 * 8 + 200 * 32
        assert "top-10 stable between 8 and 32 (" in route.summary
        at_32 = rerank_head(index, q, 32, index.search(q, 8, 200).ids)
        assert np.array_equal(found.ids, at_32.ids[:30])
        assert np.allclose(found.scores, at_32.scores[:30])


def test_calibration_keeps_the_funnel_ladder_where_it_reads_less() -> None:
    x, index, texts = corpus_600()
    pseudo = pseudo_queries(texts, SHORT, count=60)
    rows = [row for row, _ in pseudo]
    funnel = Funnel(((8, 100), (32, 30)))
    r = Router.calibrate(index, TermStats.from_texts(texts), noisy(x, rows), rows, funnel=funnel)
    costs = r.notes["pseudo_scan"]
    assert r.notes["ladder"] == "funnel" and costs["funnel"] <= costs["doubling"]
    assert (r.scan_dim, r.scan_keep, r.candidates) == (8, 100, 30)
    assert [g.dim for g in r.rungs] == [32, 64]
    for q in noisy(x, [7, 300, 512], seed=4):
        found, route = r.search(index, "w1 w2", q, depth=20)
        assert route.values_read <= values_read(funnel, 600, 64)
        if route.dim == 64:  # it did not stop: the funnel's own ranking
            assert np.array_equal(found.ids, staged_search(index, q, funnel, 20))


def test_routing_pays_only_where_the_funnel_reads_at_most_half_a_scan() -> None:
    assert routable(5000, 384) and routable(552, 384) and routable(120, 384)
    assert not routable(100, 384) and not routable(80, 64)
    x, index, texts = corpus_600()
    with pytest.raises(ValueError, match="at most two stages"):
        Router.calibrate(
            index,
            TermStats.from_texts(texts),
            x[:5],
            [0, 1, 2, 3, 4],
            funnel=Funnel(((8, 300), (16, 100), (32, 50))),
        )


def test_the_two_pseudo_query_cuts() -> None:
    texts = [" ".join(f"r{i}w{j}" for j in range(5 + i % 20)) for i in range(300)] + ["a b"]
    windows = pseudo_queries(texts, WINDOWS, count=50)
    assert len(windows) == 50 and windows == pseudo_queries(texts, WINDOWS, count=50)
    for row, text in windows:
        words = texts[row].split()
        assert len(text.split()) == min(10, len(words)) and text in texts[row]
    short = pseudo_queries(texts, SHORT, count=50)
    assert all(2 <= len(t.split()) <= 6 and t in texts[row] for row, t in short)
    heads = [t for row, t in short[::2]]  # every other one is a chunk's first words
    assert all(texts[row].startswith(t) for (row, _), t in zip(short[::2], heads, strict=True))
    assert 300 not in {row for row, _ in short}  # "a b" is too short to cut from


def test_a_small_index_is_one_exact_full_scan() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((80, 64)).astype(np.float32)
    index = NestedIndex(x)
    texts = [f"row {i} about w{i % 7}" for i in range(80)]
    pseudo = pseudo_queries(texts, count=20)
    vectors = x[[row for row, _ in pseudo]]
    r = Router.calibrate(index, TermStats.from_texts(texts), vectors, [row for row, _ in pseudo])
    assert r.rungs == []
    found, route = r.search(index, "w3", x[5], depth=7)
    exact = index.search(x[5], 64, 7)
    assert np.array_equal(found.ids, exact.ids)
    assert route.dim == 64 and route.stages == [(64, 80)] and route.values_read == 64 * 80
    assert "small index (80 rows): exact full-dim scan" in route.summary


def test_a_saved_router_loads_the_same(tmp_path: Path) -> None:
    r = router([Rung(16, 0.8, 0.001), Rung(32, None, 0.0)])
    path = tmp_path / "router-1.json"
    r.save(path)
    assert Router.load(path) == r
    path.write_text("{}")
    with pytest.raises(ValueError):
        Router.load(path)
    r.save(path)
    old = json.loads(path.read_text())
    old["version"] = 1  # saved under the rules of an earlier release
    path.write_text(json.dumps(old))
    with pytest.raises(ValueError, match="another version"):
        Router.load(path)


def test_route_to_dict_is_json() -> None:
    route = Route(64, ["short keyword query"], {"tokens": 2}, [(32, 10), (64, 5)], 640)
    assert json.loads(json.dumps(route.to_dict()))["summary"] == "64-d: short keyword query"


def test_search_route_auto_json(topic_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["search", str(topic_folder), "red planet moons", "--route", "auto", "--json"], capsys
    )
    assert code == 0, err
    data = json.loads(out)
    route = data["route"]
    assert set(route) >= {"dim", "reasons", "features"} and route["reasons"]
    assert data["dim"] == route["dim"] and 1 <= route["dim"] <= 384
    assert data["results"][0]["path"] == "space/mars.md"
    assert route["features"]["content_words"] == 3

    # --dim overrides the router.
    code, out, _ = run(
        [
            "search",
            str(topic_folder),
            "red planet moons",
            "--route",
            "auto",
            "--dim",
            "64",
            "--json",
        ],
        capsys,
    )
    data = json.loads(out)
    assert code == 0 and data["dim"] == 64 and "route" not in data
