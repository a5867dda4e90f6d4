"""Ranking comparison, checked against cases worked out by hand."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mrl_tui.core.search.compare import (
    agreement,
    dropped,
    ids_of,
    kendall_tau,
    movement_label,
    movements,
    overlap_at_k,
    power_of_two_dims,
    rank_of,
    rank_trail,
)


def test_movements_up_down_same_and_new() -> None:
    # reference: 10 at 1, 20 at 2, 30 at 3, 40 at 4
    # ranking:   30 at 1 (was 3: ▲2), 10 at 2 (was 1: ▼1), 99 at 3 (NEW), 40 at 4 (=)
    moves = movements([30, 10, 99, 40], [10, 20, 30, 40])
    assert moves == [2, -1, None, 0]
    assert [movement_label(m) for m in moves] == ["▲2", "▼1", "NEW", "="]


def test_dropped_keeps_the_other_lists_order() -> None:
    assert dropped([30, 10, 99, 40], [10, 20, 30, 40, 50]) == [20, 50]
    assert dropped([1, 2], [1, 2]) == []


def test_rank_of_keeps_the_best_rank_of_a_repeated_id() -> None:
    assert rank_of([5, 6, 5]) == {5: 1, 6: 2}


def test_overlap_at_k() -> None:
    assert overlap_at_k([1, 2, 3, 4], [4, 3, 9, 8], 4) == 0.5
    assert overlap_at_k([1, 2, 3, 4], [4, 3, 9, 8], 2) == 0.0  # {1,2} vs {4,3}
    assert overlap_at_k([1, 2, 3], [3, 2, 1], 10) == 1.0  # short lists: n = 3, not 10
    assert overlap_at_k([], [], 5) == 1.0
    with pytest.raises(ValueError):
        overlap_at_k([1], [1], 0)


def test_kendall_tau_identical_and_reversed() -> None:
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0


def test_kendall_tau_one_swap() -> None:
    # pairs (1,2) (1,3) (2,3): b swaps 2 and 3 → C=2, D=1 → (2-1)/3
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


def test_kendall_tau_only_counts_shared_ids() -> None:
    # shared: 1, 2, 3 (a's order 1,2,3; b's order 3,1,2) → pairs: (1,2) C, (1,3) D, (2,3) D
    assert kendall_tau([1, 7, 2, 3], [3, 1, 8, 2]) == pytest.approx(-1 / 3)
    assert kendall_tau([1, 2], [2, 9]) is None  # one shared id: no pairs
    assert kendall_tau([], []) is None


def test_kendall_tau_matches_scipy_on_full_permutations() -> None:
    stats = pytest.importorskip("scipy.stats")
    a = [4, 8, 15, 16, 23, 42]
    b = [15, 4, 42, 8, 23, 16]
    rank_b = rank_of(b)
    expected = stats.kendalltau(range(len(a)), [rank_b[x] for x in a]).statistic
    assert kendall_tau(a, b) == pytest.approx(expected)


def test_rank_trail_sorted_by_dim_with_none_where_absent() -> None:
    rankings = {384: [5, 6, 7], 32: [9, 5], 64: [6, 7, 5]}
    assert rank_trail(rankings, 5) == {32: 2, 64: 3, 384: 1}
    assert list(rank_trail(rankings, 9).items()) == [(32, 1), (64, None), (384, None)]


def test_power_of_two_dims() -> None:
    assert power_of_two_dims(384) == [8, 16, 32, 64, 128, 256, 384]
    assert power_of_two_dims(256) == [8, 16, 32, 64, 128, 256]
    assert power_of_two_dims(768, start=32) == [32, 64, 128, 256, 512, 768]


def test_agreement_against_a_reference_dim() -> None:
    rankings = {8: [1, 9], 16: [2, 1], 32: [1, 2]}
    assert agreement(rankings, 32, 2) == {8: 0.5, 16: 1.0, 32: 1.0}


def test_ids_of_hits() -> None:
    @dataclass
    class FakeHit:
        id: int

    assert ids_of([FakeHit(3), FakeHit(1)]) == [3, 1]
