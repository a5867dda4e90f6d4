"""Re-indexing under a live library: searching while it runs, what it leaves on disk, and the
embedder halving its batches when the GPU runs out of memory."""

from __future__ import annotations

import itertools
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from fakes import LIBRARY_DIM, HashEmbedder, write_corpus

import mrl_tui.core.library as library_module
from mrl_tui.core.library import Library


class GatedEmbedder(HashEmbedder):
    """Blocks in `embed_documents` once `gate` is armed, until the test opens it."""

    def __init__(self) -> None:
        super().__init__(LIBRARY_DIM)
        self.armed = False
        self.waiting = threading.Event()
        self.gate = threading.Event()

    def embed_documents(self, texts, **kwargs):  # type: ignore[no-untyped-def]
        if self.armed:
            self.waiting.set()
            assert self.gate.wait(30), "the test never opened the gate"
        return super().embed_documents(texts, **kwargs)


def test_a_search_during_a_reindex_answers_from_the_loaded_index(tmp_path: Path) -> None:
    """A re-index in a worker thread does not block searches: they answer from the generation
    loaded before it, and the next load after it finds the new file."""
    folder = write_corpus(tmp_path / "folder", files=6)
    embedder = GatedEmbedder()
    library = Library(folder, embedder, cache_root=tmp_path / "cache")
    library.update()
    library.load()
    new_text = "# Telescopes\n\nGrind the mirror of a reflecting telescope by hand."
    (folder / "notes" / "telescope.md").write_text(new_text + "\n", encoding="utf-8")
    query = library.query("planet moon volcano")
    before = [(h.id, h.chunk.path) for h in library.search(query, 32, 5).hits]
    chunks_before = library.chunk_count

    embedder.armed = True
    reports = []
    worker = threading.Thread(target=lambda: reports.append(library.update()), daemon=True)
    worker.start()
    try:
        assert embedder.waiting.wait(10), "the re-index never started embedding"
        # mid-index: a search (and a new query) answer at once, from the loaded generation
        done = threading.Event()
        result: list[object] = []

        def searching() -> None:
            again = library.query("planet moon volcano")
            result.append([(h.id, h.chunk.path) for h in library.search(again, 32, 5).hits])
            result.append(library.search(again, LIBRARY_DIM, 3, mode="exact").hits)
            done.set()

        threading.Thread(target=searching, daemon=True).start()
        assert done.wait(10), "a search waited for the re-index"
        assert result[0] == before
        assert library.chunk_count == chunks_before
        assert all(h.chunk.path != "notes/telescope.md" for h in result[1])  # type: ignore[attr-defined]
    finally:
        embedder.gate.set()
        worker.join(30)
    assert reports and reports[0].files_changed == 1 and not reports[0].cancelled

    library.load()
    assert library.chunk_count > chunks_before
    # the new file's chunk is in the index, and its own vector finds it first
    paths = [c.path for c in library.store.chunks(library.row_chunk_ids.tolist())]
    assert "notes/telescope.md" in paths
    assert library.index is not None
    row = paths.index("notes/telescope.md")
    found = library.index.search(library.index.vectors(np.array([row]))[0], LIBRARY_DIM, 1)
    assert found.ids.tolist() == [row]
    library.close()


def _derived(directory: Path) -> dict[str, tuple[str, int]]:
    """Derived file name → (database id, generation), for the files the store names."""
    pattern = re.compile(r"(?P<name>[a-z0-9_]+)-(?:(?P<db>[0-9a-f]{8})-)?(?P<gen>\d+)\.\w+")
    out = {}
    for path in directory.iterdir():
        match = pattern.fullmatch(path.name)
        if match:
            out[path.name] = (match.group("db") or "", int(match.group("gen")))
    return out


