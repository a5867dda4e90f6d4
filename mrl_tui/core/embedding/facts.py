"""What a loaded model said about itself, kept in the cache root, so a keyword-only search can
open a folder's index without loading the model (or importing torch): `KnownModel`.

The index directory is keyed by the model's name and its chunk size, and the chunk size comes
from the model (its sequence length, its document prompt): both need the model loaded, unless a
run that loaded it wrote them down. `record` writes them (the `Library` does, for every real
model it is given); `known_model` reads them back. A `KnownModel` answers what the index needs
from the record and loads the real model the first time something must be embedded (a changed
file to index, a dense query), so it is never wrong, only sometimes slower.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrl_tui.core.embedding.models import ModelSpec, resolve_spec
from mrl_tui.core.errors import Message

FACTS_DIR = "model-facts"
FORMAT = 1
_FIELDS: dict[str, type] = {
    "name": str,
    "full_dim": int,
    "max_seq_length": int,
    "max_chunk_tokens": int,
    "rule": str,
    "native_mrl": bool,
    "query_prompt": str,
    "document_prompt": str,
    "dtype": str,
    "backend": str,
}


def facts_key(name: str, source: str, *, mrl: bool, backend: str) -> str:
    """The record's name: the model (and, for a model folder, its config files' size and
    mtime: a folder rewritten in place gets a new record), the mrl setting and the backend. For
    the auto backend, whether onnxruntime and onnx can be imported (found, not imported: cheap):
    installing or removing them changes what auto runs, so the record of the other is not used."""
    key: dict[str, Any] = {"name": name, "source": source, "mrl": mrl, "backend": backend}
    if backend == "auto":
        key["onnx"] = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
    folder = Path(source)
    if folder.is_dir():
        stamps = []
        for file in ("modules.json", "config.json", "config_sentence_transformers.json"):
            try:
                info = os.stat(folder / file)
            except OSError:
                continue
            stamps.append([file, info.st_size, info.st_mtime_ns])
        key["stamps"] = stamps
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _path(cache_root: Path, key: str) -> Path:
    return cache_root / FACTS_DIR / f"{key}.json"


def record(cache_root: Path, embedder: Any) -> None:
    """Write down what `embedder` (a loaded `Embedder`) says, once; a stand-in without a
    `facts_key` is skipped, and so is a cache root that cannot be written (nothing is lost but
    speed)."""
    key = getattr(embedder, "facts_key", None)
    if not isinstance(key, str):
        return
    info = embedder.info
    data = {
        "format": FORMAT,
        "name": embedder.name,
        "full_dim": int(embedder.full_dim),
        "max_seq_length": int(info.max_seq_length),
        "max_chunk_tokens": int(embedder.max_chunk_tokens),
        "rule": info.rule,
        "native_mrl": bool(info.native_mrl),
        "query_prompt": info.query_prompt,
        "document_prompt": info.document_prompt,
        "dtype": info.dtype,
        "backend": info.backend,
    }
    path = _path(cache_root, key)
    try:
        if path.is_file() and json.loads(path.read_text(encoding="utf-8")) == data:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        temp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temp, path)
    except (OSError, ValueError):
        return


def read(cache_root: Path, key: str) -> dict[str, Any] | None:
    """The record of `key`, or None when there is none or it is not one we wrote."""
    try:
        data = json.loads(_path(cache_root, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    for name, kind in _FIELDS.items():
        value = data.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return None
    if data["full_dim"] < 1 or data["max_chunk_tokens"] < 1:
        return None
    return data


class KnownModel:
    """An embedder known from its record: the name, dims and chunk size without the model.
    `load()` makes the real `Embedder` on first need (`loaded` says whether it has)."""

    def __init__(
        self, data: dict[str, Any], *, mrl: bool, key: str, load: Callable[[], Any]
    ) -> None:
        self.name: str = data["name"]
        self.full_dim: int = data["full_dim"]
        self.max_chunk_tokens: int = data["max_chunk_tokens"]
        self.backend: str = data["backend"]
        self.facts_key = key
        self.spec: ModelSpec
        self.spec, rule = resolve_spec(self.name, mrl=mrl)
        self.rule = Message(data["rule"], rule.settings)  # the text as recorded
        self._data = data
        self._load = load
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def real(self) -> Any:
        """The real embedder, loaded now if it is not yet (seconds: the ML stack)."""
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    @property
    def device(self) -> str:
        """Where the vectors are searched: the model's device once loaded; till then nothing is
        (keyword search), and the CPU is where numpy would search them."""
        return self._model.device if self._model is not None else "cpu"

    @property
    def info(self) -> Any:
        if self._model is not None:
            return self._model.info
        from mrl_tui.core.embedding.embed import EmbedderInfo

        d = self._data
        return EmbedderInfo(
            self.name,
            self.device,
            d["dtype"],
            self.full_dim,
            d["max_seq_length"],
            d["native_mrl"],
            self.rule,
            d["query_prompt"],
            d["document_prompt"],
            self.backend,
        )

    def count_tokens(self, text: str) -> int:
        return int(self.real().count_tokens(text))

    def embed_query(self, text: str) -> np.ndarray:
        return self.real().embed_query(text)

    def embed_queries(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        return self.real().embed_queries(texts, **kwargs)

    def embed_documents(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        return self.real().embed_documents(texts, **kwargs)

    def __getattr__(self, name: str) -> Any:  # the rest (model, dtype, …) is the real model's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real(), name)
