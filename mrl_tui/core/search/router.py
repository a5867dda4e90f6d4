"""Per-query routing: each query is searched at the prefix dimension it needs, and says why.

A route has two parts:

1. *Features* of the query text (`QueryFeatures`: length, content words, how rare its terms are in
   this corpus, numbers, names, code identifiers, negations and qualifiers, clauses) put it in
   feature groups (`FEATURE_GROUPS`). Calibration learns, per rung, which groups are risky there
   on this corpus: a query in a risky group may not stop at that rung. A query in three or more
   groups goes straight to full dimension.
2. *Confidence* decides how far it climbs. One exact scan at a small ``scan_dim`` keeps
   a few hundred rows; each rung of the ladder (``2·scan_dim``, ``4·scan_dim``, …, full) reranks
   only those candidates. The route stops at the first rung whose top-k agrees with the ranking
   before it and whose k-th/(k+1)-th score margin is not unusually thin (a rung calibration found
   unable to stop anything is skipped, but for the first). Escalating is a rerank of a
   few hundred rows, not a second scan over the corpus. On a corpus too small for that to read
   less than one exact scan (about 120 rows), every query is one exact full-dimension scan.

Every threshold comes from the corpus itself (`Router.calibrate`): short pseudo-queries cut out of
the chunks (their first words, like a title or heading, or a window of a few words) are searched
at every rung and compared with an exact full-dimension search, never with relevance judgements.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrl_tui.core.cache import artifacts
from mrl_tui.core.evaluation.metrics import bootstrap_means
from mrl_tui.core.search.index import Hits, NestedIndex

FORMAT_VERSION = 2
"""Saved routers of another version are calibrated again (the rules changed, not just the data)."""
CANDIDATES = 200
"""Rows every rung after the first reranks (the head of the ranking before it), at most."""
CANDIDATE_SHARE = 16
"""On smaller corpora the rungs rerank N/16 rows (at least 3·k), so that climbing the whole
ladder still reads a small share of one full scan."""
SCAN_DIMS = (12, 16, 24, 32, 48, 64)
SCAN_KEEP = (200, 400, 800, 1600)
"""Scan settings calibration may choose from: (dim, rows kept for the first rung); on smaller
corpora also 2× and 4× the candidates, and never more than half the rows."""
CANDIDATE_RECALL = 0.99
"""The scan must keep the source row of this share of the pseudo-queries (see `calibrate`)."""
QUALITY = 0.99
"""A rung may stop a query when pseudo-queries as stable keep this share of their full nDCG
(with 95 % confidence: `keeps_quality`)."""
BOOTSTRAP_SAMPLES = 1000
STABILITY_STEPS = (0.6, 0.7, 0.8, 0.9, 1.0)
MARGIN_QUANTILE = 0.1
"""A top-k whose boundary margin is thinner than this share of pseudo-queries' is not trusted."""
MIN_SUPPORT = 0.1
"""A stability threshold must be met by at least this share of pseudo-queries to be chosen."""
MIN_GROUP = 10
"""Stable pseudo-queries of a feature group needed to judge whether the group is risky."""
CALIBRATION_QUERIES = 200
HARD_GROUPS = 3
"""Feature groups from which a query goes straight to full dimension."""
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


@dataclass
class Route:
    """How one query was searched. ``stages`` = (dim, rows scored) in order: the scan, then every
    rerank; ``values_read`` is their sum of dim·rows."""

    dim: int
    reasons: list[str]
    features: dict[str, Any]
    stages: list[tuple[int, int]] = field(default_factory=list)
    values_read: int = 0

    @property
    def summary(self) -> str:
        """One line: ``128-d: short keyword query; top-10 stable between 64 and 128``."""
        return f"{self.dim}-d: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "reasons": self.reasons,
            "summary": self.summary,
            "features": self.features,
            "stages": [{"dim": d, "rows": rows} for d, rows in self.stages],
            "values_read": self.values_read,
        }


def keeps_quality(gains: np.ndarray, reference: np.ndarray) -> bool:
    """Whether these pseudo-queries keep `QUALITY` of their full-dim nDCG, with 95 % confidence.

    Why not the mean alone: a pseudo-query's quality is whether one row (its source) ranks, so a
    few dozen of them are a noisy sample, and a permissive stop rule can pass by chance. Measured
    (session 2): with the mean alone, msmarco under naive truncation routed to 98.8 % of full; with
    the lower end of a one-sided 95 % bootstrap interval (seeded), every set and transform we have
    stays ≥ 99 %, at a somewhat higher cost."""
    diff = np.asarray(gains, np.float64) - QUALITY * np.asarray(reference, np.float64)
    if len(diff) == 0:
        return False
    means = bootstrap_means(diff, samples=BOOTSTRAP_SAMPLES)
    return float(np.quantile(means, 0.05)) >= 0


