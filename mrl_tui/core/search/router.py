"""Per-query routing: each query is searched at the prefix dimension it needs, and says why.

A route has two parts:

1. *Features* of the query text (`mrl_tui.core.search.query_features`: length, content words, how
   rare its terms are in this corpus, numbers, names, code identifiers, negations and qualifiers,
   clauses) put it in feature groups. Calibration learns, per rung, which groups are risky there
   on this corpus: a query in a risky group may not stop at that rung. A query in three or more
   groups never stops early.
2. *Confidence* decides how far it climbs a ladder: an exact scan at a small ``scan_dim`` keeps a
   few hundred rows, and each rung reranks only candidates. The route stops at the first rung
   whose top-k agrees with the ranking before it and whose k-th/(k+1)-th score margin is not
   unusually thin (a rung calibration found unable to stop anything is skipped, but for the
   first and the last). Calibration keeps the cheaper of two ladders on this corpus:

   - the *funnel ladder*: the cascade of the auto funnel (`funnel.auto_funnel`, e.g. a scan at
     12 dims keeping 1600 rows, a rerank of those at 64, of the best 100 at full), one rung per
     rerank. A query that does not stop is the funnel's search, row for row, so this ladder never
     reads more than the auto funnel, and less whenever a query stops.
   - the *doubling ladder*: a scan chosen to keep the pseudo-queries' sources, then reranks at
     ``2·scan_dim``, ``4·scan_dim``, …, full. Cheaper where the funnel needs a large scan (naive
     truncation, very small corpora).

   On a corpus too small for either to read less than one exact scan (about 120 rows at 384
   dims), every query is one exact full-dimension scan.

Every threshold comes from the corpus itself (`Router.calibrate`): short pseudo-queries cut out of
the chunks (`mrl_tui.core.search.pseudo`) are searched at every rung and compared with an exact
full-dimension search, never with relevance judgements; they also say which ladder reads less.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrl_tui.core.cache import artifacts
from mrl_tui.core.evaluation.metrics import bootstrap_means
from mrl_tui.core.search.funnel import Funnel, auto_funnel, auto_grid, scan_fraction
from mrl_tui.core.search.index import Hits, NestedIndex
from mrl_tui.core.search.query_features import (
    FEATURE_GROUPS,
    QueryFeatures,
    TermStats,
    complexity,
    query_features,
)
from mrl_tui.core.search.rerank import rerank_head

FORMAT_VERSION = 3
"""Saved routers of another version are calibrated again (the rules changed, not just the data)."""
MAX_SCAN_SHARE = 0.5
"""A funnel ladder must read at most this share of one exact full scan to be considered."""
CANDIDATES = 200
"""Rows every rung after the first of a doubling ladder reranks (the head of the ranking before
it), at most."""
CANDIDATE_SHARE = 16
"""On smaller corpora the doubling ladder's rungs rerank N/16 rows (at least 3·k), so that
climbing the whole ladder still reads a small share of one full scan."""
SCAN_DIMS = (12, 16, 24, 32, 48, 64)
SCAN_KEEP = (200, 400, 800, 1600)
"""Scan settings of a doubling ladder: (dim, rows kept for the first rung); on smaller corpora
also 2× and 4× the candidates, and never more than half the rows."""
CANDIDATE_RECALL = 0.99
"""A doubling ladder's scan must keep the source row of this share of the pseudo-queries."""
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
HARD_GROUPS = 3
"""Feature groups from which a query never stops early."""


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


def routable(n: int, full_dim: int, k: int = 10) -> bool:
    """Whether a ladder could read less than one exact scan on a corpus of ``n`` rows: a doubling
    ladder, or a funnel that reads at most `MAX_SCAN_SHARE` (below about 120 rows at 384 dims,
    neither)."""
    cheapest = auto_grid(full_dim, n)[:1]
    funnel = any(scan_fraction(f, n, full_dim) <= MAX_SCAN_SHARE for f in cheapest)
    return funnel or bool(scan_settings(n, full_dim, k))


