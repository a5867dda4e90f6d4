"""The optional encoder stage after the cached head (`TrainSettings.encoder_steps`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import one_torch_thread, tiny_folder

from mrl_tui.cli import main
from mrl_tui.core.embedding.models import bundled_model_path
from mrl_tui.core.errors import InputError
from mrl_tui.core.training.train import TrainSettings, train
from mrl_tui.core.training.trained import models_root

STAGE = TrainSettings(
    max_steps=4, batch_size=4, max_seq_length=16, evaluations=2, patience=5,
    encoder_steps=4, encoder_negatives=4, encoder_learning_rate=1e-3, encoder_layers=1,
)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _weights(path: Path) -> dict[str, np.ndarray]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")
    return {k: v.numpy().copy() for k, v in model[0].state_dict().items()}


def test_the_stage_trains_the_top_layers_only_and_records_its_settings(tmp_path: Path) -> None:
    """The stage runs after the head (validated twice, start included), reaches provenance; a
    kept checkpoint changes the top layer only and loads with plain `SentenceTransformer`."""
    from sentence_transformers import SentenceTransformer

    result = train(
        tiny_folder(tmp_path / "tiny"), device="cpu", settings=STAGE, cache_root=tmp_path
    )
    record = result.provenance
    stage = record["encoder_stage"]
    assert result.model_path is not None and stage["steps_run"] == 4
    assert stage["layers"] == 1 and stage["anchor"] == STAGE.encoder_anchor
    assert stage["negatives"] == 4 and stage["planned_steps"] == 4
    assert [h["step"] for h in stage["history"]] == [0, 2, 4]
    assert "then the encoder" in record["loss"] and "encoder_stage" in record["timings"]
    loaded = SentenceTransformer(str(result.model_path), device="cpu")
    assert loaded.encode(["a query"]).shape == (1, 384)
    base, mine = _weights(bundled_model_path()), _weights(result.model_path)
    changed = {k for k in base if not np.array_equal(base[k], mine[k])}
    if stage["steps"] > 0:  # a stage checkpoint was kept: only the top layer moved
        assert changed and all(".layer.5." in k for k in changed)
        assert record["validation"]["best"] == stage["best"]
    else:  # the head's best stayed the run's: the encoder is the base's
        assert not changed


def test_a_stop_in_the_stage_keeps_the_best_so_far_marked_partial(tmp_path: Path) -> None:
    """A stop request at the stage's second step: the head's (or the stage's) best is saved,
    marked partial; nothing half-written is left beside it."""
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) == 4 + 2  # the head's 4 steps, then the stage's second

    result = train(
        tiny_folder(tmp_path / "tiny"), device="cpu", settings=STAGE, cache_root=tmp_path,
        should_stop=stop,
    )  # fmt: skip
    record = result.provenance
    assert result.model_path is not None and record["partial"] is True
    assert record["stop_reason"] == "stopped"
    assert record["encoder_stage"]["steps_run"] == 2 and record["encoder_stage"]["steps"] == 0
    assert sorted(models_root(tmp_path).iterdir()) == [result.model_path]
    base, mine = _weights(bundled_model_path()), _weights(result.model_path)
    assert all(np.array_equal(base[k], mine[k]) for k in base)  # the head's best: base encoder


def test_the_stage_needs_the_cached_head(tmp_path: Path) -> None:
    settings = TrainSettings(max_steps=2, batch_size=4, encoder_steps=2, head_share=0.5)
    with pytest.raises(InputError, match="encoder steps follow the head trained alone"):
        train(tiny_folder(tmp_path / "tiny"), device="cpu", settings=settings, cache_root=tmp_path)


def test_the_cli_runs_the_stage_and_says_what_it_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--encoder-steps` reaches the stage: the summary has its line, the JSON its record, and
    the progress bar a phase of its own (whose rate counts the stage's steps, not the head's)."""
    folder = tiny_folder(tmp_path / "tiny")
    args = ["train", str(folder), "--cache-dir", str(tmp_path), "--max-steps", "2"]
    args += ["--batch-size", "4", "--max-seq-length", "16", "--encoder-steps", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"then the encoder's top 2 layers: 2 of 2 steps in \d+ s, ", out), out
    assert "native MRL at 32/64/128/256/384" in out
    assert main([*args, "--force", "--json"]) == 0
    stage = json.loads(capsys.readouterr().out)["encoder_stage"]
    assert stage["steps_run"] == 2 and stage["layers"] == 2


def test_the_cli_says_encoder_steps_need_the_head_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tiny_folder(tmp_path / "tiny")
    args = ["train", str(folder), "--cache-dir", str(tmp_path), "--encoder-steps", "2"]
    assert main([*args, "--head-share", "0.5"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mrl-tui: --encoder-steps follow the head trained alone: they need ")
    assert "--head-share 1" in err and len(err.splitlines()) == 1


def test_only_the_chosen_top_layers_train() -> None:
    from sentence_transformers import SentenceTransformer

    from mrl_tui.core.training.encoder_stage import trainable_layers

    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    chosen = trainable_layers(model, 2)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".layer.4." in n or ".layer.5." in n for n in names)
    assert len(chosen) == len(names) and any(".layer.4." in n for n in names)
    assert len(trainable_layers(model, None)) == len(list(model[0].auto_model.parameters()))
