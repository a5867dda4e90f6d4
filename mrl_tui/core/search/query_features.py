"""What the text of a query says about how hard it is to rank: its features and feature groups.

`query_features` reads length, content words, how rare its terms are in this corpus
(`TermStats`), numbers, names, code identifiers, negations and qualifiers, and clauses;
`complexity` puts the query in feature groups (`FEATURE_GROUPS`) with a reason for each. The
router (`mrl_tui.core.search.router`) learns per corpus which groups may not stop early.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

RARE_SHARE = 0.002
"""A term in fewer than this share of chunks (or none) is rare."""
LONG_QUERY = 8
"""Content words from which a query counts as long."""


_WORD = re.compile(r"[a-z0-9]+")
_RAW_WORD = re.compile(r"[A-Za-z0-9_.']+")
_NUMBER = re.compile(r"^\d+(?:[.,]\d+)*$")
_IDENTIFIER = re.compile(
    r"^(?:[A-Za-z]\w*_\w+"  # snake_case
    r"|[a-z]+[A-Z]\w*"  # camelCase
    r"|[A-Z][a-z0-9]+[A-Z]\w*"  # PascalCase with an inner capital
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)$"  # dotted.name
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS = _words(
    """a about above after again all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me
    more most my myself of off on once or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through
    to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves s t"""
)
NEGATIONS = _words(
    "not no never without except excluding exclude nor neither none unlike cannot non"
)
QUALIFIERS = _words("only exactly unless versus vs instead rather besides but")
SUBORDINATORS = _words(
    "because while whereas although though unless which whose if when where whether"
)


def tokenize(text: str) -> list[str]:
    """Lowercase words and numbers: the tokens of the document-frequency table."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class TermStats:
    """Document frequency of every token over the corpus's chunks."""

    docs: int
    df: dict[str, int]

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> TermStats:
        df: Counter[str] = Counter()
        for text in texts:
            df.update(set(tokenize(text)))
        return cls(len(texts), dict(df))

    def idf(self, term: str) -> float:
        """BM25's smoothed IDF; an unseen term gets the highest value."""
        df = self.df.get(term, 0)
        return math.log(1 + (self.docs - df + 0.5) / (df + 0.5))

    def is_rare(self, term: str) -> bool:
        return self.df.get(term, 0) < max(1.0, RARE_SHARE * self.docs)


@dataclass(frozen=True)
class QueryFeatures:
    tokens: int
    content_words: int
    mean_idf: float
    max_idf: float
    rare_terms: list[str]
    numbers: list[str]
    names: list[str]
    identifiers: list[str]
    negations: list[str]
    qualifiers: list[str]
    clauses: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean_idf"] = round(self.mean_idf, 3)
        data["max_idf"] = round(self.max_idf, 3)
        return data


def query_features(text: str, stats: TermStats) -> QueryFeatures:
    tokens = tokenize(text)
    content = [t for t in tokens if t not in STOPWORDS]
    idfs = [stats.idf(t) for t in content]
    raw = [w.strip(".'") for w in _RAW_WORD.findall(text)]
    raw = [w for w in raw if w]
    # A capital at the very start says nothing unless the next word has one too ("Hugh Downs").
    names = [
        w
        for i, w in enumerate(raw)
        if w[0].isupper()
        and w.lower() not in STOPWORDS
        and not _IDENTIFIER.match(w)
        and (i > 0 or (len(raw) > 1 and raw[1][0].isupper()))
    ]
    lowered = text.lower()
    cue_words = NEGATIONS | QUALIFIERS
    negations = [t for t in tokens if t in NEGATIONS]
    negations += ["n't"] * lowered.count("n't")
    clauses = (
        1 + len(re.findall(r"[,;:]\s", text + " ")) + sum(t in SUBORDINATORS for t in tokens[1:])
    )
    return QueryFeatures(
        tokens=len(tokens),
        content_words=len(content),
        mean_idf=float(np.mean(idfs)) if idfs else 0.0,
        max_idf=max(idfs, default=0.0),
        rare_terms=sorted(
            {t for t in content if stats.is_rare(t) and not t.isdigit() and t not in cue_words}
        ),
        numbers=[w for w in raw if _NUMBER.match(w)],
        names=names,
        identifiers=[w for w in raw if _IDENTIFIER.match(w)],
        negations=negations,
        qualifiers=[t for t in tokens if t in QUALIFIERS],
        clauses=clauses,
    )


FEATURE_GROUPS = ("negation", "exact", "rare", "long", "clauses")
"""The kinds of complexity a query can show; calibration learns which of them need more dims."""


def complexity(features: QueryFeatures) -> tuple[list[str], list[str]]:
    """The query's feature groups (of `FEATURE_GROUPS`) and a reason for each (or one reason why
    there are none)."""
    groups, reasons = [], []
    if features.negations or features.qualifiers:
        groups.append("negation")
        reasons.append(f"negation/qualifier {', '.join(features.negations + features.qualifiers)}")
    exact = features.identifiers + features.numbers
    if exact:
        groups.append("exact")
        reasons.append(f"exact tokens {', '.join(exact[:3])}")
    if features.rare_terms:
        groups.append("rare")
        reasons.append(f"rare terms {', '.join(features.rare_terms[:3])}")
    if features.content_words >= LONG_QUERY:
        groups.append("long")
        reasons.append(f"long query ({features.content_words} content words)")
    if features.clauses >= 2:
        groups.append("clauses")
        reasons.append(f"{features.clauses} clauses")
    if not reasons:
        size = "short" if features.content_words <= 3 else "plain"
        reasons.append(f"{size} keyword query")
    return groups, reasons
