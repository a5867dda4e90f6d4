"""A `Library` bound to a vector engine (``--backend``): the engine follows the cache, and
searches go to it.

The local SQLite cache stays the source of file fingerprints and chunk text; the engine holds
the transformed vectors (one named vector per tier) and a payload per chunk. After each load of a
new generation `sync` brings the engine level with it, file by file: a file whose chunk ids
differ between the two is deleted from the engine and upserted again. The marker point records
the generation held, the fit its vectors were made under (``basis``: a fingerprint of the
transform) and whether a sync finished; a killed sync leaves "syncing", and the next one finds the
files still out of step by the same comparison, so it converges. A new fit changes every stored
vector (the tiers are prefixes of the transformed vector), so it rewrites all points; the marker
says "rewrite" until that is done, so a killed rewrite is started again, not taken as level.

The binding searches only while the engine holds exactly the library's loaded rows under its
loaded fit (`serves`): during a sync (under `watch` / `serve`, in the background) searches run on
the local index, so no search ever mixes two fits or two generations.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mrl_tui.core.engines import backend_ef, open_engine
from mrl_tui.core.engines.base import (
    CollectionSpec,
    EngineHits,
    EnginePoint,
    PathSelect,
    anchor_tier,
    collection_name,
    prefix,
    tiers_for,
)
from mrl_tui.core.errors import InputError
from mrl_tui.core.search.hnsw import HNSW_MIN_CHUNKS
from mrl_tui.core.search.query_syntax import PathFilter

if TYPE_CHECKING:
    from mrl_tui.core.library import Library, Query, SearchResult

SYNC_SLICE = 8192
"""Points written between two looks at whether the binding is being closed."""
FUNNEL_CANDIDATES = 200
"""As the local funnel (`library.FUNNEL_CANDIDATES`): kept by the anchor stage, at least 20·k."""
EF_TRIED = (16, 32, 64, 128, 256, 512, 1024, 2048)
"""HNSW search beams `tune_ef` tries, narrowest first (each at least the stage's limit: Qdrant
never walks a narrower beam than the points it is asked for)."""
EF_QUERIES = 64
EF_TARGET = 0.99
EF_RETUNE = 0.1
"""The ef is measured again when the collection grew or shrank by more than this fraction."""


@dataclass
class SyncReport:
    upserted: int = 0
    deleted_files: int = 0
    full: bool = False
    seconds: float = 0.0

    @property
    def line(self) -> str:
        what = "all points written again" if self.full else f"{self.deleted_files} files replaced"
        return f"engine synced: {self.upserted} chunks upserted, {what}, {self.seconds:.1f} s"


@dataclass(frozen=True)
class Rows:
    """What a sync writes: the library's loaded rows at one moment (taken under its state lock),
    so a sync outside that lock writes one generation under one fit."""

    ids: np.ndarray
    index: Any  # the `NestedIndex` of the transformed vectors
    transform: Any
    db: str
    generation: int
    fitted_generation: int | None


class _Stopped(Exception):
    """The binding was closed during a sync: the marker says "syncing", the next run converges."""


def basis_of(transform: Any, full_dim: int) -> str:
    """A fingerprint of the transform's basis: a PCA refit changes every stored vector."""
    probe = np.random.default_rng(0).standard_normal((4, full_dim)).astype(np.float32)
    out = np.round(np.asarray(transform.apply(probe), dtype=np.float64), 4)
    return hashlib.sha256(out.tobytes()).hexdigest()[:16]


