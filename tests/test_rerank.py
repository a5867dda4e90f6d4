"""The shared "candidates, then exact rerank" step against plain exact scoring."""

from __future__ import annotations

import numpy as np

from mrl_tui.core.search.index import NestedIndex
from mrl_tui.core.search.rerank import rerank_head


def test_the_head_is_reranked_exactly_and_the_tail_keeps_its_order_and_scores() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 48)).astype(np.float32)
    index = NestedIndex(x)
    q = rng.standard_normal(48).astype(np.float32)
    scan = index.search(q, 8, 120)
    for dim in (8, 16, 48):
        got = rerank_head(index, q, dim, scan.ids, 50, scores=scan.scores)
        head = scan.ids[:50]
        cos = (x[head, :dim] @ q[:dim]) / (
            np.linalg.norm(x[head, :dim], axis=1) * np.linalg.norm(q[:dim])
        )
        order = np.argsort(-cos, kind="stable")
        assert np.array_equal(got.ids[:50], head[order])
        assert np.allclose(got.scores[:50], cos[order], atol=1e-5)
        assert np.array_equal(got.ids[50:], scan.ids[50:])
        assert np.array_equal(got.scores[50:], scan.scores[50:])
        # Only the best `depth`: the same rows as the full rerank's head, none of the tail.
        assert np.array_equal(rerank_head(index, q, dim, scan.ids, 50, depth=7).ids, got.ids[:7])
        assert np.array_equal(rerank_head(index, q, dim, scan.ids, 50, depth=60).ids, got.ids[:60])
    # All rows as candidates is exact search; a tail without scores gets NaN.
    assert np.array_equal(
        rerank_head(index, q, 48, np.arange(400), depth=10).ids, index.search(q, 48, 10).ids
    )
    assert np.isnan(rerank_head(index, q, 16, scan.ids, 10).scores[10:]).all()
