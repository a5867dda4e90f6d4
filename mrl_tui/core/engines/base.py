"""What every vector engine backend offers, and what they share: the collection's identity, its
tiers, the marker point that says what a collection holds, and the points themselves.

A collection holds one named vector per tier (``d32``, ``d64``, …, ``d<full>``): each the prefix of
the *transformed* vector (PCA, adaptor or as is), re-normalised. A search at a tier dim is one
engine query at that tier; a funnel is nested prefetch stages, run inside the engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mrl_tui.core.errors import MrlError

SCHEMA = 1
"""The layout of a collection (tiers, payload, marker). Another value is a version mismatch."""
DEFAULT_TIERS = (32, 64, 128, 256)
"""Tier dims below the model's full dim (which is always a tier too)."""
ANCHOR_TIER = 64
"""The tier with an HNSW graph and int8 codes: a funnel's first stage (the local funnel's
`hnsw.ANCHOR_DIM`). Other tiers keep float32 vectors and no graph: they rescore candidates."""
MARKER_ID = 0
"""The point that says what the collection holds. Chunk ids start at 1; it has no vectors, so no
search ever returns it."""
INSTALL_HINT = "pip install 'mrl-tui[engine]'"


class EngineError(MrlError):
    """The engine cannot be used as asked: unreachable, not installed, or another collection."""


def tiers_for(full_dim: int, wanted: Sequence[int] = DEFAULT_TIERS) -> tuple[int, ...]:
    """The tier dims for a model of `full_dim`: the wanted ones below it, and the full dim."""
    return (*sorted({d for d in wanted if 0 < d < full_dim}), full_dim)


def tier_name(dim: int) -> str:
    return f"d{dim}"


def anchor_tier(tiers: Sequence[int]) -> int:
    """The funnel's first tier: `ANCHOR_TIER` when there is one, else the smallest."""
    return ANCHOR_TIER if ANCHOR_TIER in tiers else min(tiers)


