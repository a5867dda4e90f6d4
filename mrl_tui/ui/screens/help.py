"""F1 / ?: every key in one place, listed from the bindings themselves so it cannot drift.

A binding is listed when it has a tooltip (its help text); bindings sharing a tooltip share a row
("↑ / ↓"). The owners are the app, the search screen and its widgets, in the order given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.keys import format_key
from textual.screen import ModalScreen
from textual.widgets import Static

NOT_KEYS: list[tuple[str, str]] = [
    ("type", "search once typing pauses (3+ characters; works while the model loads)"),
    ("Enter", "search now, and go to the slider"),
    ("mouse", "click or drag the slider; click a row"),
]
"""What no binding of ours says: the query box's own behaviour and the mouse."""
NOTE = "Letter keys work outside the query box: Enter or Tab leaves it, / comes back."

NAMES = {"escape": "Esc", "enter": "Enter", "tab": "Tab", "up": "↑", "down": "↓"}
NAMES |= {"left": "←", "right": "→", "pageup": "PgUp", "pagedown": "PgDn"}


def key_name(key: str) -> str:
    """``ctrl+r`` → ``Ctrl+R``, ``question_mark`` → ``?``, ``shift+left`` → ``Shift+←``."""
    *modifiers, base = key.split("+")
    name = NAMES.get(base) or format_key(base)
    if base not in NAMES and (modifiers or len(name) > 1):
        name = name.upper() if len(name) == 1 or name[1:].isdigit() else name.capitalize()
    return "+".join([*(m.capitalize() for m in modifiers), name])


def key_rows(owners: Iterable[list[BindingType]]) -> list[tuple[str, str]]:
    """(keys, help) for every binding with a tooltip, in order; one row per tooltip."""
    rows: dict[str, list[str]] = {}
    for bindings in owners:
        for binding in Binding.make_bindings(bindings):
            if binding.tooltip:
                keys = rows.setdefault(binding.tooltip, [])
                if key_name(binding.key) not in keys:
                    keys.append(key_name(binding.key))
    return [(" / ".join(keys), tooltip) for tooltip, keys in rows.items()]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,f1,question_mark", "app.pop_screen", "close", show=True),
    ]

    def __init__(self, owners: Iterable[list[BindingType]]) -> None:
        """`owners`: the BINDINGS lists to show, app first."""
        super().__init__()
        self.rows = [*NOT_KEYS, *key_rows(owners)]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(ratio=1)
        for key, what in self.rows:
            table.add_row(key, what)
        with VerticalScroll(id="help-box") as box:
            box.border_title = "mrl-tui keys"
            box.border_subtitle = "Esc closes"
            yield Static(NOTE, classes="note")
            yield Static(table)
