"""One side of the comparison: a ranked table of hits, with movement against the other side.

The table fits its width: the fixed columns (#, Δ, score) stay, the location is shortened to the
file name when the whole path does not fit, and the snippet gets the rest of the room.

The screen sets what a pane shows (`RankingPane.ranking`, a `RankingView`); the pane hands its
parts down to the table (`RankingTable.ranked`) and the list (`HitList.lost`), whose watchers draw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.reactive import var
from textual.widgets import DataTable, Static

from mrl_tui.core.search.compare import movement_label
from mrl_tui.ui.literal import shown

if TYPE_CHECKING:
    from mrl_tui.core.library import Hit

MOVE_STYLES = {"▲": "bold green", "▼": "bold red", "N": "bold yellow", "=": "dim", "o": "red"}
RANK_WIDTH, MOVE_WIDTH, SCORE_WIDTH = 2, 3, 5  # "10", "▲9" / "NEW", "0.881"
SCORE_FROM = 72
"""Tables narrower than this leave the score out (the preview shows it): the text needs it more."""
SELECT_HELP = "tables: select a hit (the preview and its rank by dim follow)"
MIN_WHERE = 12
MIN_TEXT = 16
"""A snippet narrower than this says nothing: the text column is left out instead."""


def one_line(text: str, width: int) -> Text:
    """The text on one line without markdown heading marks, cut to `width` with an ellipsis;
    literal (a `Text`: a table cell given a str would read it as markup)."""
    flat = " ".join(re.sub(r"(?m)^\s*#+\s*", "", shown(text)).split())
    return Text(flat if len(flat) <= width else flat[: width - 1] + "…")


def location(hit: Hit) -> str:
    return shown(f"{hit.chunk.path}:{hit.chunk.start_line}")


def fit_path(path: str, line: str, width: int) -> str:
    """`path` + `line` (":12") in `width` cells: the whole path; else as many of its last folders
    as fit behind "…/" (so two ``__init__.py`` stay apart); else the file name, cut short if
    it must be. The preview's title always has the whole path."""
    path = shown(path)
    room = width - len(line)
    if len(path) <= room:
        return path + line
    parts = path.split("/")
    for i in range(1, len(parts)):
        tail = "…/" + "/".join(parts[i:])
        if len(tail) <= room:
            return tail + line
    name = parts[-1]
    return (name if len(name) <= room else name[: max(1, room - 1)] + "…") + line


def short_locations(hits: list[Hit], width: int) -> list[str]:
    """path:line of each hit in `width` cells (`fit_path`)."""
    return [fit_path(hit.chunk.path, f":{hit.chunk.start_line}", width) for hit in hits]


LIST_ITEM_WIDTH = 40
"""At most this many cells for one hit in the lists under the tables."""


def fit_list(label: str, items: list[str], width: int, lines: int) -> list[str]:
    """``label: a, b, c +2 more`` broken into at most `lines` lines of `width` cells: as many
    items as fit, and how many did not."""
    for shown_count in range(len(items), -1, -1):
        rest = len(items) - shown_count
        words = [f"{label}:"]
        if shown_count:
            words += [f"{item}," for item in items[: shown_count - 1]]
            words.append(items[shown_count - 1])
        if rest:
            words.append(f"+{rest} more")
        packed: list[str] = []
        for word in words:
            if packed and len(packed[-1]) + 1 + len(word) <= width:
                packed[-1] += f" {word}"
            else:
                packed.append(word)
        if len(packed) <= lines or shown_count == 0:
            return packed[:lines]
    return []


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


@dataclass(frozen=True)
class RankedRows:
    """What a `RankingTable` shows: the hits in order, each one's move against the other side
    (None: not there, shown as `absent`), and the row to put the cursor on (None: the same row
    number as before)."""

    hits: tuple[Hit, ...] = ()
    moves: tuple[int | None, ...] = ()
    absent: str = "NEW"
    cursor: int | None = None


