"""The small side panels: router, latency and storage. Each shows what it is handed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from rich.text import Text
from textual.widgets import Static

BAR_WIDTH = 10


class Route(Protocol):
    """What a future router returns; the panel already knows how to show it."""

    dim: int
    reasons: list[str]
    features: dict[str, float]


class RouterPanel(Static):
    """Manual today. `a` toggles auto mode, which says plainly that no router exists yet."""

    def on_mount(self) -> None:
        self.border_title = "router"

    def show_manual(self, dim: int, *, auto_requested: bool) -> None:
        text = Text()
        text.append("manual", style="bold")
        text.append(f": dim {dim}\n")
        if auto_requested:
            text.append("auto: router not available yet", style="italic")
        else:
            text.append("a: try auto", style="dim")
        self.update(text)

    def show_route(self, route: Route) -> None:
        text = Text()
        text.append("auto", style="bold")
        text.append(f": dim {route.dim}\n")
        for reason in route.reasons:
            text.append(f"· {reason}\n", style="dim")
        for name, value in route.features.items():
            text.append(f"{name} {value:.2f}  ", style="dim")
        self.update(text)


@dataclass
class Latency:
    embed_ms: float
    dim: int
    dim_ms: float
    full_dim: int
    full_ms: float


def fmt_ms(ms: float) -> str:
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


class LatencyPanel(Static):
    """Embedding and search times. `frozen` hides the numbers (for reproducible screenshots)."""

    def __init__(self, *, frozen: bool = False, id: str | None = None) -> None:
        super().__init__("no query yet", id=id)
        self.frozen = frozen

    def on_mount(self) -> None:
        self.border_title = "latency"

    def show(self, latency: Latency) -> None:
        def ms(value: float) -> str:
            return "– ms" if self.frozen else fmt_ms(value)

        speedup = latency.full_ms / latency.dim_ms if latency.dim_ms > 0 else 0.0
        text = Text()
        text.append(f"embed query  {ms(latency.embed_ms)}\n")
        text.append(f"search @{latency.dim:<5}{ms(latency.dim_ms)}\n")
        text.append(f"search @{latency.full_dim:<5}{ms(latency.full_ms)}\n")
        text.append("speed-up     ")
        text.append("–" if self.frozen else f"×{speedup:.1f}", style="bold")
        self.update(text)


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


def bar(value: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(1.0, value)) * width)
    return "█" * filled + "░" * (width - filled)


class StoragePanel(Static):
    """float32 bytes per vector and for the whole index, and how well each dim agrees with full."""

    def on_mount(self) -> None:
        self.border_title = "storage"

    def show(self, s: Storage) -> None:
        per_dim, per_full = 4 * s.dim, 4 * s.full_dim
        text = Text()
        text.append(f"vector  {human_bytes(per_dim)} / {human_bytes(per_full)}\n")
        text.append(
            f"index   {human_bytes(per_dim * s.chunks)} / {human_bytes(per_full * s.chunks)}\n"
        )
        text.append(f"smaller ×{s.full_dim / s.dim:.1f}\n", style="bold")
        if s.agreement:
            text.append(f"overlap@{s.k} with full\n", style="dim")
            for dim, value in s.agreement.items():
                style = "bold" if dim == s.dim else ""
                text.append(f"{dim:>5} {bar(value)} {value:.1f}\n", style=style)
        text.rstrip()
        self.update(text)
