"""F1 / ?: every key in one place."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: list[tuple[str, str]] = [
    ("type", "search once typing pauses (3+ characters; works while the model loads)"),
    ("Enter", "search now, and go to the slider"),
    ("/", "back to the query box"),
    ("Tab / Shift+Tab", "move between query, slider and tables"),
    ("← / →", "slider: dimension −8 / +8"),
    ("Shift+← / Shift+→", "slider: previous / next power of two (or full)"),
    ("mouse", "click or drag the slider"),
    ("↑ / ↓", "tables: select a hit (preview and rank trail follow)"),
    ("r", "switch the reference side to the next power of two"),
    ("t", "reference side: the chosen dim under another transform (naive truncation / PCA)"),
    ("f", "reference side: funnel search at full dim (large indexes with an HNSW graph)"),
    ("o", "open the selected hit in $EDITOR at its line"),
    ("c", "copy path:line of the selected hit"),
    ("a", "router: auto (it picks each query's dim) / manual (the slider's)"),
    ("p", "show / hide the side panels"),
    ("s", "list skipped files and why"),
    ("Esc", "stop indexing (what is indexed stays searchable)"),
    ("Ctrl+R", "re-index the folder (only what changed)"),
    ("Ctrl+P", "command palette: reindex, reference, transform, router, live search, panels…"),
    ("F1 / ?", "this help"),
    ("Ctrl+Q", "quit"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,f1,question_mark", "app.pop_screen", "close", show=True),
    ]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
        table.add_column(style="bold")
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with VerticalScroll(id="help-box") as box:
            box.border_title = "mrl-tui keys"
            box.border_subtitle = "Esc closes"
            yield Static(table)
