"""A fast embedder a `Library` accepts, and a small folder, for cache tests and the fault-injection
script (which imports this file, so it is plain Python with no pytest in it)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mrl_tui.core.embedding.models import resolve_spec

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


class LibraryEmbedder:
    """Deterministic vectors from the text's hash; not a native MRL model, so the library fits a
    PCA (a derived file to damage). `delay_s` per batch makes indexing slow enough to interrupt.
    96 dims: above the HNSW anchor dim, so a graph can be built too."""

    name = "hash-embedder"
    full_dim = 96
    max_chunk_tokens = 64
    device = "cpu"
    spec = resolve_spec(name)[0]  # an unknown model: not native MRL

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.embedded: list[str] = []

    @property
    def info(self) -> object:  # what the app's title shows
        from mrl_tui.core.embedding.embed import EmbedderInfo

        return EmbedderInfo(self.name, self.device, "float32", self.full_dim, 64, False)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _vector(self, text: str) -> np.ndarray:
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
            out[i] = self._vector(text)
            self.embedded.append(text)
        if on_progress is not None:
            on_progress(len(texts))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)

    def embed_queries(self, texts: list[str], on_progress: object = None) -> np.ndarray:
        out = np.zeros((len(texts), self.full_dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._vector(text)
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
