"""The main screen: query, dimension slider, the two rankings side by side, preview and panels.

The app hands this screen a library once it is ready (`library_ready`); until then the user can
type, and the query waits. A query is searched when the user pauses typing (`LIVE_DELAY`) or
presses Enter. Slow work runs in thread workers; each result carries a sequence number and is
dropped if a newer request was made meanwhile.

The screen's state is held in `var`s whose watchers show it; the workers post messages back,
which set that state. What is shown is computed in the core (`core.search.side_by_side`): the
screen only renders it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.keys import format_key
from textual.message import Message
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker
from textual_slider import Slider

from mrl_tui.core.search.compare import ids_of, power_of_two_dims, rank_trail
from mrl_tui.core.search.query_syntax import parse_query
from mrl_tui.core.search.side_by_side import (
    TOP_K,
    TRAIL_K,
    Comparison,
    QueryState,
    compare_at,
    compare_with_base,
    embed_and_rank,
    keyword_matches,
    measure_latency,
)
from mrl_tui.core.transforms.kind import KINDS, kind_for
from mrl_tui.ui.editor import open_hit
from mrl_tui.ui.literal import shown
from mrl_tui.ui.reference import default_reference
from mrl_tui.ui.widgets.dim_slider import DimSlider
from mrl_tui.ui.widgets.indexing import IndexingPanel
from mrl_tui.ui.widgets.jobs import JobsLine
from mrl_tui.ui.widgets.panels import (
    Calibrating,
    Latency,
    LatencyPanel,
    Manual,
    Routed,
    RouterPanel,
    SearchTimes,
    Storage,
    StoragePanel,
    Waiting,
)
from mrl_tui.ui.widgets.preview import Preview, SelectedHit
from mrl_tui.ui.widgets.query_input import QueryInput
from mrl_tui.ui.widgets.ranking import RankingPane, RankingTable, RankingView

if TYPE_CHECKING:
    from mrl_tui.core.library import Hit, Library
    from mrl_tui.core.search.router import Route
    from mrl_tui.ui.state import FolderView, Remembered

DEFAULT_DIM = 64
LIVE_DELAY = 0.25
"""Seconds without a keystroke after which the query box is searched (live search)."""
LIVE_MIN_CHARS = 3
"""Shorter queries wait for Enter: one or two letters match nearly anything."""
FOCUS_HELP = "move between query, slider and tables"
PLACEHOLDERS = {True: "search your folder… (as you type)", False: "search your folder… (Enter)"}
RETRIEVAL_NAMES = {"dense": "at dim {dim}", "hybrid": "hybrid @{dim}", "lexical": "keywords only"}
"""Left-side retrievals in `h` order, as the pane title names them."""
HYBRID_HELP = (
    "h: left side dense → hybrid (keywords fused with dense at the dim) → keywords only; "
    "H: reference side dense ↔ hybrid"
)
"""One help row for both keys (the help screen joins bindings that share a tooltip)."""
MORE_STEP, MAX_K = 10, 100
"""`m` shows ten more hits on each side, up to `MAX_K`; `M` ten fewer, down to `TOP_K`."""
COMPACT_FOOTER_BELOW = 90
"""Columns under which the footer drops the padding around its keys: with a trained model and a
comparison shown, every key it shows takes 86 columns padded ("f1 help" was cut at 80), 77 not."""
MORE_HELP = f"ten more / fewer results per side ({TOP_K} to {MAX_K})"
BASE_SIDES: tuple[str | None, ...] = (None, "pca", "naive")
"""`b` order: the base model's index at the same dim under PCA, then naive, then off."""


@dataclass(frozen=True)
class Reference:
    """What the right side shows (`r`, `t`, `f`, `H`, `b`)."""

    dim: int | None = None  # None until the model's full dim is known
    mode: str = "exact"  # or "graph": HNSW candidates reranked (large indexes only)
    transform: str | None = None  # another transform at the chosen dim (`t`)
    retrieval: str = "dense"  # or "hybrid": keywords fused with dense at `dim` (`H`)
    auto: bool = True  # `dim` follows `default_reference` until `r` or `f`
    base: bool = False  # with `transform`: the base model's own index at the chosen dim (`b`)

    @property
    def base_side(self) -> str | None:
        """The base model's transform when the right side is that model (`b`), else None."""
        return self.transform if self.base else None


def typed_actions(bindings: list[BindingType]) -> frozenset[str]:
    """Actions bound only to printable characters: the query box takes those keys first."""
    keys: dict[str, list[str]] = {}
    for binding in Binding.make_bindings(bindings):
        keys.setdefault(binding.action, []).append(binding.key)
    return frozenset(
        action for action, bound in keys.items() if all(len(format_key(key)) == 1 for key in bound)
    )


