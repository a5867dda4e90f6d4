"""The CLI's contract: JSON shapes, one-line errors with non-zero exits, and real search quality."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES, TOPICS, write_files

from mrl_tui import __version__
from mrl_tui.cli import main


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own exits (--help, --version, usage errors)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "search" in out and "index" in out
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and __version__ in out


def test_console_script_runs_without_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mrl_tui", "search", str(tmp_path / "nope"), "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "no such folder" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["--dim", "0"], 2, "below 1"),
        (["--dim", "abc"], 2, "not a whole number"),
        (["--k", "0"], 2, "below 1"),
        (["--dim", "999"], 1, "between 1 and 384"),
    ],
)
def test_bad_numbers_are_one_line_errors(
    topic_folder: Path, capsys: pytest.CaptureFixture[str], extra: list[str], code: int, needle: str
) -> None:
    got, out, err = run(["search", str(topic_folder), "bread", *extra], capsys)
    assert got == code and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1


def test_path_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    code, _, err = run(["search", str(missing), "q"], capsys)
    assert code == 1 and "no such folder" in err
    a_file = write_files(tmp_path, {"one.md": "hi"}) / "one.md"
    code, _, err = run(["index", str(a_file)], capsys)
    assert code == 1 and "is a file" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(["search", str(empty), "q"], capsys)
    assert code == 1 and "nothing to index" in err and len(err.strip().splitlines()) == 1


def test_unknown_model_offline_is_one_line(
    topic_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        ["search", str(topic_folder), "q", "--model", "no-such-org/no-such-model"], capsys
    )
    assert code == 1 and "cannot load model" in err and len(err.strip().splitlines()) == 1
    assert "hub is not reachable" in err  # said at once, not after the hub client's retries


def test_abbreviated_options_are_not_guessed(
    topic_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["search", str(topic_folder), "q", "--mode", "funnel"], capsys)
    assert code == 2 and "unrecognized arguments: --mode funnel" in err


def test_search_json_contract(topic_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["search", str(topic_folder), "red planet moons", "--dim", "64", "--k", "3", "--json"],
        capsys,
    )
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"query", "dim", "full_dim", "model", "transform", "results", "timings_ms"}
    assert data["dim"] == 64 and data["full_dim"] == 384 and data["transform"] == "PCA"
    assert data["model"].endswith("all-MiniLM-L6-v2")
    assert len(data["results"]) == 3
    first = data["results"][0]
    assert set(first) >= {"rank", "path", "start_line", "end_line", "score", "text"}
    assert first["rank"] == 1 and first["path"] == "space/mars.md"
    assert [r["rank"] for r in data["results"]] == [1, 2, 3]
    scores = [r["score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True)
    assert set(data["timings_ms"]) == {"embed", "search"}
    lines = (topic_folder / first["path"]).read_text().splitlines()
    shown = "\n".join(lines[first["start_line"] - 1 : first["end_line"]])
    assert first["text"].split()[0] in shown


def test_index_then_info(topic_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["index", str(topic_folder), "--json"], capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary["files"] == len(TOPICS) and summary["chunks"] >= len(TOPICS)
    # `index` leaves the search ready: the vector snapshot and the PCA are built already.
    made = sorted(p.name.split("-")[0] for p in Path(summary["cache_dir"]).glob("*-*-*.np*"))
    assert made == ["transform_pca", "vectors"]
    code, out, _ = run(["index", str(topic_folder), "--json"], capsys)
    assert json.loads(out)["chunks_embedded"] == 0  # nothing changed, nothing embedded
    code, out, _ = run(["info", str(topic_folder), "--json"], capsys)
    info = json.loads(out)
    assert info["chunks"] == summary["chunks"] and info["full_dim"] == 384
    assert info["transform"] == "PCA" and info["device"] == "cpu"
    pca = info["fit"]["fits"]["pca"]  # which fit is in use: this index's own
    assert pca["fitted_rows"] == info["chunks"] and pca["changed_since"] == 0
    assert not pca["refitting"] and info["fit"]["graph"] == "none"
    by_dim = {row["dim"]: row for row in info["sizes"]}
    assert by_dim[384]["index_bytes"] == summary["chunks"] * 384 * 4
    assert by_dim[64]["bytes_per_vector"] == 256


def _queries(corpus: Path) -> list[tuple[str, str]]:
    with open(corpus / "queries.tsv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    return [(q, rel) for q, rel in rows[1:]]


def test_bundled_model_finds_the_expected_notes(notes_library) -> None:
    """End to end on the notes sample corpus: the expected file is in the top 5 for most queries."""
    found = 0
    queries = _queries(SAMPLES / "notes")
    for text, relevant in queries:
        query = notes_library.query(text)
        top = {hit.chunk.path for hit in notes_library.search(query, 384, 5).hits}
        found += relevant in top
    assert found / len(queries) >= 0.85


def test_a_corrupt_cache_is_rebuilt_with_a_message(
    topic_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    code, _, _ = run(["index", str(topic_folder), "--cache-dir", str(cache)], capsys)
    assert code == 0
    [db] = cache.glob("*/index.db")
    for extra in db.parent.glob("index.db-*"):
        extra.unlink()
    db.write_bytes(b"not sqlite at all " * 64)
    args = ["search", str(topic_folder), "red planet", "--cache-dir", str(cache), "--json"]
    code, out, err = run(args, capsys)
    assert code == 0 and "rebuilding" in err
    assert json.loads(out)["results"][0]["path"] == "space/mars.md"


def test_route_auto_with_precision_is_a_one_line_error(
    topic_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["search", str(topic_folder), "q", "--route", "auto", "--precision", "int8"]
    code, out, err = run(args, capsys)
    assert code == 1 and out == "" and "--precision" in err and len(err.strip().splitlines()) == 1


def test_help_imports_neither_numpy_nor_torch() -> None:
    """The CLI takes its choices from `core.choices`, which must stay free of heavy imports."""
    code = (
        "import sys, mrl_tui.cli as cli; cli.build_parser().format_help(); "
        "print(sorted({'numpy', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to load a model fails the test: these errors must come before it."""
    from mrl_tui.core.embedding.embed import Embedder

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(Embedder, "__init__", refuse)


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["search", "{folder}", "bread", "--dim", "99999"], 1, "--dim must be between 1 and 384"),
        (["search", "{folder}", "   "], 1, "the query is empty"),
        (["search", "{folder}", "path:cooking/"], 1, "add words to search for"),
        (["search", "{empty}", "bread"], 1, "nothing to index"),
        (["index", "{empty}"], 1, "nothing to index"),
        (["open", "{empty}"], 1, "nothing to index"),
        (["search", "{folder}/missing", "bread"], 1, "no such folder"),
        (["search", "{folder}", "bread", "--k", "0"], 2, "--k: 0 is below 1"),
        (["search", "{folder}", "bread", "--bogus"], 2, "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_fails_before_the_model_loads(
    topic_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
    args: list[str],
    code: int,
    needle: str,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".hidden").write_text("not indexed", encoding="utf-8")
    argv = [a.format(folder=topic_folder, empty=empty) for a in args]
    got, out, err = run(argv, capsys)
    assert got == code and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1


