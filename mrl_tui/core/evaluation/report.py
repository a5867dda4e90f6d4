"""What `mrl-tui bench` measured, as dataclasses; their JSON (`to_dict`, `to_json`) is made here
and nowhere else.

Scores are rounded when a row is made (`Cell.of`), so the dataclasses hold exactly what is
printed. The JSON's keys, their order and the rounding are a contract (`bench --json`): they are
pinned byte for byte by ``tests/test_bench_json.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mrl_tui.core.evaluation.metrics import Scores

RECALL_K = 100
"""Recall is measured at 100 documents (the ``recall100`` of every cell)."""


@dataclass(frozen=True)
class Cell:
    """nDCG@k and recall@100 of one way of searching, rounded to 4 places."""

    ndcg: float
    recall: float

    @classmethod
    def of(cls, scores: Scores) -> Cell:
        return cls(round(scores.ndcg, 4), round(scores.recall, 4))

    def to_dict(self, k: int) -> dict[str, float]:
        return {f"ndcg{k}": self.ndcg, "recall100": self.recall}


@dataclass(frozen=True)
class FixedRow:
    """Exact search at one prefix dim (the last row: full dimension)."""

    dim: int
    cell: Cell
    search_ms: float
    """Median wall time of one query's search (the rankings come from a batch)."""
    bytes_per_vector: int

    def to_dict(self, k: int) -> dict[str, Any]:
        return {
            "dim": self.dim,
            **self.cell.to_dict(k),
            "search_ms": self.search_ms,
            "bytes_per_vector": self.bytes_per_vector,
        }


@dataclass(frozen=True)
class FunnelRow:
    """A funnel: an exact scan at a small prefix keeps candidates, later stages rerank them."""

    label: str
    stages: tuple[tuple[int, int], ...]
    """(dim, kept) per stage; the last rerank is at full dimension."""
    rerank_dim: int
    auto: bool
    pseudo_agreement: float | None
    """How often the auto funnel agreed with full on pseudo-queries (auto only)."""
    cell: Cell
    scan_fraction: float

    def to_dict(self, k: int) -> dict[str, Any]:
        return {
            "label": self.label,
            "dim": self.stages[0][0],
            "candidates": self.stages[0][1],
            "rerank_dim": self.rerank_dim,
            "stages": [{"dim": d, "kept": kept} for d, kept in self.stages],
            "auto": self.auto,
            "pseudo_agreement": self.pseudo_agreement,
            **self.cell.to_dict(k),
            "scan_fraction": self.scan_fraction,
        }


@dataclass(frozen=True)
class AgainstFixed:
    """Routed minus one fixed dim that costs at least as much: mean nDCG difference and its
    paired-bootstrap 95 % interval."""

    dim: int
    scan_fraction: float
    ndcg_diff: float
    ci95: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "scan_fraction": self.scan_fraction,
            "ndcg_diff": self.ndcg_diff,
            "ci95": list(self.ci95),
        }


@dataclass(frozen=True)
class RoutedReport:
    """Every query at the dim the router chose for it (calibrated without judgements)."""

    mean_dim: float
    scan_fraction: float
    cell: Cell
    scan_dim: int
    dims: dict[int, int]
    """How many queries were searched at each dim."""
    calibration: dict[str, Any]
    against_fixed: tuple[AgainstFixed, ...] = ()

    def to_dict(self, k: int) -> dict[str, Any]:
        return {
            "mean_dim": self.mean_dim,
            "scan_fraction": self.scan_fraction,
            **self.cell.to_dict(k),
            "scan_dim": self.scan_dim,
            "dims": {str(d): n for d, n in sorted(self.dims.items())},
            "calibration": self.calibration,
            "against_fixed": [row.to_dict() for row in self.against_fixed],
        }


@dataclass(frozen=True)
class HybridRow:
    dim: int
    dense: Cell
    fused: dict[str, Cell]
    """One cell per fusion (`core.search.hybrid.FUSIONS`, in that order)."""

    def to_dict(self, k: int) -> dict[str, Any]:
        cells = {name: cell.to_dict(k) for name, cell in self.fused.items()}
        return {"dim": self.dim, "dense": self.dense.to_dict(k), **cells}


