"""The bench cache: a BEIR set's embeddings and fitted adaptors, kept so a second run only scores.

One folder per (set, model, corpus file), `beir_cache_dir`; every file in it is verified against
the folder's ``manifest.json`` before use (`artifacts.Shelf.folder`). Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mrl_tui.core.cache import artifacts
from mrl_tui.core.cache.store import default_cache_root
from mrl_tui.core.transforms.adaptor import Adaptor, fit_adaptor
from mrl_tui.core.transforms.adaptor import fit_settings as adaptor_settings


def beir_cache_dir(folder: Path, name: str, model: str, cache_root: Path | None = None) -> Path:
    """`<cache>/bench/<set>-<model>-<hash of the corpus file's size and mtime>`."""
    stat = (Path(folder) / "corpus.jsonl").stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:{model}".encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}-{Path(model).name}")[:80]
    return (cache_root or default_cache_root()) / "bench" / f"{slug}-{digest[:16]}"


Note = Callable[[str], None]
"""Gets one line about the cache: a damaged file rebuilt, one that could not be saved."""


def warn(message: str) -> None:
    """The default `Note`: bench caches have no message list, their one line goes to stderr."""
    print(f"mrl-tui: {message}", file=sys.stderr)


def cached_embeddings(
    directory: Path,
    kind: str,
    texts: Sequence[str],
    embed: Callable[[Sequence[str]], np.ndarray],
    note: Note = warn,
) -> np.ndarray:
    """``embed(texts)``, saved as ``<kind>-<hash of the texts>.npy`` and loaded from it later."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = directory / f"{kind}-{digest}.npy"

    def load(path: Path) -> np.ndarray:
        vectors = artifacts.load_npy(path)
        if vectors.ndim != 2 or len(vectors) != len(texts) or vectors.dtype != np.float32:
            raise ValueError(f"{path.name}: {vectors.dtype} {vectors.shape}")
        return vectors

    return artifacts.Shelf.folder(directory, note).get(
        path,
        (len(texts),),
        load=load,
        build=lambda: np.ascontiguousarray(embed(texts), dtype=np.float32),
        writer=artifacts.npy_writer,
        what="cached embeddings",
    )


def cached_adaptor(
    directory: Path, docs: np.ndarray, device: str = "cpu", note: Note = warn
) -> Adaptor:
    """`fit_adaptor(docs)` on `device`, saved as ``adaptor-<hash of the vectors and the fit's
    settings>.npz`` and loaded from it later, so a second bench run does not train again."""
    vectors = np.ascontiguousarray(docs, dtype=np.float32)
    digest = hashlib.sha256(f"{vectors.shape}".encode())
    digest.update(vectors.tobytes())
    digest.update(json.dumps(adaptor_settings(), sort_keys=True).encode())
    path = Path(directory) / f"adaptor-{digest.hexdigest()[:16]}.npz"

    def load(path: Path) -> Adaptor:
        adaptor = Adaptor.from_arrays("adaptor", artifacts.load_npz(path))
        if adaptor.dim != vectors.shape[1]:
            raise ValueError(f"{path.name}: an adaptor of dimension {adaptor.dim}")
        return adaptor

    return artifacts.Shelf.folder(path.parent, note).get(
        path,
        (vectors.shape[1],),
        load=load,
        build=lambda: fit_adaptor(vectors, device=device),
        writer=lambda adaptor: artifacts.npz_writer(adaptor.to_arrays()),
        what="cached adaptor",
    )
