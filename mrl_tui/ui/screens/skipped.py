"""F3 / s: the files indexing left out, and why."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from mrl_tui.ui.literal import shown


class SkippedScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,s,f3", "app.pop_screen", "close", show=True)
    ]

    def __init__(self, skipped: list[tuple[str, str]] | None) -> None:
        super().__init__()
        self.skipped = skipped

    def compose(self) -> ComposeResult:
        lines = Text()
        if self.skipped is None:
            lines.append("Indexing has not finished a scan yet.")
        elif not self.skipped:
            lines.append("No files were skipped.")
        for path, reason in self.skipped or []:
            lines.append(shown(path))
            lines.append(f"  {shown(reason)}\n", style="dim")
        lines.rstrip()
        with VerticalScroll(id="skipped-box") as box:
            count = 0 if not self.skipped else len(self.skipped)
            box.border_title = f"skipped files ({count})"
            box.border_subtitle = "Esc closes"
            yield Static(lines)
