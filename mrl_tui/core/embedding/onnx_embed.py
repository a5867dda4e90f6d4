"""The ONNX Runtime CPU backend: the loaded torch model exported once to the cache, then run by
onnxruntime, optionally dynamically quantised to int8.

int8 runs each text on its own (a batch of one, one text per CPU core at a time): dynamic
quantisation scales a MatMul's activations by the largest value in the whole input tensor, so in
a batch a text's vector would depend on the texts batched with it (cosine 0.987-0.994 to itself
alone). Alone, the scales come from the text itself: its vector is the same bit for bit in any
batch, in bench, the router's calibration and an incremental re-index. It is also faster than
the batched run on a CPU (no padding, one single-threaded run per core).

sentence-transformers' own ``backend="onnx"`` goes through optimum-onnx, which pins
transformers < 4.58 (this project runs transformers 5), so the export is done here with
``torch.onnx.export`` and run with a plain ``InferenceSession``. Only the plain
Transformer → mean Pooling (→ Normalize) pipeline is supported: that is the bundled MiniLM's.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mrl_tui.core.cache.artifacts import digest as file_digest
from mrl_tui.core.cache.artifacts import fsync_dir
from mrl_tui.core.choices import EMBED_BACKENDS
from mrl_tui.core.errors import InputError, ModelLoadError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BACKENDS = EMBED_BACKENDS
"""auto is the default: onnx-int8 on a CPU where onnxruntime is installed, torch on CUDA / MPS
(see the README's "CPU embedding backend" for the figures)."""
VECTOR_NAMES = {"onnx-int8": "onnx-int8-per-text"}
"""A backend's name in cache keys where its vectors changed: int8 vectors were batched (they
depended on their batch) before they were per text, so caches of the old ones are not reused."""
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXPORT_VERSION = 3
"""Bumped when the export or quantisation settings change: a new cache entry, never a stale one."""


def vectors_name(backend: str) -> str:
    """What the vectors of `backend` are called in cache and index keys."""
    return VECTOR_NAMES.get(backend, backend)


def cpu_workers() -> int:
    """The CPU cores this process may use (one single-threaded int8 run on each)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: str, *, bundled: bool = True) -> str:
    """What "auto" means on `device` (a resolved one: cpu, cuda or mps): int8 on ONNX Runtime
    on a CPU when onnxruntime and onnx are importable, for the `bundled` model (the one measured:
    README, "CPU embedding backend"); else torch. Another model runs torch unless asked: its
    pipeline may not be one `OnnxEncoder` runs, and int8 noise at its prefixes is not measured
    (a model trained here, say). Any other backend is itself."""
    if backend != "auto":
        return backend
    return "onnx-int8" if device == "cpu" and bundled and onnx_available() else "torch"


def check_backend(backend: str, device: str) -> None:
    """A clear line for an unknown backend, a GPU device, or missing packages ("auto" always
    resolves to a backend that runs)."""
    if backend not in BACKENDS:
        raise InputError(f"unknown embedding backend {backend!r}; choose one of {BACKENDS}")
    if backend in ("torch", "auto"):
        return
    if device != "cpu":
        raise InputError(
            f"embed backend {backend} runs on the CPU only; use device cpu",
            settings=("embed backend", "device"),
        )
    if not onnx_available():
        raise InputError(
            f"embed backend {backend} needs onnxruntime and onnx: pip install 'mrl-tui[onnx]'",
            settings=("embed backend",),
        )


def _pipeline_check(model: SentenceTransformer) -> bool:
    """Whether the model is Transformer → mean Pooling (→ Normalize), what `OnnxEncoder` runs."""
    from sentence_transformers.models import Normalize, Pooling

    modules = list(model)
    if len(modules) not in (2, 3) or not isinstance(modules[1], Pooling):
        raise InputError("the ONNX backend supports Transformer + Pooling models only")
    if modules[1].pooling_mode != "mean" or not getattr(modules[1], "include_prompt", True):
        raise InputError("the ONNX backend supports mean pooling (prompt included) only")
    if len(modules) == 3 and not isinstance(modules[2], Normalize):
        raise InputError("the ONNX backend supports Transformer + Pooling (+ Normalize) only")
    return len(modules) == 3


def _weights_digest(model: SentenceTransformer) -> str:
    """What the exported file is a function of: the weights and the export settings."""
    digest = hashlib.sha256(f"export-v{EXPORT_VERSION}".encode())
    for name, tensor in model[0].auto_model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def export_dir(cache_root: Path, model_name: str, model: SentenceTransformer) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in model_name)[-40:]
    return cache_root / "onnx" / f"{safe}-{_weights_digest(model)}"


def _export(model: SentenceTransformer, path: Path, *, masked: bool = True) -> None:
    """`masked`: with an attention-mask input, for padded batches. int8 runs each text alone,
    with no padding to mask: its graph has no mask input and skips the mask's ops (4-15 % of a
    run, longer texts more), with the same vectors bit for bit (the mask only ever added 0)."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    class Unmasked(Encoder):
        def forward(self, input_ids, token_type_ids):  # type: ignore[override]
            out = self.inner(input_ids=input_ids, token_type_ids=token_type_ids)
            return out.last_hidden_state

    inner = model[0].auto_model.eval()
    sample = model.tokenizer(
        ["a sample", "a longer sample text"], padding=True, return_tensors="pt"
    )
    inputs = INPUTS if masked else tuple(k for k in INPUTS if k != "attention_mask")
    if not masked:  # one text, as it will run
        sample = model.tokenizer(["a longer sample text"], return_tensors="pt")
    args = tuple(
        sample[k] if k in sample else torch.zeros_like(sample["input_ids"]) for k in inputs
    )
    axes = {k: {0: "batch", 1: "tokens"} for k in (*inputs, "hidden")}
    # The exporter's tracer warnings would land on a TUI's screen; the export is checked by tests.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            (Encoder if masked else Unmasked)(inner),
            args,
            str(path),
            input_names=list(inputs),
            output_names=["hidden"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _down_projections(source: Path) -> list[str]:
    """The MatMuls whose weight has more rows than columns: the feed-forward blocks' 1536 → 384
    projections. Their input, just after the GELU, holds the largest activation outliers, which
    one int8 scale per tensor resolves worst; they stay float32."""
    import onnx

    model = onnx.load(str(source))
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul"
        and len(shapes.get(node.input[1], ())) == 2
        and shapes[node.input[1]][0] > shapes[node.input[1]][1]
    ]


