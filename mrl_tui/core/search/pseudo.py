"""Pseudo-queries: texts cut from the corpus's own chunks, each with the row it came from.

They let a search setting be chosen per corpus without relevance judgements, in the Library and in
`mrl-tui bench` alike. The row a pseudo-query was cut from is its one relevant row. Two cuts:

- `WINDOWS`: ten-word windows. The auto funnel (`funnel.auto_funnel`) picks the cheapest cascade
  whose top-k agrees with exact search on them. On the two BEIR sets, short pseudo-queries made
  it pick a cascade twice as dear (48d:400, 20.5 % of a scan, against 12d:1600 → 64d:100, 10.5 %)
  for the same nDCG@10 on the real queries.
- `SHORT`: a chunk's first 2–6 words (a title or heading in most corpora) or a window of 2–6
  words, alternately: like typed queries. The router's stop rules (`router.Router.calibrate`) are
  judged on them: short queries are the harder case, so a rule that keeps their quality is safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PSEUDO_QUERIES = 200


@dataclass(frozen=True)
class Cut:
    """How pseudo-queries are cut: ``words`` (least, most) per query, drawn per query when they
    differ; chunks shorter than ``min_words`` are passed over; with ``heads``, every other
    pseudo-query is a chunk's first words instead of a window at a random place."""

    words: tuple[int, int]
    min_words: int
    heads: bool


WINDOWS = Cut(words=(10, 10), min_words=3, heads=False)
SHORT = Cut(words=(2, 6), min_words=4, heads=True)


def pseudo_queries(
    texts: Sequence[str], cut: Cut = SHORT, count: int = PSEUDO_QUERIES, seed: int = 0
) -> list[tuple[int, str]]:
    """(row, text) pairs cut from random chunks (seeded, so the same corpus gives the same ones)."""
    rng = np.random.default_rng(seed)
    low, high = cut.words
    pairs: list[tuple[int, str]] = []
    for row in rng.permutation(len(texts)).tolist():
        words = texts[row].split()
        if len(words) < cut.min_words:
            continue
        size = low if low == high else int(rng.integers(low, high + 1))
        head = cut.heads and len(pairs) % 2 == 0
        start = 0 if head else int(rng.integers(0, max(1, len(words) - size + 1)))
        pairs.append((row, " ".join(words[start : start + size])))
        if len(pairs) == count:
            break
    return pairs
