"""`mrl-tui train` on the real bundled MiniLM, CI-sized: short texts, small batches, a few steps.

The tests that need a real Matryoshka model share the session's (conftest `trained_notes`:
trained on the notes sample); the stop, restart, failure and bad-input tests train on a tiny
corpus for a few steps.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    TOPICS,
    TRAINED_NOTES_SETTINGS,
    TrainedNotes,
    one_torch_thread,
    tiny_folder,
    tiny_texts,
    write_files,
)

from mrl_tui.cli import main
from mrl_tui.core.embedding.choice import ModelChoice
from mrl_tui.core.embedding.models import bundled_model_path, find_spec, resolve_spec
from mrl_tui.core.errors import InputError
from mrl_tui.core.training import train as train_module
from mrl_tui.core.training.train import TrainSettings, train
from mrl_tui.core.training.trained import (
    PROVENANCE_FILE,
    models_root,
    steps_phrase,
    trained_for,
    trained_models,
)

FULL_DIMS = [32, 64, 128, 256, 384]
FIXTURE_SETTINGS = TrainSettings(**TRAINED_NOTES_SETTINGS)
TINY = TrainSettings(max_steps=2, batch_size=4, max_seq_length=16, evaluations=2)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture
def trained(trained_notes: TrainedNotes) -> TrainedNotes:
    """The session's model trained on the notes sample (conftest)."""
    return trained_notes


def model_folders(cache: Path) -> list[Path]:
    root = models_root(cache)
    return sorted(root.iterdir()) if root.is_dir() else []


# -- the trained model ---------------------------------------------------------------------------


def test_the_trained_model_is_a_plain_sentence_transformers_folder(trained: TrainedNotes) -> None:
    from sentence_transformers import SentenceTransformer

    assert trained.path.parent == models_root(trained.cache)
    assert not any(trained.folder.rglob(PROVENANCE_FILE))  # nothing written to the user's folder
    assert list(trained.path.rglob("*.safetensors"))
    assert not [p for p in trained.path.rglob("*") if p.suffix in {".bin", ".pkl", ".pt"}]
    model = SentenceTransformer(str(trained.path), device="cpu")
    assert model.max_seq_length == 256  # its own length, not the training one
    assert model.encode(["a test sentence"]).shape == (1, 384)
    record = trained.provenance
    assert record["dims"] == FULL_DIMS and record["partial"] is False and record["start"] == "pca"
    assert record["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert record["source"] == str(trained.folder.resolve())
    assert record["steps_run"] == 12 and record["pairs"]["train"] > 100
    assert json.loads((trained.path / PROVENANCE_FILE).read_text())["key"] == record["key"]


def _top10(queries: np.ndarray, docs: np.ndarray, dim: int) -> np.ndarray:
    q = queries[:, :dim] / np.linalg.norm(queries[:, :dim], axis=1, keepdims=True)
    d = docs[:, :dim] / np.linalg.norm(docs[:, :dim], axis=1, keepdims=True)
    return np.argsort(-(q @ d.T), axis=1)[:, :10]


def _prefix_agreement(model, queries: list[str], docs: list[str], dim: int) -> float:
    """Share of the full-dim top 10 that the `dim` prefix's top 10 keeps, over the queries."""
    model.max_seq_length = 32
    q, d = model.encode(queries), model.encode(docs)
    small, full = _top10(q, d, dim), _top10(q, d, q.shape[1])
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(small, full, strict=True)]))


