"""Searching with a model trained on the folder, against its base model at the same dim (`b`:
PCA, then naive truncation), and training in the background while searching.

The comparison runs on three topics of sample_corpora/notes (156 chunks) with the session's
trained model (`trained_notes`) on the left and the base model on the right (the session's, whose
vectors of the notes are already made: `notes_library.embedder`): the seeds' comparison on a real
Matryoshka model. The app opens the base side itself, in its worker, from the same cache."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import SAMPLES, TrainedNotes, one_torch_thread, tiny_folder
from textual.widgets import Input, Static
from ui_helpers import screen_text, wait_for

from mrl_tui.core.embedding.choice import ModelChoice
from mrl_tui.core.library import Library
from mrl_tui.core.search.compare import movement_label, movements
from mrl_tui.core.search.side_by_side import compare_with_base, comparison_record, embed_and_rank
from mrl_tui.core.training.train import TrainSettings
from mrl_tui.ui.app import MrlApp
from mrl_tui.ui.screens.search import SearchScreen
from mrl_tui.ui.screens.train import TrainScreen
from mrl_tui.ui.widgets.jobs import JobsLine

QUERY = "what to do after an injury"
LONG = TrainSettings(max_steps=500, batch_size=4, max_seq_length=16, evaluations=500, patience=1000)
"""Validates after every step (cheap here), so a stop always has a checkpoint to keep; never
stops by itself before the test stops it."""
BASE = "sentence-transformers/all-MiniLM-L6-v2"
"""The bundled model, as the trained model's provenance names its base."""
LATENCY = {8: 0.05, 16: 0.06, 32: 0.07, 64: 0.09, 128: 0.12, 256: 0.2, 384: 0.27}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


TOPICS = ("cooking", "first-aid", "cycling")


class Topics(NamedTuple):
    folder: Path
    cache: Path
    base: Library  # the base model's index of `folder`, in `cache`


@pytest.fixture(scope="module")
def topics(tmp_path_factory: pytest.TempPathFactory, notes_library: Library) -> Topics:
    folder = tmp_path_factory.mktemp("topics") / "notes"
    for topic in TOPICS:
        shutil.copytree(SAMPLES / "notes" / topic, folder / topic)
    cache = tmp_path_factory.mktemp("topics-cache")
    base = Library(folder, notes_library.embedder, cache_root=cache)  # vectors already made
    base.update()
    base.load()
    yield Topics(folder, cache, base)
    base.close()


@pytest.fixture(scope="module")
def trained_library(trained_notes: TrainedNotes, topics: Topics) -> Library:
    """The topics indexed with the trained model, in the cache that holds the base's index."""
    from mrl_tui.core.embedding.embed import Embedder

    embedder = Embedder(str(trained_notes.path), device="cpu")
    library = Library(topics.folder, embedder, cache_root=topics.cache)
    library.update()
    library.load()
    yield library
    library.close()


@pytest.fixture
def base_from_session(monkeypatch: pytest.MonkeyPatch, notes_library: Library, trained_notes):
    """The app's `Library.open` of the base model gets the session's model (the same bundled
    MiniLM, already loaded) instead of loading it again."""
    base = trained_notes.provenance["base_model"]
    opened = ModelChoice.load

    def load(choice: ModelChoice, **kwargs: object) -> object:
        return notes_library.embedder if choice.model == base else opened(choice, **kwargs)

    monkeypatch.setattr(ModelChoice, "load", load)
    return base


def key(hit) -> tuple[str, int, int]:
    return (hit.chunk.path, hit.chunk.start_line, hit.chunk.end_line)


def shown_column(app: MrlApp, side: str, column: str) -> list[str]:
    table = app.search_screen.query_one(side).table
    index = table.get_column_index(column)
    return [str(table.get_row_at(row)[index]).strip() for row in range(table.row_count)]


def topics_app(topics: Topics, library: Library, frozen_timings: bool = False) -> MrlApp:
    """The app on the topics folder with `library` open, in the topics' cache: no router
    calibration, no watch, nothing remembered."""
    return MrlApp(
        topics.folder,
        device="cpu",
        cache_root=topics.cache,
        library=library,
        auto_router=False,
        frozen_timings=frozen_timings,
        remember=False,
        watch=False,
    )


async def searched(
    pilot, app: MrlApp, text: str = QUERY, latency: bool = False, timeout: float = 30
) -> SearchScreen:
    """Once the search screen has its library, `text` searched from the query box (Enter there,
    so the slider has the keyboard after), until the comparison is shown. `latency`: the fixed
    latency profile first (snapshots, the fit line)."""
    search = app.search_screen
    await wait_for(pilot, lambda: search.library is not None)
    if latency:
        search.show_latency_profile(LATENCY)
    box = search.query_one("#query", Input)
    box.cursor_blink = False  # a still frame for snapshots
    box.value = text
    await pilot.click("#query")
    await pilot.press("enter")
    await wait_for(pilot, lambda: search.comparison is not None, timeout=timeout)
    return search


