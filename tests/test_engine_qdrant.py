"""The engine backend (`--backend`) against real Qdrant: the embedded Rust engine (qdrant-edge-py)
and qdrant-client's in-process local mode (the client calls a server user makes)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES
from fakes import LIBRARY_DIM, HashEmbedder

pytest.importorskip("qdrant_edge")
pytest.importorskip("qdrant_client")

from mrl_tui.cli import main
from mrl_tui.core.embedding.choice import ModelChoice
from mrl_tui.core.engines import EngineError, open_engine, tiers_for
from mrl_tui.core.engines.base import CollectionSpec, EnginePoint, prefix
from mrl_tui.core.library import Library

QUERIES = ("how to bake sourdough bread", "planets and moons", "budget and savings", "dns")


def backends(tmp: Path) -> list[str]:
    # A fresh in-memory collection per test: the memory client is shared by the process.
    return [f"qdrant:{tmp / 'engine'}", f"qdrant://:memory:/t{uuid.uuid4().hex[:8]}"]


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory) -> Library:
    """The notes sample, indexed once with the hash embedder (96 dims: tiers 32/64/96, PCA)."""
    library = Library(
        SAMPLES / "notes", HashEmbedder(LIBRARY_DIM), cache_root=tmp_path_factory.mktemp("cache")
    )
    library.update()
    library.load()
    yield library
    library.close()


def test_tiers_are_capped_at_the_model_dim() -> None:
    assert tiers_for(384) == (32, 64, 128, 256, 384)
    assert tiers_for(96) == (32, 64, 96)
    assert tiers_for(32) == (32,)


@pytest.mark.parametrize("kind", ["edge", "memory"])
def test_rankings_equal_the_local_index_at_every_tier(
    notes: Library, tmp_path: Path, kind: str
) -> None:
    backend = backends(tmp_path)[0 if kind == "edge" else 1]
    queries = [notes.query(text) for text in QUERIES]
    local = {
        (q.text, d): notes.search(q, d, 10, mode="exact") for q in queries for d in (32, 64, 96)
    }
    notes.use_engine(backend)
    try:
        assert notes.engine.engine.info().points == notes.chunk_count
        for (text, dim), want in local.items():
            got = notes.search(next(q for q in queries if q.text == text), dim, 10, mode="exact")
            assert got.backend != "local" and not got.note
            assert [h.id for h in got.hits] == [h.id for h in want.hits], (text, dim)
            assert np.allclose([h.score for h in got.hits], [h.score for h in want.hits], atol=1e-5)
        # A funnel in the engine (nested prefetch) keeping every row is the exact answer.
        engine, want = notes.engine.engine, [h.id for h in local[(QUERIES[0], 96)].hits]
        everything = [(32, notes.chunk_count), (64, notes.chunk_count)]
        found = engine.search(queries[0].vector, 96, 10, everything, exact=True)
        assert found.ids.tolist() == want
        found, _, used = notes.engine.search_vector(queries[0].vector, 96, 10, "funnel")
        assert used == "funnel" and len(found.ids) == 10
        # Between tiers: the tier below's candidates, rescored here, and the result says so.
        between = notes.search(queries[0], 50, 10, mode="exact")
        assert between.mode == "tier-rescored" and "between the engine's tiers 32 and 64" in (
            between.note
        )
        assert any("rescored at 50" in m for m in notes.take_messages())
        exact50 = notes.index.search(queries[0].vector, 50, 10)
        assert between.hits[0].id == int(notes.row_chunk_ids[exact50.ids[0]])
    finally:
        notes.engine.close()
        notes.engine = None


FILTERED = (
    "path:first-aid/ how to stop bleeding",  # one folder: the files kept are sent
    "-path:first-aid/ -path:music-theory/ budget and savings",  # most files: those left out
    "path:*burns* path:*fund* help",  # globs, either may match
    "path:notes/ planets",  # matches where a component starts: nothing in notes/ has notes/
)


@pytest.mark.parametrize("kind", ["edge", "memory"])
def test_path_filters_run_in_the_engine_and_equal_local_search(
    notes: Library, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mrl_tui.core.errors import InputError

    queries = [notes.query(text) for text in FILTERED[:3]]
    dims = (32, 50, 64, 96)
    local = {
        (q.text, d, m): notes.search(q, d, 8, mode=m)
        for q in queries
        for d in dims
        for m in ("exact", "auto")
    }
    with pytest.raises(InputError, match="no indexed file matches") as want_error:
        notes.search(notes.query(FILTERED[3]), 96, 8)
    notes.use_engine(backends(tmp_path)[0 if kind == "edge" else 1])
    engine = notes.engine.engine
    sent: list[object] = []
    real = engine.search
    monkeypatch.setattr(
        engine, "search", lambda *a, **k: sent.append(k.get("where")) or real(*a, **k)
    )
    try:
        for (text, dim, mode), want in local.items():
            query = next(q for q in queries if q.text == text)
            got = notes.search(query, dim, 8, mode=mode)
            assert got.backend != "local", (text, dim)
            assert [h.id for h in got.hits] == [h.id for h in want.hits], (text, dim, mode)
            assert np.allclose([h.score for h in got.hits], [h.score for h in want.hits], atol=1e-5)
            assert all(query.paths.matches(h.chunk.path) for h in got.hits)
        assert len(want.hits) == 8  # the true top-k of those files, not fewer
        one_folder, most, globs = (sent[i * len(dims) * 2] for i in range(3))
        assert one_folder.keep and all(p.startswith("first-aid/") for p in one_folder.paths)
        assert not most.keep and {p.split("/")[0] for p in most.paths} == {
            "first-aid",
            "music-theory",
        }
        assert globs.keep and len(globs.paths) >= 2
        with pytest.raises(InputError) as got_error:
            notes.search(notes.query(FILTERED[3]), 96, 8)
        assert str(got_error.value) == str(want_error.value)
        # Hybrid keeps the filter on its dense side, through the engine.
        fused = notes.retrieve(queries[0], 96, 5, "hybrid")
        assert fused.hits and all(h.chunk.path.startswith("first-aid/") for h in fused.hits)
    finally:
        notes.engine.close()
        notes.engine = None


def test_a_second_open_of_a_synced_collection_writes_nothing(
    notes: Library, tmp_path: Path
) -> None:
    backend = backends(tmp_path)[0]
    notes.use_engine(backend)
    assert notes.engine.last_sync is not None and notes.engine.last_sync.full
    notes.engine.close()
    notes.use_engine(backend)  # marker says synced at this generation: no sync
    try:
        assert notes.engine.last_sync is None
        assert notes.engine.info()["state"] == "synced"
    finally:
        notes.engine.close()
        notes.engine = None


def test_incremental_updates_follow_by_file(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    shutil.copytree(SAMPLES / "notes", folder)
    files = sorted(p for p in folder.rglob("*.md"))
    changed, removed = files[0], files[1]
    library = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    library.use_engine(backends(tmp_path)[0])
    try:
        library.update()
        library.load()
        engine = library.engine.engine

        def held() -> dict[str, set[int]]:
            out: dict[str, set[int]] = {}
            for cid, path in engine.point_paths().items():
                out.setdefault(path, set()).add(cid)
            return out

        def local() -> dict[str, set[int]]:
            out: dict[str, set[int]] = {}
            for cid, chunk in zip(
                library.row_chunk_ids.tolist(),
                library.store.chunks(library.row_chunk_ids.tolist()),
                strict=True,
            ):
                out.setdefault(chunk.path, set()).add(cid)
            return out

        assert held() == local()
        rel = lambda p: p.relative_to(folder).as_posix()  # noqa: E731
        before = held()[rel(changed)]
        changed.write_text(changed.read_text() + "\n\nA new paragraph about harbour sails.\n")
        removed.unlink()
        (folder / "added.md").write_text("# Added\n\nvolcano river bridge engine piston\n")
        library.update()
        library.load()
        now = held()
        assert now == local()
        assert rel(removed) not in now and "added.md" in now
        assert now[rel(changed)].isdisjoint(before)  # the file's old chunks are gone
        report = library.engine.last_sync
        assert not report.full and report.deleted_files == 2  # changed + removed
        q = library.query("volcano river bridge")
        want = library.row_chunk_ids[library.index.search(q.vector, 96, 10).ids].tolist()
        assert [h.id for h in library.search(q, 96, 10, mode="exact").hits] == want
    finally:
        library.close()


def test_a_killed_sync_converges_on_the_next_run(notes: Library, tmp_path: Path) -> None:
    backend = backends(tmp_path)[0]
    notes.use_engine(backend)
    engine = notes.engine.engine
    some = sorted(engine.point_paths())[:100]
    engine.delete_ids(some)  # as if killed half-way: points missing, marker says syncing
    engine.set_marker({**engine.marker(), "state": "syncing"})
    notes.engine.close()
    notes.use_engine(backend)
    try:
        assert notes.engine.last_sync is not None and notes.engine.last_sync.upserted > 0
        assert len(notes.engine.engine.point_paths()) == notes.chunk_count
    finally:
        notes.engine.close()
        notes.engine = None


@pytest.mark.parametrize("kind", ["edge", "memory"])
def test_another_model_transform_or_dim_is_one_line_and_writes_nothing(
    tmp_path: Path, kind: str
) -> None:
    backend = backends(tmp_path)[0 if kind == "edge" else 1]
    spec = CollectionSpec("model-a", "PCA", 96, tiers_for(96))
    engine = open_engine(backend, "c")
    engine.ensure(spec)
    vector = np.random.default_rng(0).standard_normal(96).astype(np.float32)
    engine.upsert([EnginePoint(1, vector, {"path": "a.md"})])
    engine.close()
    for other, what in (
        (CollectionSpec("model-b", "PCA", 96, tiers_for(96)), "model"),
        (CollectionSpec("model-a", "naive", 96, tiers_for(96)), "transform"),
        (CollectionSpec("model-a", "PCA", 128, tiers_for(128)), "full_dim"),
    ):
        engine = open_engine(backend, "c")
        with pytest.raises(EngineError, match=f"holds {what} ") as err:
            engine.ensure(other)
        assert "\n" not in str(err.value)
        assert engine.info().points == 1 and engine.marker()["model"] == "model-a"
        engine.close()
    engine = open_engine(backend, "c")
    engine.check(spec)  # the right spec passes, and the point is still there
    found = engine.search(vector, 32, 1)
    assert found.ids.tolist() == [1]
    assert abs(found.scores[0] - 1.0) < 1e-5
    assert np.allclose(prefix(vector, 32) @ prefix(vector, 32), 1.0)
    engine.close()


def test_bad_backends_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineError, match="choose one of"):
        open_engine("milvus://x", "c")
    with pytest.raises(EngineError, match="unreachable"):
        monkeypatch.setenv("MRL_TUI_ENGINE_TIMEOUT_S", "1")
        open_engine("qdrant://127.0.0.1:9", "c")  # nothing listens on port 9 (discard)
    from mrl_tui.core.engines.qdrant import ServerEngine

    class OldServer:  # what qdrant-client's `info()` says of a server before the query API
        def info(self) -> object:
            return type("VersionInfo", (), {"version": "1.9.2"})()

    with pytest.raises(EngineError, match=r"version 1\.9\.2; mrl-tui needs 1\.10\.0"):
        ServerEngine(OldServer(), "old:6333", "c")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "qdrant_edge" else real(name, *a),
    )
    from mrl_tui.core.engines import check_installed

    with pytest.raises(EngineError, match=r"pip install 'mrl-tui\[engine\]'"):
        check_installed(f"qdrant:{tmp_path}")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ModelChoice, "load", lambda *a, **k: HashEmbedder(LIBRARY_DIM))


def test_cli_search_through_the_engine_prints_the_local_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_model: None
) -> None:
    folder = SAMPLES / "notes"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    backend = ["--backend", f"qdrant:{tmp_path / 'engine'}"]
    code, out, err = run(["index", str(folder), *cache, *backend, "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["engine"]["points"] == summary["chunks"] and "engine synced" in err
    for dim in ("32", "64", "96"):
        args = ["search", str(folder), "bread starter", "--dim", dim, "--json", *cache]
        code, local_out, err = run(args, capsys)
        assert code == 0, err
        code, engine_out, err = run([*args, *backend], capsys)
        assert code == 0, err
        local, engine = json.loads(local_out), json.loads(engine_out)
        assert engine["backend"] == "qdrant-edge"
        strip = lambda rows: [{**r, "score": round(r["score"], 4)} for r in rows]  # noqa: E731
        assert strip(engine["results"]) == strip(local["results"])
    code, out, err = run(["info", str(folder), *cache, *backend, "--json"], capsys)
    assert code == 0, err
    tiers = json.loads(out)["engine"]["tiers"]
    assert [t["dim"] for t in tiers] == [32, 64, 96]
    assert [t["bytes_per_vector"] for t in tiers] == [128, 64 * 4 + 64 + 128, 96 * 4]
    code, out, err = run(["info", str(folder), *cache, *backend], capsys)
    assert code == 0 and "hnsw ef: Qdrant's default" in out, err  # a small collection


def test_cli_mismatch_and_missing_package_are_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fake_model: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = SAMPLES / "notes"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    backend = ["--backend", f"qdrant:{tmp_path / 'engine'}"]
    code, _, err = run(["index", str(folder), *cache, *backend], capsys)
    assert code == 0, err
    before = sorted(p.name for p in (tmp_path / "engine").iterdir())
    code, out, err = run(
        ["search", str(folder), "x", *cache, *backend, "--transform", "naive"], capsys
    )
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "holds transform 'PCA', not 'none" in err
    assert sorted(p.name for p in (tmp_path / "engine").iterdir()) == before
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "qdrant_client" else real(n, *a)
    )
    code, _, err = run(["search", str(folder), "x", *cache, "--backend", "qdrant://h:1"], capsys)
    assert code == 1 and err.count("\n") == 1 and "mrl-tui[engine]" in err


def test_bench_through_the_engine_gives_the_local_ndcg(notes: Library, tmp_path: Path) -> None:
    """`bench --backend`'s report (`engines.bench`): per dim, and a prefetch funnel, against the
    local index on the same eval set (the CLI runs this after `run_bench`)."""
    from mrl_tui.core.engines.bench import engine_report
    from mrl_tui.core.evaluation import measure, sets

    es = sets.folder_eval_set(notes)
    depth = notes.chunk_count
    local = {
        "fixed": [
            {
                "dim": d,
                **measure._score(es, lambda q, d=d: es.index.search(q, d, depth).ids, 10).to_dict(
                    10
                ),
            }
            for d in (32, 50, 96)
        ]
    }
    backend = f"qdrant:{tmp_path / 'e'}"
    report = engine_report(es, backend, [32, 50], 10, local)
    assert [r["dim"] for r in report["fixed"]] == [32, 50, 96]
    assert [r["how"] for r in report["fixed"]] == ["exact", "tier-rescored", "exact"]
    for row in report["fixed"]:
        if row["how"] == "exact":
            assert row["diff"] == 0.0, row
    assert report["funnel"] is not None and abs(report["funnel"]["diff"]) <= 0.002
    assert report["ingest_s"] is not None and report["points"] == depth
    again = engine_report(es, backend, [32], 10, local)  # the collection already holds the set
    assert again["ingest_s"] is None and again["fixed"][0] == report["fixed"][0] | {
        "search_ms": again["fixed"][0]["search_ms"]
    }


def test_a_routed_search_is_answered_by_the_engine_at_the_routed_dim(
    notes: Library, tmp_path: Path
) -> None:
    query = notes.query(QUERIES[0])
    _, route = notes.search_routed(query, 5)
    notes.use_engine(backends(tmp_path)[1])
    try:
        result, again = notes.search_routed(query, 5)
        assert again.dim == route.dim == result.dim and result.backend == "qdrant"
        exact = notes.row_chunk_ids[notes.index.search(query.vector, route.dim, 5).ids].tolist()
        assert [h.id for h in result.hits] == exact
    finally:
        notes.engine.close()
        notes.engine = None


async def test_the_app_opens_a_folder_on_the_engine(tmp_path: Path, fake_model: None) -> None:
    from ui_helpers import wait_for, write_corpus

    from mrl_tui.ui.app import MrlApp

    folder = write_corpus(tmp_path / "notes")
    backend = f"qdrant:{tmp_path / 'engine'}"
    app = MrlApp(
        folder, device="cpu", cache_root=tmp_path / "cache", backend=backend, remember=False
    )
    app.watch = False
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.report is not None or app.failed)
        assert not app.failed and app.library is not None
        assert "· qdrant-edge ·" in app.sub_title
        assert app.library.engine.info()["points"] == app.library.chunk_count > 0


def test_the_hnsw_ef_is_the_narrowest_beam_that_keeps_the_exact_top_k(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tune_ef` on a collection searched through a real graph. Qdrant builds one from 10 MB of
    vectors, and at 4,000 points its graph is near perfect: the thresholds are lowered and the
    graph made sparse (m 4, ef_construct 8), so that the beam matters."""
    from mrl_tui.core.engines import binding as binding_module
    from mrl_tui.core.engines import qdrant as qdrant_module
    from mrl_tui.core.engines.binding import EF_TRIED, tiered_search, tune_ef

    monkeypatch.setattr(binding_module, "HNSW_MIN_CHUNKS", 2)  # auto runs the funnel

    for name, value in (
        ("INDEXING_THRESHOLD_KB", 1),
        ("FULL_SCAN_THRESHOLD", 1),
        ("HNSW_M", 4),
        ("EF_CONSTRUCT", 8),
    ):
        monkeypatch.setattr(qdrant_module, name, value)
    spec = CollectionSpec("m", "none", 96, tiers_for(96))
    engine = open_engine(f"qdrant:{tmp_path / 'e'}", "c")
    engine.ensure(spec)
    rng = np.random.default_rng(0)
    spectrum = 1 / np.sqrt(1 + np.arange(96) / 4)  # most of the energy first, as after PCA
    vectors = (rng.standard_normal((4000, 96)) * spectrum).astype(np.float32)
    engine.upsert([EnginePoint(i + 1, v, {"path": f"f{i % 50}"}) for i, v in enumerate(vectors)])
    engine.optimize()
    rows = rng.choice(4000, 64, replace=False)
    queries, own = vectors[rows], rows + 1
    kept, target = 30, 0.95

    def recall(ef: int) -> float:
        stages = [(64, kept)]
        out = []
        for q, point in zip(queries, own.tolist(), strict=True):
            exact = set(engine.search(q, 96, 11, stages, exact=True).ids.tolist()) - {point}
            walked = set(engine.search(q, 96, 11, stages, ef=ef).ids.tolist()) - {point}
            out.append(len(exact & walked) / len(exact))
        return float(np.mean(out))

    ef, measured = tune_ef(engine, spec.tiers, queries, own, candidates=kept, target=target)
    tried = sorted({max(e, kept) for e in EF_TRIED})
    assert measured >= target and abs(recall(ef) - measured) < 0.02
    narrower = tried[: tried.index(ef)]
    assert narrower and recall(narrower[-1]) < target  # the narrowest that reaches it
    assert recall(tried[0]) < recall(ef) - 0.05  # the beam matters here
    # No beam reaches it: ef 0, the anchor stage scanned exactly; the best beam's recall kept.
    none, best = tune_ef(engine, spec.tiers, queries, own, candidates=kept, target=1.01)
    assert none == 0 and best == max(recall(e) for e in tried)
    found, _, used = tiered_search(engine, spec.tiers, 4000, queries[0], 96, 10, "auto", ef=0)
    exact, _, _ = tiered_search(engine, spec.tiers, 4000, queries[0], 96, 10, "exact")
    assert used == "funnel" and found.ids.tolist() == exact.ids.tolist()
    engine.close()


