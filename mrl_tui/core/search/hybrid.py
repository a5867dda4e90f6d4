"""Fusing a dense ranking and a keyword (bm25) ranking into one.

Two fusions, both over the top `CANDIDATES` of each list:

- ``rrf``: reciprocal-rank fusion, ``Σ 1 / (RRF_K + rank)`` over the lists a row is in. Ranks
  only: no score scale to calibrate, so it behaves the same at every prefix dim.
- ``mix``: a calibrated score mix, ``w · dense' + (1 − w) · bm25'``, where ``dense'`` is the
  exact cosine at the dim min-max scaled over the candidates and ``bm25'`` the bm25 score over
  the query's best (0 where no term matches: bm25's own value there).

Which is the default, and why, is measured in README.md ("Hybrid search").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mrl_tui.core.choices import FUSIONS as FUSIONS  # the names users of this module know
from mrl_tui.core.choices import RETRIEVALS as RETRIEVALS

DEFAULT_FUSION = "rrf"
CANDIDATES = 100
"""Rows taken from each list before fusing."""
RRF_K = 60
"""The constant of Cormack et al. (2009); it damps the weight of the very top ranks."""
MIX_DENSE_WEIGHT = 0.5
"""``w`` of the mix, fixed in advance (not fitted on the benchmark judgements)."""


def fuse(
    dense: Sequence[int],
    lexical: Sequence[int],
    lexical_scores: Sequence[float],
    fusion: str,
    dense_scores: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores) best first, ties by the lower row. `dense` and `lexical` are rows best
    first; `dense_scores(rows)` gives the exact dense score of any rows (the mix uses it)."""
    candidates = np.array(sorted({*dense, *lexical}), dtype=np.int64)
    if len(candidates) == 0:
        return candidates, np.zeros(0, np.float32)
    where = {int(row): i for i, row in enumerate(candidates)}
    scores = np.zeros(len(candidates), np.float64)
    if fusion == "rrf":
        for ranking in (dense, lexical):
            for rank, row in enumerate(ranking, start=1):
                scores[where[int(row)]] += 1.0 / (RRF_K + rank)
    elif fusion == "mix":
        cosine = np.asarray(dense_scores(candidates), np.float64)
        low, high = float(cosine.min()), float(cosine.max())
        scaled = (cosine - low) / (high - low) if high > low else np.ones_like(cosine)
        bm25 = np.zeros(len(candidates), np.float64)
        for row, score in zip(lexical, lexical_scores, strict=True):
            bm25[where[int(row)]] = score
        top = float(bm25.max())
        keyword = bm25 / top if top > 0 else bm25
        scores = MIX_DENSE_WEIGHT * scaled + (1 - MIX_DENSE_WEIGHT) * keyword
    else:
        raise ValueError(f"unknown fusion {fusion!r}")
    order = np.lexsort((candidates, -scores))
    return candidates[order], scores[order].astype(np.float32)


def ranks(rows: Sequence[int]) -> dict[int, int]:
    """Row → 1-based rank in `rows`."""
    return {int(row): rank for rank, row in enumerate(rows, start=1)}
