"""`bench --compare` on a BEIR set with a model `mrl-tui train --beir` made for it: the
"trained (native)" column, and `bench --model PATH` / `--model trained` on that model.

The model is trained for two steps on a 24-passage set (test_train's `TINY` settings): its
figures mean nothing, only that the column is the trained model's own vectors, truncated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import one_torch_thread
from test_beir import write_beir
from test_bench import run
from test_train import TINY, tiny_texts

from mrl_tui.core.evaluation.bench import TRAINED_COLUMN
from mrl_tui.core.training.train import train

QUERIES = {"q1": "looking after a lamp", "q2": "storing a tent", "q3": "violin care"}
QRELS = "q1 lamp-0 1\nq1 lamp-8 1\nq2 tent-7 1\nq2 tent-15 1\nq3 violin-4 1\n"


@pytest.fixture(scope="module")
def trained_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(BEIR folder, cache root, trained model) with one torch thread (see test_train)."""
    root = tmp_path_factory.mktemp("trained-bench")
    beir = write_beir(root / "household", tiny_texts(), QUERIES, QRELS)
    cache = root / "cache"
    with one_torch_thread():
        result = train(beir, beir=True, device="cpu", settings=TINY, cache_root=cache)
    assert result.model_path is not None
    return beir, cache, result.model_path


def bench(args: list[str], beir: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    base = ["bench", "--beir", str(beir), "--json", "--device", "cpu", "--cache-dir", str(cache)]
    code, out, err = run([*base, "--dims", "16,32", *args], capsys)
    assert code == 0, err
    return json.loads(out)


def test_compare_has_a_trained_native_column(
    trained_set: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    beir, cache, model = trained_set
    compare = bench(["--compare"], beir, cache, capsys)["compare"]
    assert compare["columns"] == [
        "naive",
        "pca",
        "adaptor",
        TRAINED_COLUMN,
        "pca int8",
        "pca binary",
    ]
    assert TRAINED_COLUMN not in compare["fit_seconds"]  # nothing is fitted for it

    # The column is the trained model's own prefixes: its naive column when it is benched.
    own = bench(["--compare", "--model", str(model)], beir, cache, capsys)["compare"]
    assert TRAINED_COLUMN not in own["columns"]  # a trained model has no trained column
    trained = [row[TRAINED_COLUMN] for row in compare["rows"]]
    assert trained == [row["naive"] for row in own["rows"]]
    embedded = sorted(d.name for d in (cache / "bench").iterdir())
    assert len(embedded) == 2 and any(model.name in name for name in embedded)  # base, trained

    # The model named by path, or as "trained": the same vectors, the same figures.
    by_path = bench(["--model", str(model), "--retrieval", "dense"], beir, cache, capsys)
    assert by_path["transform"] == "native MRL" and by_path["model"] == str(model)
    by_name = bench(["--model", "trained", "--retrieval", "dense"], beir, cache, capsys)
    assert by_name["full"] == by_path["full"] == own["rows"][-1]["naive"]


def test_no_trained_column_without_a_model_for_the_set(
    trained_set: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    beir, _, _ = trained_set
    compare = bench(["--compare"], beir, tmp_path / "empty-cache", capsys)["compare"]
    assert TRAINED_COLUMN not in compare["columns"] and len(compare["columns"]) == 5
