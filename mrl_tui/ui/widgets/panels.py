"""The router panel and the side panels (latency, storage). Each shows what it is handed.

The two side panels carry a small plot over the power-of-two dimensions (8, 16, …, full), evenly
spaced, with the chosen dimension marked by a vertical line.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

LINE_COLOR = (80, 160, 255)
MARK_COLOR = (255, 200, 0)


class Route(Protocol):
    """What `mrl_tui.core.router.Route` carries (the UI never imports the core at module level)."""

    dim: int
    reasons: list[str]
    features: dict[str, Any]
    stages: list[tuple[int, int]]
    values_read: int

    @property
    def summary(self) -> str: ...


FEATURE_LISTS = (
    ("numbers", "numbers"),
    ("names", "names"),
    ("identifiers", "identifiers"),
    ("negations", "negation"),
    ("qualifiers", "qualifier"),
)


def feature_line(features: dict[str, Any]) -> str:
    """The measured features, compact: ``content words 3 · rare terms 1 · negation without``."""
    parts = [
        f"content words {features.get('content_words', 0)}",
        f"rare terms {len(features.get('rare_terms', []))}",
    ]
    for key, label in FEATURE_LISTS:
        if features.get(key):
            parts.append(f"{label} {', '.join(features[key])}")
    if features.get("clauses", 1) >= 2:
        parts.append(f"clauses {features['clauses']}")
    return " · ".join(parts)


def stages_line(route: Route, full_dim: int) -> str:
    """``read 76% of a full scan: 12d×552 → 24×400 → 48×200 → 96 → 192 → 384``.

    Each stage is a dim and the rows it scored (shown where they change); the share is the values
    read over those of an exact scan at full dim."""
    steps, rows_before = [], None
    for dim, rows in route.stages:
        unit = "" if steps else "d"
        steps.append(f"{dim}{unit}" if rows == rows_before else f"{dim}{unit}×{rows}")
        rows_before = rows
    full_scan = route.stages[0][1] * full_dim if route.stages else 0
    share = route.values_read / full_scan if full_scan else 1.0
    return f"read {share:.0%} of a full scan: " + " → ".join(steps)


class RouterPanel(Static):
    """The router's decision for the last query, or that the dimension is the user's (`a`)."""

    def on_mount(self) -> None:
        self.border_title = "router"

    def show_manual(self, dim: int) -> None:
        text = Text()
        text.append("manual", style="bold")
        text.append(f": dim {dim}, set with the slider\n")
        text.append("a: auto, the router picks each query's dim", style="dim")
        self._show(text)

    def show_waiting(self) -> None:
        self._show(Text.assemble(("auto", "bold"), ": the next query is routed"))

    def show_calibrating(self) -> None:
        text = Text.assemble(("auto", "bold"), ": calibrating the router…\n")
        text.append("once for this folder, a few seconds", style="dim")
        self._show(text)

    def show_route(self, route: Route, full_dim: int) -> None:
        text = Text()
        text.append("auto ", style="bold")
        text.append(f"{route.summary}\n")
        text.append(f"{feature_line(route.features)}\n", style="dim")
        text.append(stages_line(route, full_dim), style="dim")
        self._show(text)

    def _show(self, text: Text) -> None:
        self.update(text)
        self.tooltip = text  # everything, where a short terminal crops the panel


def x_position(dim: int, dims: list[int]) -> float:
    """Where `dim` sits on an axis with `dims` evenly spaced (log-interpolated in between)."""
    for i, (low, high) in enumerate(itertools.pairwise(dims)):
        if dim <= high:
            return i + max(0.0, math.log(dim / low) / math.log(high / low))
    return float(len(dims) - 1)


class CurvePlot(PlotextPlot):
    """A value per power-of-two dimension as a line, and the chosen dimension as a marker."""

    def draw(self, points: dict[int, float], dim: int, top: float) -> None:
        plt = self.plt
        plt.clear_figure()
        if not points:
            self.refresh()
            return
        dims = sorted(points)
        xs = list(range(len(dims)))
        plt.plot(xs, [points[d] for d in dims], marker="braille", color=LINE_COLOR)
        plt.vline(x_position(dim, dims), color=MARK_COLOR)
        shown = [i for i in xs if i == xs[-1] or (i % 2 == 0 and i < xs[-1] - 1)]
        plt.xticks(shown, [str(dims[i]) for i in shown])  # every other dim, and full
        plt.xlim(-0.5, len(dims) - 0.5)  # room for the first and last labels
        plt.yticks([0, top], ["0", f"{top:.2g}"])
        plt.ylim(0, top)
        plt.xaxes(True, False)
        plt.yaxes(True, False)
        self.refresh()


@dataclass
class Latency:
    embed_ms: float
    dim: int
    dim_ms: float
    full_dim: int
    full_ms: float


def fmt_ms(ms: float) -> str:
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


class LatencyPanel(Vertical):
    """Embedding and search times, and a plot of search time by dim measured for this index.

    `frozen` hides the numbers of the last query (for reproducible screenshots).
    """

    def __init__(self, *, frozen: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.frozen = frozen
        self.profile: dict[int, float] = {}

    def compose(self) -> ComposeResult:
        yield Static("no query yet", classes="numbers")
        yield CurvePlot()

    def on_mount(self) -> None:
        self.border_title = "latency"

    def show(self, latency: Latency) -> None:
        def ms(value: float) -> str:
            return "– ms" if self.frozen else fmt_ms(value)

        text = Text()
        text.append(f"embed query  {ms(latency.embed_ms)}\n")
        text.append(f"search @{latency.dim:<5}{ms(latency.dim_ms)}\n")
        text.append(f"search @{latency.full_dim:<5}{ms(latency.full_ms)}\n")
        text.append("search ms by dim (median)", style="dim")
        self.query_one(".numbers", Static).update(text)

    def show_profile(self, profile: dict[int, float], dim: int) -> None:
        """Median search time (ms) by dim for this index; the line is redrawn as `dim` moves."""
        self.profile = profile
        self.mark(dim)

    def mark(self, dim: int) -> None:
        top = max(self.profile.values(), default=0.0) * 1.25 or 1.0
        self.query_one(CurvePlot).draw(self.profile, dim, top)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@dataclass
class Storage:
    dim: int
    full_dim: int
    chunks: int
    agreement: dict[int, float] = field(default_factory=dict)  # dim -> overlap@k with full
    k: int = 10
    current: float | None = None  # overlap@k with full at `dim` itself, once known


class StoragePanel(Vertical):
    """float32 bytes per vector and for the whole index, and a plot of how well each dim's
    top k agrees with the full dim's for the last query: the trade-off curve."""

    def compose(self) -> ComposeResult:
        yield Static("", classes="numbers")
        yield CurvePlot()

    def on_mount(self) -> None:
        self.border_title = "storage"

    def show(self, s: Storage) -> None:
        per_dim, per_full = 4 * s.dim, 4 * s.full_dim
        text = Text()
        text.append(f"×{s.full_dim / s.dim:.1f} smaller", style="bold")
        text.append(f" than full {s.full_dim}\n")
        text.append(f"vector {human_bytes(per_dim)} / {human_bytes(per_full)}\n")
        text.append(
            f"index  {human_bytes(per_dim * s.chunks)} / {human_bytes(per_full * s.chunks)}\n"
        )
        from mrl_tui.core.quantize import bytes_per_vector  # loaded by now: the index is open

        int8, binary = bytes_per_vector(s.dim, "int8"), bytes_per_vector(s.dim, "binary")
        text.append(f"int8 {human_bytes(int8)} · binary {human_bytes(binary)}\n", "dim")
        text.append(f"top {s.k} shared with full ", style="dim")
        text.append("–" if s.current is None else f"{s.current:.0%}", style="bold")
        self.query_one(".numbers", Static).update(text)
        self.query_one(CurvePlot).draw(s.agreement, s.dim, 1.0)
