"""The ONNX Runtime backend: same vectors as torch, export cached and checked, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mrl_tui.core.embedding import onnx_embed
from mrl_tui.core.errors import InputError

TEXTS = [
    "x",
    "How do I reset a forgotten password?",
    "The quick brown fox jumps over the lazy dog near the river bank in early spring.",
    "Matryoshka embeddings keep most of their quality at a fraction of the dimensions. " * 6,
]


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


needs_onnx = pytest.mark.skipif(not _has_onnx(), reason="onnxruntime/onnx not installed")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_embedder(embedder):
    """The session's model (torch, CPU): loading it again costs seconds and tests nothing more."""
    assert embedder.backend == "torch"
    return embedder


def _onnx_embedder(backend: str, cache: Path):
    from mrl_tui.core.embedding.embed import Embedder

    return Embedder(device="cpu", backend=backend, cache_root=cache)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@needs_onnx
@pytest.mark.parametrize(("backend", "bound"), [("onnx", 0.999), ("onnx-int8", 0.97)])
def test_onnx_vectors_agree_with_torch(
    torch_embedder, onnx_cache: Path, backend: str, bound: float
):
    embedder = torch_embedder
    other = _onnx_embedder(backend, onnx_cache)
    assert other.backend == backend
    assert other.full_dim == embedder.full_dim
    docs = _cosines(other.embed_documents(TEXTS), embedder.embed_documents(TEXTS))
    queries = _cosines(other.embed_queries(TEXTS), embedder.embed_queries(TEXTS))
    assert docs.min() > bound, docs
    assert queries.min() > bound, queries
    assert other.cache_name != embedder.cache_name  # its vectors get their own caches


@needs_onnx
def test_export_is_cached_reused_and_checked(torch_embedder, onnx_cache: Path, monkeypatch):
    model, name = torch_embedder.model, torch_embedder.name
    path = onnx_embed.exported_model(model, name, "onnx", onnx_cache)  # made (or made before)
    assert path.parent.parent == onnx_cache / "onnx"
    stamp = path.stat().st_mtime_ns

    exports: list[Path] = []
    real_export = onnx_embed._export

    def counting_export(m, target: Path) -> None:
        exports.append(target)
        real_export(m, target)

    monkeypatch.setattr(onnx_embed, "_export", counting_export)
    assert onnx_embed.exported_model(model, name, "onnx", onnx_cache) == path
    assert exports == [] and path.stat().st_mtime_ns == stamp  # reused, not exported again

    with open(path, "r+b") as fh:  # a damaged file fails its checksum and is made again
        fh.seek(path.stat().st_size // 2)
        fh.write(b"\0damaged\0")
    assert onnx_embed.exported_model(model, name, "onnx", onnx_cache) == path
    assert len(exports) == 1 and onnx_embed._verified(path)


def test_missing_packages_give_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(InputError) as info:
        onnx_embed.check_backend("onnx-int8", "cpu")
    message = str(info.value)
    assert "\n" not in message and "mrl-tui[onnx]" in message
    onnx_embed.check_backend("torch", "cpu")  # torch needs neither


@needs_onnx
@pytest.mark.parametrize(("backend", "bound"), [("onnx", 0.99999), ("onnx-int8", 0.97)])
def test_batched_vectors_match_one_at_a_time(onnx_cache: Path, backend: str, bound: float):
    """fp32 keeps torch's one-vector-per-text property. int8 only comes close: dynamic
    quantisation scales activations per batch (why it is not the default)."""
    other = _onnx_embedder(backend, onnx_cache)
    texts = [*TEXTS, "dns", "mars moons"]
    batched = other.embed_queries(texts)
    single = np.stack([other.embed_query(t) for t in texts])
    cosines = _cosines(batched, single)
    assert cosines.min() > bound, cosines


def test_onnx_is_cpu_only_and_backends_are_checked():
    with pytest.raises(InputError, match="CPU only"):
        onnx_embed.check_backend("onnx", "cuda")
    with pytest.raises(InputError, match="unknown embedding backend"):
        onnx_embed.check_backend("tensorrt", "cpu")


def test_index_is_keyed_by_backend(hash_embedder, tmp_path: Path):
    from mrl_tui.core.library import Library

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("some text to index\n", encoding="utf-8")
    cache = tmp_path / "cache"
    dirs = {}
    for backend in ("torch", "onnx-int8"):
        hash_embedder.backend = backend
        library = Library(folder, hash_embedder, cache_root=cache)
        dirs[backend] = library.store.directory
        library.close()
    assert dirs["torch"] != dirs["onnx-int8"]
    del hash_embedder.backend  # a stand-in without the attribute keys as torch
    library = Library(folder, hash_embedder, cache_root=cache)
    assert library.store.directory == dirs["torch"]
    library.close()