def test_the_base_side_names_the_trained_index_chunks_and_its_moves_follow(
    trained_library: Library, topics: Topics
) -> None:
    base = topics.base
    state = embed_and_rank(trained_library, QUERY)
    for transform in ("pca", "naive"):
        comparison = compare_with_base(trained_library, base, state, 32, transform)
        assert (comparison.dim, comparison.ref_dim, comparison.ref_transform) == (32, 32, transform)
        assert comparison.ref_model == base.embedder.name == BASE
        # the right side is the base model's own ranking at 32 under the transform …
        own = base.search(base.query(QUERY), 32, 10, transform=transform)
        assert [key(h) for h in comparison.right] == [key(h) for h in own.hits]
        # … named by the trained index's chunk ids, which hold the same chunks
        ids = [hit.id for hit in comparison.right]
        assert all(i >= 0 for i in ids)  # one folder, both indexes current: every chunk found
        assert [key(h) for h in comparison.right] == [
            (c.path, c.start_line, c.end_line) for c in trained_library.store.chunks(ids)
        ]
        # so the moves are those of the chunks themselves
        by_chunk = movements([key(h) for h in comparison.left], [key(h) for h in comparison.right])
        assert comparison.ranking.left_moves == by_chunk
        assert comparison.left == trained_library.search(state.query, 32, 10).hits
        record = comparison_record(state, comparison, trained_library.full_dim)  # the export
        assert record["reference"] == {"dim": 32, "transform": transform, "model": BASE}
    # the next slider move reuses the base model's query embedding
    again = compare_with_base(trained_library, base, state, 64, "pca", comparison)
    assert again.ref_query is comparison.ref_query and again.ref_dim == 64


async def test_b_shows_the_base_model_at_the_same_dim_with_marks(
    trained_library: Library, topics: Topics, base_from_session: str
) -> None:
    app = topics_app(topics, trained_library, frozen_timings=True)
    async with app.run_test(size=(120, 36)) as pilot:
        search = await searched(pilot, app, latency=True)
        assert search.trained_base == base_from_session
        await pilot.press("shift+left")  # 64 → 32 (the slider has the keyboard after Enter)
        await wait_for(pilot, lambda: search.comparison.dim == 32)
        footer = screen_text(app).splitlines()[-1]
        assert " b base " in f"{footer} ", footer  # shown for a trained model

        await pilot.press("b")  # the base index is opened in a worker, from the cache
        await wait_for(pilot, lambda: search.comparison.ref_model is not None, timeout=60)
        comparison = search.comparison
        assert (comparison.dim, comparison.ref_transform) == (32, "pca")
        assert not app.search_screen.query_one(JobsLine).display  # done: the line is gone
        text = screen_text(app)
        assert "reference: base PCA @32" in text and "at dim 32 (native MRL)" in text
        assert "dim 32 vs base PCA @32" in text
        # the marks shown are the moves of the chunks between the two models' rankings
        base = topics.base
        base_hits = base.search(base.query(QUERY), 32, 10, transform="pca").hits
        expected = movements([key(h) for h in comparison.left], [key(h) for h in base_hits])
        assert shown_column(app, "#left", "move") == [movement_label(m) for m in expected]
        assert set(shown_column(app, "#left", "move")) - {"="}, "the two models agree here"

        await pilot.press("b")  # naive truncation of the base model
        await wait_for(pilot, lambda: search.comparison.ref_transform == "naive")
        assert search.comparison.ref_model is not None
        assert "reference: base naive @32" in screen_text(app)
        await pilot.press("shift+right")  # the base side follows the dim
        await wait_for(pilot, lambda: search.comparison.dim == 64)
        assert search.comparison.ref_dim == 64 and "base naive @64" in screen_text(app)

        await pilot.press("b")  # back to the trained model's own reference
        await wait_for(pilot, lambda: search.comparison.ref_model is None)
        assert search.comparison.ref_transform is None
        assert "reference: base" not in screen_text(app)


async def test_the_footer_with_a_trained_model_fits_80_columns_f1_included(
    trained_library: Library, topics: Topics, base_from_session: str
) -> None:
    app = topics_app(topics, trained_library)
    async with app.run_test(size=(80, 24)) as pilot:
        await searched(pilot, app)  # the slider has the keyboard: every letter key is shown
        footer = screen_text(app).splitlines()[-1]
        assert " b base " in footer and " f1 help " in footer, footer
        assert footer.rstrip().endswith("^p palette"), footer


async def test_b_is_off_without_a_trained_model(topics: Topics) -> None:
    app = topics_app(topics, topics.base)
    async with app.run_test(size=(100, 30)) as pilot:
        search = await searched(pilot, app)
        assert " b base " not in screen_text(app).splitlines()[-1]  # not offered
        before = search.comparison
        await pilot.press("b")
        await pilot.pause(0.3)
        assert search.comparison is before and search.base_library is None  # nothing happened
        assert not search.query_one(JobsLine).display


