"""Shared fixtures: the real bundled model (loaded once per session) and small temp corpora."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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

    return Embedder(device="cpu")


@pytest.fixture(autouse=True)
def _one_model_per_session(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """`Library.open` (how the CLI and the app get their library) is handed the session's model
    when it asks for the bundled one on the CPU, instead of loading it again for each command;
    any other model, device, backend or `--mrl` loads for real. A test's own stand-in wins."""
    import mrl_tui.core.library as library_module

    real = library_module.Embedder

    def shared(model: str | None = None, **kwargs: object) -> object:
        device = kwargs.get("device", "auto")
        plain = kwargs.get("backend", "torch") == "torch" and not kwargs.get("mrl")
        if model is None and plain and device in ("cpu", "auto"):
            from mrl_tui.core.embedding.embed import choose_device

            if choose_device(str(device)) == "cpu":
                return request.getfixturevalue("embedder")
        return real(model, **kwargs)

    monkeypatch.setattr(library_module, "Embedder", shared)


@pytest.fixture(scope="session")
def notes_library(embedder, tmp_path_factory: pytest.TempPathFactory):
    """The notes sample indexed once per session with the real model (about 40 s on 2 cores).

    Tests share it read-only: they search it, they do not index it again or close it."""
    from mrl_tui.core.library import Library

    remembering = Remembering(embedder)
    library = Library(SAMPLES / "notes", remembering, cache_root=tmp_path_factory.mktemp("notes"))
    report = library.update()
    assert report.chunks_total > 100 and not report.cancelled
    library.load()
    yield library
    library.close()


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
