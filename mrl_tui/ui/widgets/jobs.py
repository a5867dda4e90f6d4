"""One line at the foot of the search screen for work running behind it: a training run whose
modal is hidden, the base model's index being built for the reference side. Hidden when idle.

The app sets `training` and `base`; the watchers show them."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import var
from textual.widgets import Static

from mrl_tui.ui.literal import shown


class JobsLine(Static):
    training: var[str] = var("", init=False)
    """The training run's line (`TrainingRun.line`), or ""."""
    base: var[str] = var("", init=False)
    """The base model's index: loading, indexing, or ""."""

    def on_mount(self) -> None:
        self._show()

    def watch_training(self) -> None:
        self._show()

    def watch_base(self) -> None:
        self._show()

    def _show(self) -> None:
        lines = [line for line in (self.training, self.base) if line]
        self.update(Text(shown("\n".join(lines))))
        self.display = bool(lines)