def risky_groups(
    chosen: np.ndarray, gains: np.ndarray, reference: np.ndarray, has: dict[str, np.ndarray]
) -> tuple[list[str], list[str]]:
    """Feature groups whose ``chosen`` (stable) pseudo-queries keep less than `QUALITY` of their
    full-dim nDCG, and those too few chosen pseudo-queries show (`MIN_GROUP`) to tell."""
    risky, unknown = [], []
    for group in FEATURE_GROUPS:
        mask = chosen & has[group]
        if mask.sum() < MIN_GROUP:
            unknown.append(group)
        elif not keeps_quality(gains[mask], reference[mask]):
            risky.append(group)
    return risky, unknown


def rerank_rows(n: int, k: int = 10) -> int:
    """Rows each rung after the first reranks on a corpus of ``n`` rows."""
    return min(CANDIDATES, max(3 * k, n // CANDIDATE_SHARE))


def scan_settings(n: int, full_dim: int, k: int = 10) -> list[tuple[int, int]]:
    """Every (scan dim, rows kept) calibration may choose on this corpus; none when it is too
    small for a ladder to read less than one exact scan (then the router searches exactly)."""
    candidates = rerank_rows(n, k)
    keeps = {c for c in (*SCAN_KEEP, 2 * candidates, 4 * candidates) if candidates <= c <= n // 2}
    return [(d, c) for d in SCAN_DIMS for c in sorted(keeps) if 2 * d < full_dim]


def ladder(scan_dim: int, full_dim: int) -> list[int]:
    """Rerank dims after a scan at ``scan_dim``: doubling, then full."""
    rungs, dim = [], 2 * scan_dim
    while dim < full_dim:
        rungs.append(dim)
        dim *= 2
    return [*rungs, full_dim]


def overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of the top-k of ``a`` that is also in the top-k of ``b``."""
    top = set(a[:k].tolist())
    return len(top & set(b[:k].tolist())) / max(1, min(k, len(top)))


def _gain(ranking: np.ndarray, source: int, k: int) -> float:
    """nDCG@k of a ranking when ``source`` is the one relevant row."""
    hits = np.flatnonzero(ranking[:k] == source)
    return 1.0 / math.log2(hits[0] + 2) if len(hits) else 0.0


def margin(scores: np.ndarray, k: int) -> float:
    """Gap between the k-th and (k+1)-th score, relative to the spread of the candidates' scores."""
    if len(scores) <= k:
        return math.inf
    spread = float(scores[0] - scores[-1])
    return float(scores[k - 1] - scores[k]) / spread if spread > 0 else 0.0


@dataclass(frozen=True)
class Rung:
    """A rung's stop rule: its top-k must share ``stability`` with the ranking before it (None:
    never stop here), its boundary margin must reach ``margin``, and the query must show none of
    the ``risky`` feature groups (those whose stable pseudo-queries lost quality here)."""

    dim: int
    stability: float | None
    margin: float
    risky: tuple[str, ...] = ()


@dataclass
class Router:
    """Routes queries over one index; make it with `calibrate` (or `load` a saved one)."""

    stats: TermStats
    full_dim: int
    scan_dim: int
    scan_keep: int
    rungs: list[Rung]
    k: int = 10
    candidates: int = CANDIDATES
    notes: dict[str, Any] = field(default_factory=dict)

    # -- routing -------------------------------------------------------------------------------

    def plan(self, text: str) -> tuple[QueryFeatures, list[str], bool, list[str]]:
        """Features, feature groups, whether the query is hard (straight to full) and why."""
        features = query_features(text, self.stats)
        groups, reasons = complexity(features)
        if len(groups) >= HARD_GROUPS:
            return features, groups, True, [*reasons, "hard: straight to full"]
        return features, groups, False, reasons

    def search(
        self, index: NestedIndex, text: str, vector: np.ndarray, depth: int | None = None
    ) -> tuple[Hits, Route]:
        """Route ``text`` and rank ``depth`` rows (default k).

        The scan keeps `scan_keep` rows, which the first rung reranks; later rungs rerank the head
        (`candidates` rows) of the ranking before them and leave its tail in place. A query stops
        at the first rung where it is confident and shows none of the rung's risky feature groups;
        a hard query skips every rung but the first (which narrows the candidates) and the last.
        """
        depth = depth or self.k
        features, groups, hard, reasons = self.plan(text)
        if not self.rungs:
            found = index.search(vector, self.full_dim, depth)
            reasons.append(f"{self.notes.get('exact') or 'no ladder'}: exact full-dim scan")
            route = Route(
                self.full_dim,
                reasons,
                features.to_dict(),
                [(self.full_dim, index.n)],
                self.full_dim * index.n,
            )
            return found, route
        scan_keep = min(self.scan_keep, index.n)
        scan = index.search(vector, self.scan_dim, max(scan_keep, depth))
        stages = [(self.scan_dim, index.n)]
        ranking, scores, prev_dim = scan.ids, scan.scores, self.scan_dim
        last = len(self.rungs) - 1
        # A rung that can stop no query is skipped (its rerank would only cost), except the
        # first, which narrows the scan's rows to the candidates, and full dimension.
        order = [
            i for i in range(last + 1) if i in (0, last) or self.rungs[i].stability is not None
        ]
        if hard:
            order = [0, last]
        held: list[str] = []  # feature groups that kept a confident top-k from stopping
        for step, i in enumerate(dict.fromkeys(order)):
            rung = self.rungs[i]
            kept = scan_keep if step == 0 else min(self.candidates, scan_keep)
            hits = index.rerank(vector, rung.dim, ranking[:kept], kept)
            stages.append((rung.dim, kept))
            stable = overlap(ranking, hits.ids, self.k)
            gap = margin(hits.scores, self.k)
            ranking = np.concatenate([hits.ids, ranking[kept:]])
            scores = np.concatenate([hits.scores, scores[kept:]])
            if rung.dim == self.full_dim:
                if not hard:
                    why = "not trusted" if held else "unstable"
                    reasons.append(f"top-{self.k} {why} up to {prev_dim}: full")
                break
            confident = rung.stability is not None and stable >= rung.stability - 1e-9
            if confident and gap >= rung.margin:
                risky = [g for g in groups if g in rung.risky and g not in held]
                if not any(g in rung.risky for g in groups):
                    shared = round(stable * min(self.k, kept))
                    reasons.append(
                        f"top-{self.k} stable between {prev_dim} and {rung.dim} ({shared} shared)"
                    )
                    break
                if risky:
                    held += risky
                    reasons.append(f"{'/'.join(risky)} queries need more than {rung.dim} here")
            prev_dim = rung.dim
        route = Route(
            dim=stages[-1][0],
            reasons=reasons,
            features=features.to_dict(),
            stages=stages,
            values_read=sum(d * rows for d, rows in stages),
        )
        return Hits(ranking[:depth], scores[:depth]), route

    # -- calibration ---------------------------------------------------------------------------

    @classmethod
    def exact(cls, stats: TermStats, full_dim: int, n: int, k: int = 10, why: str = "") -> Router:
        """A router with no ladder: every query is one exact full-dimension scan (``why`` says
        why routing would not pay, e.g. too few rows)."""
        return cls(stats, full_dim, full_dim, n, [], k, n, {"exact": why})

    @classmethod
    def calibrate(
        cls,
        index: NestedIndex,
        stats: TermStats,
        pseudo_vectors: np.ndarray,
        pseudo_sources: Sequence[int],
        k: int = 10,
        pseudo_texts: Sequence[str] | None = None,
    ) -> Router:
        """Choose the scan and each rung's stop rule from pseudo-queries (see the module doc).

        A pseudo-query's relevant row is the one it was cut from, and its quality at a dim is the
        nDCG@k of that row. The scan is the cheapest (dim, rows kept) whose rows still hold the
        source of `CANDIDATE_RECALL` of the pseudo-queries whose source the full-dim top-k holds.
        A rung's stability threshold is the lowest of `STABILITY_STEPS` at which the pseudo-queries
        that stable keep `QUALITY` of their full-dim nDCG; its margin threshold is the
        `MARGIN_QUANTILE` of their margins. A feature group is risky at a rung when the stable
        pseudo-queries showing it (``pseudo_texts``; at least `MIN_GROUP` of them) keep less than
        `QUALITY`; a group too few of them show is assumed risky at the lowest rung that can stop.
        """
        full, n = index.full_dim, index.n
        candidates = rerank_rows(n, k)
        settings = scan_settings(n, full, k)
        if not settings:
            return cls.exact(stats, full, n, k, f"small index ({n} rows)")
        if len(pseudo_vectors) == 0:
            return cls.exact(stats, full, n, k, "no calibration queries")
        settings.sort(key=lambda s: (n * s[0] + s[1] * 2 * s[0], s))

        pairs = list(zip(pseudo_vectors, pseudo_sources, strict=True))
        exact = index.search_many(pseudo_vectors, full, k)
        reference = np.array([_gain(h.ids, s, k) for h, (_, s) in zip(exact, pairs, strict=True)])
        found = reference > 0
        deepest = max(c for _, c in settings)
        scans = {
            d: [h.ids for h in index.search_many(pseudo_vectors, d, deepest)] for d, _ in settings
        }
        best, best_recall = settings[-1], -1.0
        for d, c in settings:
            kept = [s in f[:c] for f, (_, s) in zip(scans[d], pairs, strict=True)]
            recall = float(np.mean(np.array(kept)[found])) if found.any() else 1.0
            if recall > best_recall:
                best, best_recall = (d, c), recall
            if recall >= CANDIDATE_RECALL:
                best, best_recall = (d, c), recall
                break
        scan_dim, scan_keep = best
        notes: dict[str, Any] = {
            "pseudo_queries": len(pairs),
            "scan": f"{scan_dim}d:{scan_keep}",
            "scan_recall": round(best_recall, 4),
            "full_ndcg": round(float(reference.mean()), 4),
            "rungs": [],
        }
        rungs = []
        groups = [
            set(complexity(query_features(t, stats))[0])
            for t in (pseudo_texts or [""] * len(pairs))
        ]
        has = {g: np.array([g in mine for mine in groups]) for g in FEATURE_GROUPS}
        rankings = [f[:scan_keep] for f in scans[scan_dim]]
        for step, dim in enumerate(ladder(scan_dim, full)):
            kept = scan_keep if step == 0 else candidates
            ranked = [
                index.rerank(q, dim, r[:kept], kept)
                for (q, _), r in zip(pairs, rankings, strict=True)
            ]
            stable = np.array([overlap(r, h.ids, k) for r, h in zip(rankings, ranked, strict=True)])
            gains = np.array([_gain(h.ids, s, k) for h, (_, s) in zip(ranked, pairs, strict=True)])
            gaps = np.array([margin(h.scores, k) for h in ranked])
            threshold = None
            for level in STABILITY_STEPS:
                chosen = stable >= level - 1e-9
                if chosen.mean() < MIN_SUPPORT:
                    break
                if keeps_quality(gains[chosen], reference[chosen]):
                    threshold = level
                    break
            finite = gaps[np.isfinite(gaps)]
            gap = float(np.quantile(finite, MARGIN_QUANTILE)) if len(finite) else 0.0
            risky: list[str] = []
            if threshold is not None and dim < full:
                risky, unknown = risky_groups(stable >= threshold - 1e-9, gains, reference, has)
                if not any(r.stability is not None for r in rungs):  # the lowest that can stop
                    risky += unknown
            rungs.append(Rung(dim, threshold, gap, tuple(risky)))
            notes["rungs"].append(
                {
                    "dim": dim,
                    "rows": kept,
                    "stability": threshold,
                    "margin": round(gap, 5),
                    "ndcg": round(float(gains.mean()), 4),
                    "risky": risky,
                    "groups": {g: int(has[g].sum()) for g in FEATURE_GROUPS},
                }
            )
            if step == 0 or threshold is not None or dim == full:
                rankings = [h.ids for h in ranked]  # the next rung compares with this one
        notes["candidates"] = candidates
        return cls(stats, full, scan_dim, scan_keep, rungs, k, candidates, notes)

    # -- cache ---------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Atomically and durably (`artifacts.atomic_write`)."""
        artifacts.atomic_write(path, artifacts.text_writer(self.to_json()))

    def to_json(self) -> str:
        data = {
            "version": FORMAT_VERSION,
            "docs": self.stats.docs,
            "df": self.stats.df,
            "full_dim": self.full_dim,
            "scan_dim": self.scan_dim,
            "scan_keep": self.scan_keep,
            "rungs": [asdict(r) for r in self.rungs],
            "k": self.k,
            "candidates": self.candidates,
            "notes": self.notes,
        }
        return json.dumps(data)

    @classmethod
    def load(cls, path: Path) -> Router:
        """A saved router; a missing or malformed file raises ``OSError``/``ValueError``."""
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: a router saved by another version (calibrated again)")
        try:
            return cls(
                TermStats(int(data["docs"]), {str(t): int(c) for t, c in data["df"].items()}),
                int(data["full_dim"]),
                int(data["scan_dim"]),
                int(data["scan_keep"]),
                [
                    Rung(int(r["dim"]), r["stability"], float(r["margin"]), tuple(r["risky"]))
                    for r in data["rungs"]
                ],
                int(data["k"]),
                int(data["candidates"]),
                dict(data["notes"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a saved router ({exc})") from None


def calibration_queries(
    texts: Sequence[str], count: int = CALIBRATION_QUERIES, seed: int = 0
) -> list[tuple[int, str]]:
    """(row, text) pairs cut from random chunks: half are a chunk's first 2–6 words (a title or
    heading in most corpora), half a window of 2–6 words from anywhere in it."""
    rng = np.random.default_rng(seed)
    pairs: list[tuple[int, str]] = []
    for row in rng.permutation(len(texts)).tolist():
        words = texts[row].split()
        if len(words) < 4:
            continue
        size = int(rng.integers(2, 7))
        start = 0 if len(pairs) % 2 == 0 else int(rng.integers(0, max(1, len(words) - size)))
        pairs.append((row, " ".join(words[start : start + size])))
        if len(pairs) == count:
            break
    return pairs
