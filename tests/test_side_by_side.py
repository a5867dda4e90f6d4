"""The comparison the TUI renders, computed in the core: two rankings compared, and the query
terms keyword search matched in a chunk (worked out by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_tui.core.corpus.chunking import Chunk
from mrl_tui.core.library import Query
from mrl_tui.core.search.compare import compare_rankings
from mrl_tui.core.search.side_by_side import keyword_matches, term_spans


def test_compare_rankings_gives_moves_both_ways_lost_hits_overlap_and_tau() -> None:
    # left:  30 (right has it 3rd: ▲2), 10 (1st: ▼1), 99 (absent), 40 (4th: =)
    # right: 10 (left 2nd: ▲1), 20 (absent), 30 (left 1st: ▼2), 40 (=)
    ranking = compare_rankings([30, 10, 99, 40], [10, 20, 30, 40], k=4)
    assert ranking.left_moves == [2, -1, None, 0]
    assert ranking.right_moves == [1, None, -2, 0]
    assert ranking.left_lost == [20] and ranking.right_lost == [99]
    assert ranking.overlap == 0.75 and ranking.k == 4
    # shared 30, 10, 40 in left order; right ranks 3, 1, 4: one discordant pair of three
    assert ranking.tau == pytest.approx(1 / 3)
    assert compare_rankings([1], [2], k=10).tau is None


def query(words: str) -> Query:
    return Query(words, np.zeros(1), np.zeros(1), 0, 0.0, words=words)


def chunk(text: str, path: str = "notes/bread.md", heading: str = "") -> Chunk:
    return Chunk(path=path, start_line=1, end_line=2, heading=heading, text=text)


def test_keyword_matches_are_what_fts5_matched_not_word_prefixes() -> None:
    found = chunk("Feeding the starter: starters like warmth.", "notes/levain.md", "Levain")
    assert keyword_matches(query("feed the levain starter"), found) == ["the", "levain", "starter"]
    assert keyword_matches(query("rye"), found) == []
    code = chunk("def parseRate(text):\n    return text")
    assert keyword_matches(query("parse_rate"), code) == ["parse", "rate", "parserate"]
    assert keyword_matches(query("cafe"), chunk("Café au lait")) == ["cafe"]


def test_term_spans_mark_matched_words_and_whole_identifiers_only() -> None:
    text = "parse_rate and rates; Feed, feeding; parseRate"
    marked = [text[a:b] for a, b in term_spans(text, ["rate", "feed"])]
    assert marked == ["parse_rate", "Feed", "parseRate"]
    assert term_spans("Café au lait", ["cafe"]) == [(0, 4)]
    assert term_spans(text, []) == []
