"""The Library's transform choice (auto, naive, pca) and search precision (int8, binary)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import run

from mrl_tui.core.errors import InputError
from mrl_tui.core.library import Library


def test_transform_choice_names_what_is_used_and_keeps_each_fit(
    topic_folder: Path, tmp_path: Path, embedder
) -> None:
    cache = tmp_path / "cache"
    names = {}
    for choice in ("auto", "naive", "pca"):
        library = Library(topic_folder, embedder, cache_root=cache, transform=choice)
        library.update()
        library.load()
        names[choice] = (library.transform_name, library.transform.name)
        assert library.transform_kind.fitted == library.transform.name  # what the UI skips
        if choice == "naive":  # prefixes of the model's own vectors
            _, raw = library.store.load_vectors()
            np.testing.assert_array_equal(library.index.vectors(), raw)
        library.close()
    assert names == {
        "auto": ("PCA", "pca"),  # MiniLM is not MRL-trained
        "naive": ("none (naive truncation)", "identity"),
        "pca": ("PCA", "pca"),
    }
    [index_dir] = [p for p in cache.iterdir() if p.name != "model-facts"]  # facts: the model's
    fits = list(index_dir.glob("transform_pca-*.npz"))
    assert len(fits) == 1  # fitted once, reused by the later "pca" library
    with pytest.raises(InputError):
        Library(topic_folder, embedder, cache_root=cache, transform="learned")


def test_int8_and_binary_search_rescore_to_exact_scores(
    topic_folder: Path, tmp_path: Path, embedder
) -> None:
    library = Library(topic_folder, embedder, cache_root=tmp_path / "cache")
    library.update()
    query = library.query("lubricating a bicycle chain")
    exact = library.search(query, 128, 3)
    for precision in ("int8", "binary"):
        result = library.search(query, 128, 3, precision=precision)
        assert result.mode == "rescored" and result.precision == precision
        # five chunks, at least 3 x 4 candidates: every row is rescored, so this is exact
        assert [h.id for h in result.hits] == [h.id for h in exact.hits]
        assert [h.score for h in result.hits] == pytest.approx([h.score for h in exact.hits])
    assert library.search(query, 128, 1, precision="binary", rescore=1).hits[0].score <= (
        exact.hits[0].score + 1e-6
    )
    with pytest.raises(InputError):
        library.search(query, 128, 3, precision="int4")
    library.close()


def test_cli_precision_transform_and_info(
    topic_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--dim", "64", "--precision", "int8", "--transform", "naive", "--k", "2", "--json"]
    code, out, _ = run(["search", str(topic_folder), "red planet", *args], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["precision"] == "int8" and data["transform"] == "none (naive truncation)"
    assert data["results"][0]["path"] == "space/mars.md"
    code, out, _ = run(["info", str(topic_folder), "--json", "--mrl"], capsys)
    info = json.loads(out)
    assert info["rule"].startswith("--mrl given:") and info["transform"] == "native MRL"
    by_dim = {row["dim"]: row["by_precision"] for row in info["sizes"]}
    assert {p: c["bytes_per_vector"] for p, c in by_dim[64].items()} == {
        "float32": 256,
        "int8": 64,
        "binary": 8,
    }
    assert by_dim[384]["binary"]["index_bytes"] == info["chunks"] * 48
    code, out, _ = run(["info", str(topic_folder)], capsys)
    assert "rule: known model: sentence-transformers/all-MiniLM-L6-v2" in out
    assert "binary" in out and "(48 B)" in out