def rerank_rows(n: int, k: int = 10) -> int:
    """Rows each rung after the first of a doubling ladder reranks on a corpus of ``n`` rows."""
    return min(CANDIDATES, max(3 * k, n // CANDIDATE_SHARE))


def scan_settings(n: int, full_dim: int, k: int = 10) -> list[tuple[int, int]]:
    """Every (scan dim, rows kept) a doubling ladder may start with on this corpus; none when it
    is too small for the ladder to read less than one exact scan."""
    candidates = rerank_rows(n, k)
    keeps = {c for c in (*SCAN_KEEP, 2 * candidates, 4 * candidates) if candidates <= c <= n // 2}
    return [(d, c) for d in SCAN_DIMS for c in sorted(keeps) if 2 * d < full_dim]


def ladder(scan_dim: int, full_dim: int) -> list[int]:
    """Rerank dims of a doubling ladder after a scan at ``scan_dim``: doubling, then full."""
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


def _doubling_scan(
    index: NestedIndex,
    pairs: list[tuple[np.ndarray, int]],
    reference: np.ndarray,
    settings: list[tuple[int, int]],
) -> tuple[tuple[int, int], float]:
    """The cheapest (scan dim, rows kept) whose rows hold the source of `CANDIDATE_RECALL` of the
    pseudo-queries whose source the full-dim top-k holds (else the one that holds most), and that
    share."""
    n = index.n
    settings = sorted(settings, key=lambda s: (n * s[0] + s[1] * 2 * s[0], s))
    found = reference > 0
    vectors = np.stack([q for q, _ in pairs])
    deepest = max(c for _, c in settings)
    scans = {d: [h.ids for h in index.search_many(vectors, d, deepest)] for d, _ in settings}
    best, best_recall = settings[-1], -1.0
    for d, c in settings:
        kept = np.array([s in f[:c] for f, (_, s) in zip(scans[d], pairs, strict=True)])
        recall = float(np.mean(kept[found])) if found.any() else 1.0
        if recall > best_recall:
            best, best_recall = (d, c), recall
        if recall >= CANDIDATE_RECALL:
            return (d, c), recall
    return best, best_recall


def _rungs(
    index: NestedIndex,
    pairs: list[tuple[np.ndarray, int]],
    reference: np.ndarray,
    has: dict[str, np.ndarray],
    rankings: list[np.ndarray],
    steps: list[tuple[int, int]],
    k: int,
) -> tuple[list[Rung], list[dict[str, Any]]]:
    """Each rung's stop rule, for rungs (dim, rows reranked) after a scan whose rankings of the
    pseudo-queries are ``rankings``.

    A rung's stability threshold is the lowest of `STABILITY_STEPS` at which the pseudo-queries
    that stable keep `QUALITY` of their full-dim nDCG; its margin threshold is the
    `MARGIN_QUANTILE` of their margins. A feature group is risky at a rung when the stable
    pseudo-queries showing it (at least `MIN_GROUP` of them) keep less than `QUALITY`; a group too
    few of them show is assumed risky at the lowest rung that can stop. A rung that can stop
    nothing is skipped by `Router.search` (unless first or last), so the next rung is compared
    with the ranking before it.
    """
    full = index.full_dim
    rungs: list[Rung] = []
    notes: list[dict[str, Any]] = []
    for step, (dim, kept) in enumerate(steps):
        ranked = [
            rerank_head(index, q, dim, r, kept) for (q, _), r in zip(pairs, rankings, strict=True)
        ]
        stable = np.array([overlap(r, h.ids, k) for r, h in zip(rankings, ranked, strict=True)])
        gains = np.array([_gain(h.ids, s, k) for h, (_, s) in zip(ranked, pairs, strict=True)])
        gaps = np.array([margin(h.scores[:kept], k) for h in ranked])
        threshold = None
        for level in STABILITY_STEPS if dim < full else ():
            chosen = stable >= level - 1e-9
            if chosen.mean() < MIN_SUPPORT:
                break
            if keeps_quality(gains[chosen], reference[chosen]):
                threshold = level
                break
        finite = gaps[np.isfinite(gaps)]
        gap = float(np.quantile(finite, MARGIN_QUANTILE)) if len(finite) else 0.0
        risky: list[str] = []
        if threshold is not None:
            risky, unknown = risky_groups(stable >= threshold - 1e-9, gains, reference, has)
            if not any(r.stability is not None for r in rungs):  # the lowest that can stop
                risky += unknown
        rungs.append(Rung(dim, threshold, gap, tuple(risky)))
        notes.append(
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
    return rungs, notes


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
        """Features, feature groups, whether the query is hard (no early stop) and why."""
        features = query_features(text, self.stats)
        groups, reasons = complexity(features)
        if len(groups) >= HARD_GROUPS:
            return features, groups, True, [*reasons, "hard: no early stop"]
        return features, groups, False, reasons

    def search(
        self, index: NestedIndex, text: str, vector: np.ndarray, depth: int | None = None
    ) -> tuple[Hits, Route]:
        """Route ``text`` and rank ``depth`` rows (default k).

        The scan keeps `scan_keep` rows, which the first rung reranks; later rungs rerank the head
        (`candidates` rows) of the ranking before them and leave its tail in place. A query stops
        at the first rung where it is confident and shows none of the rung's risky feature groups;
        a hard query skips every rung but the first (which narrows the candidates) and the last. On
        a funnel ladder a query that does not stop is its funnel's search
        (`funnel.staged_search`): the same rows, the same values read.
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
        # first, which narrows the scan's rows to the candidates, and full dimension. A funnel
        # ladder has no other rungs.
        order = [
            i for i in range(last + 1) if i in (0, last) or self.rungs[i].stability is not None
        ]
        if hard:
            order = [0, last]
        held: list[str] = []  # feature groups that kept a confident top-k from stopping
        for step, i in enumerate(dict.fromkeys(order)):
            rung = self.rungs[i]
            kept = scan_keep if step == 0 else min(self.candidates, scan_keep)
            reranked = rerank_head(index, vector, rung.dim, ranking, kept, scores=scores)
            stages.append((rung.dim, kept))
            stable = overlap(ranking, reranked.ids, self.k)
            gap = margin(reranked.scores[:kept], self.k)
            ranking, scores = reranked.ids, reranked.scores
            if rung.dim == self.full_dim:
                if not hard:
                    why = "not trusted" if held else "unstable"
                    reasons.append(f"top-{self.k} {why} up to {prev_dim}: full")
                break
            confident = rung.stability is not None and stable >= rung.stability - 1e-9
            if not hard and confident and gap >= rung.margin:
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
        funnel: Funnel | None = None,
    ) -> Router:
        """The cheaper of two ladders, each with its rungs' stop rules, from pseudo-queries.

        - the *funnel ladder*: the cascade of ``funnel`` (the auto funnel; give the one chosen on
          `pseudo.WINDOWS`, by default it is chosen on these pseudo-queries), at most two stages:
          the scan keeps ``scan_keep`` rows, the first rung reranks them, the next (if any)
          reranks ``candidates``. A query that does not stop is the funnel's search.
        - the *doubling ladder*: the cheapest scan (dim, rows kept) whose rows still hold the
          source of `CANDIDATE_RECALL` of the pseudo-queries whose source the full-dim top-k
          holds, then reranks at doubling dims, then full.

        Each rung's stop rule is calibrated the same way (`_rungs`); then every pseudo-query is
        routed through each ladder, and the one that reads less on average is kept (the funnel
        on a tie). A pseudo-query's relevant row is the one it was cut from, and its quality at
        a dim is the nDCG@k of that row.
        """
        full, n = index.full_dim, index.n
        if not routable(n, full, k):
            return cls.exact(stats, full, n, k, f"small index ({n} rows)")
        if len(pseudo_vectors) == 0:
            return cls.exact(stats, full, n, k, "no calibration queries")
        if funnel is None:
            funnel, _ = auto_funnel(index, pseudo_vectors, pseudo_sources, k)
        if len(funnel.stages) > 2:
            raise ValueError(f"a router ladder has at most two stages, not {funnel.label}")
        texts = list(pseudo_texts or [""] * len(pseudo_vectors))
        pairs = list(zip(pseudo_vectors, pseudo_sources, strict=True))
        exact = index.search_many(pseudo_vectors, full, k)
        reference = np.array([_gain(h.ids, s, k) for h, (_, s) in zip(exact, pairs, strict=True)])
        groups = [set(complexity(query_features(t, stats))[0]) for t in texts]
        has = {g: np.array([g in mine for mine in groups]) for g in FEATURE_GROUPS}
        common = {"pseudo_queries": len(pairs), "full_ndcg": round(float(reference.mean()), 4)}

        def build(
            name: str, scan: tuple[int, int], steps: list[tuple[int, int]], notes: dict[str, Any]
        ) -> Router:
            scan_dim, scan_keep = scan
            rankings = [h.ids for h in index.search_many(pseudo_vectors, scan_dim, scan_keep)]
            rungs, rung_notes = _rungs(index, pairs, reference, has, rankings, steps, k)
            notes = {"ladder": name, **common, **notes, "rungs": rung_notes}
            notes["candidates"] = steps[-1][1]
            return cls(stats, full, scan_dim, scan_keep, rungs, k, steps[-1][1], notes)

        options = []
        if scan_fraction(funnel, n, full) <= MAX_SCAN_SHARE:
            (scan_dim, scan_keep), later = funnel.stages[0], funnel.stages[1:]
            scan_keep = min(scan_keep, n)
            rows = [scan_keep, min(later[0][1], scan_keep)] if later else [scan_keep]
            dims = [d for d, _ in later] + [full]
            notes = {"funnel": funnel.label, "scan": f"{scan_dim}d:{scan_keep}"}
            options.append(
                build("funnel", (scan_dim, scan_keep), list(zip(dims, rows, strict=True)), notes)
            )
        settings = scan_settings(n, full, k)
        if settings:
            (scan_dim, scan_keep), recall = _doubling_scan(index, pairs, reference, settings)
            dims = ladder(scan_dim, full)
            rows = [scan_keep] + [rerank_rows(n, k)] * (len(dims) - 1)
            notes = {"scan": f"{scan_dim}d:{scan_keep}", "scan_recall": round(recall, 4)}
            options.append(
                build("doubling", (scan_dim, scan_keep), list(zip(dims, rows, strict=True)), notes)
            )
        if not options:
            return cls.exact(stats, full, n, k, f"small index ({n} rows)")
        costs = {
            router.notes["ladder"]: float(
                np.mean(
                    [
                        router.search(index, t, q, k)[1].values_read
                        for t, (q, _) in zip(texts, pairs, strict=True)
                    ]
                )
            )
            / (n * full)
            for router in options
        }
        chosen = min(options, key=lambda router: costs[router.notes["ladder"]])
        chosen.notes["pseudo_scan"] = {name: round(cost, 4) for name, cost in costs.items()}
        return chosen

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
