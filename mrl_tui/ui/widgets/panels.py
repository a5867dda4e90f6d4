"""The router panel and the side panels (latency, storage). Each shows what it is handed.

The two side panels carry a small plot over the power-of-two dimensions (8, 16, …, full), evenly
spaced, with the chosen dimension marked by a vertical line.

What a panel shows is its attribute (`RouterPanel.decision`, `LatencyPanel.latency` / `times` /
`dim`, `StoragePanel.storage`), set by the screen; the watchers draw it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import var
from textual.widgets import Static
from textual_plotext import PlotextPlot

LINE_COLOR = (80, 160, 255)
MARK_COLOR = (255, 200, 0)


class Route(Protocol):
    """What `core.search.router.Route` carries (the UI never imports the core at module level)."""

    dim: int
    reasons: list[str]
    features: dict[str, Any]
    stages: list[tuple[int, int]]
    values_read: int

    @property
    def summary(self) -> str: ...


def short_count(n: int) -> str:
    """Rows, short: 552, 5k, 12k, 1.2M."""
    if n < 1000:
        return str(n)
    if n < 10_000:
        return f"{n / 1000:.1f}".removesuffix(".0") + "k"
    if n < 999_500:  # what rounds to 1000k is 1M
        return f"{round(n / 1000)}k"
    return f"{n / 1_000_000:.1f}".removesuffix(".0") + "M"


def stage_steps(route: Route) -> list[str]:
    """Each stage as dim×rows scored (rows where they change): ``12d×5k``, ``24×800``, ``96``."""
    steps, rows_before = [], None
    for dim, rows in route.stages:
        unit = "" if steps else "d"
        steps.append(f"{dim}{unit}" if rows == rows_before else f"{dim}{unit}×{short_count(rows)}")
        rows_before = rows
    return steps


def stages_lines(route: Route, full_dim: int, width: int | None = None) -> list[str]:
    """``read 8% of a full scan: 12d×5k → 24×800 → 48×200 → 96 → 192 → 384`` in `width` cells.

    The share is the values read over those of an exact scan at full dim. One line where it fits;
    else the share on a line of its own and the stages under it, broken before an arrow (never
    inside a stage) where they need more than one line. `width` None: one line."""
    full_scan = route.stages[0][1] * full_dim if route.stages else 0
    share = route.values_read / full_scan if full_scan else 1.0
    head = f"read {share:.0%} of a full scan:"
    steps = stage_steps(route)
    one_line = f"{head} {' → '.join(steps)}"
    if width is None or len(one_line) <= width:
        return [one_line]
    lines, line = [head], ""
    for step in steps:
        if not line:
            line = step
        elif len(line) + len(" → ") + len(step) <= width:
            line += f" → {step}"
        else:
            lines.append(line)
            line = f"→ {step}"
    return [*lines, line] if line else lines


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def query_words(features: dict[str, Any]) -> str:
    """What the router saw in the query, in plain words: ``3 meaningful words (of 7); nothing
    rare, exact or negated`` or ``2 meaningful words; rare here: wireguard``."""
    content, tokens = features.get("content_words", 0), features.get("tokens", 0)
    words = plural(content, "meaningful word") + (f" (of {tokens})" if tokens > content else "")
    found = []
    if features.get("rare_terms"):
        found.append(f"rare here: {', '.join(features['rare_terms'][:3])}")
    exact = [*features.get("identifiers", []), *features.get("numbers", [])]
    if exact:
        found.append(f"exact: {', '.join(exact[:3])}")
    negated = [*features.get("negations", []), *features.get("qualifiers", [])]
    if negated:
        found.append(f"negated/qualified: {', '.join(negated[:3])}")
    if features.get("clauses", 1) >= 2:
        found.append(f"{features['clauses']} clauses")
    return f"{words}; " + ("; ".join(found) if found else "nothing rare, exact or negated")


REASONS: list[tuple[str, str]] = [
    (
        r"top-(?P<k>\d+) stable between (?P<a>\d+) and (?P<b>\d+) \((?P<n>\d+) shared\)",
        "its top {k} settled ({n} of {k} the same at {a} and {b} dims): stopped at {b}",
    ),
    (
        r"top-(?P<k>\d+) unstable up to (?P<a>\d+): full",
        "its top {k} still changed at {a} dims: went on to the full {full}",
    ),
    (
        r"top-(?P<k>\d+) not trusted up to (?P<a>\d+): full",
        "its top {k} looked settled, but not for such queries here: went on to the full {full}",
    ),
    (
        r"(?P<g>.+) queries need more than (?P<d>\d+) here",
        "in this folder, {g} queries need more than {d} dims",
    ),
    (r"hard: no early stop", "several hard signs: no early stop, on to the full {full} dims"),
    (r"(?P<why>.+): exact full-dim scan", "{why}: every chunk scored at the full {full} dims"),
]
"""The router's reasons (`mrl_tui.core.search.router`) in plain words; those about the query itself
are said by `query_words` instead."""
QUERY_REASONS = re.compile(
    r"negation/qualifier |exact tokens |rare terms |long query |\d+ clauses$|\w+ keyword query$"
)


def plain_reasons(route: Route, full_dim: int) -> list[str]:
    """Why the route stopped where it did, one plain sentence per reason (unknown ones as the
    router wrote them)."""
    said = []
    for reason in route.reasons:
        if QUERY_REASONS.match(reason):
            continue
        for pattern, words in REASONS:
            if found := re.fullmatch(pattern, reason):
                said.append(words.format(full=full_dim, **found.groupdict()))
                break
        else:
            said.append(reason)
    return said


def stage_words(route: Route, full_dim: int) -> list[str]:
    """The stages as sentences: ``scored all 552 chunks on their first 32 dims``, ``re-scored
    the best 200 on 64 dims``."""
    said = []
    for i, (dim, rows) in enumerate(route.stages):
        dims = f"all {full_dim} dims" if dim == full_dim else f"their first {dim} dims"
        if i == 0:
            said.append(f"scored all {rows:,} chunks on {dims}")
        else:
            said.append(f"re-scored the best {rows:,} on {dims}")
    return said


@dataclass(frozen=True)
class Manual:
    """The dim is the user's, set with the slider (`a` toggles)."""

    dim: int


