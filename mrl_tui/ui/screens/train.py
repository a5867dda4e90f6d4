"""The palette's "Train a Matryoshka model on this folder": `core.training.train` in a thread
worker, its progress (step, loss, steps/s, ETA) on a modal screen, Esc to stop.

Stopping keeps the best checkpoint so far, marked partial, as the CLI's Ctrl-C does. When a model
is ready (trained now, or already up to date for the folder), Enter dismisses the screen with its
path and the app switches the search to it; Esc closes and keeps the current model.

Nothing heavy at import: the training stack is imported in the worker thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, ProgressBar, Static

from mrl_tui.core.errors import MrlError
from mrl_tui.ui.literal import shown
from mrl_tui.ui.widgets.indexing import eta_text

if TYPE_CHECKING:
    from mrl_tui.core.training.train import TrainProgress, TrainResult, TrainSettings

PHASES = {
    "restarting": "restarting…",
    "loading": "loading the base model…",
    "pairs": "cutting training pairs from the folder…",
    "validating": "validating on held-out pseudo-queries…",
    "training": "training",
    "saving": "saving the best checkpoint…",
}
DONE_HINT = "Enter searches with it (it builds its own index) · Esc closes"
RUNNING_HINT = "Esc stops after this step and keeps the best checkpoint so far (marked partial)"


@dataclass
class Rate:
    """Steps per second since the first training step seen (the first step includes warm-up)."""

    first: tuple[int, float] | None = None
    per_s: float | None = None

    def update(self, step: int, now: float | None = None) -> float | None:
        now = time.perf_counter() if now is None else now
        if self.first is None:
            self.first = (step, now)
        step0, t0 = self.first
        if step > step0 and now > t0:
            self.per_s = (step - step0) / (now - t0)
        return self.per_s


def progress_line(p: TrainProgress, per_s: float | None) -> str:
    """``step 12/100 · loss 0.834 · 1.52 steps/s · ETA 0:58 · val 0.612``: what is known."""
    parts = []
    if p.total:
        parts.append(f"step {p.step}/{p.total}")
    elif p.step:
        parts.append(f"step {p.step}")
    if p.loss is not None:
        parts.append(f"loss {p.loss:.3f}")
    if per_s:
        parts.append(f"{per_s:.2f} steps/s")
        if p.total:
            parts.append(f"ETA {eta_text((p.total - p.step) / per_s)}")
    if p.best is not None:
        parts.append(f"val {p.best:.3f}")
    return " · ".join(parts)


def outcome_lines(result: TrainResult) -> tuple[str, bool]:
    """What a finished run says, and whether there is a model to switch to."""
    record = result.provenance
    if result.up_to_date:
        return (
            f"Up to date: a model was trained on this folder at {record['date']} "
            f"({record['steps']} steps) and the folder has not changed since.",
            True,
        )
    if result.model_path is None:
        kept = " The last run's partial model is kept." if "restarted_after" in record else ""
        return f"Stopped before the first validation: nothing was saved.{kept}", False
    validation = record["validation"]
    base, best = validation["base"]["mean_ndcg10"], validation["best"]["mean_ndcg10"]
    dims = "/".join(str(d) for d in record["dims"])
    partial = ""
    if record["partial"]:
        partial = " Stopped early: kept its best checkpoint, marked partial."
    if "restarted_after" in record:
        partial += " It replaces the last run's partial model."
    return (
        f"Trained {record['steps_run']} steps on {record['pairs']['train']} pairs in "
        f"{record['seconds']:.0f} s; best at step {record['steps']}.{partial}\n"
        f"Held-out pseudo-queries, mean nDCG@10 over {dims}: base {base:.3f} → {best:.3f}",
        True,
    )


@dataclass
class TrainJob:
    """What the screen runs: the folder, the base model and the app's loading options."""

    source: Path
    model: str | None = None
    device: str = "auto"
    cache_root: Path | None = None
    trust_remote_code: bool = False
    settings: TrainSettings | None = None
    stop: threading.Event = field(default_factory=threading.Event)