class EngineBinding:
    """The engine a library searches. Opening checks the collection (another model, transform
    or dim is one line, and nothing is written); the first `sync` creates it."""

    def __init__(self, library: Library, backend: str, collection: str | None = None) -> None:
        self.backend = backend
        self.spec = CollectionSpec(
            model=library.embedder.name,
            transform=library.transform_name,
            full_dim=library.full_dim,
            tiers=tiers_for(library.full_dim),
            folder=str(library.root),
        )
        self.ef_asked = backend_ef(backend)[1]
        """``--backend …?ef=N``: the HNSW search beam, instead of the one measured."""
        self.ef: int | None = self.ef_asked
        """The HNSW search beam every non-exact search runs with (None: Qdrant's default; 0:
        none was good enough, so searches scan exactly)."""
        self.engine = open_engine(backend, collection or collection_name(str(library.root)))
        try:
            self.engine.check(self.spec)
        except BaseException:
            self.engine.close()
            raise
        self.points = 0
        self.last_sync: SyncReport | None = None
        self.held: Any = None
        """The local index whose rows the engine holds, all of them, under that index's fit:
        searches go to the engine only while it is the library's loaded one (`serves`)."""
        self._lock = threading.Lock()  # one sync at a time (a load's, a background one's)
        self._closing = False
        self._paths: tuple[list[str], list[str]] | None = None  # rows' files → distinct, sorted

    @property
    def tiers(self) -> tuple[int, ...]:
        return self.spec.tiers

    def serves(self, library: Library) -> bool:
        """Whether the engine holds the library's loaded rows under its loaded fit."""
        return self.held is not None and self.held is library.index

    @staticmethod
    def rows_of(library: Library) -> Rows:
        """The library's loaded rows, to sync (call under its state lock)."""
        assert library.index is not None
        basis = library._basis(library.transform.name)
        return Rows(
            library.row_chunk_ids,
            library.index,
            library.transform,
            library.store.db_id,
            int(library._loaded_generation),
            None if basis is None else basis.generation,
        )

    def sync(self, library: Library, rows: Rows | None = None) -> SyncReport | None:
        """Bring the engine level with the loaded rows (or `rows`, taken earlier under the
        library's state lock); None when it already was, or when the binding was closed."""
        with self._lock:
            self.held = None
            try:
                return self._sync(library, rows or self.rows_of(library))
            except _Stopped:
                return None

    def _sync(self, library: Library, rows: Rows) -> SyncReport | None:
        started = time.perf_counter()
        ids = rows.ids
        state = {
            "db": rows.db,
            "generation": rows.generation,
            "basis": basis_of(rows.transform, self.spec.full_dim),
            "fitted_generation": rows.fitted_generation,
            "points": len(ids),
        }
        held = self.engine.marker() if self.engine.exists() else None
        if (
            held
            and held.get("state") == "synced"
            and all(held.get(k) == v for k, v in state.items())
        ):
            self.points = len(ids)
            self.ef = self.ef_asked or held.get("hnsw_ef")
            self.held = rows.index
            return None
        self.engine.ensure(self.spec)
        full = (
            not held
            or held.get("db") != state["db"]
            or held.get("basis") != state["basis"]
            or bool(held.get("rewrite"))
        )
        self.engine.set_marker({**state, "state": "syncing", "rewrite": full})
        chunks = library.store.chunks(ids.tolist())
        local: dict[str, set[int]] = defaultdict(set)
        for cid, chunk in zip(ids.tolist(), chunks, strict=True):
            local[chunk.path].add(cid)
        in_engine: dict[str, set[int]] = defaultdict(set)
        for cid, path in self.engine.point_paths().items():
            in_engine[path].add(cid)
        if full:
            stale = [cid for path, held_ids in in_engine.items() for cid in held_ids]
            self.engine.delete_ids(sorted(set(stale) - set(ids.tolist())))
            changed = set(local)
        else:
            changed = {p for p in set(local) | set(in_engine) if local.get(p) != in_engine.get(p)}
            self.engine.delete_paths(sorted(p for p in changed if p in in_engine))
        todo = [i for i, chunk in enumerate(chunks) if chunk.path in changed]
        for start in range(0, len(todo), SYNC_SLICE):
            if self._closing:
                raise _Stopped
            part = todo[start : start + SYNC_SLICE]
            vectors = rows.index.vectors(np.asarray(part, dtype=np.int64))
            self.engine.upsert(
                [
                    EnginePoint(
                        int(ids[row]), vectors[j], self._payload(int(ids[row]), chunks[row])
                    )
                    for j, row in enumerate(part)
                ]
            )
        self.engine.optimize()
        measured = {
            key: held[key] for key in ("hnsw_ef", "ef_recall", "ef_points") if held and key in held
        }
        if self.ef_asked is None and len(ids) >= HNSW_MIN_CHUNKS:
            was = measured.get("ef_points") or 0
            if full or not measured or abs(len(ids) - was) > EF_RETUNE * was:
                sample = np.random.default_rng(0).choice(
                    len(ids), min(EF_QUERIES, len(ids)), replace=False
                )
                ef, recall = tune_ef(
                    self.engine, self.tiers, rows.index.vectors(sample), ids[sample]
                )
                measured = {"hnsw_ef": ef, "ef_recall": round(recall, 4), "ef_points": len(ids)}
        self.engine.set_marker({**state, "state": "synced", **measured})
        self.ef = self.ef_asked or measured.get("hnsw_ef")  # 0 stays 0: exact
        self.points = len(ids)
        self.held = rows.index
        report = SyncReport(
            len(todo),
            0 if full else len([p for p in changed if p in in_engine]),
            full,
            time.perf_counter() - started,
        )
        self.last_sync = report
        return report

    def _payload(self, cid: int, chunk: Any) -> dict[str, Any]:
        return {
            "path": chunk.path,
            "start_line": chunk.start_line,
            "end_line": chunk.end_line,
            "heading": chunk.heading,
            "chunk_id": cid,
            "folder": self.spec.folder,
            "model": self.spec.model,
            "transform": self.spec.transform,
        }

    # -- searching ---------------------------------------------------------------------------

    def search_vector(
        self, vector: np.ndarray, dim: int, k: int, mode: str, where: PathSelect | None = None
    ) -> tuple[EngineHits, str, str]:
        """Top-k chunk ids at `dim` for a transformed full query vector, a note, and what ran."""
        return tiered_search(
            self.engine, self.tiers, self.points, vector, dim, k, mode, where, ef=self.ef
        )

    def path_select(self, library: Library, wanted: PathFilter) -> PathSelect:
        """A query's ``path:`` terms as a payload filter: matched here against the loaded rows'
        files (Qdrant has no glob match), the smaller side sent (the files kept, or those left
        out). No file matching is one line, as on the local index."""
        paths = library.row_paths()
        if self._paths is None or self._paths[0] is not paths:
            self._paths = (paths, sorted(set(paths)))
        files = self._paths[1]
        kept = [p for p in files if wanted.matches(p)]
        if not kept:
            raise InputError(f"no indexed file matches {wanted}")
        if len(kept) <= len(files) - len(kept):
            return PathSelect(tuple(kept))
        return PathSelect(tuple(p for p in files if not wanted.matches(p)), keep=False)

    def search(
        self, library: Library, query: Query, vector: np.ndarray, dim: int, k: int, mode: str
    ) -> SearchResult:
        from mrl_tui.core.library import Hit, SearchResult

        where = self.path_select(library, query.paths) if query.paths is not None else None
        started = time.perf_counter()
        found, note, used = self.search_vector(vector, dim, k, mode, where)
        elapsed = (time.perf_counter() - started) * 1000
        if note:
            library._note(note)
        chunks = library.store.chunks(found.ids.tolist())
        hits = [
            Hit(rank, int(cid), float(score), chunk)
            for rank, (cid, score, chunk) in enumerate(
                zip(found.ids.tolist(), found.scores.tolist(), chunks, strict=True), start=1
            )
        ]
        return SearchResult(query, dim, hits, elapsed, used, note=note, backend=self.engine.engine)

    def info(self) -> dict[str, Any]:
        data = self.engine.info().to_dict()
        data["backend"] = self.backend
        data["search_ef"] = self.ef
        data["ef_given"] = self.ef_asked is not None
        return data

    def close(self) -> None:
        """Stop a sync at its next slice (it converges on the next run), then close."""
        self._closing = True
        with self._lock:
            self.held = None
            self.engine.close()