def test_a_reindex_prunes_the_derived_files_of_older_generations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshot, PCA, HNSW graph and router are per generation; once a newer one is loaded
    the older files are removed (and another database's), a newer generation's are kept."""
    monkeypatch.setattr(library_module, "HNSW_MIN_CHUNKS", 10)
    folder = write_corpus(tmp_path / "folder", files=12)
    library = Library(folder, HashEmbedder(LIBRARY_DIM), cache_root=tmp_path / "cache")
    library.update()
    library.load()
    library.search_routed(library.query("bread oven"))
    directory, first = library.store.directory, library.store.generation
    old = _derived(directory)
    kinds = {name.split("-")[0] for name in old}
    assert {"vectors", "transform_pca", "hnsw_pca", "router_pca"} <= kinds, kinds
    assert {gen for _, gen in old.values()} == {first}
    db = library.store.db_id
    foreign = directory / f"vectors-{'0' * 8 if db != '0' * 8 else '1' * 8}-{first}.npy"
    foreign.write_bytes(b"another database's snapshot")
    newer = directory / (f"vectors-{db}-{first + 50}.npy" if db else f"vectors-{first + 50}.npy")
    newer.write_bytes(b"a newer generation, another process's")

    (folder / "notes" / "n000.md").write_text("# Changed\n\nengine piston river\n", "utf-8")
    assert library.update().files_changed == 1
    library.load()
    library.search_routed(library.query("bread oven"))
    second = library.store.generation
    assert second > first
    now = _derived(directory)
    assert not [name for name in old if name in now], "files of the old generation remain"
    assert not foreign.exists()
    assert newer.exists()
    current = {name for name, (_, gen) in now.items() if gen == second}
    assert {name.split("-")[0] for name in current} == kinds
    # the manifest forgets what was removed
    for name in old:
        assert library.store.entry(name) is None
    assert all(library.store.entry(name) is not None for name in current)
    library.close()


# -- out of GPU memory -------------------------------------------------------------------------


TEXTS = [
    f"Note {i}: " + " ".join(["sourdough", "planet", "chain", "budget"][i % 4] for _ in range(i))
    for i in range(1, 25)
]


def test_out_of_memory_halves_the_batch_and_gives_the_same_vectors(
    embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the OOM is faked (the real model embeds): each OOM halves the token budget, the
    texts are all embedded once, in the same vectors as without it, and progress adds up."""
    expected = embedder.embed_documents(TEXTS)
    real = embedder._encode
    sizes: list[int] = []
    freed: list[int] = []
    limit = 6  # the pretend GPU fits at most this many texts in a batch

    def encode(texts, batch_size, prompt):  # type: ignore[no-untyped-def]
        sizes.append(len(texts))
        if len(texts) > limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(texts, batch_size, prompt)

    monkeypatch.setattr(embedder, "_encode", encode)
    monkeypatch.setattr(embedder, "_free_gpu_memory", lambda: freed.append(1))
    progress: list[int] = []
    got = embedder.embed_documents(TEXTS, on_progress=progress.append)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sizes[0] > limit  # the first batch did not fit
    failed = [s for s in sizes if s > limit]
    assert len(freed) == len(failed) >= 1  # memory freed after each OOM
    # after each failure the next try is at most about half as big (the budget halves)
    for before, after in itertools.pairwise(sizes):
        if before > limit:
            assert after <= before // 2 + 1, sizes
    assert sum(s for s in sizes if s <= limit) == len(TEXTS) == sum(progress)


def test_other_errors_and_an_oom_at_one_text_are_not_retried(
    embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def broken(texts, batch_size, prompt):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(embedder, "_encode", broken)
    with pytest.raises(RuntimeError, match="device-side assert"):
        embedder.embed_documents(TEXTS[:5])
    assert len(calls) == 1

    def always_oom(texts, batch_size, prompt):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        raise RuntimeError("CUDA out of memory")

    calls.clear()
    monkeypatch.setattr(embedder, "_encode", always_oom)
    monkeypatch.setattr(embedder, "_free_gpu_memory", lambda: None)
    with pytest.raises(RuntimeError, match="out of memory"):
        embedder.embed_documents(TEXTS[:5])
    assert calls[-1] == 1 and calls == sorted(calls, reverse=True)  # halved down to one text