async def palette(pilot, command: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*command)
    await pilot.pause(0.3)
    await pilot.press("enter")


def detail(screen: TrainScreen) -> str:
    return str(screen.query_one("#train-detail", Static).render())


async def test_training_in_the_background_while_searching(embedder, tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path / "tiny").resolve()
    cache = tmp_path / "cache"
    app = MrlApp(
        folder,
        device="cpu",
        cache_root=cache,
        library=Library(folder, embedder, cache_root=cache),
        remember=False,
        watch=False,
    )
    app.train_settings = LONG
    async with app.run_test(size=(100, 30)) as pilot:
        search = app.search_screen
        await wait_for(pilot, lambda: search.library is not None)
        await palette(pilot, "train a matryoshka")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen))
        screen = app.screen
        await wait_for(pilot, lambda: "val " in detail(screen), timeout=90)
        footer = screen_text(app).splitlines()[-1]
        assert "b run in background" in footer, footer

        await pilot.press("b")  # hide it: training goes on
        await wait_for(pilot, lambda: app.screen is search)
        run = app.training
        assert run is not None and run.running
        jobs = search.query_one(JobsLine)
        await wait_for(pilot, lambda: "step " in str(jobs.render()))
        line = str(jobs.render())
        assert line.startswith("training: step ") and "/500" in line and "Train…" in line
        assert jobs.display and "training: step " in screen_text(app)

        # a search while it trains
        await searched(pilot, app, "how often to clean the kettle", timeout=60)
        assert run.running and search.query_one("#left").table.row_count > 0
        step = run.last_progress.step
        await wait_for(pilot, lambda: run.last_progress.step > step, timeout=60)  # still going

        # the palette shows the same run again, live
        await palette(pilot, "train a matryoshka")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen))
        again = app.screen
        assert again is not screen and again.run is run
        assert "step " in detail(again) and not jobs.display
        shown_step = run.last_progress.step
        await wait_for(pilot, lambda: f"step {shown_step}/" not in detail(again), timeout=60)

        await pilot.press("b")  # hidden again; then it ends (as at its last step) while hidden
        await wait_for(pilot, lambda: app.screen is search and jobs.display)
        run.job.stop.set()  # what Esc in the modal does (tested in test_ui_train)
        await wait_for(pilot, lambda: not run.running, timeout=60)
        assert run.result is not None and run.result.provenance["partial"] is True
        notices = [n.message for n in app._notifications]
        assert any(
            m.startswith("Training done.") and "Search with the trained model" in m for m in notices
        ), notices
        await wait_for(pilot, lambda: "training done" in str(jobs.render()))

        await palette(pilot, "search with the trained")
        await wait_for(pilot, lambda: app.model == str(run.result.model_path), timeout=30)
        await wait_for(pilot, lambda: search.library is not None, timeout=90)
        assert not jobs.display  # its line did its work
        assert search.trained_base is not None  # and `b` is offered now


def test_snapshot_trained_at_32_against_the_base_model_with_pca_at_32(
    snap_compare, trained_library: Library, topics: Topics, base_from_session: str
) -> None:
    """Both sides differ: the trained model's 32-d prefix against the base model's PCA at 32.
    Timings frozen, the header's model path (a temporary folder) replaced by a fixed line."""
    app = topics_app(topics, trained_library, frozen_timings=True)
    moves: list[str] = []

    async def run_before(pilot) -> None:
        search = await searched(pilot, app, latency=True)
        await pilot.press("shift+left", "b")
        await wait_for(
            pilot, lambda: search.comparison.ref_model is not None and search.comparison.dim == 32
        )
        await pilot.press("tab", "down")  # the left table: select the second hit
        await pilot.pause()
        app.sub_title = "trained on notes (MiniLM) · cpu · native MRL"
        app.clear_notifications()
        moves.extend(shown_column(app, "#left", "move"))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)
    assert set(moves) - {"="}, "the two sides agree: a degenerate state"


async def test_a_base_model_that_cannot_open_is_one_line_and_the_reference_stays(
    trained_library: Library, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mrl_tui.core.errors import ModelLoadError

    def unavailable(cls, root, **kwargs):  # as when the base model's weights are gone
        model = kwargs["model_choice"].model
        raise ModelLoadError(f"cannot load model {model!r}: not a local folder")

    monkeypatch.setattr(Library, "open", classmethod(unavailable))
    app = topics_app(topics, trained_library)
    async with app.run_test(size=(100, 30)) as pilot:
        search = await searched(pilot, app)
        before = search.comparison.ref_dim
        await pilot.press("b")
        line = f"The base model's index could not be opened: cannot load model {BASE!r}"
        await wait_for(pilot, lambda: any(n.message.startswith(line) for n in app._notifications))
        await pilot.pause()
        assert search.comparison.ref_model is None and search.comparison.ref_dim == before
        assert search.base_library is None and not search.query_one(JobsLine).display