def _quantize(source: Path, target: Path, *, keep_float: bool = True) -> None:
    """`keep_float`: leave the down-projections float32 (False: every MatMul int8, as before)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel int8 weights: measured cosine to torch 0.98-0.99 per text; per-tensor 0.91-0.97.
    # The quantiser logs advice ("consider pre-processing") on the root logger: not for a TUI.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(source),
            str(target),
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_down_projections(source) if keep_float else [],
        )
    finally:
        root.setLevel(level)


def _write_verified(directory: Path, name: str, make: Any) -> Path:
    """Make `name` in `directory` (atomically) with a checksum beside it, unless it is there."""
    path = directory / name
    sums = directory / f"{name}.sha256"
    if path.is_file() and sums.is_file():
        return path
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    make(tmp)
    sums_tmp = directory / f".{name}.{os.getpid()}.sha256.tmp"
    sums_tmp.write_text(json.dumps({"sha256": file_digest(tmp)}), encoding="utf-8")
    os.replace(tmp, path)
    os.replace(sums_tmp, sums)
    fsync_dir(directory)
    return path


def _verified(path: Path) -> bool:
    sums = path.parent / f"{path.name}.sha256"
    try:
        expected = json.loads(sums.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return file_digest(path) == expected


def exported_model(
    model: SentenceTransformer,
    model_name: str,
    backend: str,
    cache_root: Path,
    on_status: Callable[[str], None] | None = None,
) -> Path:
    """The cached ONNX file for `backend`, exported (and quantised) on first use, checksum-checked
    on every load; a file that fails the check is made again. `on_status(line)` is told before
    each step that makes a file (seconds each, once per model)."""
    directory = export_dir(cache_root, model_name, model)
    directory.mkdir(parents=True, exist_ok=True)
    int8 = backend == "onnx-int8"
    # int8 is quantised from the per-text (unmasked) graph; fp32 runs padded batches.
    source, name = (
        ("model_per_text.onnx", "model_int8.onnx") if int8 else ("model.onnx", "model.onnx")
    )
    say = on_status or (lambda line: None)

    def export(tmp: Path) -> None:
        say(f"exporting {model_name} to ONNX{' for int8' if int8 else ''} (once, into the cache)")
        _export(model, tmp, masked=not int8)

    def quantize(tmp: Path, src: Path) -> None:
        say(f"quantising {model_name} to int8 (once, into the cache)")
        _quantize(src, tmp)

    for _ in range(2):
        fp32 = _write_verified(directory, source, export)
        path = fp32
        if int8:
            path = _write_verified(directory, name, lambda tmp, src=fp32: quantize(tmp, src))
        if _verified(fp32) and _verified(path):
            return path
        for stale in (directory / source, directory / name):
            stale.unlink(missing_ok=True)
            (stale.parent / f"{stale.name}.sha256").unlink(missing_ok=True)
    raise ModelLoadError(f"the ONNX export in {directory} fails its checksum after a re-export")


class OnnxEncoder:
    """`SentenceTransformer.encode` for the mean-pooled pipeline, on onnxruntime.

    `per_text`: run each text alone (int8: its vector then does not depend on its batch), on
    `threads` single-threaded runs at once (0: one per CPU core); otherwise run padded batches
    on `threads` intra-op threads (0: onnxruntime's choice)."""

    def __init__(
        self, model: SentenceTransformer, path: Path, threads: int = 0, *, per_text: bool = False
    ) -> None:
        import onnxruntime as ort

        self._normalize = _pipeline_check(model)
        self._tokenizer = model.tokenizer
        self._max_length = int(model.max_seq_length or 512)
        self.path = path
        self.per_text = per_text
        self._workers = (threads or cpu_workers()) if per_text else 1
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if per_text:
            options.intra_op_num_threads = 1  # the texts run side by side instead
        elif threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        """What this graph takes: the per-text int8 graph has no attention mask."""

    def encode(self, texts: Sequence[str], batch_size: int, prompt: str = "") -> np.ndarray:
        """Mean of the token vectors under the attention mask, then L2 (as the pipeline does).
        The prompt is prefixed to the text: mean pooling here includes the prompt tokens, as
        sentence-transformers' Pooling does unless told otherwise (`_pipeline_check`)."""
        prompted = [prompt + t for t in texts]
        if self.per_text:
            out = self._encode_each(prompted)
        else:
            rows = [
                self._encode_batch(prompted[start : start + max(1, batch_size)])
                for start in range(0, len(prompted), max(1, batch_size))
            ]
            out = np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)
        if self._normalize and len(out):
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _encode_batch(self, batch: list[str]) -> np.ndarray:
        enc = self._tokenizer(
            batch, padding=True, truncation=True, max_length=self._max_length, return_tensors="np"
        )
        ids = enc["input_ids"].astype(np.int64)
        feeds = {
            "input_ids": ids,
            "attention_mask": enc["attention_mask"].astype(np.int64),
            "token_type_ids": enc.get("token_type_ids", np.zeros_like(ids)).astype(np.int64),
        }
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        hidden = self._session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return pooled.astype(np.float32)

    def _encode_each(self, texts: list[str]) -> np.ndarray:
        """Each text a batch of one (no padding, so no mask to apply: the mean of its tokens);
        onnxruntime releases the GIL while it runs, so the threads use every core."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        enc = self._tokenizer(texts, truncation=True, max_length=self._max_length)
        types = enc.get("token_type_ids")

        def one(i: int) -> np.ndarray:
            ids = np.asarray([enc["input_ids"][i]], dtype=np.int64)
            feeds = {
                "input_ids": ids,
                "attention_mask": np.ones_like(ids),
                "token_type_ids": (
                    np.zeros_like(ids) if types is None else np.asarray([types[i]], np.int64)
                ),
            }
            feeds = {k: v for k, v in feeds.items() if k in self._inputs}
            return self._session.run(None, feeds)[0][0].mean(axis=0, dtype=np.float32)

        if self._workers == 1 or len(texts) == 1:
            rows = [one(i) for i in range(len(texts))]
        else:
            with ThreadPoolExecutor(min(self._workers, len(texts))) as pool:
                rows = list(pool.map(one, range(len(texts))))
        return np.stack(rows).astype(np.float32)
