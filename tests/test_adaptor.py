"""The Matryoshka adaptor: starts at PCA, learns, stays a rotation, stores without pickle, is
deterministic, and is fitted once per corpus (Library and bench)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import SAMPLES
from fakes import HashEmbedder
from test_beir import write_beir
from test_bench import DOCS, QRELS, QUERIES, run

import mrl_tui.core.library as library_module
from mrl_tui.core.errors import InputError
from mrl_tui.core.evaluation import embeddings_cache, sets
from mrl_tui.core.library import Library
from mrl_tui.core.transforms.adaptor import Adaptor, fit_adaptor
from mrl_tui.core.transforms.pca import fit_pca


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
    start = fit_adaptor(data, steps=0, prefix_dims=(4, 8, 16))
    np.testing.assert_allclose(start.apply(data), fit_pca(data).apply(data), atol=1e-6)
    report = fitted.report
    assert report is not None and report.steps > 0 and len(report.losses) >= 2
    assert report.losses[-1] < report.losses[0]
    # index 0 is the PCA start; the held-out checks found a better rotation and kept it
    assert report.best_step > 0 and max(report.scores) > report.scores[0]
    assert not np.allclose(fitted.rotation, start.rotation, atol=1e-4)


def cosines(vectors: np.ndarray, dim: int) -> np.ndarray:
    v = vectors[:, :dim] / np.linalg.norm(vectors[:, :dim], axis=1, keepdims=True)
    return v @ v.T


def test_is_a_rotation_that_changes_only_prefixes_inside_its_head(data, fitted) -> None:
    rotation = fitted.rotation.astype(np.float64)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(48), atol=1e-5)
    rows, pca = data[:300], fit_pca(data)
    # full dimension: the model's own cosines; the head (16, the largest trained prefix) spans
    # PCA's top-16 subspace, so its cosines are PCA's; a prefix inside the head changed
    np.testing.assert_allclose(cosines(fitted.apply(rows), 48), cosines(rows, 48), atol=1e-5)
    assert fitted.report is not None and fitted.report.head == 16
    ours, theirs = fitted.apply(rows), pca.apply(rows)
    np.testing.assert_allclose(cosines(ours, 16), cosines(theirs, 16), atol=1e-5)
    assert np.abs(cosines(ours, 4) - cosines(theirs, 4)).max() > 1e-2


def test_loads_and_applies_the_older_residual_form() -> None:
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    arrays = {
        "rotation": rotation,
        "w1": rng.standard_normal((6, 3)),
        "b1": rng.standard_normal(3),
        "w2": rng.standard_normal((3, 6)),
        "b2": rng.standard_normal(6),
    }
    x = rng.standard_normal((4, 6)).astype(np.float32)
    y = x @ rotation
    expected = y + np.maximum(y @ arrays["w1"] + arrays["b1"], 0) @ arrays["w2"] + arrays["b2"]
    loaded = Adaptor.from_arrays("adaptor", arrays)
    np.testing.assert_allclose(loaded.apply(x), expected, atol=1e-5)


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
    assert a.report is not None and a.report.steps == 25 and a.report.head == 48
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
    assert full["naive"] == full["pca"] == full["adaptor"]  # rotations keep full-dim cosines
    code, out, err = run([*args, "--transform", "adaptor", "--json"], capsys)
    assert code == 0, err
    compare = json.loads(out)["compare"]
    assert compare["chosen"] == "adaptor" and "adaptor int8" in compare["columns"]


def test_bench_keeps_the_fitted_adaptor_next_to_its_embeddings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fits: list[int] = []

    def counted(vectors: np.ndarray, device: str) -> Adaptor:
        assert device == "cpu"  # fit_transform's default, passed on explicitly
        fits.append(len(vectors))
        return fit_adaptor(vectors, steps=25, prefix_dims=(4, 8, 16), device=device)

    monkeypatch.setattr(embeddings_cache, "fit_adaptor", counted)
    docs = clustered(600, 48, seed=2)
    first, label = sets.fit_transform("adaptor", docs, False, tmp_path)
    assert label == "adaptor" and fits == [600] and first.report is not None
    [saved] = tmp_path.glob("adaptor-*.npz")
    again, _ = sets.fit_transform("adaptor", docs, False, tmp_path)
    assert fits == [600] and again.report is None  # loaded, not trained
    np.testing.assert_array_equal(again.rotation, first.rotation)
    saved.write_bytes(b"not an npz")  # a damaged file is fitted again and replaced
    sets.fit_transform("adaptor", docs, False, tmp_path)
    assert fits == [600, 600]
    with np.load(saved, allow_pickle=False) as arrays:
        np.testing.assert_array_equal(arrays["rotation"], first.rotation)
    sets.fit_transform("adaptor", docs[:500], False, tmp_path)  # other vectors, another key
    assert fits == [600, 600, 500] and len(list(tmp_path.glob("adaptor-*.npz"))) == 2


NOTES_TOPICS = ("cooking", "cycling", "first-aid")


def test_library_with_the_adaptor_finds_the_notes_and_fits_once(
    tmp_path: Path, notes_library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = notes_library.embedder  # the model, with the notes' vectors already made
    corpus = tmp_path / "notes"
    for topic in NOTES_TOPICS:
        shutil.copytree(SAMPLES / "notes" / topic, corpus / topic)
    with open(SAMPLES / "notes" / "queries.tsv", newline="", encoding="utf-8") as fh:
        queries = [row for row in list(csv.reader(fh, delimiter="\t"))[1:]]
    queries = [(text, path) for text, path in queries if path.split("/")[0] in NOTES_TOPICS]
    assert len(queries) >= 10
    cache = tmp_path / "cache"

    def top5(library: Library, dims: tuple[int, ...]) -> dict[int, list[list[int]]]:
        embedded = [library.query(q) for q, _ in queries]  # once each, searched at every dim
        return {d: [[h.id for h in library.search(q, d, 5).hits] for q in embedded] for d in dims}

    library = Library(corpus, embedder, cache_root=cache, transform="adaptor")
    library.update()
    library.load()
    adaptor = library.transform
    assert isinstance(adaptor, Adaptor) and adaptor.report is not None  # fitted on this open
    assert library.transform_name == "adaptor"
    _, raw = library.store.load_vectors()
    mapped = adaptor.apply(raw)
    np.testing.assert_allclose(mapped @ mapped[:5].T, raw @ raw[:5].T, atol=1e-4)
    embedded = [(library.query(text), path) for text, path in queries]
    for dim in (16, 64, 384):
        found = 0
        for query, path in embedded:
            found += path in {hit.chunk.path for hit in library.search(query, dim, 5).hits}
        assert found >= len(queries) - 2, (dim, found)
    hits = top5(library, (64, 128, 384))
    library.close()
    [saved] = cache.glob("*/transform_adaptor-*.npz")

    def no_fit(vectors: np.ndarray, device: str) -> Adaptor:
        raise AssertionError("the stored adaptor should have been loaded")

    monkeypatch.setattr(library_module, "fit_adaptor", no_fit)
    again = Library(corpus, embedder, cache_root=cache, transform="adaptor")
    again.load()
    assert isinstance(again.transform, Adaptor) and again.transform.report is None
    np.testing.assert_array_equal(again.transform.rotation, adaptor.rotation)
    assert top5(again, (64, 128, 384)) == hits
    # from the head (128 dims) up, the adaptor ranks exactly as PCA does
    pca = Library(corpus, embedder, cache_root=cache, transform="pca")
    pca.load()
    by_pca = top5(pca, (128, 384))
    assert by_pca[128] == hits[128] and by_pca[384] == hits[384]
    again.close()
    pca.close()
    assert saved.exists()


def test_the_adaptor_fits_on_the_device_it_is_given_even_beside_a_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as under --device cpu on a GPU
    docs = clustered(600, 48, seed=2)
    assert fit_adaptor(docs, steps=5, prefix_dims=(4, 8, 16)).report.device == "cpu"
    fitted, _ = sets.fit_transform("adaptor", docs, False, device="cpu")
    assert fitted.report is not None and fitted.report.device == "cpu"


def test_the_library_fits_its_adaptor_on_the_embedders_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class CpuEmbedder(HashEmbedder):
        device = "cpu"
        spec = SimpleNamespace(native_mrl=False)

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    asked: list[str] = []

    def recorded(vectors: np.ndarray, device: str) -> Adaptor:
        asked.append(device)
        return fit_adaptor(vectors, steps=0, device=device)

    monkeypatch.setattr(library_module, "fit_adaptor", recorded)
    corpus = tmp_path / "notes"
    shutil.copytree(SAMPLES / "notes" / "cooking", corpus)
    library = Library(corpus, CpuEmbedder(), cache_root=tmp_path / "cache", transform="adaptor")
    library.update()
    library.load()
    library.close()
    assert asked == ["cpu"] and isinstance(library.transform, Adaptor)
