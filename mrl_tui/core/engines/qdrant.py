"""Qdrant, two ways behind one interface (`base.VectorEngine`).

- `EdgeEngine` (``qdrant:DIR``): qdrant-edge-py, Qdrant's Rust engine embedded in this process;
  one shard per collection, in ``DIR/<collection>``.
- `ServerEngine` (``qdrant://HOST:PORT``): qdrant-client against a Qdrant server (or a cluster:
  the same calls). ``qdrant://:memory:`` is qdrant-client's in-process local mode, which runs the
  same client calls (a test aid; nothing is kept after the process).

Both lay a collection out the same way: a named vector per tier, cosine; the anchor tier
(`base.ANCHOR_TIER`) has an HNSW graph and int8 codes (rescored with its float32 vectors), the
others no graph (m=0: they only rescore what a stage before them kept, or are scanned exactly).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrl_tui.core.engines.base import (
    HNSW_M,
    INSTALL_HINT,
    MARKER_ID,
    CollectionSpec,
    EngineError,
    EngineHits,
    EngineInfo,
    EnginePoint,
    PathSelect,
    anchor_tier,
    check_stages,
    payload_marker,
    prefix,
    tier_infos,
    tier_name,
)

BATCH = 2048
"""Points per upsert call."""
EF_CONSTRUCT = 100
"""Also Qdrant's search ef when none is given (it never searches a beam narrower than the
limit asked for)."""
FULL_SCAN_THRESHOLD = 10_000  # KB of vectors under which a segment is scanned, not walked
INDEXING_THRESHOLD_KB: int | None = None
"""Qdrant's own (10 MB of vectors per segment before its graph is built) unless set: a test
sets it low, so a small collection is searched through a graph."""


class _Collection:
    """What both backends share: the spec, the marker, the tier vectors of a point."""

    engine = "qdrant"

    def __init__(self, where: str, collection: str) -> None:
        self.where = where
        self.collection = collection
        self.spec: CollectionSpec | None = None
        self._marker: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"collection {self.collection!r} at {self.where}"

    def check(self, spec: CollectionSpec) -> None:
        if self.exists():
            marker = self.marker()
            if marker is None:
                raise EngineError(f"{self.label} was not made by mrl-tui; give another collection")
            spec.check(marker, self.label)
        self.spec = spec

    def ensure(self, spec: CollectionSpec) -> None:
        self.check(spec)
        if not self.exists():
            self._create(spec)
            self.set_marker({"state": "empty", "generation": None})

    def set_marker(self, state: dict[str, Any]) -> None:
        assert self.spec is not None, "ensure() first"
        payload = payload_marker(self.spec, state)
        self._put_marker(payload)
        self._marker = payload

    def tiers(self) -> tuple[int, ...]:
        if self.spec is not None:
            return self.spec.tiers
        marker = self.marker() or {}
        return tuple(marker.get("tiers") or ())

    def _named_batch(self, points: Sequence[EnginePoint]) -> list[dict[str, list[float]]]:
        """Each point's tier vectors, as lists (the engines' bindings read lists fastest): one
        vectorised prefix per tier for the whole batch."""
        matrix = np.stack([np.asarray(p.vector, dtype=np.float32) for p in points])
        tiers = {tier_name(d): prefix(matrix, d).tolist() for d in self.tiers()}
        return [{name: rows[i] for name, rows in tiers.items()} for i in range(len(points))]

    # implemented by each backend
    def exists(self) -> bool:
        raise NotImplementedError

    def marker(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def _create(self, spec: CollectionSpec) -> None:
        raise NotImplementedError

    def _put_marker(self, payload: dict[str, Any]) -> None:
        raise NotImplementedError


def _batches(points: Sequence[EnginePoint]) -> Iterator[Sequence[EnginePoint]]:
    for start in range(0, len(points), BATCH):
        yield points[start : start + BATCH]


def _filter(api: Any, where: PathSelect | None) -> Any:
    """`where` as a Qdrant payload filter on the indexed ``path`` keyword field; `api` is
    qdrant_edge or qdrant_client.models (the same names)."""
    if where is None:
        return None
    condition = api.FieldCondition(key="path", match=api.MatchAny(any=list(where.paths)))
    return api.Filter(must=[condition]) if where.keep else api.Filter(must_not=[condition])


def _params(api: Any, exact: bool, ef: int | None) -> Any:
    """A search's parameters: exact (a full scan, the int8 codes ignored), a beam of `ef`, or
    the engine's default (None); `api` as in `_filter`."""
    if exact:
        return api.SearchParams(exact=True, quantization=api.QuantizationSearchParams(ignore=True))
    return api.SearchParams(hnsw_ef=ef) if ef else None


