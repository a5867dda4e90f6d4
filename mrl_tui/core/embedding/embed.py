"""One `Embedder` over sentence-transformers: device choice, prompts, batching, cancellation.

The ML stack is imported lazily (importing sentence-transformers takes seconds), so a TUI can draw
its first frame before any of it is loaded.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mrl_tui.core.choices import DEVICES
from mrl_tui.core.embedding.facts import facts_key
from mrl_tui.core.embedding.models import (
    DEFAULT_MODEL,
    ModelSpec,
    bundled_model_path,
    find_spec,
    resolve_spec,
)
from mrl_tui.core.embedding.onnx_embed import check_backend, resolve_backend
from mrl_tui.core.errors import Cancelled, InputError, Message, ModelLoadError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from mrl_tui.core.embedding.onnx_embed import OnnxEncoder

DEFAULT_BATCH_SIZE = 32
TOKEN_BUDGET = {"cpu": 2048, "mps": 8192, "cuda": 16384}
"""Tokens per document batch. Batches are cut by token count, not by text count: measured on the
notes sample (2-core CPU), token-sorted 2048-token batches embed 1.4x faster than
`encode(texts, batch_size=32)`; a GPU wants far bigger batches."""
MAX_BATCH = 512
"""Measured on a 2-core CPU with MiniLM: 32 beats 64 and 128."""
QUERY_BATCH = 32
"""Queries per batch in `embed_queries` (200 pseudo-queries: 4.2 s batched, 13.7 s one by one)."""


def _quiet_ml_stack() -> None:
    """Silence the loaders' progress bars and warnings: they would break a TUI's screen."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import logging

    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)


def choose_device(requested: str = "auto") -> str:
    """cuda, then mps, then cpu; an explicit request that this machine cannot honour is an error."""
    if requested not in DEVICES:
        raise InputError(f"unknown device {requested!r}; choose one of {', '.join(DEVICES)}")
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise InputError(
            "device cuda: no CUDA GPU is available to torch on this machine", settings=("device",)
        )
    if requested == "mps" and not mps:
        raise InputError(
            "device mps: Apple's MPS backend is not available on this machine", settings=("device",)
        )
    return requested


def resolve_model(name: str | None) -> tuple[str, str]:
    """(display name, what to hand to SentenceTransformer): the default maps to the bundled copy."""
    name = name or DEFAULT_MODEL
    spec = find_spec(name)
    if spec is not None and spec.name.endswith("all-MiniLM-L6-v2") and not Path(name).exists():
        bundled = bundled_model_path()
        if bundled is not None:
            return spec.name, str(bundled)
    if Path(name).expanduser().exists():
        return name, str(Path(name).expanduser().resolve())
    return name, name


@dataclass(frozen=True)
class EmbedderInfo:
    model: str
    device: str
    dtype: str
    full_dim: int
    max_seq_length: int
    native_mrl: bool
    rule: str = ""
    """Which registry rule chose `native_mrl` (see `models.resolve_spec`): a `Message`, so a front
    end can spell the settings it names."""
    query_prompt: str = ""
    document_prompt: str = ""
    backend: str = "torch"


