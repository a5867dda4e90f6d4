"""One training run of the palette's "Train a Matryoshka model on this folder", apart from any
screen: the app owns it (its worker, its state), so the modal that shows it can be hidden while
the user keeps searching, and shown again with the progress so far.

The worker runs `core.training.train` in a thread and posts `TrainingProgressed` / `TrainingEnded`
to the app; the app hands each to the run (`progressed`, `ended`) on the UI thread, and then shows
the run wherever it is shown: the modal (`screens.train.TrainScreen`) if open, else one line on the
search screen (`widgets.jobs.JobsLine`), and a notification when it ends.

Nothing heavy at import: the training stack is imported in the worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

from mrl_tui.core.errors import MrlError
from mrl_tui.ui.widgets.indexing import eta_text

if TYPE_CHECKING:
    from mrl_tui.core.training.train import TrainProgress, TrainResult, TrainSettings

PHASES = {
    "restarting": "restarting…",
    "loading": "loading the base model…",
    "pairs": "cutting training pairs from the folder…",
    "encoding": "encoding the training texts once…",
    "validating": "validating on held-out pseudo-queries…",
    "training": "training",
    "encoder": "training the encoder",
    "saving": "saving the best checkpoint…",
}
DONE_HINT = "Enter searches with it (it builds its own index) · Esc closes"
RUNNING_HINT = (
    "Esc stops after this step and keeps the best checkpoint so far (marked partial) · "
    "b runs it in the background: keep searching"
)
SWITCH_HINT = "palette (Ctrl+P) → Search with the trained model"
COUNTED = ("encoding", "training", "encoder")
"""The phases whose progress counts something (texts, steps): they show a rate and an ETA."""


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
    if p.phase == "encoding":  # counts texts, not steps
        if not p.total:
            return ""
        parts.append(f"text {p.step}/{p.total}")
        if per_s:
            parts += [f"{per_s:.1f} texts/s", f"ETA {eta_text((p.total - p.step) / per_s)}"]
        return " · ".join(parts)
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
    from mrl_tui.core.training.trained import steps_phrase, when_trained  # numpy: not at import

    record = result.provenance
    if result.up_to_date:
        return (
            f"Up to date: a model was trained on this folder at {when_trained(record)} "
            f"({steps_phrase(record)}) and the folder has not changed since.",
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
    """What a run trains: the folder, the base model and the app's loading options."""

    source: Path
    model: str | None = None
    device: str = "auto"
    cache_root: Path | None = None
    trust_remote_code: bool = False
    settings: TrainSettings | None = None
    stop: threading.Event = field(default_factory=threading.Event)


class TrainingProgressed(Message):
    """A progress report of the run's worker (posted to the app)."""

    def __init__(self, run: TrainingRun, progress: TrainProgress) -> None:
        super().__init__()
        self.run = run
        self.progress = progress


class TrainingEnded(Message):
    """The run's worker returned a result, or failed with one line (posted to the app)."""

    def __init__(self, run: TrainingRun, result: TrainResult | None, error: str = "") -> None:
        super().__init__()
        self.run = run
        self.result = result
        self.error = error


@dataclass
class TrainingRun:
    """One run's state, changed only on the UI thread; every screen that shows it reads it."""

    job: TrainJob
    rate: Rate = field(default_factory=Rate)
    rate_phase: str = ""
    """The phase `rate` counts (a new phase starts a new rate)."""
    running: bool = True
    last_progress: TrainProgress | None = None
    result: TrainResult | None = None
    error: str = ""
    seen: bool = False
    """The user has seen how it ended: the modal was open then, or shown again since. An unseen
    ending is what the palette's training action shows (rather than starting another run)."""
    note: str = ""
    """Why this run started again from the base model (the last one was stopped early)."""

    # -- what the worker reports (on the UI thread) ---------------------------------------------

    def progressed(self, p: TrainProgress) -> None:
        self.last_progress = p
        if p.note:
            self.note = f"{p.note[:1].upper()}{p.note[1:]}."
        if p.phase != self.rate_phase:  # each counted phase has its own rate and ETA
            self.rate, self.rate_phase = Rate(), p.phase
        if p.phase in COUNTED and p.step:
            self.rate.update(p.step)

    def ended(self, result: TrainResult | None, error: str = "") -> None:
        self.running = False
        self.result = result
        self.error = error

    # -- what it says ---------------------------------------------------------------------------

    @property
    def outcome(self) -> tuple[str, bool]:
        """(what the ended run says, whether it has a model to switch to)."""
        if self.result is None:
            return self.error, False
        return outcome_lines(self.result)

    @property
    def model_path(self) -> Path | None:
        """The model to search with, once the run ended with one."""
        if self.running or self.result is None or not self.outcome[1]:
            return None
        return self.result.model_path

    @property
    def validated(self) -> bool:
        return self.last_progress is not None and self.last_progress.best is not None

    def status(self) -> str:
        """What it is doing, in a few words."""
        if not self.running:
            if self.result is None:
                return "training failed"
            return "done" if self.outcome[1] else "stopped"
        if self.job.stop.is_set():
            return "stopping after this step…"
        p = self.last_progress
        if p is None:
            return "starting…"
        if p.phase == "validating" and not p.step:
            return "measuring the base model on held-out pseudo-queries…"
        return PHASES.get(p.phase, p.phase)

    def detail(self) -> str:
        """The progress figures while it runs; how it ended, after."""
        if not self.running:
            return self.outcome[0]
        p = self.last_progress
        return "" if p is None else progress_line(p, self.rate.per_s)

    def line(self) -> str:
        """One line for the search screen while the modal is hidden ("" once nothing is left to
        say): the progress, or, after an ending not yet seen, what it made and how to use it."""
        if self.running:
            status, p = self.status(), self.last_progress
            figures = ""
            if p is not None and p.step and not self.job.stop.is_set():  # 80 columns: no steps/s
                figures = progress_line(p, None)
                if self.rate.per_s and p.total:
                    figures += f" · ETA {eta_text((p.total - p.step) / self.rate.per_s)}"
            return f"training: {figures or status} — Ctrl+P → Train…"
        if self.seen:
            return ""
        if self.model_path is not None:
            return "training done: model ready — Ctrl+P → Search with the trained model"
        return f"training {self.status()} — Ctrl+P → Train… says why"

    def ending_notice(self) -> tuple[str, bool]:
        """(the notification for an ending the modal did not show, whether it is an error)."""
        text, usable = self.outcome
        first = text.split("\n")[0]
        if usable:
            return f"Training done. {first} To search with it: {SWITCH_HINT}.", False
        if self.result is None:
            return f"Training failed: {first}", True
        return f"Training stopped. {first}", False


def train_in_thread(run: TrainingRun, post: Callable[[Message], None]) -> None:
    """The worker's body: train, posting progress and the ending (`post`: from a thread)."""
    job = run.job
    try:
        from mrl_tui.core.training.train import train

        result = train(
            job.source,
            model=job.model,
            device=job.device,
            settings=job.settings,
            cache_root=job.cache_root,
            trust_remote_code=job.trust_remote_code,
            on_progress=lambda p: post(TrainingProgressed(run, p)),
            should_stop=job.stop.is_set,
        )
    except MrlError as exc:
        post(TrainingEnded(run, None, str(exc)))
    except Exception as exc:  # one readable line, never a traceback
        post(TrainingEnded(run, None, f"training failed: {type(exc).__name__}: {exc}"))
    else:
        post(TrainingEnded(run, result))