def _hits(found: Sequence[Any], full: str | None) -> EngineHits:
    ids = np.asarray([int(p.id) for p in found], dtype=np.int64)
    scores = np.asarray([p.score for p in found], dtype=np.float32)
    vectors = None
    if full is not None:
        vectors = np.asarray([p.vector[full] for p in found], dtype=np.float32)
    return EngineHits(ids, scores, vectors)


# ------------------------------------------------------------------------------ qdrant-edge


def _edge() -> Any:
    try:
        import qdrant_edge
    except ImportError:
        raise EngineError(
            f"backend qdrant:DIR needs qdrant-edge-py, which is not installed: {INSTALL_HINT}",
            settings=("backend",),
        ) from None
    return qdrant_edge


class EdgeEngine(_Collection):
    """A Qdrant Edge shard in ``root/collection`` (created on `ensure`)."""

    engine = "qdrant-edge"

    def __init__(self, root: Path, collection: str) -> None:
        super().__init__(str(root), collection)
        self.qe = _edge()
        self.path = root / collection
        self._shard: Any = None
        if root.exists() and not root.is_dir():
            raise EngineError(f"backend qdrant:{root}: not a folder", settings=("backend",))
        if self.path.is_dir() and any(self.path.iterdir()):
            try:
                self._shard = self.qe.EdgeShard.load(str(self.path))
            except Exception as exc:  # the engine's own error, as one line
                if "WouldBlock" in str(exc):  # its WAL is locked by the process that holds it
                    raise EngineError(
                        f"{self.label} is open in another process (a `watch` or `serve`?): "
                        "search through a server that holds it (`mrl-tui serve` with this "
                        "backend), or stop the other first"
                    ) from None
                raise EngineError(f"{self.label}: cannot be loaded: {_first_line(exc)}") from None

    def exists(self) -> bool:
        return self._shard is not None

    def marker(self) -> dict[str, Any] | None:
        if self._marker is None and self._shard is not None:
            found = self._shard.retrieve([MARKER_ID], True, False)
            self._marker = dict(found[0].payload or {}) if found else None
            if self._marker is not None and not self._marker.get("mrl_marker"):
                self._marker = None
        return self._marker

    def _create(self, spec: CollectionSpec) -> None:
        qe = self.qe
        anchor = anchor_tier(spec.tiers)
        vectors = {}
        for dim in spec.tiers:
            graph = qe.HnswIndexConfig(
                m=HNSW_M if dim == anchor else 0,
                ef_construct=EF_CONSTRUCT,
                full_scan_threshold=FULL_SCAN_THRESHOLD,
            )
            codes = (
                qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=True)
                if dim == anchor
                else None
            )
            vectors[tier_name(dim)] = qe.EdgeVectorParams(
                dim, qe.Distance.Cosine, hnsw_config=graph, quantization_config=codes
            )
        optimizers = None
        if INDEXING_THRESHOLD_KB is not None:
            optimizers = qe.EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._shard = qe.EdgeShard.create(
                str(self.path), qe.EdgeConfig(vectors=vectors, optimizers=optimizers)
            )
            self._shard.update(
                qe.UpdateOperation.create_field_index("path", qe.PayloadSchemaType.Keyword)
            )
        except OSError as exc:
            raise EngineError(f"{self.label}: cannot be created: {exc.strerror or exc}") from None

    def _put_marker(self, payload: dict[str, Any]) -> None:
        self._update(self.qe.UpdateOperation.upsert_points([self.qe.Point(MARKER_ID, {}, payload)]))
        self._shard.flush()

    def _update(self, operation: Any) -> None:
        assert self._shard is not None, "ensure() first"
        self._shard.update(operation)

    def upsert(self, points: Sequence[EnginePoint]) -> None:
        qe = self.qe
        for batch in _batches(points):
            named = self._named_batch(batch)
            made = [qe.Point(p.id, v, p.payload) for p, v in zip(batch, named, strict=True)]
            self._update(qe.UpdateOperation.upsert_points(made))
        if points:
            self._shard.flush()

    def delete_paths(self, paths: Sequence[str]) -> None:
        qe = self.qe
        paths = list(paths)
        for start in range(0, len(paths), 512):
            match = qe.MatchAny(any=paths[start : start + 512])
            where = qe.Filter(must=[qe.FieldCondition(key="path", match=match)])
            self._update(qe.UpdateOperation.delete_points_by_filter(where))

    def delete_ids(self, ids: Sequence[int]) -> None:
        ids = [int(i) for i in ids if int(i) != MARKER_ID]
        for start in range(0, len(ids), BATCH):
            self._update(self.qe.UpdateOperation.delete_points(ids[start : start + BATCH]))

    def point_paths(self) -> dict[int, str]:
        out: dict[int, str] = {}
        if self._shard is None:
            return out
        offset = None
        while True:
            request = self.qe.ScrollRequest(
                offset=offset, limit=10_000, with_payload=["path"], with_vector=False
            )
            records, offset = self._shard.scroll(request)
            for record in records:
                if int(record.id) != MARKER_ID:
                    out[int(record.id)] = str((record.payload or {}).get("path", ""))
            if offset is None:
                return out

    def search(
        self,
        vector: np.ndarray,
        dim: int,
        k: int,
        stages: Sequence[tuple[int, int]] | None = None,
        *,
        exact: bool = False,
        with_vectors: int | None = None,
        where: PathSelect | None = None,
        ef: int | None = None,
    ) -> EngineHits:
        qe, tiers = self.qe, self.tiers()
        check_stages(tiers, dim, stages)
        params = _params(qe, exact, ef)
        kept_only = _filter(qe, where)
        inner = None
        for stage_dim, kept in stages or ():
            inner = qe.Prefetch(
                limit=kept,
                query=qe.Query.Nearest(prefix(vector, stage_dim), using=tier_name(stage_dim)),
                prefetches=[inner] if inner is not None else None,
                params=params,
                filter=kept_only,
            )
        full = tier_name(with_vectors) if with_vectors else None
        request = qe.QueryRequest(
            limit=k,
            query=qe.Query.Nearest(prefix(vector, dim), using=tier_name(dim)),
            prefetches=[inner] if inner is not None else None,
            params=params,
            with_vector=[full] if full else False,
            with_payload=False,
            filter=kept_only,
        )
        return _hits(self._shard.query(request), full)

    def optimize(self) -> None:
        if self._shard is not None:
            self._shard.optimize()

    def info(self) -> EngineInfo:
        points = 0 if self._shard is None else max(0, self._shard.info().points_count - 1)
        # Allocated blocks, not sizes: the WAL and mmap files are sparse, preallocated.
        disk = sum(f.stat().st_blocks * 512 for f in self.path.rglob("*") if f.is_file())
        return EngineInfo(
            f"qdrant-edge {_version('qdrant-edge-py')} (embedded)",
            str(self.path),
            self.collection,
            points,
            tier_infos(self.tiers()),
            dict(self.marker() or {}),
            disk,
        )

    def close(self) -> None:
        if self._shard is not None:
            with contextlib.suppress(Exception):
                self._shard.flush()
            self._shard.close()
            self._shard = None


