"""The default training path: the orthogonal head alone, on vectors encoded once (`head`).

Its loss is checked against sentence-transformers' own `MatryoshkaLoss(MNRL)` on the same model;
its runs against the trainer path's promises (bit-identical encoder, a plain model folder, stop
and Ctrl-C semantics); a ranking distillation runs as an option.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import one_torch_thread, tiny_folder, tiny_texts

from mrl_tui.core.embedding.models import bundled_model_path
from mrl_tui.core.embedding.onnx_embed import onnx_available
from mrl_tui.core.training import head
from mrl_tui.core.training import train as train_module
from mrl_tui.core.training.train import TrainSettings, train
from mrl_tui.core.training.trained import models_root

TINY = TrainSettings(max_steps=6, batch_size=4, max_seq_length=16, evaluations=3)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def model_folders(cache: Path) -> list[Path]:
    root = models_root(cache)
    return sorted(root.iterdir()) if root.is_dir() else []


def _encoder_weights(path: Path) -> dict[str, np.ndarray]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")
    return {k: v.numpy().copy() for k, v in model[0].state_dict().items()}


def test_the_cached_loss_is_sentence_transformers_matryoshka_mnrl() -> None:
    """On the same batch through the same rotated model (eval mode: no dropout), the loss on
    cached vectors and its gradient on the head are sentence-transformers' own."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import (
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )

    from mrl_tui.core.transforms.pca import fit_pca

    texts = list(tiny_texts().values())[:12]
    anchors, positives = [t for t, _ in texts], [b for _, b in texts]
    model = SentenceTransformer(str(bundled_model_path()), device="cpu").eval()
    model.max_seq_length = 32
    cached_a, cached_p = model.encode(anchors), model.encode(positives)  # before the head
    rotation = fit_pca(np.concatenate([cached_a, cached_p]))
    where = train_module._insert_rotation(model, rotation.matrix)
    linear = model[where].linear
    with torch.no_grad():  # a head off the PCA start, so the prefixes' gradients are not ~0
        linear.parametrizations.weight.original.add_(0.01 * torch.randn(384, 384))
    dims = [32, 128, 384]
    reference = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), dims)
    theirs = reference([model.preprocess(anchors), model.preprocess(positives)], None)
    (their_grad,) = torch.autograd.grad(theirs, linear.parametrizations.weight.original)
    weight = linear.weight
    ours = head.matryoshka_mnrl(
        torch.from_numpy(cached_a) @ weight.T, torch.from_numpy(cached_p) @ weight.T, dims
    )
    (our_grad,) = torch.autograd.grad(ours, linear.parametrizations.weight.original)
    theirs, ours = float(theirs.detach()), float(ours.detach())
    assert theirs > 1e-3
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    largest = float(their_grad.abs().max())
    assert largest > 0
    np.testing.assert_allclose(our_grad.numpy(), their_grad.numpy(), atol=1e-4 * largest)


def test_batches_hold_no_text_twice_and_cover_each_epoch() -> None:
    keys = [(f"q{i % 7}", f"p{i}") for i in range(30)]  # anchors repeat every 7 pairs
    batches = head.no_duplicate_batches(keys, 5, seed=3)
    for _epoch in range(2):
        seen: list[int] = []
        while len(seen) < len(keys):
            batch = next(batches)
            texts = [text for i in batch for text in keys[i]]
            assert len(batch) <= 5 and len(set(texts)) == len(texts)
            seen += batch
        assert sorted(seen) == list(range(len(keys)))


def test_the_schedule_warms_up_then_decays_to_zero() -> None:
    factors = [head.linear_schedule(s, 10, 2) for s in range(10)]
    assert factors[:3] == [0.0, 0.5, 1.0] and factors[-1] == pytest.approx(0.125)
    assert all(a >= b for a, b in itertools.pairwise(factors[2:]))


def test_the_distillation_is_zero_where_the_student_is_the_teacher() -> None:
    import torch

    x, c = torch.randn(5, 384), torch.randn(9, 384)
    q, _ = torch.linalg.qr(torch.randn(384, 384))
    assert float(head.rank_kl(x, c, x @ q.T, c @ q.T, [384], 0.05)) == pytest.approx(0, abs=1e-4)
    assert float(head.rank_kl(x, c, x @ q.T, c @ q.T, [16], 0.05)) > 0.01


