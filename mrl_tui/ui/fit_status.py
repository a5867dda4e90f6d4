"""The status line's words on which fit a watched folder's index uses (`Library.fit_status`).

A watched folder re-indexes on every save and keeps its fitted transform (PCA, adaptor) while
little has changed; a bigger change refits it in the background, and a large folder's HNSW graph
is rebuilt in the background (searches are exact meanwhile). The line says which is the case:
"PCA fit on 552 chunks · 40 changed since", "refitting PCA in the background…", "PCA refitted
on 592 chunks in 1.2 s", "graph: building, exact search until ready".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mrl_tui.core.transforms.kind import KINDS

LABELS = {kind.fitted: kind.short for kind in KINDS}
"""A fitted transform's name ("pca") as the app shows it ("PCA")."""


def fit_line(status: Mapping[str, Any]) -> str:
    """What `status` (`Library.fit_status()`) says about the transform and the graph in use;
    empty when there is nothing fitted to tell (naive truncation, a small folder)."""
    parts: list[str] = []
    name = status["transform"]
    fit = status["fits"].get(name)
    if fit is not None:
        label = LABELS.get(name, name)
        rows, changed, took = fit["fitted_rows"], fit["changed_since"], fit["refit_s"]
        if fit["refitting"]:
            in_use = f" (the fit on {rows:,} chunks is in use)" if rows is not None else ""
            parts.append(f"refitting {label} in the background…{in_use}")
        elif rows is None:
            parts.append(f"{label} fitted for this index")
        elif took is not None and not changed:
            parts.append(f"{label} refitted on {rows:,} chunks in {took:.1f} s")
        else:
            since = f" · {changed:,} changed since" if changed else ""
            parts.append(f"{label} fit on {rows:,} chunks{since}")
    if status["graph"] == "building":
        parts.append("graph: building, exact search until ready")
    elif status["graph"] == "ready" and status.get("graph_built_s") is not None:
        parts.append(f"graph rebuilt in {status['graph_built_s']:.1f} s")
    return " · ".join(parts)