# ---------------------------------------------------------------------------- qdrant-client

_MEMORY: dict[str, Any] = {}
_MEMORY_LOCK = threading.Lock()


def _client_module() -> Any:
    try:
        import qdrant_client
    except ImportError:
        raise EngineError(
            f"backend qdrant://HOST:PORT needs qdrant-client, which is not installed: "
            f"{INSTALL_HINT}",
            settings=("backend",),
        ) from None
    return qdrant_client


def memory_client() -> Any:
    """One process-wide in-memory client (qdrant-client's local mode, never `path=`: that one
    keeps points as pickles)."""
    with _MEMORY_LOCK:
        if "client" not in _MEMORY:
            _MEMORY["client"] = _client_module().QdrantClient(":memory:")
        return _MEMORY["client"]


class ServerEngine(_Collection):
    """A collection on a Qdrant server through qdrant-client (or its in-memory local mode)."""

    def __init__(self, client: Any, where: str, collection: str) -> None:
        super().__init__(where, collection)
        from qdrant_client import models

        self.client = client
        self.m = models
        self.local = where == ":memory:"
        self._exists: bool | None = None
        if self.local:
            return
        # Unreachable, or a server without the query API (nested prefetch): one line, now.
        version = str(self._call(lambda: self.client.info()).version)
        if _older(version, MIN_SERVER):
            raise EngineError(
                f"qdrant at {where} is version {version}; mrl-tui needs {MIN_SERVER} or later "
                "(query_points with nested prefetch)"
            )

    def _call(self, do: Any) -> Any:
        """A client call; a connection failure is one line."""
        try:
            with warnings.catch_warnings():
                # Local mode warns that it scans exactly whatever the search params say.
                warnings.simplefilter("ignore", UserWarning)
                return do()
        except EngineError:
            raise
        except Exception as exc:
            name = type(exc).__module__.split(".")[0]
            if name in ("qdrant_client", "httpx", "httpcore", "grpc") or isinstance(
                exc, (ConnectionError, TimeoutError, OSError)
            ):
                raise EngineError(
                    f"qdrant at {self.where} is unreachable or refused: {_first_line(exc)}"
                ) from None
            raise

    def exists(self) -> bool:
        if self._exists is None:
            self._exists = bool(self._call(lambda: self.client.collection_exists(self.collection)))
        return self._exists

    def marker(self) -> dict[str, Any] | None:
        if self._marker is None and self.exists():
            found = self._call(lambda: self.client.retrieve(self.collection, [MARKER_ID]))
            payload = dict(found[0].payload or {}) if found else None
            self._marker = payload if payload and payload.get("mrl_marker") else None
        return self._marker

    def _create(self, spec: CollectionSpec) -> None:
        m = self.m
        anchor = anchor_tier(spec.tiers)
        config = {}
        for dim in spec.tiers:
            on_anchor = dim == anchor
            config[tier_name(dim)] = m.VectorParams(
                size=dim,
                distance=m.Distance.COSINE,
                hnsw_config=m.HnswConfigDiff(m=HNSW_M if on_anchor else 0),
                quantization_config=m.ScalarQuantization(
                    scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, always_ram=True)
                )
                if on_anchor
                else None,
            )
        optimizers = None
        if INDEXING_THRESHOLD_KB is not None:
            optimizers = m.OptimizersConfigDiff(indexing_threshold=INDEXING_THRESHOLD_KB)
        self._call(
            lambda: self.client.create_collection(
                self.collection, vectors_config=config, optimizers_config=optimizers
            )
        )
        self._call(
            lambda: self.client.create_payload_index(
                self.collection, "path", m.PayloadSchemaType.KEYWORD
            )
        )
        self._exists = True

    def _put_marker(self, payload: dict[str, Any]) -> None:
        point = self.m.PointStruct(id=MARKER_ID, vector={}, payload=payload)
        self._call(lambda: self.client.upsert(self.collection, [point], wait=True))

    def upsert(self, points: Sequence[EnginePoint]) -> None:
        m = self.m
        for batch in _batches(points):
            named = self._named_batch(batch)
            made = [
                m.PointStruct(id=p.id, vector=v, payload=p.payload)
                for p, v in zip(batch, named, strict=True)
            ]
            self._call(lambda made=made: self.client.upsert(self.collection, made, wait=True))

    def delete_paths(self, paths: Sequence[str]) -> None:
        m, paths = self.m, list(paths)
        for start in range(0, len(paths), 512):
            match = m.MatchAny(any=paths[start : start + 512])
            where = m.Filter(must=[m.FieldCondition(key="path", match=match)])
            self._call(
                lambda where=where: self.client.delete(
                    self.collection, points_selector=m.FilterSelector(filter=where), wait=True
                )
            )

    def delete_ids(self, ids: Sequence[int]) -> None:
        ids = [int(i) for i in ids if int(i) != MARKER_ID]
        for start in range(0, len(ids), BATCH):
            part = ids[start : start + BATCH]
            selector = self.m.PointIdsList(points=part)
            self._call(
                lambda s=selector: self.client.delete(self.collection, points_selector=s, wait=True)
            )

    def point_paths(self) -> dict[int, str]:
        out: dict[int, str] = {}
        if not self.exists():
            return out
        offset = None
        while True:
            records, offset = self._call(
                lambda o=offset: self.client.scroll(
                    self.collection, limit=10_000, offset=o, with_payload=["path"]
                )
            )
            for record in records:
                if int(record.id) != MARKER_ID:
                    out[int(record.id)] = str((record.payload or {}).get("path", ""))
            if offset is None:
                return out

    def search(
        self,
        vector: np.ndarray,
        dim: int,
        k: int,
        stages: Sequence[tuple[int, int]] | None = None,
        *,
        exact: bool = False,
        with_vectors: int | None = None,
        where: PathSelect | None = None,
        ef: int | None = None,
    ) -> EngineHits:
        m, tiers = self.m, self.tiers()
        check_stages(tiers, dim, stages)
        params = _params(m, exact, ef)
        kept_only = _filter(m, where)
        inner = None
        for stage_dim, kept in stages or ():
            inner = m.Prefetch(
                query=prefix(vector, stage_dim).tolist(),
                using=tier_name(stage_dim),
                limit=kept,
                prefetch=[inner] if inner is not None else None,
                params=params,
                filter=kept_only,
            )
        full = tier_name(with_vectors) if with_vectors else None
        found = self._call(
            lambda: self.client.query_points(
                self.collection,
                query=prefix(vector, dim).tolist(),
                using=tier_name(dim),
                prefetch=[inner] if inner is not None else None,
                limit=k,
                search_params=params,
                query_filter=kept_only,
                with_vectors=[full] if full else False,
                with_payload=False,
            )
        )
        return _hits(found.points, full)

    def optimize(self) -> None:
        """The server optimises in the background."""

    def info(self) -> EngineInfo:
        count = 0
        if self.exists():
            count = self._call(lambda: self.client.count(self.collection, exact=True)).count
        kind = "in-process local mode" if self.local else "server"
        return EngineInfo(
            f"qdrant ({kind}) via qdrant-client {_version('qdrant-client')}",
            self.where,
            self.collection,
            max(0, count - 1),
            tier_infos(self.tiers()),
            dict(self.marker() or {}),
        )

    def close(self) -> None:
        if not self.local:
            with contextlib.suppress(Exception):
                self.client.close()


MIN_SERVER = "1.10.0"
"""The first Qdrant server with the universal query API (`query_points`, `prefetch`)."""


def _older(version: str, than: str) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) if p.isdigit() else 0 for p in text.split("-")[0].split(".")[:3])

    return parts(version) < parts(than)


def open_server(address: str, collection: str) -> ServerEngine:
    """``HOST:PORT`` (REST) or ``:memory:``."""
    module = _client_module()
    if address == ":memory:":
        return ServerEngine(memory_client(), address, collection)
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(
            f"backend qdrant://{address}: give qdrant://HOST:PORT", settings=("backend",)
        )
    timeout = int(os.environ.get("MRL_TUI_ENGINE_TIMEOUT_S", "5"))
    client = module.QdrantClient(
        host=host, port=int(port), timeout=timeout, check_compatibility=False
    )
    return ServerEngine(client, address, collection)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"
