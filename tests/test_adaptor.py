"""The Matryoshka adaptor: starts at PCA, learns, stores without pickle, is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_beir import write_beir
from test_bench import DOCS, QRELS, QUERIES, run

from mrl_tui.core.adaptor import Adaptor, fit_adaptor
from mrl_tui.core.errors import InputError
from mrl_tui.core.transform import fit_pca


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Clusters whose spread falls off with the direction, hidden by a fixed random rotation."""
    rng = np.random.default_rng(0)  # the same rotation and centres for every seed
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    centres = rng.standard_normal((40, dim)) * 0.85 ** np.arange(dim)
    draw = np.random.default_rng(seed)
    noise = 0.3 * draw.standard_normal((n, dim)) * 0.9 ** np.arange(dim)
    x = centres[draw.integers(0, 40, n)] + noise
    return (x @ rotation.T + 0.3 * rotation[:, 0]).astype(np.float32)


def top10(queries: np.ndarray, rows: np.ndarray, dim: int) -> np.ndarray:
    q = queries[:, :dim] / np.linalg.norm(queries[:, :dim], axis=1, keepdims=True)
    r = rows[:, :dim] / np.linalg.norm(rows[:, :dim], axis=1, keepdims=True)
    return np.argsort(-(q @ r.T), axis=1, kind="stable")[:, :10]


def agreement(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(2000, 48, seed=1)


@pytest.fixture(scope="module")
def fitted(data: np.ndarray) -> Adaptor:
    return fit_adaptor(data, seed=3, steps=50, prefix_dims=(4, 8, 16))


def test_starts_exactly_at_pca_and_training_lowers_the_loss(data, fitted) -> None:
    start = fit_adaptor(data, steps=0)
    np.testing.assert_allclose(start.apply(data), fit_pca(data).apply(data), atol=1e-6)
    report = fitted.report
    assert report is not None and report.steps > 0 and len(report.losses) >= 2
    assert report.losses[-1] < report.losses[0]
    assert max(report.scores) >= report.scores[0]  # index 0 is the PCA start


def test_round_trip_without_pickle_and_one_vector_equals_a_batch_row(
    tmp_path: Path, data, fitted
) -> None:
    path = tmp_path / "adaptor.npz"
    np.savez(path, **fitted.to_arrays())
    with np.load(path, allow_pickle=False) as arrays:
        loaded = Adaptor.from_arrays("adaptor", dict(arrays))
    for name, array in fitted.to_arrays().items():
        np.testing.assert_array_equal(getattr(loaded, name), array)
    batch = loaded.apply(data[:5])
    assert batch.dtype == np.float32 and batch.shape == (5, 48)
    np.testing.assert_allclose(loaded.apply(data[2]), batch[2], atol=1e-6)
    with pytest.raises(InputError):
        loaded.apply(np.zeros(7, np.float32))
    with pytest.raises(InputError):
        Adaptor.from_arrays("adaptor", {k: v for k, v in fitted.to_arrays().items() if k != "w2"})


def test_same_seed_same_weights(data) -> None:
    a = fit_adaptor(data[:600], seed=5, steps=25, prefix_dims=(8,))
    b = fit_adaptor(data[:600], seed=5, steps=25, prefix_dims=(8,))
    for name, array in a.to_arrays().items():
        np.testing.assert_array_equal(array, b.to_arrays()[name])


def test_keeps_top10_agreement_of_pca_at_small_dims(data, fitted) -> None:
    pca = fit_pca(data)
    fresh = clustered(200, 48, seed=9)  # queries the fit never saw
    truth = top10(fresh, data, 48)
    for dim in (4, 8, 16):
        ours = agreement(top10(fitted.apply(fresh), fitted.apply(data), dim), truth)
        theirs = agreement(top10(pca.apply(fresh), pca.apply(data), dim), truth)
        assert ours >= theirs - 0.02, (dim, ours, theirs)


def test_bench_compare_json_on_a_tiny_beir_set(
    tmp_path: Path, embedder, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_beir(tmp_path / "tiny", DOCS, QUERIES, QRELS)
    args = ["bench", "--beir", str(folder), "--dims", "16,64", "--compare", "--device", "cpu"]
    code, out, err = run([*args, "--json"], capsys)
    assert code == 0, err
    compare = json.loads(out)["compare"]
    assert compare["chosen"] == "pca"  # auto for a model without MRL training
    assert compare["columns"] == ["naive", "pca", "adaptor", "pca int8", "pca binary"]
    assert [row["dim"] for row in compare["rows"]] == [16, 64, 384]
    for row in compare["rows"]:
        for column in compare["columns"]:
            assert 0 <= row[column]["ndcg10"] <= 1 and 0 <= row[column]["recall100"] <= 1
    full = compare["rows"][-1]
    assert full["naive"] == full["pca"]  # a rotation keeps full-dimension cosine
    code, out, err = run([*args, "--transform", "adaptor"], capsys)
    assert code == 0, err
    assert "adaptor int8" in out and "nDCG@10 / recall@100" in out