def test_small_prefixes_agree_with_full_more_than_base_naive_prefixes(
    trained: TrainedNotes, embedder
) -> None:
    """On the held-out pseudo-queries (never trained on), among their passages and 150 others:
    measured 0.50 → 0.57 at 32 dims."""
    from sentence_transformers import SentenceTransformer

    from mrl_tui.core.corpus.chunking import ChunkSettings
    from mrl_tui.core.training.pairs import folder_passages, make_pairs

    passages = folder_passages(trained.folder, embedder.count_tokens, ChunkSettings(254))
    pairs = make_pairs(passages)
    assert len(pairs.validation) == trained.provenance["pairs"]["validation"]
    queries = [p.query for p in pairs.validation]
    held = {p.passage for p in pairs.validation}
    others = [i for i in range(len(pairs.passages)) if i not in held][
        :: max(1, len(passages) // 150)
    ]
    docs = [pairs.passages[i].text for i in sorted(held) + others]
    base = _prefix_agreement(
        SentenceTransformer(str(bundled_model_path()), device="cpu"), queries, docs, 32
    )
    mine = _prefix_agreement(
        SentenceTransformer(str(trained.path), device="cpu"), queries, docs, 32
    )
    print(f"32-dim agreement with full: base naive {base:.3f}, trained {mine:.3f}")
    assert mine >= base + 0.03, (base, mine)


def test_the_pca_head_keeps_full_dim_cosines_at_step_0_and_loads_plainly(tmp_path: Path) -> None:
    """The trainable head starts as the corpus' PCA rotation: full-dim cosines are the base
    model's, prefixes are PCA's, and the folder saved with it loads with plain
    `SentenceTransformer(path)` to the same vectors."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.dense import Dense

    from mrl_tui.core.transforms.pca import fit_pca

    texts = [f"{title}. {body}" for title, body in tiny_texts().values()]
    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    before = model.encode(texts)
    rotation = fit_pca(before)
    where = train_module._insert_rotation(model, rotation.matrix)
    assert isinstance(model[where], Dense) and where == len(model) - 2  # before Normalize
    after = model.encode(texts)
    np.testing.assert_allclose(after @ after.T, before @ before.T, atol=1e-5)
    np.testing.assert_allclose(after[:, :32], rotation.apply(before)[:, :32], atol=1e-5)
    assert not np.allclose(after[:, :32], before[:, :32], atol=1e-2)  # not naive prefixes

    train_module.plain_heads(model)
    np.testing.assert_allclose(model.encode(texts), after, atol=1e-6)
    model.save(str(tmp_path / "m"), create_model_card=False, safe_serialization=True)
    assert (tmp_path / "m" / f"{where}_Dense" / "model.safetensors").is_file()
    loaded = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    np.testing.assert_allclose(loaded.encode(texts), after, atol=1e-5)


def _encoder_weights(path: Path) -> dict[str, np.ndarray]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")
    return {k: v.numpy().copy() for k, v in model[0].state_dict().items()}


def test_the_head_alone_trains_while_the_encoder_is_frozen(tmp_path: Path) -> None:
    """`head_share=1`: the saved encoder is the base's, bit for bit; the head moved off the PCA
    start but stayed orthogonal, so full-dim similarities are the base model's (within 1e-5).
    With a share below 1 the encoder trains after the head's steps."""
    from sentence_transformers import SentenceTransformer

    folder = tiny_folder(tmp_path / "tiny")
    base = _encoder_weights(bundled_model_path())
    settings = TrainSettings(
        max_steps=3, batch_size=4, max_seq_length=16, evaluations=1, head_share=1.0,
        head_learning_rate=1e-4,
    )  # fmt: skip
    result = train(folder, device="cpu", settings=settings, cache_root=tmp_path / "a")
    record = result.provenance
    assert result.model_path is not None and record["head_only_steps"] == 3
    assert record["head_learning_rate"] == 1e-4
    mine = _encoder_weights(result.model_path)
    assert all(np.array_equal(mine[k], base[k]) for k in base)
    trained_model = SentenceTransformer(str(result.model_path), device="cpu")
    head = trained_model[-2].linear.weight.detach().numpy()
    np.testing.assert_allclose(head @ head.T, np.eye(len(head)), atol=1e-5)
    texts = [f"{title}. {body}" for title, body in tiny_texts().values()]
    base_model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    base_model.max_seq_length = trained_model.max_seq_length
    before, after = base_model.encode(texts), trained_model.encode(texts)
    np.testing.assert_allclose(after @ after.T, before @ before.T, atol=1e-5)

    mixed = train(
        folder,
        device="cpu",
        settings=TrainSettings(
            max_steps=4, batch_size=4, max_seq_length=16, evaluations=1, head_share=0.5
        ),
        cache_root=tmp_path / "b",
    )
    assert mixed.model_path is not None and mixed.provenance["head_only_steps"] == 2
    moved = _encoder_weights(mixed.model_path)
    assert any(not np.array_equal(moved[k], base[k]) for k in base)


def test_the_start_is_a_checkpoint_so_a_run_that_only_gets_worse_keeps_it(tmp_path: Path) -> None:
    """A rate that wrecks the encoder: validation falls, so the saved model is the start (step 0:
    the base encoder, bit for bit, under its PCA head), never the worse trained weights."""
    folder = tiny_folder(tmp_path / "tiny")
    settings = TrainSettings(
        max_steps=3,
        batch_size=4,
        max_seq_length=16,
        evaluations=3,
        patience=5,
        learning_rate=0.5,
        head_share=0.0,
    )
    result = train(folder, device="cpu", settings=settings, cache_root=tmp_path)
    record = result.provenance
    validation = record["validation"]
    assert result.model_path is not None and record["steps_run"] == 3
    start, later = validation["base_pca"]["mean_ndcg10"], validation["history"][1:]
    assert all(h["mean_ndcg10"] <= start for h in later), later
    assert later[-1]["mean_ndcg10"] < start, later  # it did get worse
    assert record["steps"] == 0 and validation["best"] == validation["base_pca"]
    base = _encoder_weights(bundled_model_path())
    mine = _encoder_weights(result.model_path)
    assert all(np.array_equal(mine[k], base[k]) for k in base)


def test_registry_and_info_treat_it_as_native_mrl(
    trained: TrainedNotes, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = find_spec(str(trained.path))
    assert spec is not None and spec.native_mrl and spec.mrl_dims == tuple(FULL_DIMS)
    rule = resolve_spec(str(trained.path))[1]
    assert rule == f"native MRL: trained by mrl-tui on {trained.folder} at 32/64/128/256/384"
    cache = ["--cache-dir", str(trained.cache)]
    code, out, err = run(
        ["info", str(trained.folder), "--model", "trained", *cache, "--json"], capsys
    )
    assert code == 0, err
    info = json.loads(out)
    assert info["model"] == str(trained.path) and info["native_mrl"] is True
    assert info["rule"] == rule and info["transform"] == "native MRL"
    code, out, _ = run(["info", str(trained.folder), *cache, "--json"], capsys)
    assert code == 0 and json.loads(out)["cache_dir"] != info["cache_dir"]  # its own index


def test_search_with_the_trained_model_finds_the_expected_file(
    trained: TrainedNotes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_files(tmp_path / "topics", TOPICS)
    args = ["search", str(folder), "--model", str(trained.path), "--cache-dir", str(tmp_path)]
    for query, expected in [
        ("how often should I lube my bike chain", "bikes/chain.md"),
        ("moons of the red planet", "space/mars.md"),
    ]:
        code, out, err = run([*args, query, "--dim", "32", "--json"], capsys)
        assert code == 0, err
        result = json.loads(out)
        assert result["transform"] == "native MRL" and result["dim"] == 32
        assert result["results"][0]["path"] == expected


def test_an_unchanged_folder_is_up_to_date_without_loading_a_model(
    trained: TrainedNotes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(ModelChoice, "load", no_model)
    again = train(trained.folder, device="cpu", settings=FIXTURE_SETTINGS, cache_root=trained.cache)
    assert again.up_to_date and again.model_path == trained.path
    args = ["train", str(trained.folder), "--cache-dir", str(trained.cache), "--json"]
    code, out, err = run(args, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["up_to_date"] and summary["model_path"] == str(trained.path)
    assert summary["dims"] == FULL_DIMS  # the default dims: the same key


# -- stopping, failing, retraining (tiny corpus) --------------------------------------------------


def test_json_summary_of_a_short_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tiny_folder(tmp_path / "tiny")
    args = ["train", str(folder), "--max-steps", "2", "--batch-size", "4", "--max-seq-length", "16"]
    code, out, err = run(
        [*args, "--dims", "32,128", "--cache-dir", str(tmp_path), "--json"], capsys
    )
    assert code == 0, err
    summary = json.loads(out)
    assert Path(summary["model_path"]).is_dir()
    assert summary["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert summary["dims"] == [32, 128, 384] and summary["steps_run"] == 2
    assert summary["pairs"] > 0 and summary["seconds"] > 0 and summary["pairs_per_second"] > 0
    assert set(summary["validation"]["best"]["dims"]) == {"32", "128", "384"}
    assert summary["validation"]["base"]["mean_ndcg10"] > 0


def test_a_distillation_term_trains_on_passages_as_well(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path / "tiny")
    settings = TrainSettings(max_steps=3, batch_size=4, max_seq_length=16, distill=1.0, patience=5)
    result = train(folder, device="cpu", settings=settings, cache_root=tmp_path)
    record = result.provenance
    assert result.model_path is not None and record["steps_run"] == 3
    assert record["distill"] == 1.0 and 0 < record["distill_docs"] < record["passages"]


def _stop_after(step: int):
    calls = {"n": 0}

    def should_stop() -> bool:  # asked once per step
        calls["n"] += 1
        return calls["n"] >= step

    return should_stop


def test_a_stop_after_a_validation_keeps_the_best_so_far_marked_partial(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path / "tiny")
    settings = TrainSettings(max_steps=6, batch_size=4, max_seq_length=16, evaluations=3)
    result = train(
        folder, device="cpu", settings=settings, cache_root=tmp_path, should_stop=_stop_after(3)
    )
    assert result.model_path is not None and result.provenance["partial"] is True
    history = result.provenance["validation"]["history"]  # the start (step 0), then step 2
    best = max(history, key=lambda h: h["mean_ndcg10"])  # the earliest of equals
    assert [h["step"] for h in history] == [0, 2] and result.provenance["steps_run"] == 3
    assert result.provenance["steps"] == best["step"]
    assert "stopped early" in resolve_spec(str(result.model_path))[1]
    assert model_folders(tmp_path) == [result.model_path]  # no temporary folder left


def test_after_a_stopped_run_train_restarts_clearly_then_is_up_to_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Again after Ctrl-C: a new run from the base (said on stderr and in the JSON) replaces the
    partial model; once a run completes, the same command is up to date (exit 0)."""
    folder = tiny_folder(tmp_path / "tiny")
    settings = TrainSettings(max_steps=4, batch_size=4, max_seq_length=16, evaluations=4)
    stopped = train(
        folder, device="cpu", settings=settings, cache_root=tmp_path, should_stop=_stop_after(2)
    )
    assert stopped.provenance["partial"] and stopped.model_path is not None
    args = ["train", str(folder), "--max-steps", "4", "--batch-size", "4"]
    args += ["--max-seq-length", "16", "--cache-dir", str(tmp_path), "--json"]

    code, out, err = run(args, capsys)
    assert code == 0, err
    again = json.loads(out)
    assert "was stopped early at step 2 of 4 (kept, marked partial)" in err
    assert "this run starts again from sentence-transformers/all-MiniLM-L6-v2" in err
    assert not again["up_to_date"] and not again["partial"]
    assert again["stop_reason"] in {"completed", "no improvement"}
    assert again["restarted_after_partial"] == str(stopped.model_path)
    assert model_folders(tmp_path) == [Path(again["model_path"])]  # the partial one replaced

    code, out, err = run(args, capsys)
    assert code == 0 and err.strip() == ""  # no restart note
    third = json.loads(out)
    assert third["up_to_date"] and third["model_path"] == again["model_path"]
    code, out, _ = run(args[:-1], capsys)  # the plain text says so too
    assert code == 0 and out.startswith(f"up to date: {again['model_path']} was trained on")


def test_a_stop_before_any_validation_or_a_failed_save_leaves_the_previous_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentence_transformers import SentenceTransformer

    folder = tiny_folder(tmp_path / "tiny")
    first = train(folder, device="cpu", settings=TINY, cache_root=tmp_path)
    assert first.model_path is not None

    stopped = train(
        folder, device="cpu", settings=TINY, cache_root=tmp_path, force=True,
        should_stop=_stop_after(1),
    )  # fmt: skip
    assert stopped.model_path is None and stopped.provenance["stop_reason"] == "stopped"
    assert model_folders(tmp_path) == [first.model_path]

    def half_written(self, path: str, **kwargs) -> None:
        (Path(path) / "model.safetensors").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SentenceTransformer, "save", half_written)
    with pytest.raises(InputError, match="No space left on device"):
        train(folder, device="cpu", settings=TINY, cache_root=tmp_path, force=True)
    assert model_folders(tmp_path) == [first.model_path]
    assert trained_for(folder, tmp_path).path == first.model_path
    monkeypatch.undo()
    SentenceTransformer(str(first.model_path), device="cpu")  # still whole


def test_a_changed_folder_trains_again_and_replaces_its_model(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path / "tiny")
    first = train(folder, device="cpu", settings=TINY, cache_root=tmp_path)
    (folder / "notes" / "lamp-0.md").write_text(
        "# Lamp\n\nThe lamp was sold. A new one costs twelve euros. It is brighter.\n",
        encoding="utf-8",
    )
    second = train(folder, device="cpu", settings=TINY, cache_root=tmp_path)
    assert not second.up_to_date and second.model_path != first.model_path
    assert [m.path for m in trained_models(tmp_path)] == [second.model_path]


def test_train_on_a_beir_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    beir = tmp_path / "set"
    (beir / "qrels").mkdir(parents=True)
    docs = [{"_id": name, "title": t, "text": b} for name, (t, b) in tiny_texts().items()]
    (beir / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs), encoding="utf-8")
    (beir / "queries.jsonl").write_text("not read", encoding="utf-8")
    result = train(beir, beir=True, device="cpu", settings=TINY, cache_root=tmp_path)
    assert result.provenance["source_kind"] == "beir" and result.provenance["passages"] == 24
    assert trained_for(beir, tmp_path).path == result.model_path
    folder = tiny_folder(tmp_path / "same-text")
    args = ["info", str(folder), "--model", "trained", "--cache-dir", str(tmp_path)]
    code, _, err = run(args, capsys)  # trained for the BEIR set, not for this folder
    assert code == 1 and "no model has been trained for" in err


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["--dims", "64,32"], 1, "--dims must increase"),
        (["--dims", "32,512"], 1, "512 is above sentence-transformers/all-MiniLM-L6-v2's 384"),
        (["--dims", "0,32"], 1, "not a positive whole number"),
        (["--max-steps", "0"], 2, "below 1"),
        (["--max-steps", "3", "--epochs", "1"], 2, "not allowed with argument"),
        (["--model", "no-such/model-anywhere"], 1, "cannot load model"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], code: int, needle: str
) -> None:
    folder = tiny_folder(tmp_path / "tiny")
    got, out, err = run(["train", str(folder), "--cache-dir", str(tmp_path), *extra], capsys)
    assert got == code and out == "" and needle in err, err
    assert len(err.strip().splitlines()) == 1
    assert not model_folders(tmp_path)


def test_bad_folders_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "picture.png").write_bytes(b"\x89PNG")
    few = tiny_folder(tmp_path / "few", n=5)
    cases = [
        (["train"], "either a folder or --beir"),
        (["train", str(tmp_path / "nope")], "no such folder"),
        (["train", str(empty)], "nothing indexable found"),
        (["train", "--beir", str(empty)], "missing corpus.jsonl"),
        (["train", str(few)], "training needs at least 16"),
        (["search", str(few), "x", "--model", "trained"], "no model has been trained for"),
    ]
    for args, needle in cases:
        code, out, err = run([*args, "--cache-dir", str(tmp_path)], capsys)
        assert code == 1 and out == "" and needle in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err


def test_no_space_for_the_model_is_checked_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tiny_folder(tmp_path / "tiny")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        train_module.shutil, "disk_usage", lambda _: usage._replace(free=10_000_000)
    )
    monkeypatch.setattr(ModelChoice, "load", lambda *a, **k: pytest.fail("model loaded"))
    code, _, err = run(["train", str(folder), "--cache-dir", str(tmp_path)], capsys)
    assert code == 1 and "no space for the trained model" in err and "10 MB are free" in err


def test_by_default_only_the_head_trains(trained: TrainedNotes) -> None:
    """The session's model was trained with the default settings: its encoder is the base's, bit
    for bit (the full dimension is the base's), and only the orthogonal head can differ."""
    assert TrainSettings().head_share == 1.0
    base = _encoder_weights(bundled_model_path())
    mine = _encoder_weights(trained.path)
    assert base.keys() == mine.keys()
    assert all(np.array_equal(base[name], mine[name]) for name in base)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("2", "2.0 is not a number from 0 to 1"),
        ("-0.5", "-0.5 is not a number from 0 to 1"),
        ("half", "'half' is not a number"),
    ],
)
def test_head_share_outside_0_to_1_is_one_line(
    value: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["train", str(tmp_path), "--head-share", value], capsys)
    assert code == 2 and out == ""
    assert f"--head-share: {says}" in err and len(err.splitlines()) == 1


def test_the_cli_summary_says_how_many_texts_the_head_encoded_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tiny_folder(tmp_path / "tiny")
    args = ["train", str(folder), "--cache-dir", str(tmp_path), "--max-steps", "2"]
    code, out, err = run(args, capsys)
    assert code == 0, err
    first = out.splitlines()[0]
    assert re.search(r"pairs: encoded \d+ texts once in \d+ s, then 2 steps in \d+ s", first), out
    assert "native MRL at 32/64/128/256/384" in out


def test_the_up_to_date_line_says_which_step_was_kept_and_the_encoder_stage() -> None:
    """A run the stop rule ended early kept an earlier checkpoint: the line says which, of how
    many, and the encoder steps that followed the head."""
    assert steps_phrase({"steps": 12, "steps_run": 12}) == "12 steps"
    assert steps_phrase({"steps": 6, "steps_run": 12}) == "kept step 6 of 12"
    record = {"steps": 6, "steps_run": 12, "encoder_stage": {"steps_run": 3, "steps": 2}}
    assert steps_phrase(record) == "kept step 6 of 12, then 3 encoder steps"
    assert steps_phrase({"steps": 4}) == "4 steps"  # records from before steps_run


def test_the_training_date_reads_in_local_time() -> None:
    from datetime import datetime

    from mrl_tui.core.training.trained import when_trained

    stamp = "2026-12-03T06:29:59+00:00"
    local = datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    assert when_trained({"date": stamp}) == local and len(local) == 16
    assert when_trained({"date": "yesterday"}) == "yesterday"  # not ISO: as recorded