def test_a_cached_head_run_encodes_once_and_saves_a_plain_model(tmp_path: Path) -> None:
    """The default (head alone): each distinct text is encoded once, with an "encoding" phase
    the progress bar counts; the encoder saved is the base's, bit for bit; the folder loads
    with plain `SentenceTransformer(path)` and the head in it is orthogonal."""
    from sentence_transformers import SentenceTransformer

    folder = tiny_folder(tmp_path / "tiny")
    seen: list[tuple[str, int, int]] = []
    result = train(
        folder, device="cpu", settings=TINY, cache_root=tmp_path,
        on_progress=lambda p: seen.append((p.phase, p.step, p.total)),
    )  # fmt: skip
    record = result.provenance
    assert result.model_path is not None and record["head_training"] == "cached vectors"
    assert record["encode_backend"] == ("onnx" if onnx_available() else "torch")
    encoding = [(step, total) for phase, step, total in seen if phase == "encoding"]
    assert encoding[0] == (0, record["encoded_texts"]) and encoding[-1][0] == encoding[-1][1]
    validation = record["validation"]
    every_text = 2 * record["pairs"]["train"] + validation["queries"] + validation["documents"]
    assert record["encoded_texts"] < every_text  # a passage that is several pairs' positive: once
    phases = [phase for phase, _, _ in seen]
    assert phases.index("encoding") < phases.index("training") < phases.index("saving")
    assert [s for phase, s, _ in seen if phase == "training"] == [1, 2, 3, 4, 5, 6][
        : record["steps_run"]
    ]
    assert set(record["timings"]) >= {"load", "pairs", "encoding", "training", "validation"}
    base = _encoder_weights(bundled_model_path())
    mine = _encoder_weights(result.model_path)
    assert base.keys() == mine.keys() and all(np.array_equal(mine[k], base[k]) for k in base)
    loaded = SentenceTransformer(str(result.model_path), device="cpu")
    weight = loaded[-2].linear.weight.detach().numpy()
    np.testing.assert_allclose(weight @ weight.T, np.eye(384), atol=1e-5)


def test_a_stop_while_encoding_keeps_the_previous_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tiny_folder(tmp_path / "tiny")
    first = train(folder, device="cpu", settings=TINY, cache_root=tmp_path)
    assert first.model_path is not None
    monkeypatch.setattr(head, "STOP_CHECK_TEXTS", 16)  # asked after 16 texts, 32, ...
    asked = []

    def stop() -> bool:
        asked.append(1)
        return True

    stopped = train(
        folder, device="cpu", settings=TINY, cache_root=tmp_path, force=True, should_stop=stop
    )
    record = stopped.provenance
    assert stopped.model_path is None and record["stop_reason"] == "stopped"
    assert record["steps_run"] == 0 and len(asked) == 1
    assert model_folders(tmp_path) == [first.model_path]


def test_ctrl_c_mid_run_keeps_the_best_so_far_marked_partial(tmp_path: Path) -> None:
    """KeyboardInterrupt at step 5's stop question (after the validation at step 4): the best
    of steps 0, 2 and 4 is saved, marked partial; 5 steps ran."""
    folder = tiny_folder(tmp_path / "tiny")
    calls = []

    def interrupt() -> bool:
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return False

    settings = TrainSettings(
        max_steps=6, batch_size=4, max_seq_length=16, evaluations=3, patience=5
    )  # no stop for no improvement
    result = train(
        folder, device="cpu", settings=settings, cache_root=tmp_path, should_stop=interrupt
    )
    record = result.provenance
    assert result.model_path is not None and record["partial"] is True
    assert [h["step"] for h in record["validation"]["history"]] == [0, 2, 4]
    assert record["steps_run"] == 5 and record["steps"] in (0, 2, 4)
    assert model_folders(tmp_path) == [result.model_path]


def test_a_ranking_distillation_trains_the_head_as_an_option(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    folder = tiny_folder(tmp_path / "tiny")
    settings = TrainSettings(
        max_steps=4, batch_size=4, max_seq_length=16, evaluations=1, rank_distill=1.0,
        rank_negatives=8, rank_passages=True, head_learning_rate=1e-2,
    )  # fmt: skip
    result = train(folder, device="cpu", settings=settings, cache_root=tmp_path)
    record = result.provenance
    assert record["loss"].startswith("Matryoshka rank-KL(τ=0.05, +8 corpus passages")
    assert record["rank_distill"]["passages_as_queries"] is True
    assert result.model_path is not None and record["steps_run"] == 4
    texts = [f"{title}. {body}" for title, body in tiny_texts().values()]
    base = SentenceTransformer(str(bundled_model_path()), device="cpu")
    mine = SentenceTransformer(str(result.model_path), device="cpu")
    base.max_seq_length = mine.max_seq_length
    before, after = base.encode(texts), mine.encode(texts)
    np.testing.assert_allclose(after @ after.T, before @ before.T, atol=1e-5)  # full dim kept


def test_the_cached_head_plans_three_epochs_unless_told(tmp_path: Path) -> None:
    """No `max_steps` or `epochs`: `HEAD_EPOCHS` epochs of batches (the trainer path plans one)."""
    folder = tiny_folder(tmp_path / "tiny")
    settings = TrainSettings(batch_size=4, max_seq_length=16)
    result = train(
        folder, device="cpu", settings=settings, cache_root=tmp_path, should_stop=lambda: True
    )
    record = result.provenance
    assert result.model_path is None and record["steps_run"] == 1  # stopped before validating
    per_epoch = -(-record["pairs"]["train"] // 4)
    assert train_module.HEAD_EPOCHS == 3 and record["planned_steps"] == 3 * per_epoch