class SearchScreen(Screen[None]):
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-short"), (30, "-tall")]
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [
        (0, "-narrow"),
        (110, "-wide"),
        (170, "-huge"),
    ]

    # The tooltips are the help screen's text (F1 lists these bindings).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "f2",
            "about",
            "about",
            show=False,
            tooltip="what this screen shows: dim, routing, scan…",
        ),
        Binding("f3,s", "show_skipped", "skipped", show=False, tooltip="list skipped files"),
        Binding(
            "escape",
            "cancel_indexing",
            "stop indexing",
            tooltip="stop indexing (what is indexed stays searchable)",
        ),
        Binding("slash", "focus_query", "query", show=False, tooltip="back to the query box"),
        Binding("tab", "app.focus_next", show=False, tooltip=FOCUS_HELP),
        Binding("shift+tab", "app.focus_previous", show=False, tooltip=FOCUS_HELP),
        Binding(
            "r",
            "cycle_reference",
            "ref",
            tooltip="reference side: the next power-of-two dim (full → 8 → 16 → …)",
        ),
        Binding(
            "t",
            "cycle_transform",
            "transform",
            tooltip="reference side: the chosen dim under another transform "
            "(naive truncation, PCA, the adaptor fitted to this folder)",
        ),
        Binding(
            "f",
            "toggle_graph",
            "graph",
            tooltip="reference side: HNSW graph search at full dim (large indexes with a graph)",
        ),
        Binding("o", "open_in_editor", "open", tooltip="open the selected hit in your editor"),
        Binding(
            "c",
            "copy_location",
            "copy",
            show=False,
            tooltip="copy path:line of the selected hit (OSC 52: the terminal's clipboard)",
        ),
        Binding(
            "a",
            "toggle_router",
            "router",
            tooltip="router: auto (it picks each query's dim) / manual (the slider's)",
        ),
        Binding(
            "h",
            "cycle_retrieval",
            "hybrid",
            show=False,
            tooltip=HYBRID_HELP,
        ),
        Binding(
            "H",
            "toggle_reference_hybrid",
            "ref hybrid",
            show=False,
            tooltip=HYBRID_HELP,
        ),
        Binding(
            "b",
            "cycle_base_reference",
            "base",
            tooltip="reference side, with a model trained on this folder: the base model at the "
            "same dim, under PCA, then naive truncation, then back (its own index, built once)",
        ),
        Binding("p", "toggle_panels", "panels", tooltip="show / hide the side panels"),
        Binding("m", "more_results", "more", show=False, tooltip=MORE_HELP),
        Binding("M", "fewer_results", "fewer", show=False, tooltip=MORE_HELP),
    ]

    class CancelIndexing(Message):
        """Escape while indexing: the app owns the indexing worker."""

    @dataclass
    class NeedBase(Message):
        """`b` with a trained model: the base model's index of the folder is needed (the app
        opens it in a worker, then calls `base_ready`)."""

        model: str

    # What the workers report (messages up); each stays on this screen.
    class Calibrating(Message, bubble=False):
        """The router is being calibrated for this folder (once, seconds)."""

    @dataclass
    class QueryRanked(Message, bubble=False):
        """A query is embedded and ranked (`_embed`); `profile`: search time by dim, if
        measured."""

        seq: int
        state: QueryState
        profile: dict[int, float] | None

    @dataclass
    class QueryFailed(Message, bubble=False):
        seq: int
        text: str

    @dataclass
    class Compared(Message, bubble=False):
        """Both sides ranked (`_rescore`); `more`: search times of dims not measured before."""

        seq: int
        state: QueryState
        comparison: Comparison
        more: dict[int, float]

    @dataclass
    class CompareFailed(Message, bubble=False):
        text: str

    # The screen's state; the watchers below show it (attributes down).
    dim: var[int] = var(DEFAULT_DIM, init=False)
    """The chosen prefix dim: the slider's, or the router's in auto mode."""
    reference: var[Reference] = var(Reference(), init=False)
    """What the right side shows (its dim follows `dim` while `auto`)."""
    retrieval: var[str] = var("dense", init=False)
    """The left side's (`h`): "dense", "hybrid" or "lexical"."""
    k: var[int] = var(TOP_K, init=False)
    """Hits on each side (`m` / `M`)."""
    state: var[QueryState | None] = var(None, init=False, always_update=True)
    """The query shown, embedded and ranked (a new one replaces it)."""
    comparison: var[Comparison | None] = var(None, init=False, always_update=True, bindings=True)
    """The two sides shown: the result pair, compared (`core.search.side_by_side`)."""
    auto_router: var[bool] = var(True, init=False)
    """The router picks each query's dim; a slider move ends it."""
    live_search: var[bool] = var(True, init=False)
    """Search when typing pauses, not only on Enter."""
    indexing: var[bool] = var(True, init=False, bindings=True)
    ready: var[bool] = var(False, init=False)
    """An index is loaded: the results area is shown (the indexing panel above it, if any)."""
    panels: var[bool] = var(True, init=False)
    """The side panels (latency, storage) are shown (`p`)."""
    note: var[tuple[str, bool]] = var(("", False), init=False)
    """The message line: (text, is it an error)."""
    fit: var[str] = var("", init=False)
    """Which fit a watched folder's index uses (`ui.fit_status`), after the note on its line."""

    def __init__(self, *, frozen_timings: bool = False, auto_router: bool = True) -> None:
        super().__init__()
        self.frozen_timings = frozen_timings
        self.library: Library | None = None
        self.pending_query: str | None = None
        self.ref_reason = ""  # why the default reference is not full, shown under the tables
        self.latency_profile: dict[int, float] | None = None  # measured once per index load
        self.latency_more: dict[int, float] = {}  # other dims, measured the same way when shown
        self.full_dim: int | None = None  # the model's, once it is loaded
        self.set_reactive(SearchScreen.auto_router, auto_router)  # nothing to show it on yet
        self._searched: str | None = None  # the text of the last query run (not run again)
        self._query_seq = 0
        self._view_seq = 0
        self._compare_pending = False
        self._selected: int | None = None  # chunk id
        self.trained_base: str | None = None
        """The base model of the model searched, when that one was trained by mrl-tui."""
        self.base_library: Library | None = None
        """The base model's index of the folder, for the `b` reference (the app opens it)."""
        self._base_wanted: str | None = None  # the `b` side waiting for `base_library`

    # The reference's parts, read by the tests and the remembered view.
    @property
    def ref_dim(self) -> int | None:
        return self.reference.dim

    @property
    def ref_mode(self) -> str:
        return self.reference.mode

    @property
    def ref_transform(self) -> str | None:
        return self.reference.transform

    @property
    def ref_auto(self) -> bool:
        return self.reference.auto

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Footer hints follow the state: Esc only while indexing; hit keys dim without hits;
        letter keys hidden while the query box has the keyboard (they type there)."""
        if action in TYPED_ACTIONS and isinstance(self.focused, Input):
            return False
        if action == "cancel_indexing":
            return self.indexing
        if action == "cycle_base_reference" and self.trained_base is None:
            return False  # only with a trained model
        if action in (
            "open_in_editor",
            "copy_location",
            "cycle_reference",
            "cycle_transform",
            "toggle_graph",
            "toggle_reference_hybrid",
            "cycle_base_reference",
            "more_results",
            "fewer_results",
        ):
            return True if self.comparison is not None else None
        return True

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="main"):
            with Horizontal(id="top"):
                with Vertical(id="controls"):
                    yield QueryInput(
                        placeholder=PLACEHOLDERS[self.live_search],
                        id="query",
                        history=self._remembered().history if self._remembered() else None,
                    )
                    with Horizontal(id="dim-row"):
                        yield Static("dim: loading the model", id="dim-label")
                yield RouterPanel(id="router")
            yield IndexingPanel(id="indexing")
            yield Static("", id="message")
            with Horizontal(id="compare"):
                yield RankingPane("at dim", id="left")
                yield RankingPane("reference", id="right")
            yield Static("", id="agreement")
            with Horizontal(id="detail"):
                yield Preview(id="preview")
                with VerticalScroll(id="side"):
                    yield LatencyPanel(frozen=self.frozen_timings, id="latency")
                    yield StoragePanel(id="storage")
            yield JobsLine(id="jobs")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#query", Input).focus()
        self.query_one("#message", Static).display = False
        remembered = self._remembered()
        if remembered is not None:
            self.panels = remembered.panels
        self._show_router()
        self._show_results_area()

    def on_resize(self, event: events.Resize) -> None:
        self.query_one(Footer).compact = event.size.width < COMPACT_FOOTER_BELOW

    def watch_indexing(self) -> None:
        self._show_results_area()

    def watch_ready(self) -> None:
        self._show_results_area()

    def _show_results_area(self) -> None:
        """The results once an index is `ready`, and the indexing panel while `indexing`: in
        full before there are results, as a progress line above them while a re-index runs
        behind them."""
        for selector in ("#compare", "#agreement", "#detail"):
            self.query_one(selector).display = self.ready
        panel = self.query_one("#indexing")
        panel.display = self.indexing
        panel.set_class(self.ready, "-behind")
        self.refresh_bindings()

    def watch_panels(self, shown: bool) -> None:
        self.query_one("#side").display = shown
        remembered = self._remembered()
        if remembered is not None:
            remembered.panels = shown

    def watch_note(self) -> None:
        self._show_status()

    def watch_fit(self) -> None:
        self._show_status()

    def _show_status(self) -> None:
        """The status line: the note (an error in red), then which fit is in use (dim)."""
        text, error = self.note
        line = Text(shown(text), style="bold red" if error else "")
        if self.fit:
            line.append(" · " if text else "")
            line.append(shown(self.fit), style="dim")
        found = self.query("#message").results(Static)
        message = next(found, None)
        if message is None:  # composed with the screen: gone only while the app exits
            return
        message.update(line)
        message.display = bool(text or self.fit)

    def watch_live_search(self, live: bool) -> None:
        self.query_one("#query", Input).placeholder = PLACEHOLDERS[live]

    def watch_auto_router(self) -> None:
        self._show_router()

    # -- called by the app (attributes down) ---------------------------------------------------

    @property
    def indexing_panel(self) -> IndexingPanel:
        return self.query_one(IndexingPanel)

    def show_message(self, text: str, *, error: bool = False) -> None:
        self.note = (text, error)

    def model_ready(self, full_dim: int) -> None:
        """The model is loaded (the index may still be building): its full dim is known."""
        self.full_dim = full_dim
        if self.library is None:
            self.query_one("#dim-label", Static).update(Text(f"dim {self.dim:>4} / {full_dim}"))

    def library_failed(self, text: str) -> None:
        self.indexing = False
        self.library = None
        self.query_one("#dim-label", Static).update(Text("dim: no index"))
        self.ready = False
        self.show_message(text, error=True)

    def reindex_failed(self, text: str) -> None:
        """Indexing again failed, but the loaded index still answers: keep it and say why."""
        self.indexing = False
        self.show_message(f"{text} (the results shown are from the last index)", error=True)

    def indexing_started(self) -> None:
        """A library already shown stays searchable while the folder is indexed again."""
        self.indexing = True
        self.show_message("")

    async def model_switching(self) -> None:
        """The app is opening another model's library: drop the old one and what was computed
        with it (results in flight included); the slider is rebuilt for the new model's dims.
        The query shown runs again once `library_ready`."""
        self.library = None
        self.comparison = None
        self._query_seq += 1
        self._view_seq += 1
        self.full_dim = None
        await self.query(DimSlider).remove()
        self.query_one("#dim-label", Static).update(Text("dim: loading the model"))
        # The old model's results would read as the new one's under its header: clear them.
        self.query_one("#left", RankingPane).clear("at dim")
        self.query_one("#right", RankingPane).clear("reference")
        self._selected = None
        self.query_one(Preview).selected = None
        self.query_one("#agreement", Static).update("")
        self.query_one(LatencyPanel).latency = None
        self.query_one(LatencyPanel).times = None  # the new index's are measured with its query
        storage = self.query_one(StoragePanel)
        if storage.storage is not None:  # the sizes hold; the last query's agreement does not
            storage.storage = dataclasses.replace(storage.storage, agreement={}, current=None)
        self._show_router()  # no library: "the next query is routed" (or the manual dim)

    async def library_ready(self, library: Library, note: str = "") -> None:
        """The index is loaded: set up the slider, then run whatever query is waiting."""
        self.library = library
        full = library.full_dim
        self.latency_profile = None  # a new index: measured again with the next query
        self.latency_more = {}
        self.query_one(LatencyPanel).times = None  # measured with the next query
        self.dim = min(self.dim, full)
        reference = self.reference
        if reference.dim is None or reference.dim > full:
            reference = dataclasses.replace(reference, dim=full)
        if library.graph is None:
            reference = dataclasses.replace(reference, mode="exact")
        self.trained_base = self._trained_base(library)
        if reference.base and (self.trained_base is None or self.base_library is None):
            reference = dataclasses.replace(reference, transform=None, base=False)
        self.reference = reference
        if not self.query(DimSlider):
            await self.query_one("#dim-row").mount(
                DimSlider(
                    full,
                    self.dim,
                    trained_dims=library.embedder.spec.mrl_dims,
                    id="dim",
                ),
                after="#dim-label",
            )
        self._update_dim_labels()
        self._update_storage()
        self.show_message(note)
        self.indexing = False
        self.ready = True
        waiting = self.pending_query or (self.state.query.text if self.state else None)
        self.pending_query = None
        if waiting:
            self.run_query(waiting)

    # -- queries -------------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter searches now (any length), unless the shown results are for this text already;
        either way the slider gets the keyboard."""
        self.workers.cancel_group(self, "live")
        text = event.value.strip()
        if not text:
            self.notify("Type something to search for.", severity="warning")
            return
        self._remember_query(text)
        if self.library is None:
            self.pending_query = text
            self.notify("The index is not ready yet; the search runs as soon as it is.")
            return
        if text != self._searched:
            self.run_query(text)
        if self.query(DimSlider):
            self.query_one(DimSlider).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "query" and self.live_search:
            self._search_after_pause(event.value.strip())

    @work(exclusive=True, group="live")
    async def _search_after_pause(self, text: str) -> None:
        """Live search: the next keystroke cancels this worker while it waits, so only the text
        the user paused on is searched; short texts and the text already searched are not."""
        await asyncio.sleep(LIVE_DELAY)
        if len(parse_query(text).words) < LIVE_MIN_CHARS or text == self._searched:
            return
        if self.library is None:
            self.pending_query = text  # searched as soon as the index is ready
            return
        self.run_query(text)

    def run_query(self, text: str) -> None:
        self._searched = text
        self._query_seq += 1
        measure = self.latency_profile is None and not self.frozen_timings
        self._embed(text, self._query_seq, measure, self.auto_router)

    @work(thread=True, exclusive=True, group="embed")
    def _embed(self, text: str, seq: int, measure: bool, route: bool) -> None:
        """Embed and rank, and route in auto mode (the first time in a folder calibrates the
        router); the first query after an index load also measures latency by dim. A newer query
        cancels this worker: it then stops at the next step, and its result is dropped."""
        library = self.library
        if library is None:
            return
        worker = get_current_worker()
        try:
            state = embed_and_rank(library, text)
            if worker.is_cancelled:
                return
            if route:
                if not library.router_ready:
                    self.post_message(self.Calibrating())
                state = dataclasses.replace(state, route=library.route(state.query))
            profile = None
            if measure and not worker.is_cancelled:
                profile = measure_latency(library, state.query)
        except Exception as exc:  # shown as one line, never a traceback
            self.post_message(self.QueryFailed(seq, f"search failed: {exc}"))
            return
        self.post_message(self.QueryRanked(seq, state, profile))

    def on_search_screen_calibrating(self, _: Calibrating) -> None:
        self.query_one(RouterPanel).decision = Calibrating()

    def on_search_screen_query_failed(self, message: QueryFailed) -> None:
        if message.seq == self._query_seq:
            self._searched = None  # Enter, or a pause in typing, tries again
            self.show_message(message.text, error=True)

    def on_search_screen_query_ranked(self, message: QueryRanked) -> None:
        if message.profile is not None and self.library is not None:
            self.show_latency_profile(message.profile)
        if message.seq != self._query_seq:
            return  # a newer query was submitted meanwhile
        if self.note[1]:
            self.show_message("")  # an earlier search error; a note about indexing stays
        self.state = message.state

    def watch_state(self, state: QueryState | None) -> None:
        """A new query: in auto mode its routed dim; then both sides are ranked."""
        if state is None:
            return
        if self.auto_router and state.route is not None:
            self._apply_route(state.route)
        self._show_router()
        self._update_storage()
        self._compare_soon()

    def _apply_route(self, route: Route) -> None:
        """The routed dim; the move is not the user's, so auto mode stays (`watch_dim` moves the
        slider without posting a change)."""
        self.dim = route.dim

    def watch_dim(self, dim: int) -> None:
        if self.query(DimSlider):
            slider = self.query_one(DimSlider)
            with slider.prevent(Slider.Changed):
                slider.value = dim
        self._update_dim_labels()
        self._update_storage()
        self.query_one(LatencyPanel).dim = dim  # marked on the plot, once it is measured
        self._compare_soon()

    def watch_reference(self) -> None:
        self._compare_soon()

    def watch_retrieval(self) -> None:
        self._compare_soon()

    def watch_k(self) -> None:
        self._compare_soon()

    def _compare_soon(self) -> None:
        """Rank both sides again once the current message is handled: one search for all the
        state it changed (a routed query sets the state and the dim)."""
        if not self._compare_pending:
            self._compare_pending = True
            self.call_next(self.refresh_comparison)

    def refresh_comparison(self) -> None:
        """Re-score the stored query at the current dims (after a slider or reference change)."""
        self._compare_pending = False
        if self.state is None or self.library is None or self.reference.dim is None:
            return
        reference = self.reference
        self.ref_reason = ""
        if reference.auto and reference.mode == "exact":
            ref_dim, self.ref_reason = default_reference(self.dim, self.library.full_dim)
            reference = dataclasses.replace(reference, dim=ref_dim)
            self.set_reactive(SearchScreen.reference, reference)  # follows the dim: no new search
        self._view_seq += 1
        self._rescore(self.state, self.dim, reference, self.k, self.retrieval, self._view_seq)

    @work(thread=True, exclusive=True, group="rescore")
    def _rescore(
        self, state: QueryState, dim: int, reference: Reference, k: int, retrieval: str, seq: int
    ) -> None:
        library = self.library
        if library is None or reference.dim is None:
            return
        measured = {**(self.latency_profile or {}), **self.latency_more}
        base = self.base_library
        try:
            if reference.base_side is not None and base is not None:
                comparison = compare_with_base(
                    library, base, state, dim, reference.base_side, self.comparison, k, retrieval
                )
            else:
                comparison = compare_at(
                    library,
                    state,
                    dim,
                    reference.dim,
                    reference.mode,
                    reference.transform,
                    previous=self.comparison,
                    k=k,
                    retrieval=retrieval,
                    ref_retrieval=reference.retrieval,
                )
            more = {}
            if self.latency_profile is not None and not self.frozen_timings and dim not in measured:
                more = measure_latency(library, state.query, dims=[dim])
        except Exception as exc:
            self.post_message(self.CompareFailed(f"search failed: {exc}"))
            return
        self.post_message(self.Compared(seq, state, comparison, more))

    def on_search_screen_compare_failed(self, message: CompareFailed) -> None:
        self.show_message(message.text, error=True)

    def _tell_library_messages(self) -> None:
        """A repair the search itself made (a damaged cache rebuilt, a file not saved) is said
        now, not at the next indexing."""
        for message in [] if self.library is None else self.library.take_messages():
            self.notify(message, markup=False, timeout=10)

    def on_search_screen_compared(self, message: Compared) -> None:
        self.latency_more.update(message.more)
        self._tell_library_messages()
        if message.seq != self._view_seq or message.state is not self.state:
            return  # stale: the slider moved on, or another query replaced this one
        self.comparison = message.comparison

    def watch_comparison(self, old: Comparison | None, comparison: Comparison | None) -> None:
        """Show the result pair: both tables with their marks, what each side lost, and how
        much they agree (all computed in the core: `Comparison.ranking`)."""
        if comparison is None or self.state is None:
            return
        state = self.state
        new_query = old is None or old.query is not comparison.query
        on_screen = {hit.id for hit in [*comparison.left, *comparison.right]}
        if new_query and self._selected not in on_screen:
            self._selected = None  # the selection was not found again: back to the top hit
        ranking = comparison.ranking
        left_ids, right_ids = ids_of(comparison.left), ids_of(comparison.right)
        ref_name = self._reference_name(comparison)
        left_name = f"at dim {comparison.dim}"
        if comparison.retrieval != "dense":
            left_name = RETRIEVAL_NAMES[comparison.retrieval].format(dim=comparison.dim)
            if comparison.ref_retrieval == "dense":
                ref_name = f"dense {ref_name}"
        lost, new = f"dropped at {comparison.dim}", f"new at {comparison.dim}"
        if comparison.ref_transform is not None:  # the same dim on both sides: name transforms
            left_name += f" ({self._loaded_transform()})"
            lost, new = f"only {ref_name}", f"only {self._loaded_transform()}"
        by_id = {hit.id: hit for hit in comparison.right}
        self.query_one("#left", RankingPane).ranking = RankingView(
            left_name,
            tuple(comparison.left),
            tuple(ranking.left_moves),
            tuple(by_id[i] for i in ranking.left_lost),
            absent="NEW",
            lost_label=lost,
            cursor=self._cursor_row(left_ids, new_query),
        )
        by_id = {hit.id: hit for hit in comparison.left}
        self.query_one("#right", RankingPane).ranking = RankingView(
            f"reference: {ref_name}",
            tuple(comparison.right),
            tuple(ranking.right_moves),
            tuple(by_id[i] for i in ranking.right_lost),
            absent="out",
            lost_label=new,
            cursor=self._cursor_row(right_ids, new_query),
        )
        tau_text = "n/a" if ranking.tau is None else f"{ranking.tau:+.2f}"
        reason = self.ref_reason if comparison.ref_transform is None else ""
        left_side = f"dim {comparison.dim}" if comparison.retrieval == "dense" else left_name
        paths = state.query.paths
        self.query_one("#agreement", Static).update(
            Text.assemble(
                (f"{reason}:  " if reason else f"{left_side} vs {ref_name}:  ", "bold"),
                f"overlap@{ranking.k} {ranking.overlap:.2f}   ",
                f"τ {tau_text}" if reason else f"Kendall τ {tau_text} (shared hits)",  # 80 columns
                (f"   only {paths}" if paths else "", "italic"),
            )
        )
        assert self.library is not None
        self._show_latency(state.query.embed_ms, comparison.dim)
        full = self.library.full_dim
        self._update_storage(current=state.agreement_with_full(comparison.left, full))
        self._show_selected()

    # -- selection and preview -----------------------------------------------------------------

    def _cursor_row(self, ids: list[int], new_query: bool) -> int | None:
        """Where a table's cursor goes: on the selected hit where the table has it, else on the
        top hit for a new query, else (the slider moved) on the same row (None)."""
        if self._selected in ids:
            return ids.index(self._selected)
        return 0 if new_query else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The user moved a table's cursor (refilling a table posts no highlight)."""
        if event.row_key.value is not None:
            self._selected = int(event.row_key.value)
            self._show_selected()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """Tabbing into a table selects the hit under its cursor. Leaving the query box after
        a search keeps that query in the history (as Enter does)."""
        if event.widget.id != "query" and self._searched:
            self._remember_query(self._searched)
        if isinstance(event.widget, RankingTable) and event.widget.row_count:
            row_key, _ = event.widget.coordinate_to_cell_key(event.widget.cursor_coordinate)
            if row_key.value is not None:
                self._selected = int(row_key.value)
                self._show_selected()

    def selected_hit(self) -> Hit | None:
        if self.comparison is None:
            return None
        hits = {hit.id: hit for hit in self.comparison.right}
        hits.update({hit.id: hit for hit in self.comparison.left})
        if self._selected in hits:
            return hits[self._selected]
        return self.comparison.left[0] if self.comparison.left else None

    def _show_selected(self) -> None:
        """The selected hit in the preview, with its rank trail; where a side ranked by keywords,
        with the query terms FTS5 matched in it (`keyword_matches`)."""
        hit = self.selected_hit()
        preview = self.query_one(Preview)
        if hit is None:
            preview.selected = None
            return
        trail = matched = None
        if self.state is not None:
            trail = tuple(rank_trail(self.state.rankings, hit.id).items())
            if self.comparison is not None and self.comparison.keywords:
                matched = tuple(keyword_matches(self.state.query, hit.chunk))
        query = self.state.query.text if self.state else ""
        preview.selected = SelectedHit(
            hit, query, trail, depth=TRAIL_K, dim=self.dim, k=TOP_K, matched=matched
        )

    # -- slider and reference ------------------------------------------------------------------

    def on_slider_changed(self, event: Slider.Changed) -> None:
        if event.value == self.dim:
            return
        if self.auto_router:
            self.auto_router = False
            self.notify("Dimension set by hand: router off (a turns it back on).")
        self.dim = event.value

    def show_latency_profile(self, profile: dict[int, float]) -> None:
        """Search time by dim for the loaded index (tests and screenshots pass a fixed one)."""
        self.latency_profile = profile
        rows = self.library.chunk_count if self.library is not None else 0
        panel = self.query_one(LatencyPanel)
        panel.dim = self.dim
        panel.times = SearchTimes(profile, rows)

    def _show_latency(self, embed_ms: float, dim: int) -> None:
        """The chosen dim's and the full dim's search times, both from the same measurement as
        the plot (`measure_latency`), or "–" until that has run."""
        if self.library is None:
            return
        measured = {**(self.latency_profile or {}), **self.latency_more}
        full = self.library.full_dim
        self.query_one(LatencyPanel).latency = Latency(
            embed_ms, dim, measured.get(dim), full, measured.get(full)
        )

    def _loaded_transform(self) -> str:
        """The library's transform, short: "PCA", "adaptor", "native MRL" or "naive"."""
        if self.library is None:
            return ""
        return self.library.transform_kind.short_for(self.library.embedder.spec.native_mrl)

    @staticmethod
    def _reference_name(comparison: Comparison) -> str:
        if comparison.ref_model is not None and comparison.ref_transform is not None:
            return f"base {kind_for(comparison.ref_transform).short} @{comparison.ref_dim}"
        if comparison.ref_transform is not None:
            return f"{kind_for(comparison.ref_transform).short} @{comparison.ref_dim}"
        if comparison.ref_mode == "graph":
            return f"graph @{comparison.ref_dim}"
        if comparison.ref_retrieval != "dense":
            return f"{comparison.ref_retrieval} @{comparison.ref_dim}"
        return f"dim {comparison.ref_dim}"

    def _update_dim_labels(self) -> None:
        if self.library is None:
            return
        full = self.library.full_dim
        self.query_one("#dim-label", Static).update(Text(f"dim {self.dim:>4} / {full}"))
        self._show_router()

    def _show_router(self) -> None:
        panel = self.query_one(RouterPanel)
        if not self.auto_router:
            panel.decision = Manual(self.dim)
        elif self.state is not None and self.state.route is not None and self.library is not None:
            panel.decision = Routed(self.state.route, self.library.full_dim)
        else:
            panel.decision = Waiting()

    def _update_storage(self, current: float | None = None) -> None:
        """`current`: overlap@k with full at the chosen dim, once its comparison is in."""
        if self.library is None:
            return
        agreement = self.state.agreement(self.library.full_dim) if self.state else {}
        full, chunks = self.library.full_dim, self.library.chunk_count
        self.query_one(StoragePanel).storage = Storage(
            self.dim, full, chunks, agreement, TOP_K, agreement.get(self.dim, current)
        )

    def action_cycle_reference(self) -> None:
        """Full → 8 → 16 → … → full: the next power of two above the current reference (a
        hybrid reference stays hybrid)."""
        reference = self.reference
        if self.library is None or reference.dim is None:
            return
        stops = power_of_two_dims(self.library.full_dim)
        if reference.transform is not None:  # back to the loaded transform at the same dim
            reference = dataclasses.replace(reference, transform=None)
        elif reference.mode == "graph":  # back to exact at the same dim
            reference = dataclasses.replace(reference, mode="exact")
        else:
            bigger = [d for d in stops if d > reference.dim]
            reference = dataclasses.replace(reference, dim=bigger[0] if bigger else stops[0])
        self.reference = dataclasses.replace(reference, auto=False)  # the user's from now on

    def action_toggle_graph(self) -> None:
        """Reference: graph search at full dim (HNSW candidates reranked), or back to exact."""
        if self.library is None:
            return
        if self.library.graph is None:
            from mrl_tui.core.search.hnsw import HNSW_MIN_CHUNKS

            self.notify(
                f"Graph search needs an HNSW graph, built for indexes of {HNSW_MIN_CHUNKS:,}+ "
                f"chunks; this one has {self.library.chunk_count:,}, so every search is exact.",
                severity="warning",
            )
            return
        reference = self.reference
        if reference.mode == "graph" and reference.transform is None:
            reference = dataclasses.replace(reference, mode="exact")
        else:
            reference = dataclasses.replace(reference, mode="graph", dim=self.library.full_dim)
        self.reference = dataclasses.replace(
            reference, transform=None, retrieval="dense", auto=False
        )

    def action_cycle_transform(self) -> None:
        """Reference: the chosen dim under each other transform in turn (naive truncation, PCA,
        the adaptor), then back to the reference before."""
        if self.library is None:
            return
        # Reference-side transforms skip the one loaded. The adaptor is fitted on first use
        # (seconds on a CPU for a few thousand chunks), then kept with the index.
        loaded = self.library.transform.name
        others = [kind.choice for kind in KINDS if kind.fitted != loaded]
        cycle: list[str | None] = [None, *others]
        now = None if self.reference.base else self.reference.transform  # `b` ends here
        transform = cycle[(cycle.index(now) + 1) % len(cycle)]
        if transform == "adaptor" and not self.library.transform_ready("adaptor"):
            self.notify("Fitting the adaptor on this folder (a few seconds; kept afterwards)…")
        self.reference = dataclasses.replace(self.reference, transform=transform, base=False)

    # The base model as the reference (`b`): the seeds' comparison on the user's own folder.

    @staticmethod
    def _trained_base(library: Library) -> str | None:
        from mrl_tui.core.training.trained import read_provenance

        record = read_provenance(library.embedder.name)
        return None if record is None else str(record["base_model"])

    def action_cycle_base_reference(self) -> None:
        """Reference, searching with a model trained on this folder: the base model's own index
        at the chosen dim under PCA, then naive truncation, then back to the reference before."""
        if self.library is None or self.trained_base is None:  # `b` is off (`check_action`)
            return
        side = BASE_SIDES[(BASE_SIDES.index(self.reference.base_side) + 1) % len(BASE_SIDES)]
        if side is None:
            self._base_wanted = None
            self.reference = dataclasses.replace(self.reference, transform=None, base=False)
            self.notify("Reference side: the trained model again.")
            return
        if self.base_library is None:
            self._base_wanted = side
            self.post_message(self.NeedBase(self.trained_base))
            return
        self._show_base(side)

    def base_ready(self, library: Library | None) -> None:
        """The app opened the base model's index (None: it could not); a `b` waiting shows it."""
        self.base_library = library
        side, self._base_wanted = self._base_wanted, None
        if library is not None and side is not None and self.trained_base is not None:
            self._show_base(side)

    def _show_base(self, side: str) -> None:
        self.reference = dataclasses.replace(
            self.reference, transform=side, base=True, mode="exact", retrieval="dense"
        )
        cut = "PCA" if side == "pca" else "naive truncation"
        self.notify(f"Reference side: the base model at the same dim, under {cut}.")

    def action_toggle_reference_hybrid(self) -> None:
        """Reference: hybrid (keywords fused with dense) at the reference's dim, full unless
        `r` chose another; or back to dense. Against the left side's own retrieval (`h`)."""
        reference = self.reference
        if self.library is None or reference.dim is None:
            return
        hybrid = reference.retrieval == "dense" or reference.transform is not None
        hybrid = hybrid or reference.mode == "graph"
        self.reference = dataclasses.replace(
            reference, retrieval="hybrid" if hybrid else "dense", mode="exact", transform=None
        )
        self.notify(
            "Reference side: hybrid (keywords fused with dense at its dim)."
            if hybrid
            else "Reference side: dense."
        )

    # -- other actions -------------------------------------------------------------------------

    def action_cycle_retrieval(self) -> None:
        """Left side: dense → hybrid → lexical → dense, at the slider's dim; the right side stays
        at its reference, so the marks show what keywords move."""
        order = list(RETRIEVAL_NAMES)
        self.retrieval = order[(order.index(self.retrieval) + 1) % len(order)]
        self.notify(f"Left side: {RETRIEVAL_NAMES[self.retrieval].format(dim=self.dim)}.")

    def refresh_query(self, note: str = "") -> None:
        """Search the shown query again (the index changed under it); `note` on the message
        line."""
        if note:
            self.show_message(note)
        if self.state is not None and self.library is not None:
            self.run_query(self.state.query.text)

    def action_focus_query(self) -> None:
        self.query_one("#query", Input).focus()

    def action_cancel_indexing(self) -> None:
        if self.indexing:
            self.post_message(self.CancelIndexing())

    def action_toggle_router(self) -> None:
        """Auto: the shown query goes to its routed dim (routed now if it was made in manual)."""
        self.auto_router = not self.auto_router
        if not self.auto_router or self.state is None:
            return
        if self.state.route is None:
            self.run_query(self.state.query.text)
        else:
            self._apply_route(self.state.route)
            self._compare_soon()

    def action_toggle_live_search(self) -> None:
        """Search as the user types, or on Enter only; turned on, the text typed is searched."""
        self.live_search = not self.live_search
        if self.live_search:
            self.notify("Live search on: results follow as you type.")
            self._search_after_pause(self.query_one("#query", Input).value.strip())
        else:
            self.workers.cancel_group(self, "live")
            self.notify("Live search off: Enter searches.")

    def action_toggle_panels(self) -> None:
        self.panels = not self.panels

    def action_more_results(self) -> None:
        """Ten more hits on each side (the tables scroll); `M` ten fewer."""
        if self.k >= MAX_K:
            self.notify(f"Showing {MAX_K} results a side already, the most there is room for.")
            return
        self.k = min(MAX_K, self.k + MORE_STEP)

    def action_fewer_results(self) -> None:
        if self.k > TOP_K:
            self.k = max(TOP_K, self.k - MORE_STEP)

    # -- remembered between runs (`mrl_tui.ui.state`) ------------------------------------------

    def _remembered(self) -> Remembered | None:
        return getattr(self.app, "remembered", None)

    def _remember_query(self, text: str) -> None:
        box = self.query_one("#query", QueryInput)
        box.restart_history()
        remembered = self._remembered()
        if remembered is not None and (not remembered.history or remembered.history[0] != text):
            remembered.add_query(text)
            box.history[:] = remembered.history
            remembered.save()

    def restore_view(self, view: FolderView) -> None:
        """How this folder was last looked at; applied before the index is ready (which clamps
        the dims to the model's)."""
        # Set without the watchers: nothing is composed yet to show it on.
        if view.dim is not None and view.dim >= 1:
            self.set_reactive(SearchScreen.dim, view.dim)
        if view.auto_router is not None:
            self.set_reactive(SearchScreen.auto_router, view.auto_router)
        reference = dataclasses.replace(self.reference, auto=view.ref_auto)
        if not view.ref_auto and view.ref_dim is not None and view.ref_dim >= 1:
            reference = dataclasses.replace(reference, dim=view.ref_dim, mode=view.ref_mode)
        self.set_reactive(SearchScreen.reference, reference)

    def current_view(self) -> FolderView | None:
        """What `restore_view` takes back next time; None before the index was ever ready."""
        from mrl_tui.ui.state import FolderView

        if self.ref_dim is None:
            return None
        return FolderView(self.dim, self.auto_router, self.ref_auto, self.ref_dim, self.ref_mode)

    def on_unmount(self) -> None:
        """Quitting: remember the last query searched, the theme, and this folder's view."""
        remembered = self._remembered()
        if remembered is None:
            return
        if self._searched:
            remembered.add_query(self._searched)
        view, folder = self.current_view(), getattr(self.app, "folder_key", None)
        if view is not None and folder is not None:
            remembered.set_folder(folder, view)
        remembered.theme = self.app.theme
        remembered.save()

    def action_about(self) -> None:
        from mrl_tui.ui.screens.about import AboutScreen

        route = self.state.route if self.state is not None and self.auto_router else None
        full = self.library.full_dim if self.library is not None else self.full_dim
        self.app.push_screen(AboutScreen(full, route))

    def action_show_skipped(self) -> None:
        from mrl_tui.ui.screens.skipped import SkippedScreen

        self.app.push_screen(SkippedScreen(getattr(self.app, "skipped", None)))

    def action_copy_location(self) -> None:
        hit = self.selected_hit()
        if hit is None:
            self.notify("No hit selected.", severity="warning")
            return
        where = f"{hit.chunk.path}:{hit.chunk.start_line}"
        self.app.copy_to_clipboard(where)
        # OSC 52 asks the terminal to set the clipboard; there is no reply to tell if it did.
        self.notify(
            f"Sent {where} to the terminal's clipboard (OSC 52; some terminals, and tmux without "
            "set-clipboard, ignore it).",
            markup=False,
        )

    def action_open_in_editor(self) -> None:
        hit = self.selected_hit()
        if hit is None or self.library is None:
            self.notify("No hit selected.", severity="warning")
            return
        query = (self.state.query.words or self.state.query.text) if self.state else ""
        open_hit(self.app, Path(self.library.root), hit.chunk, query)


TYPED_ACTIONS = typed_actions(SearchScreen.BINDINGS)
