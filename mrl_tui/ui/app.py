"""The mrl-tui app: opens the library in a worker while the first frame is already on screen.

Nothing heavy is imported at module level; `mrl_tui.core.library` (and with it numpy, torch and
sentence-transformers) is imported inside the worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen

from mrl_tui.core.embedding.choice import ModelChoice
from mrl_tui.core.errors import MrlError
from mrl_tui.ui.fit_status import fit_line
from mrl_tui.ui.literal import shown
from mrl_tui.ui.screens.search import SearchScreen
from mrl_tui.ui.state import FolderView, Remembered
from mrl_tui.ui.training import TrainingEnded, TrainingProgressed, TrainingRun
from mrl_tui.ui.widgets.jobs import JobsLine

if TYPE_CHECKING:
    from mrl_tui.core.cache.indexer import IndexProgress, IndexReport
    from mrl_tui.core.embedding.embed import EmbedderInfo
    from mrl_tui.core.library import Library
    from mrl_tui.core.training.train import TrainSettings

HERE = Path(__file__).parent
HELP_HELP = "this help (? outside the query box)"


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class DaemonExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each thread worker on a daemon thread of its own.

    Why: Textual runs thread workers on the event loop's default executor, whose threads Python
    waits for on the way out, so Ctrl+Q waited for the batch being embedded (seconds on a CPU).
    Quitting tells the indexing worker to stop (`MrlApp._stop`); what it committed is kept, and
    the index store survives an interrupted batch as it survives a killed process."""

    def __init__(self) -> None:
        super().__init__()  # asyncio takes no other kind of default executor; its pool is unused
        self.threads: set[threading.Thread] = set()

    @property
    def busy(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                with contextlib.suppress(RuntimeError):  # the app's loop is already closed
                    future.set_exception(exc)
            else:
                with contextlib.suppress(RuntimeError):
                    future.set_result(result)

        thread = threading.Thread(target=run, daemon=True)
        self.threads = {t for t in self.threads if t.is_alive()} | {thread}
        thread.start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to wait for: the threads are daemons, and the app has told its work to stop."""


def header_line(info: EmbedderInfo, transform: str, engine: str | None = None) -> str:
    """The header's model line: model · device (and the embedding backend where it is not torch,
    whose vectors differ a little: int8 ones rank a little differently) · transform · engine.
    The model by its last name only (`info` has the whole): at 80 columns the rest must fit. A
    model mrl-tui trained is named by its base ("trained all-MiniLM-L6-v2"): its folder's name
    carries a key and a date that would crowd out the rest."""
    from mrl_tui.core.training.trained import read_provenance  # numpy: not at import time

    device = info.device if info.backend == "torch" else f"{info.device} {info.backend}"
    name = PurePath(info.model).name or info.model
    record = read_provenance(info.model) if PurePath(info.model).is_absolute() else None
    if record is not None:
        base = str(record.get("base_model") or "")
        name = f"trained {PurePath(base).name}" if base else "trained here"
    parts = [name, device, transform, *([engine] if engine else [])]
    return " · ".join(parts)


HEADER_FRAME = 18
"""Columns of Textual's header around its title: the icon (8) and the clock's space (10)."""


def fit_header(folder: str, model_line: str, count: str, size: str, width: int) -> tuple[str, str]:
    """The header's title and sub-title on a screen `width` columns wide: all of it where it
    fits; else the index's size goes first (the storage panel has it), then the app's name, so
    the folder, the model line and the chunk count stay whole at 80 columns; a model line too
    long for that (a trained model's) drops the count rather than be cut. Before the index is
    counted, `count` and `size` are "" and only the model line is placed."""
    room = width - HEADER_FRAME - len(" — ")
    named = f"mrl-tui · {folder}"
    counted = f"{model_line} · {count}" if count else model_line
    whole = f"{counted}, {size}" if count and size else counted
    choices = [(named, whole), (named, counted), (folder, counted), (folder, model_line)]
    for title, sub_title in choices:
        if len(title) + len(sub_title) <= room:
            return title, sub_title
    return choices[-1]


class MrlApp(App[int]):
    TITLE = "mrl-tui"
    CSS_PATH: ClassVar[list[str | PurePath]] = [
        HERE / "app.tcss",
        HERE / "screens" / "search.tcss",
        HERE / "screens" / "modals.tcss",
        HERE / "widgets" / "ranking.tcss",
        HERE / "widgets" / "preview.tcss",
        HERE / "widgets" / "panels.tcss",
        HERE / "widgets" / "indexing.tcss",
        HERE / "screens" / "train.tcss",
        HERE / "widgets" / "jobs.tcss",
    ]
    # The tooltips are the help screen's text (F1 lists these bindings).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "help", tooltip=HELP_HELP),
        Binding("question_mark", "help", "help", show=False, tooltip=HELP_HELP),
        Binding(
            "ctrl+r",
            "reindex",
            "reindex",
            show=False,
            tooltip="re-index the folder (only what changed; the results stay searchable)",
        ),
        Binding(
            "ctrl+p",
            "command_palette",
            "palette",
            show=False,
            priority=True,
            tooltip="command palette: reindex, reference, transform, router, live search, "
            "panels, export…",
        ),
        Binding("ctrl+q", "quit", "quit", show=False, priority=True, tooltip="quit"),
    ]

    def __init__(
        self,
        path: Path | str,
        *,
        model: str | None = None,
        device: str = "auto",
        cache_root: Path | None = None,
        trust_remote_code: bool = False,
        transform: str = "auto",
        mrl: bool = False,
        embed_backend: str = "auto",
        library: Library | None = None,
        autostart: bool = True,
        frozen_timings: bool = False,
        auto_router: bool | None = None,
        remember: bool = True,
        watch: bool = True,
        backend: str | None = None,
    ) -> None:
        """`library`: an already open one (tests, embedding); `autostart=False` leaves the app
        idle (screenshots of a given state); `frozen_timings` hides milliseconds (screenshots);
        `auto_router=False` starts in manual mode (the slider's dim, not the router's), True in
        auto, None as the folder was left (auto the first time); `remember=False` neither reads
        nor writes what the app remembers between runs (`mrl_tui.ui.state`); `watch=False` does not
        re-index on file changes (`mrl_tui.core.cache.watch`)."""
        super().__init__()
        self.path = Path(path)
        self.model_choice = ModelChoice(
            model,
            device=device,
            trust_remote_code=trust_remote_code,
            mrl=mrl,
            embed_backend=embed_backend,
        )
        """The model searched with, and how it runs (`switch_model` changes the model)."""
        self.cache_root = cache_root
        self.transform = transform
        self.backend = backend  # `--backend`: a vector engine searched instead of the local index
        self.library = library
        self.autostart = autostart
        self.frozen_timings = frozen_timings
        self.folder_key = Path(path).expanduser().resolve()
        self.remembered: Remembered | None = None
        self.folder_view = FolderView()
        if remember:
            self.remembered = Remembered.load()
            self.folder_view = self.remembered.folder(self.folder_key)
        if auto_router is None:
            auto_router = self.folder_view.auto_router is not False
        self.folder_view.auto_router = auto_router
        self.auto_router = auto_router
        self.skipped: list[tuple[str, str]] | None = None
        self.report: IndexReport | None = None
        self.failed = False
        self._stop = threading.Event()
        self.executor = DaemonExecutor()
        self.watch = watch
        self.watcher: Any = None  # a `FolderWatcher` once the first index is ready
        self._watching = False
        self._fit_seq = 0  # the newest read of the fit status; older ones are dropped
        self.train_settings: TrainSettings | None = None
        """What the palette's training runs with (None: `train`'s defaults, as the CLI's)."""
        self.training: TrainingRun | None = None
        """The palette's training run, running or ended (its modal may be hidden)."""
        self.base_library: Library | None = None
        """The base model's index of the folder, while a model trained from it is searched (the
        reference side's `b`)."""
        self._base_stop = threading.Event()
        self.folder_name = shown(self.path.name or str(self.path))
        self.title = f"mrl-tui · {self.folder_name}"
        self._counted: tuple[str, str, str] | None = None
        """The header's model line, chunk count and size once an index is counted (`fit_header`
        lays them out for the width)."""

    def get_default_screen(self) -> Screen[Any]:
        screen = SearchScreen(frozen_timings=self.frozen_timings, auto_router=self.auto_router)
        screen.restore_view(self.folder_view)
        return screen

    @property
    def search_screen(self) -> SearchScreen:
        screen = self.screen_stack[0]  # the default screen, under any modal
        assert isinstance(screen, SearchScreen)
        return screen

    @property
    def model(self) -> str | None:
        """The model searched with (None: the bundled one)."""
        return self.model_choice.model

    def on_load(self) -> None:
        asyncio.get_running_loop().set_default_executor(self.executor)

    def on_mount(self) -> None:
        if self.remembered is not None and self.remembered.theme in self.available_themes:
            self.theme = self.remembered.theme
        self.sub_title = f"loading {self.model or 'the bundled model'}…"
        if self.autostart:
            self.call_after_refresh(self.start_indexing)  # once the screen is composed

    # -- the library lifecycle (one worker at a time) ------------------------------------------

    def start_indexing(self) -> None:
        self._stop.clear()
        self.search_screen.indexing_started()
        self._open_and_index()

    # What the workers report: posted from their threads, handled here on the UI thread, which
    # hands it down to the screen.
    @dataclass
    class Status(Message):
        text: str  # what the indexing is doing now

    @dataclass
    class Progress(Message):
        progress: IndexProgress

    @dataclass
    class Notes(Message):
        lines: list[str]  # the library's one-line messages
        severity: SeverityLevel = "information"
        timeout: float | None = 10  # None: the app's default

    @dataclass
    class ModelLoaded(Message):
        library: Library

    @dataclass
    class Failed(Message):
        text: str

    @dataclass
    class Indexed(Message):
        library: Library
        report: IndexReport

    @dataclass
    class FolderChanged(Message):
        update: Any  # a `watch.WatchUpdate`

    @dataclass
    class Refitted(Message):
        """A background refit or graph build ended (`Library.on_refit`): its line."""

        line: str

    @dataclass
    class FitRead(Message):
        """`Library.fit_status()`, read in a worker (it waits for the library's lock)."""

        seq: int
        status: dict[str, Any]

    def _post(self, message: Message) -> None:
        """Post from a worker thread; quietly dropped once the app's loop is gone."""
        with contextlib.suppress(RuntimeError):
            self.post_message(message)

    @work(thread=True, exclusive=True, group="library")
    def _open_and_index(self) -> None:
        try:
            from mrl_tui.core.library import Library

            library = self.library
            if library is None:
                self._post(self.Status("loading the model…"))
                library = Library.open(
                    self.path,
                    model_choice=self.model_choice,
                    cache_root=self.cache_root,
                    transform=self.transform,
                    on_status=lambda line: self._post(self.Status(f"{line}…")),
                )
                if self.backend:
                    try:
                        library.use_engine(self.backend)
                    except MrlError:
                        library.close()
                        raise
                self.library = library
            self._post(self.ModelLoaded(library))
            self._post(self.Status("looking for changed files…"))

            def progress(p: IndexProgress) -> None:
                self._post(self.Progress(dataclasses.replace(p)))

            report = library.update(on_progress=progress, should_stop=self._stop.is_set)
            self._post(self.Status("loading the index…"))
            if report.chunks_total:
                library.load(
                    on_graph_progress=self._graph_status(
                        "building the search graphs", percent=True
                    ),
                    on_tune_progress=self._graph_status("measuring graph search settings"),
                )
        except MrlError as exc:
            self._tell_messages()
            self._post(self.Failed(str(exc)))
            return
        except Exception as exc:  # the user gets one readable line, never a traceback
            self._post(self.Failed(f"unexpected error: {type(exc).__name__}: {exc}"))
            return
        self._tell_messages()
        self._post(self.Indexed(library, report))

    def _graph_status(self, what: str, percent: bool = False) -> Callable[[int, int], None]:
        """A `Library.load` progress callback that shows ``what`` and how far on the status
        line: a large folder's first load builds and tunes its HNSW graphs (minutes on a CPU).
        A build counts rows over all its tiers (3 × the chunks), so it is shown as a percentage,
        not as a count that reads like chunks."""

        def show(done: int, total: int) -> None:
            if percent:
                far = f"{100 * done // total} %" if total else "0 %"
            else:
                far = f"{done:,}/{total:,}"
            self._post(self.Status(f"{what}… {far}"))

        return show

    def _tell_messages(self) -> None:
        """The library's one-line messages (a rebuilt cache, a wait, a file not saved)."""
        if self.library is not None and (lines := self.library.take_messages()):
            self._post(self.Notes(lines))

    def on_mrl_app_status(self, message: Status) -> None:
        self.search_screen.indexing_panel.status = message.text

    def on_mrl_app_progress(self, message: Progress) -> None:
        self.search_screen.indexing_panel.progress = message.progress

    def on_mrl_app_notes(self, message: Notes) -> None:
        for line in message.lines:
            self.notify(line, severity=message.severity, markup=False, timeout=message.timeout)

    def on_mrl_app_model_loaded(self, message: ModelLoaded) -> None:
        self._describe(message.library)

    def on_mrl_app_failed(self, message: Failed) -> None:
        self._failed(message.text)

    async def on_mrl_app_indexed(self, message: Indexed) -> None:
        await self._indexed(message.library, message.report)

    def _describe(self, library: Library) -> None:
        engine = library.engine.engine.engine if library.engine is not None else None
        line = header_line(library.embedder.info, library.transform_name, engine)
        self._counted = (line, "", "")  # not counted yet: the model line alone, fitted
        self._lay_out_header()
        self.search_screen.model_ready(library.full_dim)

    def _count_chunks(self, library: Library, chunks: int) -> None:
        """The header: the model, then how many chunks the index holds and their size."""
        self._describe(library)
        full_bytes = chunks * library.full_dim * 4
        size = f"{human_size(full_bytes)} at full dim"
        assert self._counted is not None
        self._counted = (self._counted[0], f"{chunks:,} chunks", size)
        self._lay_out_header()

    def _lay_out_header(self, width: int | None = None) -> None:
        if self._counted is not None:
            self.title, self.sub_title = fit_header(
                self.folder_name, *self._counted, width or self.size.width
            )

    def on_resize(self, event: events.Resize) -> None:
        self._lay_out_header(event.size.width)  # runs before `App` takes the new size

    def _failed(self, message: str) -> None:
        if self.search_screen.ready and self.search_screen.library is not None:
            # A re-index behind the results failed (the folder gone, the disk full): the index
            # in memory still answers, so it stays, and the line says why nothing was updated.
            self.search_screen.reindex_failed(message)
            return
        self.failed = True
        self._counted = None
        self.title, self.sub_title = f"mrl-tui · {self.folder_name}", "error"
        self.search_screen.library_failed(message)

    async def _indexed(self, library: Library, report: IndexReport) -> None:
        self.report = report
        self.skipped = [(s.path, s.reason) for s in report.skipped]
        self._describe(library)
        if report.chunks_total == 0:
            self.search_screen.library_failed(
                "Nothing is indexed yet (cancelled, or no readable files). Ctrl+R indexes again; "
                "F3 lists skipped files."
            )
            return
        self._count_chunks(library, report.chunks_total)
        note = ""
        if report.cancelled:
            note = "Indexing stopped: searching what was indexed so far. Ctrl+R resumes."
        await self.search_screen.library_ready(library, note)
        if self.watch and not self._watching:
            self._watching = True
            # A save is searchable at once: a stale fit is refitted, a large folder's graph
            # rebuilt, in a thread of the library's, and the status line says which is in use.
            library.background_refit = True
            library.on_refit = lambda line: self._post(self.Refitted(line))
            self._watch_folder(library)
        if self._watching:
            self._read_fit(library)

    def _read_fit(self, library: Library) -> None:
        """Show which fit `library` uses, as soon as a worker has read it."""
        self._fit_seq += 1
        self._fit_worker(library, self._fit_seq)

    @work(thread=True, group="fit")
    def _fit_worker(self, library: Library, seq: int) -> None:
        self._post(self.FitRead(seq, library.fit_status()))

    def on_mrl_app_fit_read(self, message: FitRead) -> None:
        # read in a thread: the answer can arrive after the app began to exit, its screens gone
        if message.seq == self._fit_seq and self.library is not None and self.screen_stack:
            self.search_screen.fit = fit_line(message.status)

    def on_mrl_app_refitted(self, message: Refitted) -> None:
        if "failed" in message.line:  # the current fit stays in use: the user should know why
            self.notify(message.line, severity="warning", markup=False, timeout=10)
        if self.library is not None:
            self._read_fit(self.library)

    @work(thread=True, group="watch")
    def _watch_folder(self, library: Library) -> None:
        """Re-index on file changes until the app ends, in this thread: the UI never waits."""
        from mrl_tui.core.cache.watch import FolderWatcher

        def failed(line: str) -> None:
            self._post(self.Notes([line], "error", None))

        self.watcher = FolderWatcher(
            library, lambda update: self._post(self.FolderChanged(update)), on_error=failed
        )
        if self._stop.is_set():
            return
        try:
            self.watcher.run()
        except Exception as exc:  # watching ends, with one line; the index stays searchable
            failed(f"watching the folder stopped: {type(exc).__name__}: {exc}")

    def on_mrl_app_folder_changed(self, message: FolderChanged) -> None:
        """Files changed and were re-indexed: say so, and search the shown query again."""
        update = message.update
        self._tell_messages()
        self.search_screen.refresh_query(f"Watching: {update.line}")
        if self.library is not None:
            self._count_chunks(self.library, update.chunks)
            self._read_fit(self.library)

    def on_search_screen_cancel_indexing(self, _: SearchScreen.CancelIndexing) -> None:
        self._stop.set()
        self.search_screen.indexing_panel.status = "stopping after the current batch…"

    def action_reindex(self) -> None:
        if self.search_screen.indexing:
            self.notify("Already indexing.")
            return
        self.start_indexing()

    # -- help and the command palette ----------------------------------------------------------

    def action_help(self) -> None:
        from mrl_tui.ui.screens.help import HelpScreen
        from mrl_tui.ui.widgets.dim_slider import DimSlider
        from mrl_tui.ui.widgets.query_input import QueryInput
        from mrl_tui.ui.widgets.ranking import RankingTable

        if not isinstance(self.screen, HelpScreen):
            owners = [self.BINDINGS, SearchScreen.BINDINGS, DimSlider.BINDINGS]
            self.push_screen(HelpScreen([*owners, QueryInput.BINDINGS, RankingTable.BINDINGS]))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        search = self.search_screen
        yield SystemCommand("Reindex", "Index what changed in the folder", self.action_reindex)
        yield SystemCommand(
            "Switch reference",
            "Compare against the next power-of-two dimension",
            search.action_cycle_reference,
        )
        yield SystemCommand(
            "Other transform",
            "Reference side: the chosen dim under naive truncation, PCA, …",
            search.action_cycle_transform,
        )
        yield SystemCommand(
            "Router auto/manual",
            "Auto: the router picks each query's dim; manual: the slider's",
            search.action_toggle_router,
        )
        yield SystemCommand(
            "Retrieval dense/hybrid/lexical",
            "Left side: dense, keywords fused with dense at the dim, or keywords only (h)",
            search.action_cycle_retrieval,
        )
        yield SystemCommand(
            "Reference dense/hybrid",
            "Reference side: keywords fused with dense at its dim (full by default), or dense (H)",
            search.action_toggle_reference_hybrid,
        )
        yield SystemCommand(
            "Live search on/off",
            "Search as you type (after a short pause), or only when Enter is pressed",
            search.action_toggle_live_search,
        )
        yield SystemCommand(
            "Toggle panels",
            "Show or hide the latency and storage panels",
            search.action_toggle_panels,
        )
        yield SystemCommand(
            "Skipped files", "List files left out and why", search.action_show_skipped
        )
        yield SystemCommand(
            "More results",
            "Ten more hits on each side (m; M for fewer)",
            search.action_more_results,
        )
        yield SystemCommand(
            "Export comparison",
            "Save the two rankings, their movements and agreement as JSON (in Downloads)",
            self.action_export_comparison,
        )
        run = self.training
        about = (
            "Fine-tune the base model on this folder's own text (Esc stops, keeping the best; "
            "b runs it in the background)"
        )
        if run is not None and (run.running or not run.seen):
            about = f"Show the training in the background ({run.status()})"
        yield SystemCommand("Train a Matryoshka model on this folder", about, self.action_train)
        if search.trained_base is not None:
            yield SystemCommand(
                "Reference: the base model at this dim",
                "Right side: the model this one was trained from, at the same dim, under PCA, "
                "then naive truncation, then off (b)",
                search.action_cycle_base_reference,
            )
        trained = self._trained_model()
        if trained is not None and trained != self.model:
            yield SystemCommand(
                "Search with the trained model",
                "The Matryoshka model trained on this folder (it builds its own index)",
                self.action_use_trained,
            )
        base = self._base_model()
        if base != self.model:
            yield SystemCommand(
                "Search with the base model",
                f"Back to {base or 'the bundled model'}, the model this one was trained from",
                self.action_use_base,
            )
        yield SystemCommand("Help", "Show all keys", self.action_help)

    # -- training a model on the folder, and switching the search to it ------------------------

    def _trained_model(self) -> str | None:
        """The path of the model trained for this folder, if there is one."""
        from mrl_tui.core.training.trained import trained_for

        model = trained_for(self.folder_key, self.cache_root)
        return None if model is None else str(model.path)

    def _base_model(self) -> str | None:
        """The model a trained one was trained from; else the current model itself."""
        from mrl_tui.core.training.trained import read_provenance

        record = read_provenance(self.model) if self.model else None
        return self.model if record is None else str(record["base_model"])

    def action_train(self) -> None:
        """Show the training run: the one going on in the background, or one that ended
        unseen; else start a new run (the folder unchanged since the last: "up to date")."""
        from mrl_tui.ui.screens.train import TrainJob, TrainScreen

        if any(isinstance(screen, TrainScreen) for screen in self.screen_stack):
            return
        run = self.training
        if run is None or (not run.running and run.seen):
            job = TrainJob(
                self.folder_key,
                model=self._base_model(),
                device=self.model_choice.device,
                cache_root=self.cache_root,
                trust_remote_code=self.model_choice.trust_remote_code,
                settings=self.train_settings,
            )
            run = self.training = TrainingRun(job)
            self._train(run)
        self.push_screen(TrainScreen(run), self._after_training)
        self._show_training()

    @work(thread=True, group="train")
    def _train(self, run: TrainingRun) -> None:
        """The app's, not the modal's: hiding the modal leaves it running."""
        from mrl_tui.ui.training import train_in_thread

        train_in_thread(run, self._post)

    def _train_screen(self) -> Any:
        """The training modal, if it is open (under another modal or not)."""
        from mrl_tui.ui.screens.train import TrainScreen

        shown = [screen for screen in self.screen_stack if isinstance(screen, TrainScreen)]
        return shown[0] if shown else None

    def on_training_progressed(self, message: TrainingProgressed) -> None:
        message.run.progressed(message.progress)
        self._show_training()

    def on_training_ended(self, message: TrainingEnded) -> None:
        run = message.run
        run.ended(message.result, message.error)
        if self._train_screen() is None:  # hidden: say how it ended, and how to use it
            text, error = run.ending_notice()
            self.notify(text, severity="error" if error else "information", timeout=20)
        self._show_training()

    def _show_training(self) -> None:
        """The run in its modal if open, else as a line on the search screen."""
        run, screen = self.training, self._train_screen()
        if run is not None and screen is not None and screen.run is run:
            screen.show_run()
        line = "" if run is None or screen is not None else run.line()
        self.search_screen.query_one(JobsLine).training = line

    async def _after_training(self, model: str | None) -> None:
        self._show_training()  # hidden while it runs: its line takes over
        if model is None:
            return
        if self.search_screen.indexing:
            self.notify(
                "The folder is still being indexed: once it is, palette → Search with the "
                "trained model.",
                timeout=10,
            )
            return
        await self.switch_model(model)

    async def action_use_trained(self) -> None:
        model = self._trained_model()
        if model is None:
            self.notify(
                "No model has been trained for this folder yet: "
                "palette → Train a Matryoshka model on this folder.",
                severity="warning",
            )
            return
        await self.switch_model(model)

    async def action_use_base(self) -> None:
        await self.switch_model(self._base_model())

    async def switch_model(self, model: str | None) -> None:
        """Search with `model` (None: the bundled one): its own library and index, built like
        the first; the query shown runs again once it is ready."""
        if model == self.model and self.library is not None:
            self.notify("Already searching with that model.")
            return
        if self.search_screen.indexing:
            self.notify("Indexing is running: wait for it, or stop it with Esc, then switch.")
            return
        if self.watcher is not None:  # it watches the old library; a new one starts when ready
            self.watcher.stop.set()
            self.watcher = None
        self._watching = False
        if self.training is not None and not self.training.running:
            self.training.seen = True  # its "ready" line has done its work
            self._show_training()
        self._fit_seq += 1  # a read of the old library's fit still in flight is dropped
        self.search_screen.fit = ""
        old = self.library
        self.model_choice = dataclasses.replace(self.model_choice, model=model)
        self.library = None  # the old one is dropped; a query worker may still be reading it
        self._keep_base(old, model)
        await self.search_screen.model_switching()
        self.start_indexing()

    # -- the base model's index, for the reference side of a trained model (`b`) --------------

    def _keep_base(self, old: Library | None, model: str | None) -> None:
        """Switching models: the library of the model a trained one was trained from is kept
        for the reference side; switching back to that model searches it again (no reload)."""
        from mrl_tui.core.training.train import base_model_id
        from mrl_tui.core.training.trained import read_provenance

        record = read_provenance(model) if model else None
        base = None if record is None else str(record["base_model"])
        kept = None
        for candidate in (old, self.base_library):
            if candidate is None:
                continue
            name = base_model_id(candidate.embedder.name)
            if base is not None and name == base:
                kept = candidate
            elif self.library is None and name == base_model_id(model):
                self.library = candidate  # back to the base model: its index is still loaded
        self.base_library = kept
        self._base_stop.set()  # a base index being built for the old model is not needed now
        self.search_screen.base_ready(kept)

    @dataclass
    class BaseProgress(Message):
        text: str

    @dataclass
    class BaseOpened(Message):
        model: str
        library: Library | None
        error: str = ""

    def on_search_screen_need_base(self, message: SearchScreen.NeedBase) -> None:
        if self.base_library is not None:
            self.search_screen.base_ready(self.base_library)
            return
        if self.search_screen.query_one(JobsLine).base:
            self.notify("The base model's index is being built; it shows when ready.")
            return
        self._base_stop = threading.Event()
        self.search_screen.query_one(JobsLine).base = f"base model {message.model}: loading…"
        self._open_base(message.model, self._base_stop)

    @work(thread=True, group="base")
    def _open_base(self, model: str, stop: threading.Event) -> None:
        """The base model's library of this folder, indexed (once: its cache is kept) and
        loaded, with its progress on the search screen's jobs line."""
        from mrl_tui.ui.widgets.indexing import eta_text

        library = None
        try:
            from mrl_tui.core.library import Library

            library = Library.open(
                self.path,
                model_choice=dataclasses.replace(self.model_choice, model=model),
                cache_root=self.cache_root,
            )

            def progress(p: IndexProgress) -> None:
                text = f"base model's index (for b): {p.phase}"
                if p.chunks_total:
                    text += f" · chunks {p.chunks_done}/{p.chunks_total}"
                if p.phase == "embedding" and p.elapsed_s > 0 and p.chunks_done:
                    rate = p.chunks_done / p.elapsed_s
                    text += f" · ETA {eta_text((p.chunks_total - p.chunks_done) / rate)}"
                self._post(self.BaseProgress(text))

            report = library.update(on_progress=progress, should_stop=stop.is_set)
            if report.cancelled or not report.chunks_total:
                library.close()
                self._post(self.BaseOpened(model, None, "" if stop.is_set() else "nothing indexed"))
                return
            self._post(self.BaseProgress("base model's index (for b): loading…"))
            library.load()
        except Exception as exc:  # one readable line, never a traceback
            if library is not None:
                library.close()
            line = str(exc) if isinstance(exc, MrlError) else f"{type(exc).__name__}: {exc}"
            self._post(self.BaseOpened(model, None, line))
            return
        self._post(self.BaseOpened(model, library))

    def on_mrl_app_base_progress(self, message: BaseProgress) -> None:
        self.search_screen.query_one(JobsLine).base = message.text

    def on_mrl_app_base_opened(self, message: BaseOpened) -> None:
        self.search_screen.query_one(JobsLine).base = ""
        search = self.search_screen
        if message.library is None:
            if message.error:
                self.notify(
                    f"The base model's index could not be opened: {message.error}",
                    severity="error",
                    markup=False,
                )
            search.base_ready(self.base_library)  # a `b` waiting for it gives up
            return
        if search.trained_base != message.model:  # the search moved to another model meanwhile
            message.library.close()
            return
        for line in message.library.take_messages():
            self.notify(line, markup=False, timeout=10)
        self.base_library = message.library
        search.base_ready(message.library)

    def action_export_comparison(self, directory: Path | None = None) -> None:
        """Write the current comparison as JSON to `directory` (default: the user's Downloads
        folder, as Textual's screenshots do); never into the folder being searched."""
        import json
        import time

        from mrl_tui.core.search.side_by_side import comparison_record

        search = self.search_screen
        if search.state is None or search.comparison is None or self.library is None:
            self.notify("Run a query first: there is nothing to export yet.", severity="warning")
            return
        if directory is None:
            import platformdirs

            directory = Path(platformdirs.user_downloads_dir())
        if directory.resolve().is_relative_to(self.library.root):
            directory = self.library.store.directory  # the indexed folder is read-only to us
        record = comparison_record(search.state, search.comparison, self.library.full_dim)
        target = directory / f"mrl-tui-comparison-{time.strftime('%Y%m%d-%H%M%S')}.json"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(record, indent=2), encoding="utf-8")
        except OSError as exc:
            self.notify(f"Could not save the comparison: {exc}", severity="error", markup=False)
            return
        self.notify(shown(f"Saved {target}"), markup=False)

    def on_unmount(self) -> None:
        self._stop.set()  # an indexing thread still running stops at its next batch
        self._base_stop.set()
        if self.training is not None:
            self.training.job.stop.set()  # a training run stops at its next step
        if self.watcher is not None:
            self.watcher.stop.set()


def run_app(
    path: Path,
    *,
    model: str | None,
    device: str,
    cache_root: Path | None,
    trust_remote_code: bool,
    transform: str = "auto",
    mrl: bool = False,
    embed_backend: str = "auto",
    exit_process: bool = False,
    backend: str | None = None,
) -> int:
    """Run the app until the user quits; 1 if the library could not be opened, else 0.

    `exit_process` (the command line): end the process as soon as the terminal is restored.
    Python's own teardown of torch and friends takes most of a second more, for nothing."""
    app = MrlApp(
        path,
        model=model,
        device=device,
        cache_root=cache_root,
        trust_remote_code=trust_remote_code,
        transform=transform,
        mrl=mrl,
        embed_backend=embed_backend,
        backend=backend,
    )
    app.run()
    if app.library is not None and not app.executor.busy:  # else the process ends under it
        app.library.close()
    code = 1 if app.failed else 0
    if exit_process:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
