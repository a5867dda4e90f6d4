"""The palette's "Train a Matryoshka model on this folder", driven through Pilot: progress while
the UI stays live, Esc keeps the best checkpoint marked partial, and the search switches to the
trained model (its own index, native MRL). Real training on a tiny corpus, a few steps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import one_torch_thread, tiny_folder
from textual.widgets import Input, Static
from ui_helpers import wait_for

from mrl_tui.core.library import Library
from mrl_tui.core.training.train import TrainProgress, TrainSettings, train
from mrl_tui.core.training.trained import read_provenance, steps_phrase, trained_for
from mrl_tui.ui.app import MrlApp
from mrl_tui.ui.screens.train import Rate, TrainScreen, progress_line
from mrl_tui.ui.widgets.dim_slider import DimSlider

TINY = TrainSettings(max_steps=2, batch_size=4, max_seq_length=16, evaluations=2)
LONG = TrainSettings(max_steps=500, batch_size=4, max_seq_length=16, evaluations=500, patience=500)
"""Validates after every step (cheap here), so a stop always has a checkpoint to keep; never
ends by itself on no improvement (after two stale checks, before Esc on a quick machine)."""
UNVALIDATED = TrainSettings(max_steps=500, batch_size=4, max_seq_length=16, evaluations=1)
"""Validates only at step 500: a stop before it has no checkpoint, however fast the machine."""


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tiny_folder(tmp_path / "tiny").resolve()


def open_app(folder: Path, embedder, cache: Path) -> MrlApp:
    library = Library(folder, embedder, cache_root=cache)
    app = MrlApp(
        folder, device="cpu", cache_root=cache, library=library, remember=False, watch=False
    )
    return app


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def palette(pilot, command: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*command)
    await pilot.pause(0.3)
    await pilot.press("enter")


async def switched(pilot, app: MrlApp, model: str) -> None:
    screen = app.search_screen
    await wait_for(pilot, lambda: app.model == model and screen.library is not None, timeout=90)
    assert screen.library.embedder.name == model
    assert screen.library.transform_name == "native MRL"
    assert screen.library.embedder.spec.mrl_dims == (32, 64, 128, 256, 384)
    assert screen.query_one(DimSlider).max == 384  # a slider built for the new model


def test_progress_line_and_rate() -> None:
    rate = Rate()
    assert rate.update(3, now=10.0) is None  # one point: no rate yet
    assert rate.update(7, now=12.0) == pytest.approx(2.0)
    p = TrainProgress("training", step=7, total=27, loss=0.8345, best=0.61234)
    assert progress_line(p, rate.per_s) == (
        "step 7/27 · loss 0.835 · 2.00 steps/s · ETA 0:10 · val 0.612"
    )
    assert progress_line(TrainProgress("loading"), None) == ""
    encoding = TrainProgress("encoding", step=512, total=23000)  # texts, not steps
    assert progress_line(encoding, None) == "text 512/23000"
    assert progress_line(encoding, 64.0) == "text 512/23000 · 64.0 texts/s · ETA 5:51"


def test_each_counted_phase_gets_its_own_rate() -> None:
    """The encoding's texts/s must not become the training's steps/s: a new phase starts over,
    and the encoder stage gets a rate of its own too."""
    from mrl_tui.ui.training import TrainingRun, TrainJob

    run = TrainingRun(TrainJob(Path("notes")))
    for step in (100, 300):
        run.progressed(TrainProgress("encoding", step=step, total=1000))
    assert run.rate.first is not None and run.rate.first[0] == 100
    run.progressed(TrainProgress("training", step=1, total=20))
    assert run.rate.first is not None and run.rate.first[0] == 1 and run.rate.per_s is None
    run.progressed(TrainProgress("encoder", step=1, total=2))
    assert run.rate_phase == "encoder" and run.rate.first is not None


async def test_train_from_the_palette_stop_keeps_the_best_and_switch_to_it(
    folder: Path, embedder, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    app = open_app(folder, embedder, cache)
    app.train_settings = LONG
    async with app.run_test(size=(100, 30)) as pilot:
        search = app.search_screen
        await wait_for(pilot, lambda: search.library is not None)
        search.query_one("#query", Input).value = "how often to clean the kettle"
        await pilot.click("#query")
        await pilot.press("enter")
        await wait_for(pilot, lambda: search.comparison is not None)
        base_index = search.library.store.directory

        await palette(pilot, "train a matryoshka")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen))
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        await wait_for(pilot, lambda: "val " in text_of(screen, "#train-detail"), timeout=90)
        detail = text_of(screen, "#train-detail")
        assert "step " in detail and "/500" in detail and "loss " in detail, detail
        assert "Esc stops" in text_of(screen, "#train-hint")
        assert not screen.check_action("use_model", ())  # nothing to switch to yet

        await pilot.press("escape")  # stop: the worker ends after this step
        assert screen.job.stop.is_set() and app.screen is screen  # still shown while it stops
        await wait_for(pilot, lambda: not screen.running, timeout=60)
        result = screen.result
        assert result is not None and result.model_path is not None
        assert result.provenance["partial"] is True and result.provenance["steps_run"] < 500
        assert "marked partial" in text_of(screen, "#train-detail")
        assert "Enter searches with it" in text_of(screen, "#train-hint")
        record = read_provenance(result.model_path)
        assert record is not None and record["partial"] is True
        assert not any(folder.rglob("mrl_tui_training.json"))  # the folder stays read-only

        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, TrainScreen))
        await switched(pilot, app, str(result.model_path))
        # the query shown was searched again with the trained model, on its own index
        await wait_for(pilot, lambda: search.comparison is not None, timeout=60)
        assert search.state is not None and search.state.query.text.startswith("how often")
        assert search.library.store.directory != base_index

        # again: the partial run is said, and a stop before any validation keeps it
        app.train_settings = UNVALIDATED
        await palette(pilot, "train a matryoshka")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen))
        again = app.screen
        assert again.job.model == result.provenance["base_model"]  # from the base, not the model
        await wait_for(pilot, lambda: "stopped early at step" in text_of(again, "#train-source"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not again.running, timeout=90)
        assert "The last run's partial model is kept." in text_of(again, "#train-detail")
        assert trained_for(folder, cache).path == result.model_path


async def test_an_up_to_date_folder_says_so_and_the_palette_switches_models(
    folder: Path, embedder, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    done = train(folder, device="cpu", settings=TINY, cache_root=cache)
    app = open_app(folder, embedder, cache)
    app.train_settings = TINY
    async with app.run_test(size=(100, 30)) as pilot:
        search = app.search_screen
        await wait_for(pilot, lambda: search.library is not None)
        await palette(pilot, "train a matryoshka")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen))
        screen = app.screen
        await wait_for(pilot, lambda: not screen.running, timeout=60)
        assert screen.result.up_to_date and screen.model_path == done.model_path
        detail = text_of(screen, "#train-detail")
        assert detail.startswith("Up to date")
        assert steps_phrase(done.provenance) in detail
        # The model's path is cut from the left to the box's one line, ending with its name.
        source = text_of(screen, "#train-source")
        assert source.startswith("model: ") and source.endswith(done.model_path.name), source
        assert "\n" not in source and len(source) <= 86, source  # 90 columns less border, padding
        assert screen.query_one("#train-source").size.height == 1
        await pilot.press("escape")  # close, keep the base model
        await wait_for(pilot, lambda: not isinstance(app.screen, TrainScreen))
        assert app.model is None and search.library is not None
        base_index = search.library.store.directory

        await palette(pilot, "search with the trained")
        await switched(pilot, app, str(trained_for(folder, cache).path))
        await palette(pilot, "search with the base")
        base = done.provenance["base_model"]
        await wait_for(pilot, lambda: app.model == base and search.library is not None, 90)
        assert search.library.transform_name != "native MRL"
        assert search.library.store.directory == base_index  # the first index, not rebuilt


async def test_a_folder_too_small_to_train_on_is_one_line_and_nothing_switches(
    embedder, tmp_path: Path
) -> None:
    folder = tiny_folder(tmp_path / "few", n=5).resolve()
    app = open_app(folder, embedder, tmp_path / "cache")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.search_screen.library is not None)
        app.action_train()
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen))
        screen = app.screen
        await wait_for(pilot, lambda: not screen.running, timeout=60)
        assert text_of(screen, "#train-status") == "training failed"
        detail = text_of(screen, "#train-detail")
        assert "training needs at least 16" in detail and "\n" not in detail
        assert not screen.check_action("use_model", ())
        await pilot.press("enter")  # nothing to switch to: stays
        assert app.screen is screen
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, TrainScreen))
        assert app.model is None and app.search_screen.library is not None
