"""The query box, with ↑ / ↓ through earlier queries (newest first), as a shell does."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input

HISTORY_HELP = "query box: earlier / later queries"


class QueryInput(Input):
    BINDINGS: ClassVar[list[BindingType]] = [  # the tooltip is the help screen's text
        Binding("up", "history(1)", "earlier query", show=False, tooltip=HISTORY_HELP),
        Binding("down", "history(-1)", "later query", show=False, tooltip=HISTORY_HELP),
    ]

    def __init__(self, *args: object, history: list[str] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.history: list[str] = history if history is not None else []
        """Earlier queries, newest first (shared with whoever records them)."""
        self._position = -1  # -1: the text being typed; 0: the newest earlier query; …
        self._draft = ""

    def action_history(self, step: int) -> None:
        """Step back (1) or forward (-1); forward past the newest returns to the draft."""
        if self._position == -1:
            self._draft = self.value
        position = max(-1, min(len(self.history) - 1, self._position + step))
        if position == self._position:
            return
        self._position = position
        self.value = self._draft if position == -1 else self.history[position]
        self.cursor_position = len(self.value)

    def restart_history(self) -> None:
        """After a query is run, ↑ starts again from the newest."""
        self._position = -1