class Embedder:
    """Turns text into full-dimension float32 vectors: documents in batches, queries one by one."""

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        trust_remote_code: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        mrl: bool = False,
        full_precision: bool = False,
        backend: str = "auto",
        cache_root: Path | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        """`mrl`: the user says the model was trained with a Matryoshka loss (the mrl setting).
        `full_precision`: float32 weights even on CUDA (training keeps float32 master weights).
        `backend`: "onnx" / "onnx-int8" run the model on onnxruntime (CPU only); the export is
        cached under `cache_root` (default: the platform cache dir); "auto": int8 on a CPU where
        onnxruntime is installed, torch on a GPU. `on_status(line)`: told what a first load does
        that takes seconds (the one-time export)."""
        self.full_precision = full_precision
        self.backend = backend  # the one asked for until the device is known (below)
        self.name, self._source = resolve_model(model)
        self.facts_key = facts_key(self.name, self._source, mrl=mrl, backend=backend)
        """Where `core.embedding.facts` keeps what this model says about itself."""
        self.spec: ModelSpec
        self.spec, self.rule = resolve_spec(self.name, mrl=mrl)
        if self.spec.needs_remote_code and not trust_remote_code:
            raise InputError(
                f"{self.name} runs code from its repository (a custom model class); "
                "it runs only with trust remote code",
                settings=("trust remote code",),
            )
        self.device = choose_device(device)
        bundled = (self.name, self._source) == resolve_model(None)
        self.backend = resolve_backend(backend, self.device, bundled=bundled)
        check_backend(self.backend, self.device)
        self.batch_size = batch_size
        self._model = self._load(trust_remote_code)
        self._onnx = self._load_onnx(cache_root, on_status) if self.backend != "torch" else None
        get_dim = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        self.full_dim = int(get_dim() or 0)
        if self.full_dim <= 0:
            raise ModelLoadError(f"{self.name} does not report an embedding dimension")
        expected = self.spec.full_dim
        if expected and expected != self.full_dim:
            more = f"; the registry says {expected} dims, this one has {self.full_dim}"
            self.rule = Message(self.rule + more, self.rule.settings)
        self.max_seq_length = int(self._model.max_seq_length or 512)
        self._query_prompt = self._prompt("query", self.spec.query_prompt)
        self._document_prompt = self._prompt("document", self.spec.document_prompt)

    def _load(self, trust_remote_code: bool) -> SentenceTransformer:
        _quiet_ml_stack()
        import torch
        from sentence_transformers import SentenceTransformer

        # Always name the dtype: transformers 5 would otherwise load the checkpoint's own, which
        # can be float16 even for a model that must not run in it (embeddinggemma).
        half = self.device == "cuda" and self.spec.allow_fp16 and not self.full_precision
        local = Path(self._source).exists()

        def load(local_files_only: bool) -> SentenceTransformer:
            return SentenceTransformer(
                self._source,
                device=self.device,
                trust_remote_code=trust_remote_code,
                local_files_only=local_files_only,
                model_kwargs={"torch_dtype": torch.float16 if half else torch.float32},
            )

        if not local:
            # A hub model downloaded before loads from the Hugging Face cache with no network;
            # otherwise fail in seconds when the hub is unreachable (its client retries ~1 min).
            try:
                return load(local_files_only=True)
            except Exception:
                pass
            if not hub_reachable():
                raise ModelLoadError(
                    f"cannot load model {self.name!r}: not a local folder, not in the Hugging "
                    "Face cache, and the hub is not reachable (offline?)"
                )
        try:
            model = load(local_files_only=local)
        except OSError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if local:
                raise ModelLoadError(f"cannot load model from {self._source}: {first}") from exc
            raise ModelLoadError(
                f"cannot load model {self.name!r}: not a local folder, and the Hugging Face hub "
                f"is not reachable or has no such model ({first[:120]})"
            ) from exc
        except Exception as exc:  # the loaders raise many types; the user needs one line
            raise ModelLoadError(f"cannot load model {self.name!r}: {exc}") from exc
        return model

    def _load_onnx(
        self, cache_root: Path | None, on_status: Callable[[str], None] | None
    ) -> OnnxEncoder:
        from mrl_tui.core.cache.store import default_cache_root
        from mrl_tui.core.embedding.onnx_embed import OnnxEncoder, exported_model

        try:
            path = exported_model(
                self._model, self.name, self.backend, cache_root or default_cache_root(), on_status
            )
            return OnnxEncoder(self._model, path, per_text=self.backend == "onnx-int8")
        except (InputError, ModelLoadError):
            raise
        except Exception as exc:  # the exporter raises many types; the user needs one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelLoadError(f"cannot run {self.name} on ONNX Runtime: {first}") from exc

    @property
    def cache_name(self) -> str:
        """The model's name in cache keys: another backend gives other vectors, so another key
        (torch keeps the plain name, so its caches from before backends existed stay valid)."""
        from mrl_tui.core.embedding.onnx_embed import vectors_name

        return self.name if self.backend == "torch" else f"{self.name}+{vectors_name(self.backend)}"

    def _prompt(self, kind: str, registry_prompt: str | None) -> str:
        """The model's own saved prompt wins; the registry fills in where the model saved none."""
        saved = self._model.prompts or {}
        if kind == "query":
            names: tuple[str, ...] = ("query", "search_query")
        else:
            names = ("document", "passage", "corpus", "search_document")
        for name in names:
            if saved.get(name):
                return saved[name]
        return registry_prompt or ""

    @property
    def model(self) -> SentenceTransformer:
        """The loaded sentence-transformers model (`mrl-tui train` fine-tunes it in place)."""
        return self._model

    @property
    def dtype(self) -> str:
        """What the weights actually are, e.g. "float32"."""
        if self.backend == "onnx-int8":
            return "int8"  # int8 weights; activations quantised per text as it runs
        weights = next(iter(self._model.parameters()), None)
        return "float32" if weights is None else str(weights.dtype).removeprefix("torch.")

    @property
    def info(self) -> EmbedderInfo:
        return EmbedderInfo(
            self.name,
            self.device,
            self.dtype,
            self.full_dim,
            self.max_seq_length,
            self.spec.native_mrl,
            self.rule,
            self._query_prompt,
            self._document_prompt,
            self.backend,
        )

    @property
    def max_chunk_tokens(self) -> int:
        """Tokens a chunk may hold so the model never truncates it ([CLS], [SEP], prompt aside)."""
        return max(16, self.max_seq_length - 2 - self.count_tokens(self._document_prompt))

    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        return len(self._model.tokenizer(text, add_special_tokens=False)["input_ids"])

    def embed_query(self, text: str) -> np.ndarray:
        """The full-dimension vector of one query; every later dimension change re-scores it."""
        return self._encode([text], 1, self._query_prompt)[0]

    def embed_queries(
        self, texts: Sequence[str], *, on_progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """(N, D) float32 query vectors, batched: what `embed_query` gives each (padding moves a
        value by ~1e-7), about 3x faster on a CPU for the router's and bench's many queries.
        Batches hold queries of similar length, so little of each batch is padding."""
        out = np.zeros((len(texts), self.full_dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for start in range(0, len(order), QUERY_BATCH):
            ids = order[start : start + QUERY_BATCH]
            out[ids] = self._encode([texts[i] for i in ids], len(ids), self._query_prompt)
            if on_progress is not None:
                on_progress(len(ids))
        return out

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        on_progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """(N, D) float32. Batches hold texts of similar length; GPU out-of-memory halves the batch.

        `on_progress(n)` is called with the number of texts finished after each batch, and
        `should_stop()` is checked between batches: it raises `Cancelled`.
        """
        out = np.zeros((len(texts), self.full_dim), dtype=np.float32)
        lengths = self._token_lengths(texts)
        order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
        budget = TOKEN_BUDGET.get(self.device, TOKEN_BUDGET["cpu"])
        start = 0
        while start < len(order):
            if should_stop is not None and should_stop():
                raise Cancelled("indexing cancelled")
            size = max(1, min(MAX_BATCH, budget // max(1, lengths[order[start]])))
            ids = order[start : start + size]
            try:
                vectors = self._encode([texts[i] for i in ids], len(ids), self._document_prompt)
            except RuntimeError as exc:
                if "out of memory" not in str(exc).lower() or size == 1:
                    raise
                self._free_gpu_memory()
                budget = max(1, budget // 2)
                continue
            out[ids] = vectors
            start += len(ids)
            if on_progress is not None:
                on_progress(len(ids))
        return out

    def _token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text will have in the model (prompt and special tokens included, capped
        at the model's limit): sorting and batching on this, not on characters, cuts padding."""
        if not texts:
            return []
        prompted = [self._document_prompt + t for t in texts]
        ids = self._model.tokenizer(prompted, add_special_tokens=True, truncation=False)
        return [min(len(row), self.max_seq_length) for row in ids["input_ids"]]

    def _encode(self, texts: list[str], batch_size: int, prompt: str) -> np.ndarray:
        """Our prompt goes through `encode` (never pasted onto the text), so a model whose pooling
        leaves the prompt out still can, and a saved default prompt is not added a second time."""
        if self._onnx is not None:
            vectors = self._onnx.encode(texts, batch_size, prompt)
            return layer_norm(vectors) if self.spec.layer_norm else vectors
        vectors = self._model.encode(
            texts,
            prompt=prompt,
            batch_size=batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        return layer_norm(vectors) if self.spec.layer_norm else vectors

    def _free_gpu_memory(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.empty_cache()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (or the ``HF_ENDPOINT`` mirror) accepts a connection.

    Offline mode (``HF_HUB_OFFLINE``) says no without trying; behind a proxy we cannot tell from
    here, so we say yes and let the download report what happens."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def layer_norm(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Each row to zero mean and unit variance: ``F.layer_norm`` without affine weights.

    nomic-embed-text-v1.5 needs it over the full vector before a prefix is taken (its card).
    """
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps)).astype(np.float32)