def test_dim_above_an_unknown_models_dim_is_checked_after_loading(
    topic_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A local model folder decides its own dim: checked once loaded, named as the flag."""
    from mrl_tui.core.embedding.models import bundled_model_path

    model = bundled_model_path()
    assert model is not None
    args = ["search", str(topic_folder), "bread", "--model", str(model), "--dim", "500"]
    code, out, err = run(args, capsys)
    assert code == 1 and out == ""
    assert err.startswith("mrl-tui: --dim must be between 1 and 384")


def test_index_of_a_folder_with_nothing_readable_says_why_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff\x00" * 10)
    (folder / "data.xyz").write_text("unknown kind", encoding="utf-8")
    code, out, err = run(["index", str(folder)], capsys)
    assert code == 1 and "0 chunks in the index" in out
    assert "nothing to index in" in err and "2 files skipped (2 unsupported type)" in err


def test_a_path_filter_searches_only_matching_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The filter comes before top-k: all k results come from matching files, best first."""
    files = {f"docs/{name}": text for name, text in TOPICS.items()}
    files.update({f"other/{name}": text for name, text in TOPICS.items()})
    folder = write_files(tmp_path / "mixed", files)
    args = ["search", str(folder), "path:docs/ red planet moons", "--k", "3", "--json"]
    code, out, _ = run(args, capsys)
    assert code == 0
    results = json.loads(out)["results"]
    assert len(results) == 3 and all(r["path"].startswith("docs/") for r in results)
    assert results[0]["path"] == "docs/space/mars.md"
    args = ["search", str(folder), "-path:docs/ red planet moons", "--k", "3", "--json"]
    code, out, _ = run(args, capsys)
    results = json.loads(out)["results"]
    assert results[0]["path"] == "other/space/mars.md"
    assert not any(r["path"].startswith("docs/") for r in results)
    code, _, err = run(["search", str(folder), "path:nowhere/ moons"], capsys)
    assert code == 1 and "no indexed file matches path:nowhere/" in err


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ([], "(PCA)"),
        (["--retrieval", "lexical"], "(PCA, keywords only)"),
        (["--retrieval", "hybrid"], "(PCA, hybrid rrf)"),
    ],
)
def test_the_table_title_names_what_was_searched(
    topic_folder: Path, capsys: pytest.CaptureFixture[str], extra: list[str], says: str
) -> None:
    code, out, _ = run(["search", str(topic_folder), "bread", "--k", "2", *extra], capsys)
    assert code == 0 and says in out.splitlines()[0]


