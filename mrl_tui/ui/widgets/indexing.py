"""Loading and indexing progress: what is happening, how far along, and how to stop it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import var
from textual.widgets import ProgressBar, Static

from mrl_tui.ui.literal import shown

if TYPE_CHECKING:
    from mrl_tui.core.cache.indexer import IndexProgress


def eta_text(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def progress_lines(p: IndexProgress) -> Text:
    """Files, chunks, chunks/s, ETA and the current file, from the progress snapshot alone."""
    text = Text()
    text.append(f"files  {p.files_done}/{p.files_total}    ")
    text.append(f"chunks {p.chunks_done}/{p.chunks_total}")
    if p.phase == "embedding" and p.elapsed_s > 0 and p.chunks_done > 0:
        rate = p.chunks_done / p.elapsed_s
        left = (p.chunks_total - p.chunks_done) / rate
        text.append(f"    {rate:.1f} chunks/s    ETA {eta_text(left)}")
    if p.current:
        text.append(f"\n{shown(p.current)}", style="dim")
    return text


class IndexingPanel(Vertical):
    """Shown instead of the results until the index is ready; with the class ``-behind``, a
    status and a bar above the results while the folder is indexed again (Ctrl+R).

    The app sets `status` and `progress`; the watchers show them."""

    status: var[str] = var("starting…", init=False)
    """What is happening now, in a few words."""
    progress: var[IndexProgress | None] = var(None, init=False, always_update=True)
    """The last progress snapshot (None before the first)."""

    @property
    def last_progress(self) -> IndexProgress | None:
        return self.progress

    def compose(self) -> ComposeResult:
        yield Static(self.status, id="indexing-status")
        yield ProgressBar(show_eta=False, id="indexing-bar")
        yield Static("", id="indexing-detail")
        yield Static(
            "Esc stops indexing and searches what is already indexed · "
            "F3 lists skipped files · you can type a query now",
            id="indexing-hint",
        )

    def on_mount(self) -> None:
        self.border_title = "index"

    def watch_status(self, status: str) -> None:
        self.query_one("#indexing-status", Static).update(Text(status))

    def watch_progress(self, p: IndexProgress | None) -> None:
        if p is None:
            return
        bar = self.query_one(ProgressBar)
        if p.phase == "embedding":
            self.status = "embedding chunks"
            bar.update(total=p.chunks_total or None, progress=p.chunks_done)
        elif p.phase == "reading":
            self.status = "reading changed files"
            bar.update(total=p.files_total or None, progress=p.files_done)
        elif p.phase == "scanning":
            self.status = "looking for changed files"
        elif p.phase == "waiting":  # another process holds this folder's writer lock
            self.status = p.current
        self.query_one("#indexing-detail", Static).update(progress_lines(p))

    def set_status(self, status: str) -> None:
        self.status = status

    def show_progress(self, p: IndexProgress) -> None:
        self.progress = p
