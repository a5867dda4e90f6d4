"""One side of the comparison: a ranked table of hits, with movement against the other side."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from mrl_tui.core.compare import movement_label

if TYPE_CHECKING:
    from mrl_tui.core.library import Hit

SNIPPET_CHARS = 30
WHERE_CHARS = 28
MOVE_STYLES = {"▲": "bold green", "▼": "bold red", "N": "bold yellow", "=": "dim", "l": "red"}


def one_line(text: str, width: int = SNIPPET_CHARS) -> str:
    """The text on one line without markdown heading marks, cut to `width` with an ellipsis."""
    flat = " ".join(re.sub(r"(?m)^\s*#+\s*", "", text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def location(hit: Hit) -> str:
    return f"{hit.chunk.path}:{hit.chunk.start_line}"


def short_location(hit: Hit, width: int = WHERE_CHARS) -> str:
    """path:line, keeping the end of a long path (the file name matters most)."""
    where = location(hit)
    return where if len(where) <= width else "…" + where[-(width - 1) :]


def move_text(move: int | None, *, absent: str = "NEW") -> Text:
    label = absent if move is None else movement_label(move)
    return Text(label, style=MOVE_STYLES.get(label[0], ""), justify="right")


class RankingTable(DataTable[object]):
    """Rows keyed by chunk id, so a highlighted row tells the screen which chunk it is."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_column("#", key="rank")
        self.add_column("Δ", key="move")
        self.add_column("score", key="score")
        self.add_column("where", key="where")
        self.add_column("text", key="text")

    def show_hits(self, hits: list[Hit], moves: list[int | None], *, absent: str) -> None:
        """Replace the rows, keeping the cursor on the same row number."""
        row = self.cursor_row
        self.clear()
        for hit, move in zip(hits, moves, strict=True):
            self.add_row(
                Text(str(hit.rank), justify="right"),
                move_text(move, absent=absent),
                Text(f"{hit.score:.3f}", justify="right"),
                short_location(hit),
                one_line(hit.chunk.text),
                key=str(hit.id),
            )
        if hits:
            self.move_cursor(row=min(row, len(hits) - 1), animate=False)


class RankingPane(Vertical):
    """A titled table plus the list of hits the other side has and this side lost."""

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = title

    def compose(self) -> ComposeResult:
        yield RankingTable()
        yield Static("", classes="dropped")

    @property
    def table(self) -> RankingTable:
        return self.query_one(RankingTable)

    def show(
        self,
        title: str,
        hits: list[Hit],
        moves: list[int | None],
        lost: list[Hit],
        *,
        absent: str,
        lost_label: str,
    ) -> None:
        self.border_title = title
        self.table.show_hits(hits, moves, absent=absent)
        dropped = self.query_one(".dropped", Static)
        if lost:
            names = ", ".join(location(hit) for hit in lost)
            dropped.update(Text.assemble((f"{lost_label}: ", "bold"), names))
        else:
            dropped.update(Text(f"{lost_label}: none", style="dim"))
