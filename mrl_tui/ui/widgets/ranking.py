"""One side of the comparison: a ranked table of hits, with movement against the other side.

The table fits its width: the fixed columns (#, Δ, score) stay, the location is shortened to the
file name when the whole path does not fit, and the snippet gets the rest of the room.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from mrl_tui.core.compare import movement_label

if TYPE_CHECKING:
    from mrl_tui.core.library import Hit

MOVE_STYLES = {"▲": "bold green", "▼": "bold red", "N": "bold yellow", "=": "dim", "o": "red"}
RANK_WIDTH, MOVE_WIDTH, SCORE_WIDTH = 2, 3, 5  # "10", "▲9" / "NEW", "0.881"
SCORE_FROM = 72
"""Tables narrower than this leave the score out (the preview shows it): the text needs it more."""
MIN_WHERE = 12
MIN_TEXT = 16
"""A snippet narrower than this says nothing: the text column is left out instead."""


def one_line(text: str, width: int) -> str:
    """The text on one line without markdown heading marks, cut to `width` with an ellipsis."""
    flat = " ".join(re.sub(r"(?m)^\s*#+\s*", "", text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def location(hit: Hit) -> str:
    return f"{hit.chunk.path}:{hit.chunk.start_line}"


def file_location(hit: Hit) -> str:
    """name:line, without the folders."""
    return f"{hit.chunk.path.rsplit('/', 1)[-1]}:{hit.chunk.start_line}"


def short_locations(hits: list[Hit], width: int) -> list[str]:
    """path:line of each hit in `width` cells, all shortened the same way so the column reads
    evenly: whole paths, else file names, else stems (no extension), else stems cut short.
    The preview's title always has the whole path."""
    lines = [f":{hit.chunk.start_line}" for hit in hits]
    paths = [hit.chunk.path for hit in hits]
    names = [path.rsplit("/", 1)[-1] for path in paths]
    stems = [name.rsplit(".", 1)[0] or name for name in names]
    for parts in (paths, names, stems):
        if all(len(part) + len(line) <= width for part, line in zip(parts, lines, strict=True)):
            return [part + line for part, line in zip(parts, lines, strict=True)]
    return [
        (stem if len(stem) + len(line) <= width else stem[: max(1, width - len(line) - 1)] + "…")
        + line
        for stem, line in zip(stems, lines, strict=True)
    ]


def split_width(available: int, longest_where: int) -> tuple[int, int]:
    """(where, text) widths sharing `available` cells; text is 0 when a snippet would not fit.

    The location takes what it needs up to 40 % of the room (never under `MIN_WHERE`), the
    snippet the rest.
    """
    where = min(longest_where, max(MIN_WHERE, available * 2 // 5))
    text = available - where - 2  # the text column's own cell padding
    if text < MIN_TEXT:
        return max(1, available), 0
    return where, text


def move_text(move: int | None, *, absent: str = "NEW") -> Text:
    label = absent if move is None else movement_label(move)
    return Text(label, style=MOVE_STYLES.get(label[0], ""), justify="right")


class RankingTable(DataTable[object]):
    """Rows keyed by chunk id, so a highlighted row tells the screen which chunk it is."""

    def __init__(self) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True)
        self._hits: list[Hit] = []
        self._moves: list[int | None] = []
        self._absent = "NEW"
        self._width = 0

    def on_resize(self, _: events.Resize) -> None:
        # Room for a vertical scrollbar is always kept, so it appearing never forces a refill.
        width = self.size.width - self.styles.scrollbar_size_vertical
        if width != self._width:
            self._width = width
            self._fill(self.cursor_row)

    def show_hits(
        self, hits: list[Hit], moves: list[int | None], *, absent: str, cursor: int | None = None
    ) -> None:
        """Replace the rows, with the cursor on row `cursor` (None: the same row number)."""
        self._hits, self._moves, self._absent = hits, moves, absent
        self._fill(self.cursor_row if cursor is None else cursor)

    def _fill(self, row: int) -> None:
        """Rebuild the table for its width. Only the user's moves post `RowHighlighted`: a refill
        leaves the selection to the screen."""
        with self.prevent(DataTable.RowHighlighted):
            self._rebuild(row)

    def _rebuild(self, row: int) -> None:
        self.clear(columns=True)
        pad = 2 * self.cell_padding
        with_score = self._width >= SCORE_FROM
        fixed = RANK_WIDTH + MOVE_WIDTH + pad * 3
        if with_score:
            fixed += SCORE_WIDTH + pad
        longest = max((len(location(hit)) for hit in self._hits), default=MIN_WHERE)
        where_width, text_width = split_width(self._width - fixed, longest)
        self.add_column("#", width=RANK_WIDTH, key="rank")
        self.add_column("Δ", width=MOVE_WIDTH, key="move")
        if with_score:
            self.add_column("score", width=SCORE_WIDTH, key="score")
        self.add_column("where", width=where_width, key="where")
        if text_width:
            self.add_column("text", width=text_width, key="text")
        wheres = short_locations(self._hits, where_width)
        for hit, move, where in zip(self._hits, self._moves, wheres, strict=True):
            cells: list[object] = [
                Text(str(hit.rank), justify="right"),
                move_text(move, absent=self._absent),
            ]
            if with_score:
                cells.append(Text(f"{hit.score:.3f}", justify="right"))
            cells.append(Text(where, style="bold"))
            if text_width:
                cells.append(one_line(hit.chunk.text, text_width))
            self.add_row(*cells, key=str(hit.id))
        if self._hits:
            self.move_cursor(row=min(row, len(self._hits) - 1), animate=False)


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
        cursor: int | None = None,
    ) -> None:
        """`cursor`: the row to put the table's cursor on (None: the same row as before)."""
        self.border_title = title
        self.table.show_hits(hits, moves, absent=absent, cursor=cursor)
        dropped = self.query_one(".dropped", Static)
        if lost:
            names = ", ".join(file_location(hit) for hit in lost)
            dropped.update(Text.assemble((f"{lost_label}: ", "bold"), names))
        else:
            dropped.update(Text(f"{lost_label}: none", style="dim"))
