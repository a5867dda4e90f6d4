"""Approximate candidates from HNSW graphs at a few prefix dimensions, reranked exactly.

Building a graph per prefix dimension would cost one build per slider position. Instead a few
graphs ("tiers", `GRAPH_DIMS`: 64, 128 and 256) index the normalised prefixes of the (transformed)
vectors; a search at any ``d`` asks one of them for candidates and reranks them exactly at ``d``
with the ``NestedIndex`` ("graph search"; a "funnel" is the exact cascade of `funnel.py`).
Which tier, how wide a beam (ef) and how many candidates is measured once per corpus by `tune`
(recall@10 >= 0.995 against exact at d on queries made from corpus rows, for 0.99 on real
ones) and saved with the graphs. One 64-d graph alone needs a beam of 768-1024 at d >= 256
where a graph at 256 needs 100-200; and at a tier's own d the graph's cosine is the exact one,
so nothing is reranked. For small corpora the exact scan is fast enough and needs no graph.
"""

from __future__ import annotations

import errno
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import hnswlib
import numpy as np

from mrl_tui.core.cache import artifacts
from mrl_tui.core.errors import CacheError, InputError
from mrl_tui.core.search.index import Hits, NestedIndex
from mrl_tui.core.search.rerank import rerank_head

ANCHOR_DIM = 64
"""Lowest graph dimension: cheap distances; `auto` searches exactly at or below it."""

GRAPH_DIMS = (ANCHOR_DIM, 128, 256)
"""Graph tiers built for an index (those below its full dim). Each costs its dim * 4 + 8 * M +
20 bytes a row in memory and on disk (`GRAPH_M` 20: 64: 436 B, 128: 692 B, 256: 1,204 B; 2.3 KB
for the three, against 1.5 KB for the 384-d vectors themselves) and a build that grows with its
dim."""

GRAPH_M = 20
"""hnswlib's M for every tier. Its M is not faiss's: a new node links to M neighbours at every
level (`mutuallyConnectNewElement`), where faiss's `IndexHNSWFlat` gives it up to 2 M at level 0,
so hnswlib's level 0 is the sparser graph at the same M (both cap a node at 2 M links there).
At 50k clustered rows, d = 64, recall@10 0.995 on 1,000 probe queries took a beam of 144-192
with M = 16 over five builds (faiss M = 16: 144) and 128 with M = 20, whose search took 0.91x
faiss M = 16's CPU time (M = 16: 1.23x; 0.78x and 0.85x at the 128- and 256-d tiers).
`bench_hnsw_vs_faiss.py`; M = 24 and 32 were no faster than 20."""

HNSW_MIN_CHUNKS = 20_000
"""Below this many chunks the exact scan takes a few milliseconds; no graph is built."""

DEFAULT_EF = 200
"""Beam width and candidate count of `graph_search` where `tune` has measured none for the graph."""
BUILD_BATCH = 10_000
BEAM_BATCH = 256
"""Queries per hnswlib call of `HnswGraph.candidates_many` (about 0.1 s of walks at 200k)."""