class RankingTable(DataTable[object]):
    """Rows keyed by chunk id, so a highlighted row tells the screen which chunk it is."""

    BINDINGS: ClassVar[list[BindingType]] = [  # DataTable's, with the help screen's text
        Binding("up", "cursor_up", show=False, tooltip=SELECT_HELP),
        Binding("down", "cursor_down", show=False, tooltip=SELECT_HELP),
    ]

    ranked: var[RankedRows] = var(RankedRows(), init=False, always_update=True)
    """The rows shown. Drawn again even when equal to the last: setting it places the cursor, and
    the user may have moved it since."""

    def __init__(self) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True)
        self._width = 0

    def on_resize(self, _: events.Resize) -> None:
        # Room for a vertical scrollbar is always kept, so it appearing never forces a refill.
        width = self.size.width - self.styles.scrollbar_size_vertical
        if width != self._width:
            self._width = width
            self._fill(self.cursor_row)

    def watch_ranked(self, ranked: RankedRows) -> None:
        self._fill(self.cursor_row if ranked.cursor is None else ranked.cursor)

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
        ranked = self.ranked
        longest = max((len(location(hit)) for hit in ranked.hits), default=MIN_WHERE)
        where_width, text_width = split_width(self._width - fixed, longest)
        self.add_column("#", width=RANK_WIDTH, key="rank")
        self.add_column("Δ", width=MOVE_WIDTH, key="move")
        if with_score:
            self.add_column("score", width=SCORE_WIDTH, key="score")
        self.add_column("where", width=where_width, key="where")
        if text_width:
            self.add_column("text", width=text_width, key="text")
        wheres = short_locations(list(ranked.hits), where_width)
        for hit, move, where in zip(ranked.hits, ranked.moves, wheres, strict=True):
            cells: list[object] = [
                Text(str(hit.rank), justify="right"),
                move_text(move, absent=ranked.absent),
            ]
            if with_score:
                cells.append(Text(f"{hit.score:.3f}", justify="right"))
            cells.append(Text(where, style="bold"))  # literal, as every cell here
            if text_width:
                cells.append(one_line(hit.chunk.text, text_width))
            self.add_row(*cells, key=str(hit.id))
        if ranked.hits:
            self.move_cursor(row=min(row, len(ranked.hits) - 1), animate=False)


@dataclass(frozen=True)
class LostHits:
    """What a `HitList` shows: `label`, then the hits' locations (none yet: no comparison)."""

    label: str = ""
    items: tuple[str, ...] = ()


class HitList(Static):
    """The hits one side lost, in as many lines as its style gives it, ending "+N more" where
    they do not all fit (both panes keep the same height)."""

    lost: var[LostHits] = var(LostHits(), init=False)

    def __init__(self, *, classes: str | None = None) -> None:
        super().__init__("", classes=classes)

    def watch_lost(self) -> None:
        self._lay_out()

    def on_resize(self, _: events.Resize) -> None:
        self._lay_out()

    def _lay_out(self) -> None:
        label, items = self.lost.label, list(self.lost.items)
        if not items:  # no label yet: no comparison shown, so nothing to say
            self.update(Text(f"{label}: none" if label else "", style="dim"))
            return
        width, lines = self.content_size.width or 80, self.content_size.height or 1
        text = Text("\n".join(fit_list(label, items, width, lines)))
        text.stylize("bold", 0, len(label) + 1)
        self.update(text)


@dataclass(frozen=True)
class RankingView:
    """What a `RankingPane` shows: its title, the hits with their moves (`RankedRows`), and the
    hits the other side has and this side lost, under `lost_label`."""

    title: str
    hits: tuple[Hit, ...]
    moves: tuple[int | None, ...]
    lost: tuple[Hit, ...]
    absent: str
    lost_label: str
    cursor: int | None = None
    """The row to put the table's cursor on (None: the same row as before)."""


class RankingPane(Vertical):
    """A titled table plus the list of hits the other side has and this side lost."""

    ranking: var[RankingView | None] = var(None, init=False, always_update=True)
    """The side shown; set for every comparison, even an equal one (it places the cursor)."""

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = title

    def compose(self) -> ComposeResult:
        yield RankingTable()
        yield HitList(classes="dropped")

    @property
    def table(self) -> RankingTable:
        return self.query_one(RankingTable)

    def clear(self, title: str) -> None:
        """No results to show under `title` (the index they came from is gone: another model's
        is on its way)."""
        self.border_title = title
        self.table.ranked = RankedRows()
        self.query_one(HitList).lost = LostHits()

    def watch_ranking(self, view: RankingView | None) -> None:
        if view is None:
            return
        self.border_title = view.title
        self.table.ranked = RankedRows(view.hits, view.moves, view.absent, view.cursor)
        items = [
            fit_path(h.chunk.path, f":{h.chunk.start_line}", LIST_ITEM_WIDTH) for h in view.lost
        ]
        self.query_one(HitList).lost = LostHits(view.lost_label, tuple(items))
