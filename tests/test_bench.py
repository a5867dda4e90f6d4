"""`mrl-tui bench`: funnel arithmetic and exactness, and an end-to-end run on a tiny BEIR set."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import TOPICS, write_files
from test_beir import write_beir

from mrl_tui.cli import main
from mrl_tui.core.errors import InputError
from mrl_tui.core.evaluation.bench import check_dims, parse_dims
from mrl_tui.core.evaluation.measure import against_fixed
from mrl_tui.core.evaluation.metrics import Scores, evaluate
from mrl_tui.core.search.funnel import (
    AUTO_AGREEMENT,
    Funnel,
    auto_funnel,
    auto_grid,
    scan_fraction,
    staged_search,
    values_read,
)
from mrl_tui.core.search.index import NestedIndex

DOCS = {
    "bread": ("Sourdough", "Feed the starter with flour and water, then bake the loaf hot."),
    "pasta": ("Fresh pasta", "Knead eggs and flour into dough, roll it thin and cut noodles."),
    "mars": ("Mars", "The red planet has two moons and the tallest volcano, Olympus Mons."),
    "jupiter": ("Jupiter", "The largest planet is a gas giant with a great red storm."),
    "chain": ("Bike chain", "Clean and lube the bicycle chain; replace it when worn."),
    "tyres": ("Bike tyres", "Pump bicycle tyres to the pressure printed on the sidewall."),
    "dns": ("DNS", "Use dig to query the resolver and check the A record."),
    "ssh": ("SSH keys", "Generate an ed25519 key and copy it to the server."),
    "budget": ("Budget", "Split income between needs, wants and savings each month."),
    "cpr": ("CPR", "Push hard and fast in the centre of the chest, 100 to 120 a minute."),
    "roses": ("Roses", "Prune roses in late winter just above an outward-facing bud."),
    "chords": ("Triads", "A major triad stacks a major third and a minor third."),
}
QUERIES = {
    "q1": "baking bread at home",
    "q2": "planets of the solar system",
    "q3": "bicycle maintenance",
    "q4": "how to resuscitate someone",
    "q5": "a query nobody judged",
}
QRELS = (
    "q1 bread 2\nq1 pasta 1\nq2 mars 2\nq2 jupiter 2\nq2 dns 0\nq3 chain 1\nq3 tyres 1\nq4 cpr 1\n"
)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_parse_and_check_dims() -> None:
    assert parse_dims("64, 32,64") == [32, 64]
    for bad in ("", "32,x", "0", "-8"):
        with pytest.raises(InputError, match=r"^dims: ") as raised:
            parse_dims(bad)
        assert raised.value.settings == ("dims",)  # the CLI says --dims
    assert check_dims([32, 384], 384) == [32]  # full is always measured, not repeated
    with pytest.raises(InputError, match="above"):
        check_dims([512], 384)


def test_scan_fraction_counts_every_stage() -> None:
    one = Funnel(((32, 100),))
    assert values_read(one, 5000, 384) == 5000 * 32 + 100 * 384
    assert scan_fraction(one, 5000, 384) == pytest.approx(198_400 / 1_920_000)
    two = Funnel(((16, 400), (64, 100)))
    assert values_read(two, 5000, 384) == 5000 * 16 + 400 * 64 + 100 * 384
    assert scan_fraction(two, 5000, 384) == pytest.approx(0.075)
    assert values_read(Funnel(((8, 999),)), 10, 16) == 10 * 8 + 10 * 16  # kept is capped at N


def test_funnel_equals_exact_when_it_keeps_every_row() -> None:
    rng = np.random.default_rng(1)
    index = NestedIndex(rng.standard_normal((60, 32)).astype(np.float32))
    for q in rng.standard_normal((5, 32)).astype(np.float32):
        exact = index.search(q, 32, 60).ids
        for funnel in (Funnel(((4, 60),)), Funnel(((4, 100), (16, 60)))):
            assert np.array_equal(staged_search(index, q, funnel, 60), exact)
        # Fewer candidates: the head is reranked, the tail keeps the scan's order, depth is kept.
        got = staged_search(index, q, Funnel(((4, 10),)), 30)
        assert len(got) == 30 and len(set(got.tolist())) == 30
        assert np.array_equal(got[10:], index.search(q, 4, 30).ids[10:])


def test_auto_funnel_is_the_cheapest_that_agrees_on_pseudo_queries() -> None:
    rng = np.random.default_rng(2)
    # Variance falling with the coordinate, like a PCA basis: short prefixes carry most of it.
    x = (rng.standard_normal((3000, 64)) * np.linspace(3, 0.2, 64)).astype(np.float32)
    index = NestedIndex(x)
    sources = list(range(0, 3000, 60))
    pseudo = x[sources] + 0.5 * rng.standard_normal((len(sources), 64)).astype(np.float32)
    funnel, agreement = auto_funnel(index, pseudo, sources, 10)
    assert funnel.auto and agreement >= AUTO_AGREEMENT
    grid = auto_grid(64, 3000)
    assert Funnel(funnel.stages) in grid
    assert scan_fraction(funnel, 3000, 64) < 1
    costs = [values_read(f, 3000, 64) for f in grid]
    assert costs == sorted(costs)


def _ranked(x: np.ndarray, q: np.ndarray, dim: int, rows: np.ndarray) -> np.ndarray:
    """`rows` by cosine with `q` over the first `dim` coordinates, best first (plain numpy)."""
    part = x[rows, :dim]
    cosine = part @ q[:dim] / (np.linalg.norm(part, axis=1) * np.linalg.norm(q[:dim]))
    return rows[np.argsort(-cosine, kind="stable")]


def _funnel_ranking(x: np.ndarray, q: np.ndarray, stages: list[dict[str, int]], depth: int):
    """A funnel written out: scan at the first dim, each stage reranks its head at the next dim
    (the last at full), the tail keeps the previous order."""
    ranking = _ranked(x, q, stages[0]["dim"], np.arange(len(x)))
    dims = [s["dim"] for s in stages[1:]] + [x.shape[1]]
    for stage, dim in zip(stages, dims, strict=True):
        head = ranking[: stage["kept"]]
        ranking = np.concatenate([_ranked(x, q, dim, head), ranking[stage["kept"] :]])
    return ranking[:depth]


def test_bench_report_rows_are_the_rankings_they_name() -> None:
    """On a corpus where short prefixes and small funnels lose documents, each fixed and funnel row
    of the report holds the scores of that search written out by hand, and they differ from full."""
    from mrl_tui.core.evaluation.measure import run_bench
    from mrl_tui.core.evaluation.sets import EvalSet

    rng = np.random.default_rng(7)
    n, full_dim = 1500, 96
    # Variance falling with the coordinate (a PCA basis): prefixes rank roughly, not exactly.
    x = (rng.standard_normal((n, full_dim)) * np.linspace(2, 0.5, full_dim)).astype(np.float32)
    sources = rng.choice(n, 40, replace=False)
    queries = x[sources] + 0.8 * rng.standard_normal((40, full_dim)).astype(np.float32)
    docs = [f"d{i}" for i in range(n)]
    qrels = {}
    for i, q in enumerate(queries):
        top = _ranked(x, q, full_dim, np.arange(n))[:5]
        qrels[f"q{i}"] = {docs[r]: 2.0 if j == 0 else 1.0 for j, r in enumerate(top)}
    pseudo = x[::30] + 0.3 * rng.standard_normal((50, full_dim)).astype(np.float32)
    es = EvalSet(
        name="synthetic",
        model="none",
        transform="identity",
        index=NestedIndex(x),
        row_docs=docs,
        query_ids=list(qrels),
        query_vectors=queries,
        qrels=qrels,
        pseudo_vectors=pseudo,
        pseudo_sources=list(range(0, n, 30)),
    )
    report = run_bench(es, [8, 32]).to_dict()
    assert report["routed"] is None  # no query texts: nothing to route

    def scores(rank: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
        rankings = {qid: [docs[r] for r in rank(q)] for qid, q in zip(qrels, queries, strict=True)}
        got = evaluate(rankings, qrels, ndcg_k=10, recall_k=100)
        return {
            "ndcg10": pytest.approx(got.ndcg, abs=1e-4),
            "recall100": pytest.approx(got.recall, abs=1e-4),
        }

    everything = np.arange(n)
    assert report["full"] == scores(lambda q: _ranked(x, q, full_dim, everything)[:100])
    for row in report["fixed"]:
        expected = scores(lambda q, d=row["dim"]: _ranked(x, q, d, everything)[:100])
        assert {"ndcg10": row["ndcg10"], "recall100": row["recall100"]} == expected, row["dim"]
    assert report["fixed"][0]["ndcg10"] < report["fixed"][1]["ndcg10"] < report["full"]["ndcg10"]
    assert report["full"]["ndcg10"] == pytest.approx(1.0)  # the judgements are full's top 5

    assert len(report["funnel"]) >= 10
    for row in report["funnel"]:
        expected = scores(lambda q, st=row["stages"]: _funnel_ranking(x, q, st, 100))
        assert {"ndcg10": row["ndcg10"], "recall100": row["recall100"]} == expected, row["label"]
        assert row["scan_fraction"] < 1
    cheapest = min(report["funnel"], key=lambda r: r["scan_fraction"])
    assert cheapest["ndcg10"] < report["full"]["ndcg10"]  # a funnel is not full by construction


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny", DOCS, QUERIES, QRELS)


def test_bench_on_a_tiny_beir_set(
    tiny_beir: Path, embedder, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plot = tiny_beir.parent / "plot.svg"
    code, out, err = run(
        [
            "bench",
            "--beir",
            str(tiny_beir),
            "--dims",
            "16,32",
            "--json",
            "--device",
            "cpu",
            "--plot",
            str(plot),
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads(out)
    routed = report["routed"]
    assert set(routed) >= {"mean_dim", "scan_fraction", "ndcg10", "recall100"}
    assert 1 <= routed["mean_dim"] <= 384 and 0 < routed["scan_fraction"] <= 1
    # The histogram of stopping dims covers every query and is what the mean is made of.
    stops = {int(d): n for d, n in routed["dims"].items()}
    assert sum(stops.values()) == 4
    assert routed["mean_dim"] == pytest.approx(sum(d * n for d, n in stops.items()) / 4, abs=0.05)
    # Routed is compared with each fixed dim at least as expensive, and full always is one.
    compared = [row["dim"] for row in routed["against_fixed"]]
    assert compared[-1] == 384
    assert all(d / 384 >= routed["scan_fraction"] for d in compared)
    assert report["queries"] == 4 and report["docs"] == 12 and report["full_dim"] == 384
    assert [row["dim"] for row in report["fixed"]] == [16, 32, 384]
    assert set(report["fixed"][0]) == {
        "dim",
        "ndcg10",
        "recall100",
        "search_ms",
        "bytes_per_vector",
    }
    assert report["fixed"][1]["bytes_per_vector"] == 128
    for row in report["funnel"]:
        assert {"dim", "candidates", "rerank_dim", "ndcg10", "recall100", "scan_fraction"} <= set(
            row
        )
    assert plot.read_text().startswith("<svg")

    # The full-dim numbers are those of a plain brute-force cosine ranking.
    ids = list(DOCS)
    docs = embedder.embed_documents([f"{t} {x}" for t, x in DOCS.values()])
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    rankings = {}
    for qid, text in QUERIES.items():
        q = embedder.embed_query(text)
        rankings[qid] = [ids[i] for i in np.argsort(-(docs @ (q / np.linalg.norm(q))))]
    qrels: dict[str, dict[str, float]] = {}
    for line in QRELS.splitlines():
        q, d, g = line.split()
        qrels.setdefault(q, {})[d] = float(g)
    expected = evaluate(rankings, qrels)
    assert report["full"] == {
        "ndcg10": pytest.approx(expected.ndcg, abs=1e-4),
        "recall100": pytest.approx(expected.recall, abs=1e-4),
    }
    assert report["fixed"][-1]["ndcg10"] == report["full"]["ndcg10"]

    # A second run only re-scores: the embeddings come from the cache.
    cached = list((Path(os.environ["MRL_TUI_CACHE_DIR"]) / "bench").glob("*/docs-*.npy"))
    assert len(cached) == 1

    def no_embedding(*args: object, **kwargs: object) -> None:
        raise AssertionError("documents were embedded again")

    monkeypatch.setattr("mrl_tui.core.embedding.embed.Embedder.embed_documents", no_embedding)
    code, out, err = run(["bench", "--beir", str(tiny_beir), "--device", "cpu"], capsys)
    assert code == 0, err
    assert "routed (mean" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--dims", "32,abc"], "--dims"),
        (["--dims", "1000"], "above"),
        (["--plot", "out.png"], "SVG"),
    ],
)
def test_bad_bench_input_is_one_line(
    tiny_beir: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, out, err = run(["bench", "--beir", str(tiny_beir), "--device", "cpu", *args], capsys)
    assert code == 1 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1


def test_bad_bench_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "half").mkdir()
    code, _, err = run(["bench", "--beir", str(tmp_path / "half")], capsys)
    assert code == 1 and "missing corpus.jsonl" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["bench"], capsys)
    assert code == 1 and "either" in err
    code, _, err = run(["bench", str(tmp_path)], capsys)
    assert code == 1 and "no queries.tsv" in err


def test_bench_on_a_folder_with_queries_tsv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_files(tmp_path / "topics", TOPICS)
    (folder / "queries.tsv").write_text(
        "query\trelevant_file\nsourdough starter\tcooking/bread.md\n"
        "moons of mars\tspace/mars.md\nresolver records\tnet/dns.md\n"
    )
    code, out, err = run(["bench", str(folder), "--json", "--device", "cpu"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["queries"] == 3 and report["docs"] == len(TOPICS)  # queries.tsv is no document
    assert report["full"] == {"ndcg10": 1.0, "recall100": 1.0}

    # --compare: the folder's own vectors under each transform, without indexing it again.
    code, out, err = run(
        ["bench", str(folder), "--compare", "--dims", "8,32", "--json", "--device", "cpu"], capsys
    )
    assert code == 0, err
    compare = json.loads(out)["compare"]
    assert compare["chosen"] == "pca"
    assert compare["columns"] == ["naive", "pca", "adaptor", "pca int8", "pca binary"]
    assert [row["dim"] for row in compare["rows"]] == [8, 32, 384]
    full = compare["rows"][-1]
    assert full["naive"] == full["pca"] == {"ndcg10": 1.0, "recall100": 1.0}  # a rotation


def test_routed_is_compared_with_fixed_dims_of_equal_or_higher_cost() -> None:
    routed = Scores(0.5, 1.0, 4, (1.0, 0.0, 1.0, 0.0))
    fixed = {
        32: Scores(0.25, 1.0, 4, (1.0, 0.0, 0.0, 0.0)),  # cheaper than routed: left out
        64: Scores(0.5, 1.0, 4, (1.0, 0.0, 1.0, 0.0)),
        128: Scores(1.0, 1.0, 4, (1.0, 1.0, 1.0, 1.0)),
    }
    rows = against_fixed(routed, 0.3, fixed, 128)
    assert [row.dim for row in rows] == [64, 128]
    assert rows[0].ndcg_diff == 0.0 and rows[0].ci95 == (0.0, 0.0)
    assert rows[1].ndcg_diff == -0.5 and rows[1].ci95[1] <= 0.0
    assert rows[1].scan_fraction == 1.0