TUNE_EFS = (
    10, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128, 144, 160, 176, 192, 224,
    256, 320, 384, 512, 768, 1024,
)  # fmt: skip
"""Beam widths `tune` tries (steps of 8 to 128, then of 1/8 to 1/4): the walk's time grows with
the beam, so a step of a third (128 -> 160 -> 192) cost up to a third of a search. The
candidates reranked are the first c of the beam, c <= ef (`TUNE_CANDIDATES`)."""
TUNE_CANDIDATES = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96)
"""Candidate counts `tune` tries, in multiples of k, up to the beam."""
TUNE_QUERIES = 1000
"""Probe queries `tune` measures on (with 64, its recall of 0.99 was 0.978-0.993 on fresh ones).
At 50k, over four draws, the narrowest beam keeping 0.995 spread 88-120 / 96-160 / 112-160 /
112-192 at d = 64 / 128 / 256 / 384 (the last on the 256-d tier) on 200 probes, 96-128 /
104-160 / 104-128 / 128-160 on 500, 120-128 / 120-160 / 120-144 / 144-160 on 1,000; the default
draw of 500 needed 224 at d = 384 (1.24x faiss's time by the same rule), of 1,000 144 (0.93x).
Tuning 3 tiers x 7 dims at 200k took 22.5 s (500) and 36.6 s (1,000) on 2 cores, 13 s of it the
exact top-k of the probes, one pass per d; with one pass for all d (`NestedIndex.search_many_dims`)
24-29 s where the earlier code took 38-42 s in the same quiet windows: 3.7-4.4 s the exact top-k,
13-16 s the beams' walks, 4-5 s timing settings, 2 s drawing the probes (benchmarks/README)."""
PROBE_REACH = 0.5
"""How far `probe_queries` moves a row from its nearest neighbour, in their distance."""
TUNE_TIMED = 3
"""Settings timed per d and tier: the narrowest beam that reaches the target recall, then wider
ones only where they need fewer candidates (a wider beam with as many costs more: timing them
against each other, 1/8 apart, picked by the noise; at 50k it chose 160-176 where 128 did)."""
TUNE_REACH = 2
"""How much wider than the narrowest beam that reaches the target `tune` looks for fewer
candidates."""
RECALL_SLACK = 1e-9
"""A mean of per-query recalls may round below a target it meets exactly."""
TUNE_TIMED_QUERIES = 64
"""Probe queries each timed setting runs (a median; the recall takes them all)."""
TUNE_TIER_ROUNDS = 3
"""Passes over the timed queries when tiers' settings are timed against each other, each query
on every tier in turn: timed one after the other, a loaded machine's drift between them picked
the tier (50k, d = 384: the 128-d tier at ef 320 with 240 reranked, 1.49x faiss's time, where
the 256-d tier's ef 192 with 40 took 1.21x)."""
TUNE_RECALL = 0.995
"""`tune` wants graph search's top-k to hold 99.5 % of the exact top-k at the same d on the probe
queries, so that real ones keep 99 %: at 0.99 a 200k set's fresh queries kept only 0.984 at
d = 384 (`bench_hnsw_vs_faiss.py`); at 0.995, 0.999."""
TUNE_K = 10
TUNE_DIMS = (32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
"""Dims the library tunes (those up to the full dim, and the full dim); a d between two of them
takes the larger one's setting (`setting`), whose recall holds at d too for a graph <= d."""


def tune_dims(full_dim: int) -> list[int]:
    """The dims `Library` tunes for an index of ``full_dim``."""
    return sorted({d for d in TUNE_DIMS if d < full_dim} | {full_dim})


def tier_dims(full_dim: int) -> list[int]:
    """The graph tiers built for an index of ``full_dim`` (anchor first)."""
    return [g for g in GRAPH_DIMS if g < full_dim] or [min(ANCHOR_DIM, full_dim)]


@dataclass(frozen=True)
class FunnelSetting:
    """Beam width and candidates reranked for one d, on the graph tier of dim ``graph``, with
    what `tune` measured for them (recall on `probe_queries`, median CPU ms per search; NaN where
    nothing reached the target)."""

    ef: int
    candidates: int
    recall: float
    ms: float
    graph: int = 0
    """The tier's dim (0: the only graph there is)."""


def _ceiling(tuned: Iterable[int], dim: int) -> int | None:
    """The smallest tuned d >= ``dim``, else the largest (None when nothing is tuned)."""
    tuned = sorted(tuned)
    if not tuned:
        return None
    return next((d for d in tuned if d >= dim), tuned[-1])


class HnswGraph:
    """An hnswlib cosine graph over the first ``dim`` coordinates of every row (ids = row ids)."""

    def __init__(self, index: hnswlib.Index, dim: int) -> None:
        self._index = index
        self._lock = threading.Lock()  # set_ef + knn_query must not interleave between threads
        self.dim = dim
        self.settings: dict[int, FunnelSetting] = {}
        """Per d, what `tune` chose (empty until it runs)."""

    @property
    def n(self) -> int:
        return self._index.element_count

    def setting(self, dim: int) -> FunnelSetting | None:
        """What `tune` chose for the smallest tuned d >= ``dim`` (else the largest), if any: a
        beam that keeps the top-k at a larger d keeps it at a d nearer the graph's."""
        tuned = _ceiling(self.settings, dim)
        return None if tuned is None else self.settings[tuned]

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        dim: int,
        *,
        ef_construction: int = 200,
        M: int = GRAPH_M,
        threads: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> HnswGraph:
        """Index ``vectors[:, :dim]`` (hnswlib normalises them: cosine space), in batches."""
        x = np.asarray(vectors)
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
            raise InputError(f"HNSW needs a float (N, D) matrix, got {x.dtype} {x.shape}")
        if not 1 <= dim <= x.shape[1]:
            raise InputError(f"HNSW dimension {dim} is outside 1..{x.shape[1]}")
        n = x.shape[0]
        index = hnswlib.Index(space="cosine", dim=dim)
        index.init_index(max_elements=max(n, 1), ef_construction=ef_construction, M=M)
        for a in range(0, n, BUILD_BATCH):
            b = min(a + BUILD_BATCH, n)
            batch = np.ascontiguousarray(x[a:b, :dim], dtype=np.float32)
            if not np.isfinite(batch).all():
                raise InputError("HNSW input contains NaN or infinite values")
            index.add_items(batch, np.arange(a, b), num_threads=threads or -1)
            if progress is not None:
                progress(b, n)
        index.set_ef(DEFAULT_EF)
        return cls(index, dim)

    def save(self, path: Path) -> None:
        """Write hnswlib's own format atomically and durably (`artifacts.atomic_write`)."""
        artifacts.atomic_write(Path(path), self.write)

    def write(self, path: Path) -> None:
        """Write the graph to ``path`` as it is, and read it back: hnswlib does not report a
        failed write (a full disk leaves a short file), but its loader rejects a short file."""
        self._index.save_index(str(path))
        check = hnswlib.Index(space="cosine", dim=self.dim)
        try:
            check.load_index(str(path), max_elements=max(self.n, 1))
        except RuntimeError as exc:
            raise OSError(errno.EIO, f"the graph file came out incomplete ({exc})") from exc
        if check.element_count != self.n:
            raise OSError(errno.EIO, "the graph file came out incomplete")

    @classmethod
    def load(cls, path: Path, dim: int, n: int) -> HnswGraph:
        """Load a saved graph; a file that does not hold ``n`` rows of ``dim`` is a CacheError.

        Only for a verified file (`artifacts.load_or_build`): an edited one can crash hnswlib."""
        index = hnswlib.Index(space="cosine", dim=dim)
        try:
            index.load_index(str(path), max_elements=max(n, 1))
        except (RuntimeError, OSError, ValueError) as exc:
            raise CacheError(f"unreadable HNSW graph {path}: {exc}") from exc
        if index.element_count != n or index.dim != dim:
            raise CacheError(
                f"HNSW graph {path} holds {index.element_count} rows of dimension {index.dim}, "
                f"expected {n} of {dim}"
            )
        index.set_ef(DEFAULT_EF)
        return cls(index, dim)

    def candidates(self, query: np.ndarray, k: int, ef: int | None = None) -> np.ndarray:
        """Up to ``k`` approximate nearest row ids (int64) for the query's ``dim``-prefix."""
        return self._knn(query, k, ef)[0]

    def candidates_many(
        self, queries: np.ndarray, k: int, ef: int | None = None, threads: int = -1
    ) -> np.ndarray:
        """`candidates` for every row of ``queries`` (m, >= ``dim``) as an (m, k) int64 matrix:
        the same rows as one call per query, from hnswlib's batched search on ``threads``
        threads (-1: every core), `BEAM_BATCH` queries a call so that the lock is not held
        long."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] < self.dim:
            raise InputError(f"queries must be 2-D with at least {self.dim} columns, got {q.shape}")
        k = min(int(k), self.n)
        if k <= 0 or len(q) == 0:
            return np.empty((len(q), max(k, 0)), np.int64)
        head = np.ascontiguousarray(q[:, : self.dim])
        if not np.isfinite(head).all():
            raise InputError("queries contain NaN or infinite values")
        out = np.empty((len(head), k), np.int64)
        for a in range(0, len(head), BEAM_BATCH):
            part = head[a : a + BEAM_BATCH]
            with self._lock:
                self._index.set_ef(max(ef or DEFAULT_EF, k))
                labels, _ = self._index.knn_query(part, k=k, num_threads=threads)
            out[a : a + len(part)] = labels
        return out

    def nearest(self, query: np.ndarray, k: int, ef: int | None = None) -> Hits:
        """`candidates` with their cosine at ``dim`` (hnswlib's own, on its normalised float32
        copies: equal to the exact score to float32 rounding), best first, ties by row id."""
        ids, distances = self._knn(query, k, ef)
        scores = (1.0 - distances).astype(np.float32)
        order = np.lexsort((ids, -scores))
        return Hits(ids[order], scores[order])

    def _knn(self, query: np.ndarray, k: int, ef: int | None) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(query, dtype=np.float32)
        if q.ndim != 1 or q.shape[0] < self.dim:
            raise InputError(f"query must be 1-D with at least {self.dim} values, got {q.shape}")
        k = min(int(k), self.n)
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        head = q[None, : self.dim]
        if not np.isfinite(head).all():
            raise InputError("query contains NaN or infinite values")
        with self._lock:  # set_ef costs 0.1 us: set on every call, never stale
            self._index.set_ef(max(ef or DEFAULT_EF, k))
            labels, distances = self._index.knn_query(head, k=k, num_threads=1)
        return labels[0].astype(np.int64), distances[0]


Table = dict[int, dict[int, FunnelSetting]]
"""Per tuned d, per graph tier's dim: the fastest setting `tune` found on that tier."""


class GraphSet:
    """The graph tiers of one index (HNSW graphs over prefixes of the same rows), and per tuned
    d what `tune` measured on each tier, so that a search at d takes the cheapest tier that
    keeps its recall (`setting`)."""

    def __init__(self, graphs: Sequence[HnswGraph]) -> None:
        if not graphs or len({g.n for g in graphs}) != 1:
            raise InputError("graph tiers must be one or more graphs over the same rows")
        self.graphs = {g.dim: g for g in sorted(graphs, key=lambda g: g.dim)}
        self._table: Table = {}
        self._chosen: dict[int, FunnelSetting | None] = {}  # `setting` per d asked, memoised
        self.k = TUNE_K
        """The k the table was measured for: a larger k widens the setting (`graph_search`)."""

    @property
    def dim(self) -> int:
        """The anchor (lowest) tier's dim: `auto` searches exactly at or below it."""
        return next(iter(self.graphs))

    @property
    def n(self) -> int:
        return next(iter(self.graphs.values())).n

    @property
    def table(self) -> Table:
        """Per tuned d, per tier dim: the fastest setting on that tier (`tune`)."""
        return self._table

    @table.setter
    def table(self, table: Table) -> None:
        self._table, self._chosen = table, {}

    @property
    def settings(self) -> dict[int, FunnelSetting]:
        """Per tuned d, the fastest setting over all tiers."""
        return {d: _fastest(row.values()) for d, row in self.table.items() if row}

    def setting(self, dim: int) -> FunnelSetting | None:
        """For the smallest tuned d >= ``dim`` (else the largest), the fastest setting on a tier
        of at most ``dim``: that tier's recall at the tuned d then holds at ``dim``, which lies
        between the tier's d and the tuned one. Below the lowest tier, the lowest tier's setting
        for the largest tuned d <= ``dim`` (else the smallest): further below the tier is harder.
        """
        if dim not in self._chosen:
            self._chosen[dim] = self._setting(dim)
        return self._chosen[dim]

    def _setting(self, dim: int) -> FunnelSetting | None:
        if not self.table:
            return None
        if dim >= self.dim:
            row = self.table[_ceiling(self.table, dim)]  # type: ignore[index]
            fits = [s for g, s in row.items() if g <= dim]
            if fits:
                return _fastest(fits)
        below = [d for d in self.table if d <= dim and self.dim in self.table[d]]
        tuned = max(below) if below else min(self.table)
        row = self.table[tuned]
        return row.get(self.dim) or _fastest(row.values())

    def graph(self, setting: FunnelSetting | None) -> HnswGraph:
        if setting is not None and setting.graph in self.graphs:
            return self.graphs[setting.graph]
        return self.graphs[self.dim]

    def to_json(self, graph_sha: dict[int, str]) -> str:
        """The table, with the sha256 of each tier's file it was measured on (`read_table`)."""
        rows = [
            {"dim": d, **{k: _finite(v) for k, v in asdict(s).items()}}
            for d, row in sorted(self.table.items())
            for s in row.values()
        ]
        return json.dumps(
            {
                "k": self.k,
                "target": TUNE_RECALL,
                "graphs": {str(g): graph_sha.get(g, "") for g in self.graphs},
                "settings": rows,
            },
            indent=1,
        )

    def read_table(self, path: Path, graph_sha: dict[int, str]) -> Table:
        """The table saved at ``path`` (`to_json`); a CacheError unless it was measured on these
        very graph files (a rebuilt graph has other links, so its settings are measured again)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if not is_tuned_for(data, graph_sha):
                raise CacheError(f"{path} was measured on other graph files")
            table: Table = {}
            for row in data["settings"]:
                fields = {k: row[k] for k in ("ef", "candidates", "recall", "ms", "graph")}
                fields["ms"] = float("nan") if fields["ms"] is None else float(fields["ms"])
                setting = FunnelSetting(**fields)
                if setting.graph not in self.graphs or setting.candidates < 1:
                    raise CacheError(f"{path} names a graph tier this index does not have")
                table.setdefault(int(row["dim"]), {})[setting.graph] = setting
            self.k = int(data["k"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CacheError(f"unreadable HNSW settings {path}: {exc}") from exc
        self.table = table
        return table


def is_tuned_for(data: object, graph_sha: dict[int, str]) -> bool:
    """Whether parsed settings (`GraphSet.to_json`) were measured on these graph files, for the
    recall `tune` wants now."""
    return (
        isinstance(data, dict)
        and data.get("target") == TUNE_RECALL
        and all(graph_sha.values())
        and data.get("graphs") == {str(g): sha for g, sha in graph_sha.items()}
    )


def settings_are_stale(path: Path, graph_sha: dict[int, str]) -> bool:
    """Whether the settings file at ``path`` parses but was measured on other graph files."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # not stale: damaged, which the manifest's check reports
    return not is_tuned_for(data, graph_sha)


def _finite(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def _fastest(settings: Iterable[FunnelSetting]) -> FunnelSetting:
    """Of settings, the fastest that reached the target (a measured ms), else the best recall."""
    settings = list(settings)
    timed = [s for s in settings if not math.isnan(s.ms)]
    if timed:
        return min(timed, key=lambda s: (s.ms, -s.recall))
    return max(settings, key=lambda s: s.recall)


Graphs = HnswGraph | GraphSet


def _tiers(graph: Graphs) -> dict[int, HnswGraph]:
    return graph.graphs if isinstance(graph, GraphSet) else {graph.dim: graph}


def graph_search(
    index: NestedIndex,
    graph: Graphs,
    query: np.ndarray,
    dim: int,
    k: int,
    candidates: int | None = None,
    ef: int | None = None,
) -> Hits:
    """HNSW candidates from one graph tier, reranked exactly at ``dim``.

    ``candidates``/``ef`` (and, for a `GraphSet`, the tier) default to what `tune` measured
    (`setting`), else to `DEFAULT_EF` for both on the lowest tier. A k above the one tuned for
    widens both in proportion. The beam is ``max(ef, candidates, k)`` wide: no fixed floor.
    Asking for at least every row reranks all of them, which is the exact answer.
    """
    tiers = _tiers(graph)
    if max(tiers) > index.full_dim or graph.n != index.n:
        raise InputError("the HNSW graph does not belong to this index")
    setting = graph.setting(dim)
    chosen = graph.graph(setting) if isinstance(graph, GraphSet) else graph
    if candidates is None:
        tuned_k = graph.k if isinstance(graph, GraphSet) else TUNE_K
        scale = max(1.0, k / tuned_k)
        candidates = math.ceil(scale * setting.candidates) if setting else DEFAULT_EF
        ef = ef or (math.ceil(scale * setting.ef) if setting else DEFAULT_EF)
    wanted = max(int(candidates), int(k))
    if wanted >= index.n:
        ids = np.arange(index.n, dtype=np.int64)
    elif chosen.dim == dim and wanted == k:  # the tier's own cosine is the exact one at d
        return chosen.nearest(query, k, ef=max(ef or wanted, wanted))
    else:
        ids = chosen.candidates(query, wanted, ef=max(ef or wanted, wanted))
    return rerank_head(index, query, dim, ids, depth=k)


def tune(
    index: NestedIndex,
    graph: Graphs,
    dims: Sequence[int],
    k: int = TUNE_K,
    *,
    target: float = TUNE_RECALL,
    queries: int = TUNE_QUERIES,
    seed: int = 0,
    probes: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, FunnelSetting]:
    """Measure, per d and per graph tier of at most d (the lowest tier where none is), the
    fastest (ef, candidates) whose graph search keeps ``target`` of the exact top-k; store them
    on ``graph`` (`GraphSet.table`, or `HnswGraph.settings`) for `graph_search`, and return the
    fastest per d.

    Queries are made from the corpus (`probe_queries`), or are ``probes`` (an (m, D) matrix)
    where given. For each beam width of `TUNE_EFS` the candidates are the first c of the beam,
    c from k up by `TUNE_CANDIDATES`; per beam width (from the narrowest that reaches the target
    with every candidate, found by bisection) the smallest c that reaches the target is timed
    (median CPU time over the queries): the narrowest beam that reaches it, then up to
    `TUNE_TIMED` - 1 wider ones (up to `TUNE_REACH` times as wide) that need fewer candidates
    than any narrower one, and the fastest wins (per tier, then over the
    tiers, whose winners are timed again against each other: `_timed_together`). Where nothing
    reaches it, the widest beam with every candidate (the best recall, untimed).

    ``progress(done, total)`` is called before the first and after every (d, tier) measured:
    at 200k rows, 3 tiers and 7 dims it takes 24-29 s on 2 cores (`TUNE_QUERIES`), 15-22 s at
    50k (the walks cost nearly as much there)."""
    tiers = _tiers(graph)
    if max(tiers) > index.full_dim or graph.n != index.n:
        raise InputError("the HNSW graph does not belong to this index")
    n = index.n
    if probes is not None:
        qs = np.asarray(probes, dtype=np.float32)
        if qs.ndim != 2 or qs.shape[1] != index.full_dim:
            raise InputError(f"probe queries must be (m, {index.full_dim}), got {qs.shape}")
        if not np.isfinite(qs).all():
            raise InputError("probe queries contain NaN or infinite values")
    if n == 0 or k < 1 or (probes is not None and len(qs) == 0):
        return {}
    if probes is None:
        qs = probe_queries(index, min(queries, n), seed)
    efs = [ef for ef in TUNE_EFS if k <= ef < n] or [max(k, min(n, TUNE_EFS[0]))]
    # One beam per tier and width serves every c <= ef: hnswlib's c best of an ef-wide beam are
    # its first c, whatever count was asked. Beams are walked only for the widths some d needs,
    # once for all d, all probes in one batched walk.
    beams: dict[tuple[int, int], np.ndarray] = {}

    def beam(tier: HnswGraph, ef: int) -> np.ndarray:
        if (tier.dim, ef) not in beams:
            beams[tier.dim, ef] = tier.candidates_many(qs, ef, ef=ef)
        return beams[tier.dim, ef]

    def usable(dim: int) -> list[HnswGraph]:
        return [t for g, t in tiers.items() if g <= dim] or [tiers[min(tiers)]]

    total, done = sum(len(usable(d)) for d in dims), 0
    if progress is not None:
        progress(done, total)
    table: Table = {}
    exact = index.search_many_dims(qs, dims, k)  # one pass over the vectors for every d
    for dim in dims:
        truth = np.full((len(qs), k), -1, np.int64)  # the exact top-k, -1 past a short one
        for i, hits in enumerate(exact[dim]):
            truth[i, : len(hits)] = hits.ids
        table[dim] = {}
        for tier in usable(dim):
            table[dim][tier.dim] = _tune_tier(index, tier, dim, k, target, qs, truth, efs, beam)
            done += 1
            if progress is not None:
                progress(done, total)
        table[dim] = _timed_together(index, tiers, dim, k, table[dim], qs[:TUNE_TIMED_QUERIES])
    if isinstance(graph, GraphSet):
        graph.table = {**graph.table, **table}
        graph.k = k
    chosen = {d: _fastest(row.values()) for d, row in table.items()}
    if isinstance(graph, HnswGraph):
        graph.settings.update(chosen)
    return chosen


def _tune_tier(
    index: NestedIndex,
    tier: HnswGraph,
    dim: int,
    k: int,
    target: float,
    qs: np.ndarray,
    truth: np.ndarray,
    efs: list[int],
    beam: Callable[[HnswGraph, int], np.ndarray],
) -> FunnelSetting:
    """`tune` for one d on one tier.

    A true top-k row among the c candidates is in their exact top-k (no more than k - 1 rows of
    the corpus beat it), so the recall of (ef, c) is the share of the true rows found in the
    first c of the beam: no candidate is scored, and every c is read off one array."""
    sizes = np.maximum(1, (truth >= 0).sum(axis=1))
    where: dict[int, np.ndarray] = {}  # per beam width: each true row's place in it (ef if none)

    def recall_at(ef: int, c: int) -> float:
        if ef not in where:
            match = beam(tier, ef)[:, :, None] == truth[:, None, :]
            where[ef] = np.where(match.any(axis=1), match.argmax(axis=1), ef)
        return float(np.mean((where[ef] < c).sum(axis=1) / sizes))

    best: FunnelSetting | None = None
    tried = 0
    narrowest = fewest = 0  # the narrowest beam that reached the target; the fewest candidates
    # The narrowest beam whose every candidate reranked reaches the target, by bisection (the
    # recall grows with the beam): about 5 beams walked where a scan up from the narrowest of
    # all walked about 20.
    lo, hi = 0, len(efs)
    while lo < hi:
        mid = (lo + hi) // 2
        if recall_at(efs[mid], efs[mid]) >= target - RECALL_SLACK:
            hi = mid
        else:
            lo = mid + 1
    if lo == len(efs):
        # None reaches it: the best recall is the widest beam's, every candidate reranked (the
        # recall grows with both). Trying every beam for it walked all 27 (at 200k, 3.7-4.3 s
        # of `tune`'s 37-42 s went to the 64-d tier's narrow beams for d = 384), for a NaN row.
        widest = efs[-1]
        return FunnelSetting(widest, widest, recall_at(widest, widest), float("nan"), tier.dim)
    for ef in efs[lo:]:
        if narrowest and ef > TUNE_REACH * narrowest:
            break
        counts = sorted({min(ef, math.ceil(m * k)) for m in TUNE_CANDIDATES} | {ef})
        if fewest:
            counts = [c for c in counts if c < fewest]
        for c in counts:
            recall = recall_at(ef, c)
            if recall >= target - RECALL_SLACK:
                break
        else:
            continue  # only with as many candidates as a narrower beam
        narrowest, fewest = narrowest or ef, c
        ms = _median_ms(
            lambda q, ef=ef, c=c: graph_search(index, tier, q, dim, k, c, ef),
            qs[:TUNE_TIMED_QUERIES],
        )
        if best is None or ms < best.ms:
            best = FunnelSetting(ef, c, recall, ms, tier.dim)
        tried += 1
        if tried == TUNE_TIMED or c <= k:
            break  # a wider beam would rerank no fewer: it costs more
    assert best is not None  # efs[lo] reaches the target with every candidate
    return best


def file_name(transform: str, tier: int | None = None) -> str:
    """Derived-file name of a tier's graph (the anchor's is the name graphs always had), or of
    the tuned settings (``tier`` None)."""
    if tier is None:
        return f"hnswtune_{transform}"
    return f"hnsw_{transform}" if tier == ANCHOR_DIM else f"hnsw_{transform}_d{tier}"


def load_or_build(
    shelf: artifacts.Shelf,
    paths: dict[int, Path],
    settings_path: Path,
    index: NestedIndex,
    progress: Callable[[int, int], None] | None = None,
    tune_progress: Callable[[int, int], None] | None = None,
) -> GraphSet:
    """Every tier's graph from its verified file at ``paths[tier]`` or built (and kept), then
    the settings from ``settings_path`` if they were measured on these very graph files, else
    measured now by `tune` at `tune_dims` and kept. A build reports ``progress(done, total)``
    over all tiers' rows, a measurement ``tune_progress(done, total)`` over its steps (`tune`)."""
    n, total = index.n, index.n * len(paths)
    graphs = []
    for i, (tier, path) in enumerate(sorted(paths.items())):

        def step(done: int, _: int, before: int = i * n) -> None:
            if progress is not None:
                progress(before + done, total)

        graphs.append(
            shelf.get(
                path,
                (n, tier),
                load=lambda p, tier=tier: HnswGraph.load(p, tier, n),
                build=lambda tier=tier, step=step: HnswGraph.build(
                    index.vectors(), tier, progress=step
                ),
                writer=lambda graph: graph.write,
                what="HNSW graph",
            )
        )
    tiers = GraphSet(graphs)
    sha = {}
    for tier, path in paths.items():
        entry = shelf.manifest.entry(path.name)
        sha[tier] = entry.sha256 if entry is not None else ""
    shape = (n, index.full_dim)
    if (
        shelf.keep
        and artifacts.is_verified(settings_path, shelf.manifest, shape)
        and settings_are_stale(settings_path, sha)
    ):
        artifacts.remove(settings_path)  # measured on an earlier build: measured again quietly

    def measure() -> GraphSet:
        tune(index, tiers, tune_dims(index.full_dim), progress=tune_progress)
        return tiers

    def read(path: Path) -> GraphSet:
        tiers.read_table(path, sha)
        return tiers

    return shelf.get(
        settings_path,
        shape,
        load=read,
        build=measure,
        writer=lambda t: artifacts.text_writer(t.to_json(sha)),
        what="HNSW search settings",
    )


def probe_queries(index: NestedIndex, count: int, seed: int = 0) -> np.ndarray:
    """``count`` queries off the corpus: each a random row moved away from its nearest other
    row by `PROBE_REACH` of their distance (1.5 row - 0.5 neighbour, at full dim).

    A row itself is too easy a query: it is a node of every graph, linked to its neighbours, so
    a beam narrower than a fresh query needs finds them (tuned on rows, graph search kept
    0.981-0.983 of the top-10 on fresh queries at d = 256 and 384 where it promised 0.99). A
    moved row is no node but lies where the data spreads. Measured on `bench_hnsw_vs_faiss`'s
    clustered set (200 probes): half a neighbour's distance kept 0.993-0.996 on fresh queries,
    a whole one (the reflection 2 row - neighbour) asked for beams of 192-256 where fresh
    queries need about 100, a quarter kept only 0.978 at d = 64."""
    n = index.n
    rows = np.sort(np.random.default_rng(seed).choice(n, min(count, n), replace=False))
    x = index.vectors(rows)
    if n < 2:
        return x
    near = index.search_many(x, index.full_dim, 2)
    other = np.array(
        [next((i for i in h.ids if i != r), h.ids[0]) for h, r in zip(near, rows, strict=True)]
    )
    return x + PROBE_REACH * (x - index.vectors(other))


def _timed_together(
    index: NestedIndex,
    tiers: dict[int, HnswGraph],
    dim: int,
    k: int,
    row: dict[int, FunnelSetting],
    queries: np.ndarray,
) -> dict[int, FunnelSetting]:
    """``row`` with the ms of the tiers' settings that reached the target measured again against
    each other (`_interleaved_ms`): the one `_fastest` picks must be faster in the same minute,
    not in another one."""
    timed = [g for g, st in row.items() if not math.isnan(st.ms)]
    if len(timed) < 2:
        return row
    searches = [
        lambda q, st=row[g], g=g: graph_search(index, tiers[g], q, dim, k, st.candidates, st.ef)
        for g in timed
    ]
    ms = _interleaved_ms(searches, queries, TUNE_TIER_ROUNDS)
    return {**row, **{g: replace(row[g], ms=m) for g, m in zip(timed, ms, strict=True)}}


def _interleaved_ms(
    searches: Sequence[Callable[[np.ndarray], object]], queries: np.ndarray, rounds: int
) -> list[float]:
    """Median CPU milliseconds of each search per query, each query run by all of them in turn
    (the order reversed every other round, so that none always finds the one before it has
    warmed the caches), ``rounds`` passes over the queries."""
    times: list[list[float]] = [[] for _ in searches]
    for r in range(rounds):
        order = list(enumerate(searches))
        for q in queries:
            for i, search in order if r % 2 == 0 else order[::-1]:
                started = time.thread_time()
                search(q)
                times[i].append(time.thread_time() - started)
    return [float(np.median(t) * 1e3) for t in times]


def _median_ms(search: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    """Median CPU milliseconds of this thread per query: on a loaded machine, wall time also
    counts waits for the run queue, which grow with a query's length and would pick at random."""
    times = []
    for q in queries:
        started = time.thread_time()
        search(q)
        times.append(time.thread_time() - started)
    return float(np.median(times) * 1e3)
