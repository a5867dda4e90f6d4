"""Retrieval metrics as trec_eval and BEIR compute them: nDCG@k and recall@k over graded judgements.

A ranking is a list of document ids, best first. Judgements map a document id to its grade; grade 0
means "judged, not relevant". Queries without any relevant document are left out of every mean,
because their nDCG and recall are undefined (BEIR scores only such judged queries).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Grades = Mapping[str, float]
"""One query's judgements: document id → grade (> 0 is relevant)."""


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain: linear gain, log2(rank + 1) discount (rank 1 is undiscounted)."""
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def ndcg_at_k(ranking: Sequence[str], grades: Grades, k: int = 10) -> float:
    """nDCG@k; the ideal ranking orders all judged grades of the query, retrieved or not."""
    ideal = dcg(sorted((g for g in grades.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    gains = [max(grades.get(doc, 0.0), 0.0) for doc in ranking[:k]]
    return dcg(gains) / ideal


def recall_at_k(ranking: Sequence[str], grades: Grades, k: int = 100) -> float:
    """Relevant documents in the top k ÷ relevant documents judged for the query."""
    relevant = {doc for doc, g in grades.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def has_relevant(grades: Grades) -> bool:
    return any(g > 0 for g in grades.values())


@dataclass(frozen=True)
class Scores:
    """Means over the queries that have at least one relevant document."""

    ndcg: float
    recall: float
    queries: int
    per_query_ndcg: tuple[float, ...] = ()
    """nDCG of each judged query, in the order of ``qrels``: for paired comparisons."""


def evaluate(
    rankings: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Grades],
    *,
    ndcg_k: int = 10,
    recall_k: int = 100,
) -> Scores:
    """Mean nDCG@ndcg_k and recall@recall_k; a judged query with no ranking scores 0."""
    judged = [q for q, grades in qrels.items() if has_relevant(grades)]
    if not judged:
        return Scores(0.0, 0.0, 0)
    ndcg = tuple(ndcg_at_k(rankings.get(q, []), qrels[q], ndcg_k) for q in judged)
    recall = sum(recall_at_k(rankings.get(q, []), qrels[q], recall_k) for q in judged)
    return Scores(sum(ndcg) / len(judged), recall / len(judged), len(judged), ndcg)


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, samples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired per-query scores and its 95 % bootstrap interval.

    Why: with a few dozen judged queries, one query moves nDCG@10 by about 1 %; whether search A
    "beats" search B is only worth saying when the interval leaves out zero. Queries are resampled
    with replacement (``samples`` times, seeded, so a report is reproducible).
    """
    if len(a) != len(b) or len(a) == 0:
        raise ValueError("paired_difference needs two equally long, non-empty score lists")
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    low, high = np.quantile(bootstrap_means(diff, samples=samples, seed=seed), [0.025, 0.975])
    return float(diff.mean()), float(low), float(high)


def bootstrap_means(values: np.ndarray, *, samples: int = 2000, seed: int = 0) -> np.ndarray:
    """Means of ``samples`` resamplings (with replacement, seeded) of a 1-D array."""
    rng = np.random.default_rng(seed)
    return values[rng.integers(0, len(values), (samples, len(values)))].mean(axis=1)