def plan(
    tiers: tuple[int, ...], points: int, dim: int, k: int, mode: str
) -> tuple[int, list[tuple[int, int]], str]:
    """(tier queried, prefetch stages, note) for a search at `dim`. A dim between tiers is
    answered from the tier below (its candidates rescored here at `dim`). ``auto`` runs a funnel
    (the anchor tier's HNSW, then the asked tier) where the local index would: from
    `HNSW_MIN_CHUNKS` points, above the anchor dim."""
    candidates = max(FUNNEL_CANDIDATES, 20 * k)
    if dim not in tiers:
        below = [t for t in tiers if t < dim]
        tier = max(below) if below else min(tiers)
        above = min(t for t in tiers if t > dim)
        where = f"between the engine's tiers {tier} and {above}" if below else "below its tiers"
        note = (
            f"dim {dim} is {where}: the {candidates} best at {tier} were rescored at {dim} "
            f"here from their {above}-dim vectors"
        )
        return tier, [], note
    anchor = anchor_tier(tiers)
    funnel = mode == "funnel" or (mode == "auto" and points >= HNSW_MIN_CHUNKS)
    if funnel and dim > anchor:
        return dim, [(anchor, candidates)], ""
    return dim, [], ""


def tiered_search(
    engine: Any,
    tiers: tuple[int, ...],
    points: int,
    vector: np.ndarray,
    dim: int,
    k: int,
    mode: str,
    where: PathSelect | None = None,
    *,
    ef: int | None = None,
) -> tuple[EngineHits, str, str]:
    """An engine search at any `dim` (`plan`): (hits, note, "exact" | "funnel" |
    "tier-rescored"), among the files `where` keeps, HNSW stages walking an `ef`-wide beam."""
    tier, stages, note = plan(tiers, points, dim, k, mode)
    exact = mode == "exact" or ef == 0  # 0: no beam kept the exact top-k (`tune_ef`)
    if tier == dim:
        return (
            engine.search(vector, dim, k, stages, exact=exact, where=where, ef=ef),
            note,
            ("funnel" if stages else "exact"),
        )
    candidates = max(FUNNEL_CANDIDATES, 20 * k)
    # The candidates' vectors of the smallest tier that covers `dim`: fewer floats back.
    cover = min(t for t in tiers if t >= dim)
    found = engine.search(
        vector, tier, candidates, exact=exact, with_vectors=cover, where=where, ef=ef
    )
    if len(found.ids) == 0:
        return found, note, "tier-rescored"
    assert found.vectors is not None
    scores = prefix(found.vectors, dim) @ prefix(vector, dim)
    order = np.lexsort((found.ids, -scores))[:k]
    return EngineHits(found.ids[order], scores[order].astype(np.float32)), note, "tier-rescored"


