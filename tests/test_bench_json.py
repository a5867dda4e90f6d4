"""`mrl-tui bench --json` pinned byte for byte on small sets (BEIR and a folder's queries.tsv).

The reports are compared as text, so key order, indentation and rounding are pinned with the
numbers. Only wall-clock fields (``search_ms``, ``fit_seconds``) are masked: they differ on every
run. To accept an intended change, run with ``MRL_TUI_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, TOPICS, write_files
from test_beir import write_beir
from test_bench import run

GOLDEN = Path(__file__).parent / "golden" / "bench"
_CLOCK = re.compile(r'("search_ms": )[0-9.e-]+')
_FIT = re.compile(r'("fit_seconds": \{)([^}]*)(\})')
_FIT_VALUE = re.compile(r'(": )[0-9.e-]+')


def masked(text: str) -> str:
    """The report's text with its wall-clock values replaced by ``"<clock>"``."""
    text = _CLOCK.sub(r'\1"<clock>"', text)
    return _FIT.sub(lambda m: m[1] + _FIT_VALUE.sub(r'\1"<clock>"', m[2]) + m[3], text)


_ADAPTOR = re.compile(r'("adaptor": \{)([^}]*)(\})')
_NUMBER = re.compile(r"(?<=: )-?[0-9.]+(?:e-?[0-9]+)?")
ADAPTOR_TOLERANCE = 0.03
"""The adaptor is trained with torch, whose CPU kernels differ by machine (AVX-512 or not): its
figures moved 0.7345 <-> 0.747 between two machines with the same pinned libraries. They are
pinned to within this; everything else byte for byte."""


def _trained_apart(text: str) -> tuple[str, list[float]]:
    """The text with each number in an ``"adaptor": {...}`` block replaced by ``<trained>``, and
    those numbers in order."""
    found: list[float] = []

    def keep(m: re.Match[str]) -> str:
        found.extend(float(v) for v in _NUMBER.findall(m[2]))
        return m[1] + _NUMBER.sub('"<trained>"', m[2]) + m[3]

    return _ADAPTOR.sub(keep, text), found


def check(name: str, text: str, suffix: str = ".json") -> None:
    path = GOLDEN / f"{name}{suffix}"
    if os.environ.get("MRL_TUI_UPDATE_GOLDEN"):
        path.write_text(masked(text), encoding="utf-8")
    got, got_trained = _trained_apart(masked(text))
    want, want_trained = _trained_apart(path.read_text(encoding="utf-8"))
    assert got == want
    assert len(got_trained) == len(want_trained)
    for a, b in zip(got_trained, want_trained, strict=True):
        assert abs(a - b) <= ADAPTOR_TOLERANCE, (got_trained, want_trained)


def test_masking_leaves_everything_but_the_clocks() -> None:
    text = '{"search_ms": 0.123, "ndcg10": 0.5, "fit_seconds": {"pca": 1.5, "naive": 2e-05}}'
    assert masked(text) == (
        '{"search_ms": "<clock>", "ndcg10": 0.5, "fit_seconds": {"pca": "<clock>", '
        '"naive": "<clock>"}}'
    )


def test_adaptor_figures_are_set_apart_and_nothing_else() -> None:
    text = '{"pca": {"ndcg10": 0.5, "recall100": 1.0}, "adaptor": {"ndcg10": 0.7345, "x": 2e-05}}'
    rest, trained = _trained_apart(text)
    assert trained == [0.7345, 2e-05]
    assert rest == (
        '{"pca": {"ndcg10": 0.5, "recall100": 1.0}, '
        '"adaptor": {"ndcg10": "<trained>", "x": "<trained>"}}'
    )


def notes_as_beir(root: Path) -> Path:
    """The notes sample as a BEIR set: one document per file, queries.tsv as judged queries."""
    notes = SAMPLES / "notes"
    docs = {}
    for path in sorted(notes.rglob("*.md")):
        rel = path.relative_to(notes).as_posix()
        docs[rel] = (path.stem, path.read_text(encoding="utf-8"))
    lines = (notes / "queries.tsv").read_text(encoding="utf-8").splitlines()[1:]
    pairs = [line.split("\t") for line in lines if line.strip()]
    queries = {f"q{i}": text for i, (text, _) in enumerate(pairs)}
    qrels = "".join(f"q{i} {rel} 1\n" for i, (_, rel) in enumerate(pairs))
    return write_beir(root, docs, queries, qrels)


BEIR_CASES = {
    "notes-beir": ["--dims", "16,64", "--plot", "{plot}"],
    "notes-beir-int8-lexical-pca": [
        *("--dims", "8,32", "--precision", "int8", "--retrieval", "lexical"),
        *("--k", "5", "--transform", "pca"),
    ],
    "notes-beir-compare": ["--dims", "16,64", "--compare"],
}


def test_bench_json_on_the_notes_as_beir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Embedded once: the later runs read the bench cache (same --cache-dir)."""
    beir = notes_as_beir(tmp_path / "notes")
    for name, extra in BEIR_CASES.items():
        plot = tmp_path / f"{name}.svg"
        extra = [arg.format(plot=plot) for arg in extra]
        args = ["bench", "--beir", str(beir), "--json", "--device", "cpu"]
        code, out, err = run([*args, "--cache-dir", str(tmp_path / "cache"), *extra], capsys)
        assert code == 0, err
        assert json.loads(out)["docs"] > 50
        check(name, out)
        if plot.exists():
            check(name, plot.read_text(encoding="utf-8"), ".svg")
    assert (GOLDEN / "notes-beir.svg").is_file()


def test_bench_json_on_the_notes_folder(
    notes_library, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The session's indexed notes, copied (the fixture is shared read-only): no indexing."""
    cache = tmp_path / "cache"
    index = notes_library.store.directory
    shutil.copytree(index, cache / index.name)
    args = ["bench", str(SAMPLES / "notes"), "--json", "--device", "cpu", "--dims", "16,64"]
    code, out, err = run([*args, "--cache-dir", str(cache)], capsys)
    assert code == 0, err
    assert "embedding documents" not in err
    check("notes", out)


def test_bench_compare_json_on_a_small_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--compare on a folder refits each transform on its index (the notes' adaptor fit would
    cost half a minute here; the BEIR compare above has non-trivial figures)."""
    folder = write_files(tmp_path / "topics", TOPICS)
    (folder / "queries.tsv").write_text(
        "query\trelevant_file\nsourdough starter\tcooking/bread.md\n"
        "moons of mars\tspace/mars.md\nresolver records\tnet/dns.md\n"
        "saving money\tfinance/budget.md\n"
    )
    code, out, err = run(["bench", str(folder), "--json", "--device", "cpu", "--compare"], capsys)
    assert code == 0, err
    check("topics-compare", out)