class TrainScreen(ModalScreen[str | None]):
    """Dismissed with the path of the model to search with, or None to keep the current one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop_or_close", "stop / close", tooltip="stop training, or close"),
        Binding("enter", "use_model", "search with it", tooltip="search with the trained model"),
    ]

    class Progressed(Message):
        def __init__(self, progress: TrainProgress) -> None:
            super().__init__()
            self.progress = progress

    class Finished(Message):
        def __init__(self, result: TrainResult) -> None:
            super().__init__()
            self.result = result

    class Failed(Message):
        def __init__(self, line: str) -> None:
            super().__init__()
            self.line = line

    def __init__(self, job: TrainJob) -> None:
        super().__init__()
        self.job = job
        self.rate = Rate()
        self.running = True
        self.model_path: Path | None = None
        self.last_progress: TrainProgress | None = None
        self.result: TrainResult | None = None

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
        self._train()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "use_model":
            return self.model_path is not None
        return True

    @work(thread=True, exclusive=True, group="train")
    def _train(self) -> None:
        job = self.job
        try:
            from mrl_tui.core.training.train import train

            result = train(
                job.source,
                model=job.model,
                device=job.device,
                settings=job.settings,
                cache_root=job.cache_root,
                trust_remote_code=job.trust_remote_code,
                on_progress=lambda p: self.post_message(self.Progressed(p)),
                should_stop=job.stop.is_set,
            )
        except MrlError as exc:
            self.post_message(self.Failed(str(exc)))
        except Exception as exc:  # one readable line, never a traceback
            self.post_message(self.Failed(f"training failed: {type(exc).__name__}: {exc}"))
        else:
            self.post_message(self.Finished(result))

    # -- messages from the worker --------------------------------------------------------------

    def on_train_screen_progressed(self, message: Progressed) -> None:
        p = message.progress
        self.last_progress = p
        if p.note:  # why this run starts again (the last one was stopped early)
            self._set(
                "#train-source",
                f"{self.job.source}\n{p.note[:1].upper()}{p.note[1:]}.",
                style="dim",
            )
        if p.phase == "training" and p.step:
            self.rate.update(p.step)
        status = PHASES.get(p.phase, p.phase)
        if p.phase == "validating" and not p.step:
            status = "measuring the base model on held-out pseudo-queries…"
        if self.job.stop.is_set():
            status = "stopping after this step…"
        self._set("#train-status", status)
        bar = self.query_one(ProgressBar)
        if p.total:
            bar.update(total=p.total, progress=p.step)
        self._set("#train-detail", progress_line(p, self.rate.per_s))

    def on_train_screen_finished(self, message: Finished) -> None:
        self.running = False
        self.result = message.result
        line, usable = outcome_lines(message.result)
        self.model_path = message.result.model_path if usable else None
        self._set("#train-status", "done" if usable else "stopped")
        self._set("#train-detail", line)
        if self.model_path is not None:
            self._set("#train-source", f"model: {self.model_path}", style="dim")
            self._set("#train-hint", DONE_HINT)
        else:
            self._set("#train-hint", "Esc closes")
        bar = self.query_one(ProgressBar)
        if bar.total is None:
            bar.update(total=1, progress=1 if usable else 0)
        self.refresh_bindings()

    def on_train_screen_failed(self, message: Failed) -> None:
        self.running = False
        self._set("#train-status", "training failed")
        self._set("#train-detail", message.line, style="bold red")
        self._set("#train-hint", "Esc closes")
        self.refresh_bindings()

    def _set(self, selector: str, text: str, style: str = "") -> None:
        self.query_one(selector, Static).update(Text(shown(text), style=style))

    # -- keys ----------------------------------------------------------------------------------

    def action_stop_or_close(self) -> None:
        if not self.running:
            self.dismiss(None)
            return
        if not self.job.stop.is_set():
            self.job.stop.set()
            self._set("#train-status", "stopping after this step…")
            validated = self.last_progress is not None and self.last_progress.best is not None
            self._set(
                "#train-hint",
                "the best checkpoint so far is kept, marked partial"
                if validated
                else "no checkpoint has been validated yet: nothing will be saved",
            )

    def action_use_model(self) -> None:
        if self.model_path is not None:
            self.dismiss(str(self.model_path))

    def on_unmount(self) -> None:
        self.job.stop.set()  # the app is closing: a worker still running stops at its next step
