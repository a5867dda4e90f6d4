"""nDCG@k and recall@k against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from mrl_tui.core.evaluation.metrics import dcg, evaluate, ndcg_at_k, paired_difference, recall_at_k

GRADES = {"a": 2.0, "b": 1.0, "c": 0.0, "d": 1.0}
RANKING = ["c", "a", "x", "d"]  # c is judged non-relevant, x is unjudged, b is never retrieved
IDEAL_3 = 2 + 1 / math.log2(3) + 1 / math.log2(4)  # grades 2, 1, 1 at ranks 1..3


def test_dcg_uses_linear_gain_and_log2_discount() -> None:
    assert dcg([3, 0, 1]) == pytest.approx(3 + 0 + 1 / 2)


def test_ndcg_with_graded_relevance_and_a_partial_ranking() -> None:
    at_3 = (2 / math.log2(3)) / IDEAL_3
    assert ndcg_at_k(RANKING, GRADES, 3) == pytest.approx(at_3)
    assert ndcg_at_k(RANKING, GRADES, 3) == pytest.approx(0.40303, abs=1e-5)
    at_10 = (2 / math.log2(3) + 1 / math.log2(5)) / IDEAL_3  # ideal: only 3 relevant docs exist
    assert ndcg_at_k(RANKING, GRADES, 10) == pytest.approx(at_10)
    assert ndcg_at_k(["a", "b", "d"], GRADES, 10) == pytest.approx(1.0)
    assert ndcg_at_k([], GRADES, 10) == 0.0


def test_recall_counts_relevant_documents_only() -> None:
    assert recall_at_k(RANKING, GRADES, 100) == pytest.approx(2 / 3)
    assert recall_at_k(RANKING, GRADES, 2) == pytest.approx(1 / 3)
    assert recall_at_k(["c"], GRADES, 100) == 0.0


def test_queries_without_a_relevant_document_are_left_out() -> None:
    qrels = {"q1": GRADES, "q2": {"e": 0.0}, "q3": {"f": 1.0}, "q4": {"g": 2.0}}
    rankings = {"q1": RANKING, "q2": ["e"], "q3": ["f"]}  # q4 has no ranking: it scores 0
    scores = evaluate(rankings, qrels)
    expected = ((2 / math.log2(3) + 1 / math.log2(5)) / IDEAL_3 + 1 + 0) / 3
    assert scores.queries == 3
    assert scores.ndcg == pytest.approx(expected)
    assert scores.recall == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert evaluate({}, {"q": {"a": 0.0}}).queries == 0


def test_paired_difference_of_hand_made_scores() -> None:
    assert paired_difference([1.0, 1.0, 1.0], [0.0, 0.0, 0.0]) == (1.0, 1.0, 1.0)
    assert paired_difference([0.5, 0.2], [0.5, 0.2]) == (0.0, 0.0, 0.0)
    mean, low, high = paired_difference([1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0])
    assert mean == 0.5 and 0.0 <= low < 0.5 < high <= 1.0
    # The same inputs and seed give the same interval.
    assert paired_difference([1.0, 0.0, 1.0], [0.0] * 3) == paired_difference(
        [1.0, 0.0, 1.0], [0.0] * 3
    )
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        paired_difference([], [])


def test_evaluate_keeps_each_judged_querys_ndcg_in_order() -> None:
    qrels = {"a": {"d1": 1}, "b": {"d2": 1}, "c": {"d9": 0}}
    scores = evaluate({"a": ["d1"], "b": ["d3", "d2"]}, qrels, ndcg_k=10)
    assert scores.per_query_ndcg == pytest.approx((1.0, 1 / math.log2(3)))
    assert scores.ndcg == pytest.approx(sum(scores.per_query_ndcg) / 2)
