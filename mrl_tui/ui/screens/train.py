"""The modal of the palette's "Train a Matryoshka model on this folder": one training run
(`ui.training.TrainingRun`, which the app owns, with its worker) shown as phase, bar, step,
loss, steps/s, ETA and best validation.

Esc stops the run after the current step; it keeps the best checkpoint so far, marked partial,
as the CLI's Ctrl-C does. `b` hides the modal while the run goes on in the background: the search
screen stays usable and shows the progress on one line; the palette's action shows this modal
again. When a model is ready (trained now, or already up to date for the folder), Enter dismisses
the screen with its path and the app switches the search to it; Esc closes and keeps the current
model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, ProgressBar, Static

from mrl_tui.ui.literal import shown
from mrl_tui.ui.training import (
    DONE_HINT,
    RUNNING_HINT,
    Rate,
    TrainingRun,
    TrainJob,
    progress_line,
)
from mrl_tui.ui.widgets.ranking import fit_path

if TYPE_CHECKING:
    from mrl_tui.core.training.train import TrainProgress, TrainResult

__all__ = ["Rate", "TrainJob", "TrainScreen", "progress_line"]


BOX_WIDTH = 90
"""The box's width in `train.tcss` (`#train-box`)."""


def home_short(path: Path | str) -> str:
    """The path with the home folder as "~" (shorter, and how people write it)."""
    text, home = str(path), str(Path.home())
    return "~" + text[len(home) :] if home != "/" and text.startswith(home + "/") else text


class TrainScreen(ModalScreen[str | None]):
    """Dismissed with the path of the model to search with, or None to keep the current one
    (closed, or hidden while the run goes on)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop_or_close", "stop / close", tooltip="stop training, or close"),
        Binding("enter", "use_model", "search with it", tooltip="search with the trained model"),
        Binding(
            "b",
            "background",
            "run in background",
            tooltip="hide this while training goes on: keep searching (the palette shows it again)",
        ),
    ]

    def __init__(self, run: TrainingRun) -> None:
        super().__init__()
        self.run = run
        self._keys = (True, False)  # (running, has a model): what the footer offers

    # What the tests and the app read: the run's state.
    @property
    def job(self) -> TrainJob:
        return self.run.job

    @property
    def running(self) -> bool:
        return self.run.running

    @property
    def result(self) -> TrainResult | None:
        return self.run.result

    @property
    def model_path(self) -> Path | None:
        return self.run.model_path

    @property
    def last_progress(self) -> TrainProgress | None:
        return self.run.last_progress

    def compose(self) -> ComposeResult:
        with Vertical(id="train-box") as box:
            box.border_title = "train a Matryoshka model on this folder"
            yield Static(Text(shown(str(self.job.source)), style="dim"), id="train-source")
            yield Static("starting…", id="train-status")
            yield ProgressBar(show_eta=False, id="train-bar")
            yield Static("", id="train-detail")
            yield Static(RUNNING_HINT, id="train-hint")
        yield Footer()  # this screen's keys, not the search screen's below it

    def on_mount(self) -> None:
        self.show_run()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "use_model":
            return self.model_path is not None
        if action == "background":
            return self.running
        return True

    def show_run(self) -> None:
        """Show the run as it stands (the app calls this after each report of its worker)."""
        run = self.run
        if not self.query("#train-box"):
            return  # not composed yet: `on_mount` shows it
        if not run.running:
            run.seen = True
        source = fit_path(home_short(self.job.source), "", self._line_width())
        if run.model_path is not None:
            model = home_short(run.model_path)
            source = f"model: {fit_path(model, '', self._line_width() - len('model: '))}"
        elif run.note:
            source = f"{source}\n{run.note}"
        self._set("#train-source", source, style="dim")
        self._set("#train-status", run.status())
        failed = not run.running and run.result is None
        self._set("#train-detail", run.detail(), style="bold red" if failed else "")
        if run.running:
            hint = RUNNING_HINT
            if self.job.stop.is_set():
                hint = (
                    "the best checkpoint so far is kept, marked partial"
                    if run.validated
                    else "no checkpoint has been validated yet: nothing will be saved"
                )
        else:
            hint = DONE_HINT if run.model_path is not None else "Esc closes"
        self._set("#train-hint", hint)
        bar = self.query_one(ProgressBar)
        p = run.last_progress
        if p is not None and p.total:
            bar.update(total=p.total, progress=p.step)
        if not run.running and bar.total is None:
            bar.update(total=1, progress=1 if run.model_path is not None else 0)
        keys = (run.running, run.model_path is not None)
        if keys != self._keys:  # the footer is rebuilt only when its keys change
            self._keys = keys
            self.refresh_bindings()

    def _line_width(self) -> int:
        """Columns inside the box (`train.tcss`: 90 wide, at most 95 % of the screen, a border
        and a column of padding each side), so a path is cut on purpose rather than wrapped."""
        return max(10, min(BOX_WIDTH, self.size.width * 95 // 100) - 4)

    def on_resize(self) -> None:
        self.show_run()

    def _set(self, selector: str, text: str, style: str = "") -> None:
        self.query_one(selector, Static).update(Text(shown(text), style=style))

    # -- keys ----------------------------------------------------------------------------------

    def action_stop_or_close(self) -> None:
        if not self.running:
            self.dismiss(None)
            return
        if not self.job.stop.is_set():
            self.job.stop.set()
            self.show_run()

    def action_background(self) -> None:
        if self.running:
            self.dismiss(None)

    def action_use_model(self) -> None:
        if self.model_path is not None:
            self.dismiss(str(self.model_path))