def prefix(vectors: np.ndarray, dim: int) -> np.ndarray:
    """The first `dim` coordinates, re-normalised (a zero prefix stays zero)."""
    part = np.asarray(vectors, dtype=np.float32)[..., :dim]
    norms = np.linalg.norm(part, axis=-1, keepdims=True)
    return (part / np.where(norms > 0, norms, 1.0)).astype(np.float32)


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection is for: another model, transform, dim or tier set cannot share it."""

    model: str
    transform: str
    full_dim: int
    tiers: tuple[int, ...]
    folder: str = ""

    def identity(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "model": self.model,
            "transform": self.transform,
            "full_dim": self.full_dim,
            "tiers": list(self.tiers),
        }

    def check(self, marker: dict[str, Any], where: str) -> None:
        """One line, before anything is written, when the collection was made for another
        model, transform, dim, tier set or schema."""
        if marker.get("schema") != SCHEMA:
            raise EngineError(
                f"{where} was written by another mrl-tui layout (schema {marker.get('schema')}, "
                f"this one reads {SCHEMA}); give another collection or delete it"
            )
        for key in ("model", "transform", "full_dim", "tiers"):
            held, asked = marker.get(key), self.identity()[key]
            if held != asked:
                raise EngineError(
                    f"{where} holds {key} {held!r}, not {asked!r} (made by {marker.get('model')}, "
                    f"{marker.get('transform')}, {marker.get('full_dim')} dims); "
                    "give another collection or delete it"
                )


@dataclass(frozen=True)
class EnginePoint:
    """One chunk: its id in the cache, its transformed full vector, and its payload."""

    id: int
    vector: np.ndarray
    payload: dict[str, Any]


@dataclass(frozen=True)
class PathSelect:
    """A path filter as the engine runs it: points whose payload ``path`` is one of `paths`
    (`keep`), or none of them. Qdrant matches keywords, not globs, so a query's ``path:`` terms
    are matched here against the indexed files, and the smaller side is sent."""

    paths: tuple[str, ...]
    keep: bool = True


@dataclass(frozen=True)
class EngineHits:
    ids: np.ndarray  # int64, best first
    scores: np.ndarray  # float32
    vectors: np.ndarray | None = None  # (len, tier) one tier's stored vectors, when asked for


@dataclass
class TierInfo:
    dim: int
    name: str
    bytes_per_vector: int
    quantized: str = "none"
    graph: bool = False


@dataclass
class EngineInfo:
    engine: str
    where: str
    collection: str
    points: int
    tiers: list[TierInfo] = field(default_factory=list)
    marker: dict[str, Any] = field(default_factory=dict)
    disk_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        tiers = [
            {
                "dim": t.dim,
                "name": t.name,
                "bytes_per_vector": t.bytes_per_vector,
                "bytes": t.bytes_per_vector * self.points,
                "quantized": t.quantized,
                "hnsw": t.graph,
            }
            for t in self.tiers
        ]
        return {
            "engine": self.engine,
            "where": self.where,
            "collection": self.collection,
            "points": self.points,
            "tiers": tiers,
            "vector_bytes": sum(t["bytes"] for t in tiers),
            "disk_bytes": self.disk_bytes,
            "generation": self.marker.get("generation"),
            "state": self.marker.get("state"),
            "hnsw_ef": self.marker.get("hnsw_ef"),
            "ef_recall": self.marker.get("ef_recall"),
        }


HNSW_M = 16
"""Graph degree of the anchor tier (Qdrant's default); its links cost about 2·m·4 bytes/vector."""


def tier_infos(tiers: Sequence[int]) -> list[TierInfo]:
    """Bytes per vector of each tier as laid out here: float32 values, plus int8 codes and HNSW
    links on the anchor tier."""
    anchor = anchor_tier(tiers)
    out = []
    for dim in tiers:
        on_anchor = dim == anchor
        extra = dim + 2 * HNSW_M * 4 if on_anchor else 0
        out.append(
            TierInfo(
                dim, tier_name(dim), 4 * dim + extra, "int8" if on_anchor else "none", on_anchor
            )
        )
    return out


def collection_name(folder: str) -> str:
    """A stable collection name for a folder: its name (safe characters) and a path hash."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in folder.rsplit("/", 1)[-1])
    digest = hashlib.sha256(folder.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"mrl_{stem[:40] or 'root'}_{digest}"


class VectorEngine(Protocol):
    """One collection on one engine. `ensure` checks (and creates, when absent) the collection;
    nothing else writes before it has passed."""

    engine: str
    where: str
    collection: str

    def exists(self) -> bool: ...

    def marker(self) -> dict[str, Any] | None: ...

    def check(self, spec: CollectionSpec) -> None:
        """Raise `EngineError` if the collection exists for another spec; write nothing."""
        ...

    def ensure(self, spec: CollectionSpec) -> None: ...

    def set_marker(self, state: dict[str, Any]) -> None: ...

    def upsert(self, points: Sequence[EnginePoint]) -> None: ...

    def delete_paths(self, paths: Sequence[str]) -> None: ...

    def delete_ids(self, ids: Sequence[int]) -> None: ...

    def point_paths(self) -> dict[int, str]:
        """Every chunk point's id and file (the marker left out)."""
        ...

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
        """Top-k at tier `dim` for the transformed full `vector`. `stages`: (tier dim, kept)
        prefetch stages, coarse first, run inside the engine before the final tier.
        `with_vectors`: a tier whose stored vectors come back with the hits. `where`: a payload
        filter on every stage (the true top-k among those files). `ef`: the HNSW search beam
        (the engine's default when None; ignored when `exact`)."""
        ...

    def optimize(self) -> None: ...

    def info(self) -> EngineInfo: ...

    def close(self) -> None: ...


def check_stages(tiers: Sequence[int], dim: int, stages: Sequence[tuple[int, int]] | None) -> None:
    if dim not in tiers:
        raise EngineError(f"dim {dim} is not a tier of this collection ({list(tiers)})")
    for stage_dim, kept in stages or ():
        if stage_dim not in tiers or kept < 1:
            raise EngineError(f"funnel stage {stage_dim}:{kept} is not a tier of {list(tiers)}")


def payload_marker(spec: CollectionSpec, state: dict[str, Any]) -> dict[str, Any]:
    return {"mrl_marker": True, **spec.identity(), "folder": spec.folder, **state}