def test_the_measured_ef_is_kept_in_the_marker_and_searched_with(
    notes: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mrl_tui.core.engines import binding as binding_module

    monkeypatch.setattr(binding_module, "HNSW_MIN_CHUNKS", 2)  # the notes are a "large" folder
    backend = backends(tmp_path)[0]
    notes.use_engine(backend)
    engine = notes.engine.engine
    marker = engine.marker()
    assert marker["hnsw_ef"] >= binding_module.FUNNEL_CANDIDATES and marker["ef_recall"] >= 0.99
    assert marker["ef_points"] == notes.chunk_count and notes.engine.ef == marker["hnsw_ef"]
    assert notes.engine.info()["hnsw_ef"] == notes.engine.info()["search_ef"] == marker["hnsw_ef"]
    asked: list[object] = []
    real = engine.search
    monkeypatch.setattr(
        engine, "search", lambda *a, **k: asked.append(k.get("ef")) or real(*a, **k)
    )
    query = notes.query(QUERIES[0])
    got = notes.search(query, 96, 10)  # auto on a "large" folder: the funnel in the engine
    assert got.mode == "funnel" and asked == [marker["hnsw_ef"]]
    notes.engine.close()
    notes.use_engine(backend)  # level already: the measured ef is read back, nothing measured
    assert notes.engine.last_sync is None and notes.engine.ef == marker["hnsw_ef"]
    notes.engine.close()
    notes.use_engine(backend + "?ef=48")  # given: searched with, the measurement kept
    assert notes.engine.ef == 48 and notes.engine.engine.marker()["hnsw_ef"] == marker["hnsw_ef"]
    assert notes.engine.info()["search_ef"] == 48 and notes.engine.info()["ef_given"]
    notes.engine.close()
    notes.engine = None
    with pytest.raises(EngineError, match=r"the one option is \?ef=N"):
        notes.use_engine(backend + "?ef=0")