def test_the_graph_build_and_its_tuning_each_get_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """`_load_with_progress` hands `load` one callback per phase, each filling a bar of its own
    (rich's tasks: their descriptions, totals and how far they got)."""
    import rich.progress

    from mrl_tui import cli

    bars: list[rich.progress.Progress] = []
    real = rich.progress.Progress.__exit__

    def kept(self, *exc):
        bars.append(self)
        return real(self, *exc)

    monkeypatch.setattr(rich.progress.Progress, "__exit__", kept)

    class Loading:
        def load(self, on_graph_progress, on_tune_progress) -> None:
            for done in (0, 500, 1000):
                on_graph_progress(done, 1000)
            for step in range(14):
                on_tune_progress(step, 13)

    cli._load_with_progress(Loading())  # type: ignore[arg-type]
    (bar,) = bars
    assert [(t.description, t.total, t.completed) for t in bar.tasks] == [
        ("building the search graph", 1000, 1000),
        ("measuring graph search settings", 13, 13),
    ]


def test_a_servers_graph_and_tuning_phases_show_on_the_search_bar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cold folder opened by a server: its "graph" and "tune" progress lines name their phase
    on the bar and fill it (what a warm `search` shows while the server builds)."""
    from types import SimpleNamespace

    import rich.progress

    from mrl_tui import cli

    seen: list[tuple[str, float | None, float]] = []
    real = rich.progress.Progress.update

    def kept(self, task, **fields):
        real(self, task, **fields)
        t = self._tasks[task]
        seen.append((t.description, t.total, t.completed))

    monkeypatch.setattr(rich.progress.Progress, "update", kept)
    with cli._index_bar() as show:
        show(SimpleNamespace(phase="graph", done=12, total=12))
        show(SimpleNamespace(phase="tune", done=3, total=13))
        show(SimpleNamespace(phase="tune", done=13, total=13))
    assert seen == [
        ("building the search graph", 12, 12),
        ("measuring graph search settings", 13, 3),
        ("measuring graph search settings", 13, 13),
    ]