@dataclass(frozen=True)
class HybridReport:
    """Keyword search alone, and (with fusion) fused with dense search at each dim."""

    candidates: int
    default: str
    lexical: Cell
    rows: tuple[HybridRow, ...] | None = None
    """None: keyword search only (``--retrieval lexical``)."""

    @property
    def dense_full(self) -> float:
        assert self.rows
        return self.rows[-1].dense.ndcg

    def reaches_full(self) -> dict[str, int | None]:
        """Per fusion, the smallest dim whose nDCG@k is at least dense at full (None: none)."""
        assert self.rows
        target = self.dense_full
        names = self.rows[0].fused
        return {
            name: next((r.dim for r in self.rows if r.fused[name].ndcg >= target), None)
            for name in names
        }

    def best(self) -> dict[str, tuple[int, float]]:
        """Per fusion, its best (dim, nDCG@k); the first such dim on ties."""
        assert self.rows
        best: dict[str, tuple[int, float]] = {}
        for name in self.rows[0].fused:
            row = max(self.rows, key=lambda r, n=name: r.fused[n].ndcg)
            best[name] = (row.dim, row.fused[name].ndcg)
        return best

    def to_dict(self, k: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "candidates": self.candidates,
            "default": self.default,
            "lexical": self.lexical.to_dict(k),
        }
        if self.rows is None:
            return out
        key = f"ndcg{k}"
        out["rows"] = [row.to_dict(k) for row in self.rows]
        out["dense_full"] = self.dense_full
        out["reaches_full"] = self.reaches_full()
        out["best"] = {name: {"dim": d, key: v} for name, (d, v) in self.best().items()}
        return out


@dataclass(frozen=True)
class BenchReport:
    """`mrl-tui bench`: one transform, every prefix dim, funnels, the router, keyword search."""

    dataset: str
    model: str
    transform: str
    precision: str
    docs: int
    rows: int
    queries: int
    full_dim: int
    k: int
    full: Cell
    fixed: tuple[FixedRow, ...]
    funnel: tuple[FunnelRow, ...]
    routed: RoutedReport | None
    """None without query texts."""
    hybrid: HybridReport | None = None
    with_hybrid: bool = False
    """Keyword search was asked for (``--retrieval`` lexical or hybrid): the JSON then has a
    ``hybrid`` key, null where it could not be measured."""
    engine: dict[str, Any] | None = None
    """The same queries through an engine (``--backend``, `core.engines.bench`)."""

    def to_dict(self) -> dict[str, Any]:
        k = self.k
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "model": self.model,
            "transform": self.transform,
            "precision": self.precision,
            "docs": self.docs,
            "rows": self.rows,
            "queries": self.queries,
            "full_dim": self.full_dim,
            "k": k,
            "full": self.full.to_dict(k),
            "fixed": [row.to_dict(k) for row in self.fixed],
            "funnel": [row.to_dict(k) for row in self.funnel],
            "routed": None if self.routed is None else self.routed.to_dict(k),
        }
        if self.with_hybrid:
            out["hybrid"] = None if self.hybrid is None else self.hybrid.to_dict(k)
        if self.engine is not None:
            out["engine"] = self.engine
        return out


@dataclass(frozen=True)
class CompareRow:
    dim: int
    cells: dict[str, Cell]
    """One cell per column, in the report's column order."""


@dataclass(frozen=True)
class CompareReport:
    """`mrl-tui bench --compare`: rows = dims (then full), one column per way of searching."""

    dataset: str
    model: str
    docs: int
    queries: int
    full_dim: int
    k: int
    chosen: str
    """The transform whose int8 and binary codes are columns too."""
    columns: tuple[str, ...]
    rows: tuple[CompareRow, ...]
    fit_seconds: dict[str, float] = field(default_factory=dict)
    """Per fitted transform (rounded to 0.01 s)."""
    fit_cached: tuple[str, ...] = ()
    """Transforms loaded from the bench cache (fitted by an earlier run)."""

    def to_dict(self) -> dict[str, Any]:
        k = self.k
        rows = [
            {"dim": row.dim, **{name: row.cells[name].to_dict(k) for name in self.columns}}
            for row in self.rows
        ]
        return {
            "dataset": self.dataset,
            "model": self.model,
            "docs": self.docs,
            "queries": self.queries,
            "full_dim": self.full_dim,
            "k": k,
            "compare": {
                "chosen": self.chosen,
                "columns": list(self.columns),
                "rows": rows,
                "fit_seconds": dict(self.fit_seconds),
                "fit_cached": list(self.fit_cached),
            },
        }


Report = BenchReport | CompareReport


def to_json(report: Report) -> str:
    """What ``mrl-tui bench --json`` prints."""
    return json.dumps(report.to_dict(), indent=2)