@dataclass(frozen=True)
class Waiting:
    """Auto, and no query routed yet."""


@dataclass(frozen=True)
class Calibrating:
    """Auto, and the router is being calibrated for this folder (once, seconds)."""


@dataclass(frozen=True)
class Routed:
    """Auto: how the router searched the last query."""

    route: Route
    full_dim: int


Decision = Manual | Waiting | Calibrating | Routed
"""What the router panel shows."""


class RouterPanel(Static):
    """The router's decision for the last query, or that the dimension is the user's (`a`).

    A route's stages are laid out for the panel's width, and again when that changes."""

    decision: var[Decision | None] = var(None, init=False)
    """What is shown (None: nothing yet)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._width = 0  # the content width a route was laid out for

    def on_mount(self) -> None:
        self.border_title = "router"

    def on_resize(self, _: events.Resize) -> None:
        if isinstance(self.decision, Routed) and self.content_size.width != self._width:
            self._show_route(self.decision.route, self.decision.full_dim)

    def watch_decision(self, decision: Decision | None) -> None:
        if isinstance(decision, Manual):
            text = Text()
            text.append("manual", style="bold")
            text.append(f": dim {decision.dim}, set with the slider\n")
            text.append("a (from the slider or a table): auto, the router picks", style="dim")
            self._show(text)
        elif isinstance(decision, Waiting):
            self._show(Text.assemble(("auto", "bold"), ": the next query is routed"))
        elif isinstance(decision, Calibrating):
            text = Text.assemble(("auto", "bold"), ": calibrating the router…\n")
            text.append("once for this folder, a few seconds", style="dim")
            self._show(text)
        elif isinstance(decision, Routed):
            self._show_route(decision.route, decision.full_dim)

    def _show_route(self, route: Route, full_dim: int) -> None:
        def route_text(width: int | None) -> Text:
            text = Text()
            text.append(f"auto: dim {route.dim} of {full_dim}", style="bold")
            text.append(" · F2 explains\n", style="dim")
            if reasons := plain_reasons(route, full_dim):
                text.append("; ".join(reasons) + "\n")
            text.append(f"{query_words(route.features)}\n", style="dim")
            text.append("\n".join(stages_lines(route, full_dim, width)), style="dim")
            return text

        width = self.content_size.width  # 0 before the first layout: on_resize lays it out again
        self._show(route_text(width or None), tooltip=route_text(None))
        self._width = width

    def _show(self, text: Text, tooltip: Text | None = None) -> None:
        self.update(text)
        self.tooltip = tooltip or text  # everything, where a short terminal crops the panel


def x_position(dim: int, dims: list[int]) -> float:
    """Where `dim` sits on an axis with `dims` evenly spaced (log-interpolated in between)."""
    for i, (low, high) in enumerate(itertools.pairwise(dims)):
        if dim <= high:
            return i + max(0.0, math.log(dim / low) / math.log(high / low))
    return float(len(dims) - 1)


class CurvePlot(PlotextPlot):
    """A value per power-of-two dimension as a line, and the chosen dimension as a marker."""

    def draw(self, points: Mapping[int, float], dim: int, top: float) -> None:
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


@dataclass(frozen=True)
class Latency:
    """This query's embedding time, and the search times at its dim and at full dim: medians
    from the same measurement as the plot (None: not measured yet)."""

    embed_ms: float
    dim: int
    dim_ms: float | None
    full_dim: int
    full_ms: float | None


@dataclass(frozen=True)
class SearchTimes:
    """Median search time (ms) by dim, measured for an index of `rows` vectors."""

    ms: Mapping[int, float]
    rows: int


def fmt_ms(ms: float) -> str:
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


FLAT_RATIO = 2.0
"""A profile whose slowest dim takes less than this multiple of its fastest is flat: the fixed cost
of a search (the call, sorting the top k) hides the dimension, as on a small index, and the line
would only draw timer jitter."""


def is_flat(profile: Mapping[int, float]) -> bool:
    return bool(profile) and max(profile.values()) < FLAT_RATIO * min(profile.values())


class LatencyPanel(Vertical):
    """Embedding and search times, and a plot of search time by dim measured for this index (or,
    where the index is too small for the dim to change it, a line that says so instead).

    `frozen` hides the numbers of the last query (for reproducible screenshots).
    """

    latency: var[Latency | None] = var(None, init=False)
    """The last query's times (None: no query yet)."""
    times: var[SearchTimes | None] = var(None, init=False, always_update=True)
    """Search time by dim for this index, drawn as a line (or one sentence where it is flat).
    None: not measured yet, it is with the next query; set on every new index, even when it
    was None already (the line before any index says nothing)."""
    dim: var[int] = var(0, init=False)
    """The chosen dim, marked on the plot."""

    def __init__(self, *, frozen: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.frozen = frozen

    def compose(self) -> ComposeResult:
        yield Static("no query yet", classes="numbers")
        yield Static("", classes="legend")
        yield CurvePlot()

    def on_mount(self) -> None:
        self.border_title = "latency"

    def watch_latency(self, latency: Latency | None) -> None:
        if latency is None:  # a new model: its query has not run yet
            self.query_one(".numbers", Static).update("no query yet")
            return

        def ms(value: float | None) -> str:
            return "– ms" if self.frozen or value is None else fmt_ms(value)

        text = Text()
        text.append(f"embed query  {ms(latency.embed_ms)}\n")
        text.append(f"search @{latency.dim:<5}{ms(latency.dim_ms)}")
        if latency.dim != latency.full_dim:  # one figure per dim
            text.append(f"\nsearch @{latency.full_dim:<5}{ms(latency.full_ms)}")
        self.query_one(".numbers", Static).update(text)

    def watch_times(self, times: SearchTimes | None) -> None:
        if times is None:  # no plot until measured
            self.set_class(True, "-flat")
            self.query_one(".legend", Static).update(
                Text("search times: measured with the next query", style="dim")
            )
            return
        profile, rows = times.ms, times.rows
        flat = is_flat(profile)
        self.set_class(flat, "-flat")
        if flat:
            low, high = min(profile.values()), max(profile.values())
            legend = Text.assemble(
                "search ",
                (f"{low:.2f}–{high:.2f} ms", "bold"),
                f" at every dim: the index is too small for timings to differ ({rows:,} rows)",
                style="dim",
            )
        else:
            legend = Text("search ms by dim (median of warm runs)", style="dim")
        self.query_one(".legend", Static).update(legend)
        self._draw()

    def watch_dim(self) -> None:
        if self.times is not None:
            self._draw()

    def _draw(self) -> None:
        profile = self.times.ms if self.times is not None else {}
        top = max(profile.values(), default=0.0) * 1.25 or 1.0
        self.query_one(CurvePlot).draw(profile, self.dim, top)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def smaller_text(dim: int, full_dim: int) -> str:
    """How much smaller a prefix is than the full vector: ``6.0× smaller`` from half the size
    down, ``2% smaller`` above it (a ratio there rounds to ``×1.0``), ``full size`` at full."""
    if dim >= full_dim:
        return "full size"
    if 2 * dim <= full_dim:
        return f"{full_dim / dim:.1f}× smaller"
    return f"{1 - dim / full_dim:.0%} smaller"


@dataclass(frozen=True)
class Storage:
    dim: int
    full_dim: int
    chunks: int
    agreement: Mapping[int, float] = field(default_factory=dict)  # dim -> overlap@k with full
    k: int = 10
    current: float | None = None  # overlap@k with full at `dim` itself, once known


class StoragePanel(Vertical):
    """float32 bytes per vector and for the whole index, and a plot of how well each dim's
    top k agrees with the full dim's for the last query: the trade-off curve."""

    storage: var[Storage | None] = var(None, init=False)
    """What is shown (None: no index yet)."""

    def compose(self) -> ComposeResult:
        yield Static("", classes="numbers")
        yield CurvePlot()

    def on_mount(self) -> None:
        self.border_title = "storage"

    def watch_storage(self, s: Storage | None) -> None:
        if s is None:
            return
        per_dim, per_full = 4 * s.dim, 4 * s.full_dim
        text = Text()
        text.append(smaller_text(s.dim, s.full_dim), style="bold")
        text.append(f" than full {s.full_dim}\n" if s.dim < s.full_dim else "\n")
        text.append(f"vector {human_bytes(per_dim)} / {human_bytes(per_full)}\n")
        text.append(
            f"index  {human_bytes(per_dim * s.chunks)} / {human_bytes(per_full * s.chunks)}\n"
        )
        from mrl_tui.core.search.codes import bytes_per_vector  # loaded by now: the index is open

        int8, binary = bytes_per_vector(s.dim, "int8"), bytes_per_vector(s.dim, "binary")
        text.append(f"int8 {human_bytes(int8)} · binary {human_bytes(binary)}\n", "dim")
        text.append(f"top {s.k} shared with full ", style="dim")
        text.append("–" if s.current is None else f"{s.current:.0%}", style="bold")
        self.query_one(".numbers", Static).update(text)
        self.query_one(CurvePlot).draw(s.agreement, s.dim, 1.0)
