"""int8 and binary codes: byte counts, exact Hamming distances, and recall after rescoring."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_tui.core.errors import InputError
from mrl_tui.core.search.codes import (
    BinaryCodes,
    Int8Codes,
    bytes_per_vector,
    encode,
    popcount,
    popcount_table,
    rescored_search,
)
from mrl_tui.core.search.index import NestedIndex


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Points around random centres, with energy falling off along the dims (like MRL/PCA)."""
    rng = np.random.default_rng(seed)
    decay = 1.0 / np.sqrt(1.0 + np.arange(dim) / 8)
    centres = rng.standard_normal((clusters, dim)) * decay
    labels = rng.integers(0, clusters, n)
    return (centres[labels] + 0.5 * rng.standard_normal((n, dim)) * decay).astype(np.float32)


def test_bytes_per_vector() -> None:
    assert bytes_per_vector(384, "float32") == 1536
    assert bytes_per_vector(384, "int8") == 384
    assert bytes_per_vector(384, "binary") == 48
    assert bytes_per_vector(13, "binary") == 2  # bits round up to whole bytes
    assert bytes_per_vector(1, "binary") == 1
    with pytest.raises(InputError):
        bytes_per_vector(8, "int4")
    with pytest.raises(InputError):
        encode(np.ones((2, 2), np.float32), "float32")


def test_popcount_table_matches_native() -> None:
    words = np.random.default_rng(0).integers(0, 2**63, (50, 3), dtype=np.uint64)
    words[0, 0] = np.uint64(2**64 - 1)
    expected = [[bin(int(w)).count("1") for w in row] for row in words]
    assert popcount_table(words).tolist() == expected
    assert popcount(words).tolist() == expected


@pytest.mark.parametrize("dim", [1, 7, 8, 63, 64, 65, 100, 130])
def test_hamming_equals_brute_force(dim: int) -> None:
    rng = np.random.default_rng(dim)
    x = rng.standard_normal((200, 130)).astype(np.float32)
    q = rng.standard_normal(130).astype(np.float32)
    codes = BinaryCodes(x)
    expected = ((x[:, :dim] > 0) != (q[:dim] > 0)).sum(axis=1)
    assert codes.hamming(q, dim).tolist() == expected.tolist()


def test_int8_codes_round_trip_within_half_a_step() -> None:
    x = clustered(500, 48, 10, seed=1)
    codes = Int8Codes(x)
    assert codes.codes.dtype == np.int8 and codes.codes.shape == x.shape
    assert codes.codes.min() == -128 and codes.codes.max() == 127  # min/max calibration
    error = np.abs(codes.dequantize(slice(None), 48) - x)
    assert (error <= codes.scale / 2 + 1e-6).all()


@pytest.mark.parametrize(
    ("precision", "rescore", "floor"), [("int8", 4, 0.99), ("binary", 10, 0.93)]
)
def test_rescoring_recovers_the_exact_top10(precision: str, rescore: int, floor: float) -> None:
    points = clustered(4040, 128, 40, seed=2)  # queries come from the same clusters as the data
    x, queries = points[:4000], points[4000:]
    index = NestedIndex(x)
    codes = encode(x, precision)
    for dim in (32, 64, 128):
        recalls = []
        for q in queries:
            exact = index.search(q, dim, 10)
            found = rescored_search(index, codes, q, dim, 10, rescore)
            recalls.append(len(set(exact.ids) & set(found.ids)) / 10)
            # the final scores are exact cosines, whatever the coarse stage was
            np.testing.assert_allclose(found.scores, index.score_ids(q, dim, found.ids), rtol=1e-6)
        assert np.mean(recalls) >= floor, (precision, dim, np.mean(recalls))


def test_rescore_bounds() -> None:
    x = clustered(30, 16, 3, seed=4)
    index = NestedIndex(x)
    codes = encode(x, "int8")
    found = rescored_search(index, codes, x[0], 16, 5, rescore=100)  # more than n: every row
    assert found.ids.tolist() == index.search(x[0], 16, 5).ids.tolist()
    with pytest.raises(InputError):
        rescored_search(index, codes, x[0], 16, 5, rescore=0)
