"""The ONNX Runtime backend: same vectors as torch, export cached and checked, one-line errors."""

from __future__ import annotations

import os
import sys
import tempfile
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
def torch_embedder(embedder):
    """The session's model (torch, CPU): loading it again costs seconds and tests nothing more."""
    assert embedder.backend == "torch"
    return embedder


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def onnx_export(torch_embedder, tmp_path_factory: pytest.TempPathFactory):
    """Both exports made once into a fresh cache, from an empty working folder and with an
    empty temp folder, so a test can see what was written where."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    work = tmp_path_factory.mktemp("onnx-cwd")
    temp = tmp_path_factory.mktemp("onnx-tmp")
    if not _has_onnx():
        return cache, set(), set(), []
    before, old_temp = Path.cwd(), tempfile.tempdir
    os.chdir(work)
    tempfile.tempdir = str(temp)
    lines: list[str] = []
    try:
        model, name = torch_embedder.model, torch_embedder.name
        for backend in ("onnx", "onnx-int8"):
            onnx_embed.exported_model(model, name, backend, cache, lines.append)
    finally:
        os.chdir(before)
        tempfile.tempdir = old_temp
    return cache, _files(work), _files(temp), lines


@pytest.fixture(scope="module")
def onnx_cache(onnx_export) -> Path:
    return onnx_export[0]


@needs_onnx
def test_export_says_each_step_once(torch_embedder, onnx_export):
    cache, *_, lines = onnx_export
    name = torch_embedder.name
    assert lines == [
        f"exporting {name} to ONNX (once, into the cache)",
        f"exporting {name} to ONNX for int8 (once, into the cache)",
        f"quantising {name} to int8 (once, into the cache)",
    ]
    again: list[str] = []
    onnx_embed.exported_model(torch_embedder.model, name, "onnx-int8", cache, again.append)
    assert again == []  # made before: nothing to say


def test_auto_backend_is_int8_on_a_cpu_with_onnxruntime(monkeypatch):
    assert onnx_embed.resolve_backend("auto", "cuda") == "torch"
    assert onnx_embed.resolve_backend("auto", "mps") == "torch"
    for backend in ("torch", "onnx", "onnx-int8"):
        assert onnx_embed.resolve_backend(backend, "cpu") == backend
    expected = "onnx-int8" if _has_onnx() else "torch"
    assert onnx_embed.resolve_backend("auto", "cpu") == expected
    assert onnx_embed.resolve_backend("auto", "cpu", bundled=False) == "torch"
    monkeypatch.setattr(onnx_embed, "onnx_available", lambda: False)
    assert onnx_embed.resolve_backend("auto", "cpu") == "torch"
    onnx_embed.check_backend("auto", "cuda")  # auto never asks for what is missing


@needs_onnx
def test_auto_embedder_on_a_cpu_runs_int8(onnx_cache: Path):
    from mrl_tui.core.embedding.embed import Embedder

    auto = Embedder(device="cpu", cache_root=onnx_cache)
    assert auto.backend == "onnx-int8" and auto.dtype == "int8"
    int8 = _onnx_embedder("onnx-int8", onnx_cache)
    assert auto.cache_name == int8.cache_name  # the same vectors, so the same caches
    np.testing.assert_array_equal(auto.embed_documents(TEXTS), int8.embed_documents(TEXTS))


@needs_onnx
def test_export_writes_only_into_the_cache_dir(onnx_export):
    cache, in_cwd, in_temp, _ = onnx_export
    assert in_cwd == set() and in_temp == set()  # nothing left in the working or temp folder
    written = _files(cache)
    (folder,) = {p.parts[:2] for p in written}  # one export folder, under onnx/
    assert folder[0] == "onnx"
    names = {p.name for p in written}
    graphs = {"model.onnx", "model_per_text.onnx", "model_int8.onnx"}
    assert names == graphs | {f"{graph}.sha256" for graph in graphs}


@needs_onnx
def test_the_int8_graph_has_no_mask_and_gives_the_masked_graphs_vectors(
    torch_embedder, onnx_cache: Path, tmp_path: Path
):
    """int8 runs each text alone, so its graph takes no attention mask (the mask's ops are
    skipped); quantised from the masked graph instead, it gives the same vectors bit for bit."""
    import onnxruntime as ort

    model, name = torch_embedder.model, torch_embedder.name
    int8 = onnx_embed.exported_model(model, name, "onnx-int8", onnx_cache)
    inputs = {i.name for i in ort.InferenceSession(str(int8)).get_inputs()}
    assert inputs == {"input_ids", "token_type_ids"}
    masked = onnx_embed.exported_model(model, name, "onnx", onnx_cache)
    assert "attention_mask" in {i.name for i in ort.InferenceSession(str(masked)).get_inputs()}
    onnx_embed._quantize(masked, tmp_path / "masked_int8.onnx")
    ours = onnx_embed.OnnxEncoder(model, int8, 1, per_text=True).encode(TEXTS, 8)
    theirs = onnx_embed.OnnxEncoder(model, tmp_path / "masked_int8.onnx", 1, per_text=True)
    np.testing.assert_array_equal(ours, theirs.encode(TEXTS, 8))


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
def test_int8_keeps_the_down_projections_float(onnx_cache: Path):
    """Every weight MatMul is int8 but the feed-forward 1536 → 384 ones (six in MiniLM-L6)."""
    import onnx

    (path,) = (onnx_cache / "onnx").glob("*/model_int8.onnx")
    graph = onnx.load(str(path)).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    float_weights = [
        shapes[n.input[1]] for n in graph.node if n.op_type == "MatMul" and n.input[1] in shapes
    ]
    assert float_weights == [(1536, 384)] * 6
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) == 6 * 5  # q, k, v, out, up


@needs_onnx
@pytest.mark.parametrize(("backend", "maker"), [("onnx", "_export"), ("onnx-int8", "_quantize")])
def test_export_is_cached_reused_and_checked(
    torch_embedder, onnx_cache: Path, monkeypatch, backend: str, maker: str
):
    model, name = torch_embedder.model, torch_embedder.name
    path = onnx_embed.exported_model(model, name, backend, onnx_cache)  # made before
    assert path.parent.parent == onnx_cache / "onnx"
    stamp = path.stat().st_mtime_ns

    made: list[Path] = []
    real = getattr(onnx_embed, maker)

    def counting(*args, **kwargs) -> None:
        made.append(args[-1])
        real(*args, **kwargs)

    monkeypatch.setattr(onnx_embed, maker, counting)
    assert onnx_embed.exported_model(model, name, backend, onnx_cache) == path
    assert made == [] and path.stat().st_mtime_ns == stamp  # reused, not exported again

    with open(path, "r+b") as fh:  # a damaged file fails its checksum and is made again
        fh.seek(path.stat().st_size // 2)
        fh.write(b"\0damaged\0")
    assert not onnx_embed._verified(path)
    assert onnx_embed.exported_model(model, name, backend, onnx_cache) == path
    assert len(made) == 1 and onnx_embed._verified(path)


def test_missing_packages_give_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(InputError) as info:
        onnx_embed.check_backend("onnx-int8", "cpu")
    message = str(info.value)
    assert "\n" not in message and "mrl-tui[onnx]" in message
    onnx_embed.check_backend("torch", "cpu")  # torch needs neither


@needs_onnx
@pytest.mark.parametrize(("backend", "bound"), [("onnx", 0.99999), ("onnx-int8", 1.0)])
def test_batched_vectors_match_one_at_a_time(onnx_cache: Path, backend: str, bound: float):
    """fp32 keeps torch's one-vector-per-text property; int8 runs each text alone, so its
    vectors are the same bit for bit."""
    other = _onnx_embedder(backend, onnx_cache)
    texts = [*TEXTS, "dns", "mars moons"]
    batched = other.embed_queries(texts)
    single = np.stack([other.embed_query(t) for t in texts])
    if bound == 1.0:
        np.testing.assert_array_equal(batched, single)
    cosines = _cosines(batched, single)
    assert cosines.min() > bound - 1e-6, cosines


SHORT = ["dns", "x", "mars moons", "ok then", "a b c d"]
LONG = [
    "An index keeps each chunk's vector so that a search only embeds the query. " * 12,
    "Dynamic quantisation scales a matrix product's inputs by their largest value. " * 14,
    "The router calibrates its ladder on pseudo-queries cut from the corpus itself. " * 10,
]


@needs_onnx
def test_int8_vector_of_a_text_does_not_depend_on_its_batch(onnx_cache: Path):
    """The same text alone, among short texts and among long ones: one vector, bit for bit (the
    batched dynamic int8 of before gave cosine 0.987-0.994), for documents and queries."""
    int8 = _onnx_embedder("onnx-int8", onnx_cache)
    for text in (TEXTS[1], TEXTS[3]):
        alone = int8.embed_documents([text])[0]
        with_short = int8.embed_documents([*SHORT, text, *SHORT])[len(SHORT)]
        with_long = int8.embed_documents([*LONG, text])[len(LONG)]
        np.testing.assert_array_equal(with_short, alone)
        np.testing.assert_array_equal(with_long, alone)
        query = int8.embed_query(text)
        np.testing.assert_array_equal(int8.embed_queries([*LONG, text, *SHORT])[len(LONG)], query)
    one_thread = onnx_embed.OnnxEncoder(
        int8.model, next((onnx_cache / "onnx").glob("*/model_int8.onnx")), 1, per_text=True
    )  # how many texts run side by side does not matter either
    np.testing.assert_array_equal(
        one_thread.encode([*LONG, *SHORT], 32), int8._onnx.encode([*LONG, *SHORT], 32)
    )
    assert int8.cache_name.endswith("+onnx-int8-per-text")  # not the batched era's caches


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
