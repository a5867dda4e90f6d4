"""F2: what the search screen shows, for someone new to Matryoshka embeddings, and the last
route in full (a short terminal crops the router panel)."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from mrl_tui.ui.widgets.panels import (
    Route,
    plain_reasons,
    query_words,
    stage_words,
    stages_lines,
)

TERMS: list[tuple[str, str]] = [
    (
        "dim",
        "Each chunk of your files is stored as a vector of {full} numbers. A Matryoshka "
        "prefix keeps only its first N numbers ('dim N'): smaller and faster to compare, "
        "a little less precise. The slider picks N.",
    ),
    (
        "the two tables",
        "Left: the top hits searched at the chosen dim (or keywords fused with that search, "
        "or keywords alone: h). Right: the reference they are compared with (the full dim, "
        "or another dim with r, another transform with t, HNSW graph search with f, keywords "
        "fused with it with H).",
    ),
    (
        "Δ",
        "How far a hit moved against the other table: ▲3 three places up, ▼2 down, = the "
        "same; NEW / out: not in the other table's top hits.",
    ),
    (
        "overlap, τ",
        "overlap@10: the share of the top 10 both tables have. Kendall τ: whether the shared "
        "hits come in the same order (+1 the same, −1 reversed).",
    ),
    (
        "transform",
        "What prefixes are taken of. PCA rotates the vectors first so the first numbers "
        "carry the most; naive truncation takes them as the model gave them; the adaptor is "
        "a small network fitted to this folder.",
    ),
    (
        "routing",
        "In auto mode (a) the router picks a dim per query: it scores every chunk at a small "
        "dim, scores the best ones again at larger dims (the stages of the auto funnel), and "
        "stops early once the top 10 stops changing, where that is safe in this folder. "
        "Queries with rare words, exact tokens (numbers, code) or negations may need more "
        "dims, and several of those never stop early.",
    ),
    (
        "scan",
        "'read 21% of a full scan': the numbers the search read, as a share of scoring every "
        "chunk with all {full} numbers.",
    ),
    (
        "stages",
        "32d×552 → 64×200 → 384×34: scored 552 chunks on their first 32 numbers, then the "
        "best 200 again on 64, then the best 34 on all 384. A stage without ×rows scored as "
        "many as the one before.",
    ),
    (
        "storage",
        "Bytes per vector at the chosen dim (4 per number as float32; int8 and binary codes "
        "are 4× and 32× smaller), and how much of the top 10 each dim shares with full.",
    ),
    (
        "latency",
        "Search time by dim: the median of repeated warm searches, the same measurement for "
        "every figure shown.",
    ),
]


def route_explained(route: Route, full_dim: int) -> Text:
    """The router panel's text in full, with each stage in words."""
    text = Text()
    text.append(f"Dim {route.dim} of {full_dim}. ", style="bold")
    why = "; ".join(plain_reasons(route, full_dim))
    text.append(f"{why[:1].upper()}{why[1:]}.\n" if why else "\n")
    text.append(f"The query: {query_words(route.features)}.\n")
    text.append(" ".join(stages_lines(route, full_dim)) + "\n")
    for i, step in enumerate(stage_words(route, full_dim), start=1):
        text.append(f"  {i}. {step}\n")
    text.rstrip()
    return text


class AboutScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,f2", "app.pop_screen", "close", show=True),
    ]

    def __init__(self, full_dim: int | None, route: Route | None) -> None:
        """`full_dim`: the model's (None before it is loaded); `route`: the last query's."""
        super().__init__()
        self.full_dim = full_dim
        self.route = route

    def compose(self) -> ComposeResult:
        full = f"{self.full_dim} " if self.full_dim else ""  # before the model is loaded
        table = Table(box=None, show_header=False, padding=(0, 2, 1, 0), expand=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(ratio=1)
        for term, what in TERMS:
            table.add_row(term, what.replace("{full} ", full))
        with VerticalScroll(id="about-box") as box:
            box.border_title = "about this screen"
            box.border_subtitle = "↑/↓ scroll · Esc closes"
            if self.route is not None and self.full_dim is not None:
                yield Static(Text("This query's route", style="bold underline"))
                yield Static(route_explained(self.route, self.full_dim), classes="route")
            yield Static(table)