def tune_ef(
    engine: Any,
    tiers: tuple[int, ...],
    queries: np.ndarray,
    own: np.ndarray,
    k: int = 10,
    *,
    candidates: int = FUNNEL_CANDIDATES,
    target: float = EF_TARGET,
) -> tuple[int, float]:
    """(ef, recall@k): the narrowest HNSW beam of `EF_TRIED` whose engine funnel (the anchor
    tier's graph keeping `candidates`, then the full tier) keeps `target` of the top-k of the
    same funnel run exactly, on `queries` (transformed rows of the collection, each point `own`
    left out of both lists: finding itself is too easy), as the local graph's `hnsw.tune` does.
    Against the exact funnel, not an exact full scan: only the graph's loss depends on ef.

    Where no beam reaches `target` (isotropic random vectors at 100k points: 0.94 at 2,048),
    ef 0: the anchor stage scans exactly (at 100k about as fast as the widest beam), and the
    recall is the best beam's, for the record."""
    anchor, full = anchor_tier(tiers), max(tiers)
    stages = [(anchor, candidates)] if full > anchor else []
    floor = candidates if stages else k + 1

    def top(**how: Any) -> list[set[int]]:
        out = []
        for vector, point in zip(queries, own.tolist(), strict=True):
            found = engine.search(vector, full, k + 1, stages, **how).ids.tolist()
            out.append({i for i in found if i != point} if point in found else set(found[:k]))
        return out

    truth = top(exact=True)
    best: tuple[int, float] | None = None
    for ef in sorted({max(e, floor) for e in EF_TRIED}):
        got = top(ef=ef)
        recall = float(
            np.mean([len(g & t) / max(1, len(t)) for g, t in zip(got, truth, strict=True)])
        )
        if best is None or recall > best[1]:
            best = (ef, recall)
        if recall >= target:
            return ef, recall
    assert best is not None
    return 0, best[1]
