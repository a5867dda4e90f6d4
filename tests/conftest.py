"""Shared fixtures: the real bundled model (loaded once per session), a real Matryoshka model
trained on the notes sample (once per run), and small temp corpora.

Under pytest-xdist (`pytest -n 2`) each worker is a session of its own: the notes index and the
trained model are built once for all workers (`built_once`), and each worker's torch and BLAS
take their share of the cores instead of all of them."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # set before this import, read at torch's
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _share = str(max(1, (_cores or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, _share)  # two workers × two threads on two cores spin-wait

import numpy as np
import pytest
from fakes import HashEmbedder  # the one stand-in; tests import it from here or fakes

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_corpora"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No test ever touches the real platform cache, config, state or a running server."""
    monkeypatch.setenv("MRL_TUI_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("MRL_TUI_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    monkeypatch.setenv("MRL_TUI_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    monkeypatch.setenv("MRL_TUI_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedder():
    from mrl_tui.core.embedding.embed import Embedder

    return Embedder(device="cpu", backend="torch")  # the tests' vectors are torch's (see below)


@pytest.fixture(scope="session")
def default_embedder(embedder):
    """The session's torch model standing for the default backend (auto): the same model, keyed
    as an auto choice is, so a lazy open finds what it recorded (`facts.record`)."""
    from mrl_tui.core.embedding.choice import ModelChoice

    stand = copy.copy(embedder)
    stand.facts_key = ModelChoice(device="cpu").facts_key
    return stand


@pytest.fixture(autouse=True)
def _one_model_per_session(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """`ModelChoice.load` (how the CLI, the app, bench and the server get their model) is handed
    the session's model when it asks for the bundled one on the CPU, instead of loading it again
    for each command; any other model, device, backend or `--mrl` loads for real, and so does
    training's (it changes the weights). A test's own stand-in wins. The default backend, auto
    (int8 on a CPU), is handed the torch model too: the suite's figures and pinned outputs are
    torch vectors, and an export per test would cost seconds; `test_onnx_embed` runs auto for
    real."""
    from mrl_tui.core.embedding.choice import ModelChoice

    real = ModelChoice.load

    def shared(choice: ModelChoice, **kwargs: Any) -> object:
        plain = choice.embed_backend in ("torch", "auto") and not choice.mrl
        if choice.model is None and plain and not kwargs.get("full_precision"):
            from mrl_tui.core.embedding.embed import choose_device

            if choice.device in ("cpu", "auto") and choose_device(choice.device) == "cpu":
                name = "embedder" if choice.embed_backend == "torch" else "default_embedder"
                return request.getfixturevalue(name)
        return real(choice, **kwargs)

    monkeypatch.setattr(ModelChoice, "load", shared)


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> tuple[Path, bool]:
    """(folder, built here): `build(folder)` runs once per test run. Without xdist the folder is
    a plain session folder. Under xdist the first worker to ask builds it, under a file lock, in
    a folder all the workers share (the parent of their temp folders); the others wait for it and
    find it built. A build that failed half-way is started again by the next worker."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder, True
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent
    folder, done = root / name, root / f"{name}.built"
    with FileLock(str(root / f"{name}.lock")):
        if done.exists():
            return folder, False
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        build(folder)
        done.touch()
        return folder, True


@pytest.fixture(scope="session")
def notes_library(embedder, tmp_path_factory: pytest.TempPathFactory):
    """The notes sample indexed once per run with the real model (about 40 s on 2 cores).

    Tests share it read-only: they search it, they do not index it again or close it. Each
    xdist worker opens its own copy of the index, with the vectors the model gave each text."""
    from mrl_tui.core.library import Library

    remembering = Remembering(embedder)

    def build(folder: Path) -> None:
        library = Library(SAMPLES / "notes", remembering, cache_root=folder / "cache")
        report = library.update()
        assert report.chunks_total > 100 and not report.cancelled
        library.load()  # the derived files (vector snapshot, PCA) are made here too
        library.close()
        remembering.save(folder / "known.npz")

    folder, here = built_once(tmp_path_factory, "notes", build)
    cache = folder / "cache"
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the shared folder stays as built
        cache = tmp_path_factory.mktemp("notes-copy") / "cache"
        shutil.copytree(folder / "cache", cache)
    if not here:
        remembering.load(folder / "known.npz")
    library = Library(SAMPLES / "notes", remembering, cache_root=cache)
    report = library.update()
    assert report.chunks_total > 100 and report.chunks_embedded == 0
    library.load()
    yield library
    library.close()


class TrainedNotes(NamedTuple):
    folder: Path
    cache: Path
    path: Path
    provenance: dict[str, Any]


TRAINED_NOTES_SETTINGS: dict[str, Any] = {
    "max_steps": 12,
    "batch_size": 8,
    "max_seq_length": 32,
    "learning_rate": 1e-4,
    "evaluations": 1,
    "validation_docs": 200,
}
"""12 steps of 8 pairs at 32 tokens, one validation among 200 documents: 14–19 s of CPU on one
thread (README, Development), and a real Matryoshka model: its held-out 32-dim nDCG@10 rises
clearly above the base's naive prefix (0.57 → 0.68 when measured)."""


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch thread meanwhile (training, mostly): on a shared, loaded 2-core machine two
    OpenMP threads spin-wait on each other: a fixture-sized run took 23 s of CPU with two
    threads, 3.5 s with one. On an idle machine one thread costs little: these runs are tiny."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _one_training_export(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Training encodes its texts on ONNX Runtime (the bundled model on a CPU), exporting into
    the run's cache: tests give each run a fresh cache, so they share one export instead
    (a function of the weights alone; each costs seconds)."""
    from mrl_tui.core.training import head

    before = head.EXPORT_ROOT
    head.EXPORT_ROOT = tmp_path_factory.getbasetemp() / "training-onnx"
    try:
        yield
    finally:
        head.EXPORT_ROOT = before


@pytest.fixture(scope="session")
def trained_notes(tmp_path_factory: pytest.TempPathFactory) -> TrainedNotes:
    """A real Matryoshka model: MiniLM trained by `mrl-tui train` on sample_corpora/notes (read
    only, nothing is written there), kept in a session cache. The native-MRL paths (registry,
    library, `info`, `search --model`) are tested on it rather than on a random model."""
    from mrl_tui.core.training.train import TrainSettings, train
    from mrl_tui.core.training.trained import trained_for

    def build(cache: Path) -> None:
        with one_torch_thread():
            result = train(
                SAMPLES / "notes",
                device="cpu",
                settings=TrainSettings(**TRAINED_NOTES_SETTINGS),
                cache_root=cache,
            )
        assert result.model_path is not None and not result.provenance["partial"]

    shared, _ = built_once(tmp_path_factory, "trained-notes", build)
    cache = shared
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a cache of this worker's own: tests index into it
        cache = tmp_path_factory.mktemp("trained-notes-copy") / "cache"
        shutil.copytree(shared, cache)
    found = trained_for(SAMPLES / "notes", cache)
    assert found is not None and not found.partial
    return TrainedNotes(SAMPLES / "notes", cache, found.path, found.provenance)


class Remembering:
    """The session's model, keeping each document text's vector: `notes_library.embedder`. A test
    that indexes a copy of some notes topics with it gets the vectors the model gave the session
    (about 5 s of embedding saved each) instead of embedding the same texts again."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self._known: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def embed_documents(
        self,
        texts: list[str],
        *,
        on_progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._known]
        if missing:
            found = self._inner.embed_documents(missing, should_stop=should_stop)  # type: ignore[attr-defined]
            self._known.update(zip(missing, found, strict=True))
        if on_progress is not None:
            on_progress(len(texts))
        out = np.zeros((len(texts), self._inner.full_dim), dtype=np.float32)  # type: ignore[attr-defined]
        for i, text in enumerate(texts):
            out[i] = self._known[text]
        return out

    def save(self, path: Path) -> None:
        texts = list(self._known)
        vectors = np.stack([self._known[t] for t in texts]) if texts else np.zeros((0, 0))
        np.savez(path, texts=np.array(texts, dtype=str), vectors=vectors)

    def load(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as saved:
            self._known.update(zip(saved["texts"].tolist(), saved["vectors"], strict=True))


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


def write_files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


TOPICS = {
    "cooking/bread.md": "# Sourdough bread\n\nFeed the starter with flour and water twice a day. "
    "Bake the loaf in a hot Dutch oven at 250 C.\n",
    "space/mars.md": "# Mars\n\nThe red planet has two small moons, Phobos and Deimos, and the "
    "tallest volcano in the solar system, Olympus Mons.\n",
    "bikes/chain.md": "# Bicycle chain care\n\nClean and lube the bike chain every 300 km; "
    "replace it when a chain checker shows 0.5 % wear.\n",
    "finance/budget.md": "# Monthly budget\n\nSplit income 50/30/20 between needs, wants and "
    "savings; automate the transfer to the savings account on payday.\n",
    "net/dns.md": "# DNS troubleshooting\n\nUse dig to query the resolver; check the TTL and "
    "whether the A record points at the right IP address.\n",
}


@pytest.fixture
def topic_folder(tmp_path: Path) -> Path:
    return write_files(tmp_path / "topics", TOPICS)


def tiny_texts(n: int = 24) -> dict[str, tuple[str, str]]:
    """name -> (title, body) of short notes about household things."""
    things = ["lamp", "kettle", "bicycle", "garden", "violin", "router", "camera", "tent"]
    texts = {}
    for i in range(n):
        thing = things[i % len(things)]
        texts[f"{thing}-{i}"] = (
            f"Caring for the {thing} number {i}",
            f"Clean the {thing} every {i + 2} days with a dry cloth. "
            f"Store the {thing} away from damp and direct sun in box {i}. "
            f"Replace worn parts of the {thing} after {i * 10 + 50} hours of use.",
        )
    return texts


def tiny_folder(root: Path, n: int = 24) -> Path:
    files = {f"notes/{name}.md": f"# {t}\n\n{b}\n" for name, (t, b) in tiny_texts(n).items()}
    return write_files(root, files)
