"""The one stand-in embedder of the tests, small folders to index with it, and a way to hold a
background job until the test lets it go.

Plain Python with no pytest in it: `benchmarks/fault_injection.py`, `benchmarks/bench_reopen.py`
and the subprocess drivers of some tests import it too. It imports nothing of `mrl_tui` at import
time (the reopen benchmark times the library's imports).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

LIBRARY_DIM = 96
"""The dim a `Library` test wants: above the HNSW anchor dim, so a graph can be built too."""

WORDS = (
    "bread",
    "starter",
    "flour",
    "oven",
    "planet",
    "moon",
    "volcano",
    "chain",
    "lube",
    "wear",
    "budget",
    "savings",
    "income",
    "dns",
    "resolver",
    "record",
    "garden",
    "tomato",
    "soil",
    "compost",
    "river",
    "bridge",
    "engine",
    "piston",
    "harbour",
    "sail",
)


class HashEmbedder:
    """Deterministic vectors from each text's sha256 (queries hashed like documents); whitespace
    words as tokens. Not a native MRL model unless told, so a `Library` fits a PCA for it.

    - `full_dim`: 32 by default (bookkeeping tests); `LIBRARY_DIM` for library tests.
    - `delay_s` per batch makes indexing slow enough to interrupt.
    - `embedded` records every document text, which the incremental-indexing tests check
      (`record=False` for benchmarks of many files).
    """

    name = "hash-embedder"
    full_dim = 32
    max_chunk_tokens = 64
    device = "cpu"

    def __init__(
        self,
        full_dim: int | None = None,
        *,
        delay_s: float = 0.0,
        native_mrl: bool = False,
        record: bool = True,
    ) -> None:
        if full_dim is not None:
            self.full_dim = full_dim
        self.delay_s = delay_s
        self.native_mrl = native_mrl
        self.record = record
        self.embedded: list[str] = []

    @property
    def spec(self) -> Any:
        from mrl_tui.core.embedding.models import ModelSpec

        return ModelSpec(self.name, native_mrl=self.native_mrl)

    @property
    def info(self) -> Any:  # what the app's title shows
        from mrl_tui.core.embedding.embed import EmbedderInfo

        return EmbedderInfo(self.name, self.device, "float32", self.full_dim, 64, False)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).standard_normal(self.full_dim).astype(np.float32)

    def embed_documents(
        self,
        texts: list[str],
        *,
        on_progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        out = np.zeros((len(texts), self.full_dim), dtype=np.float32)
        for i, text in enumerate(texts):
            if should_stop is not None and should_stop():
                from mrl_tui.core.errors import Cancelled

                raise Cancelled("stopped")
            out[i] = self.vector(text)
            if self.record:
                self.embedded.append(text)
            if on_progress is not None:
                on_progress(1)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.vector(text)

    def embed_queries(self, texts: list[str], on_progress: object = None) -> np.ndarray:
        out = np.zeros((len(texts), self.full_dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self.vector(text)
        return out


def write_corpus(root: Path, files: int = 12, paragraphs: int = 3, seed: int = 0) -> Path:
    """`files` Markdown notes of a few paragraphs of random words (several chunks each)."""
    rng = np.random.default_rng(seed)
    for i in range(files):
        parts = [f"# Note {i}"]
        for _ in range(paragraphs):
            parts.append(" ".join(rng.choice(WORDS, size=40)))
        path = root / f"notes/n{i:03d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return root


class Patcher(Protocol):
    """What `held` needs of pytest's `monkeypatch` (this module has no pytest in it)."""

    def setattr(self, target: object, name: str, value: object) -> None: ...


def held(
    monkeypatch: Patcher, module: ModuleType, name: str, attr: str | None = None, *, wait_s: float
) -> threading.Event:
    """`module.<name>` (or its `attr`, a static method) made to wait for the returned event
    first: a background refit held while the test looks at the state in between. A wait past
    `wait_s` fails the held call."""
    release = threading.Event()
    original = getattr(module, name)
    target = getattr(original, attr) if attr else original

    def waiting(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(wait_s)
        return target(*args, **kwargs)

    if attr:
        monkeypatch.setattr(original, attr, staticmethod(waiting))
    else:
        monkeypatch.setattr(module, name, waiting)
    return release
