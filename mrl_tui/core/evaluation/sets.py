"""Evaluation sets: vectors in the index basis, queries and judgements, under one transform.

A BEIR set is embedded once (or read from the bench cache); a folder's are its indexed vectors
and its ``queries.tsv``. Either is made under another transform by `retransformed`, from the
model's own vectors, never embedded again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mrl_tui.core.errors import InputError
from mrl_tui.core.evaluation.beir import FOLDER_QUERIES, BeirSet, read_folder_queries
from mrl_tui.core.evaluation.embeddings_cache import (
    Note,
    beir_cache_dir,
    cached_adaptor,
    cached_embeddings,
    warn,
)
from mrl_tui.core.search.index import NestedIndex, index_device
from mrl_tui.core.search.pseudo import SHORT, WINDOWS, pseudo_queries
from mrl_tui.core.transforms.adaptor import Adaptor, fit_adaptor
from mrl_tui.core.transforms.kind import ADAPTOR, NAIVE, PCA, resolve
from mrl_tui.core.transforms.pca import IDENTITY, Transform, fit_pca

if TYPE_CHECKING:
    from mrl_tui.core.embedding.embed import Embedder
    from mrl_tui.core.library import Library

Progress = Callable[[str, int, int], None]
"""progress(what, done, total) while embedding."""


@dataclass
class EvalSet:
    """Vectors in the index basis, queries, and judgements over documents.

    ``row_docs[i]`` is the document index row ``i`` belongs to: itself for BEIR, its file for a
    folder (many chunks per file; a file ranks at its best chunk). ``""`` marks rows that are no
    document (the folder's own queries.tsv).
    """

    name: str
    model: str
    transform: str
    index: NestedIndex
    row_docs: list[str]
    query_ids: list[str]
    query_vectors: np.ndarray
    qrels: dict[str, dict[str, float]]
    pseudo_vectors: np.ndarray
    pseudo_sources: list[int]
    query_texts: list[str] = field(default_factory=list)
    row_texts: list[str] = field(default_factory=list)
    route_vectors: np.ndarray | None = None
    route_sources: list[int] = field(default_factory=list)
    route_texts: list[str] = field(default_factory=list)
    """Short pseudo-queries (`pseudo.SHORT`) the router's stop rules are calibrated on; the auto
    funnel (its ladder) is chosen on ``pseudo_vectors`` (`pseudo.WINDOWS`)."""
    codes: dict[str, Any] = field(default_factory=dict)
    """int8 / binary codes of the index, made on first use."""
    fit_seconds: float = 0.0
    """Time to fit the transform (the adaptor trains; PCA is one eigendecomposition)."""
    fit_cached: bool = False
    """The transform came from the bench cache (an adaptor fitted by an earlier run)."""


def _embed_queries(embedder: Embedder, what: str, progress: Progress | None):
    def embed(texts: Sequence[str]) -> np.ndarray:
        done = 0

        def step(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(what, done, len(texts))

        return embedder.embed_queries(list(texts), on_progress=step)

    return embed


def beir_eval_set(
    folder: Path,
    data: BeirSet,
    embedder: Embedder,
    progress: Progress | None = None,
    cache_root: Path | None = None,
    transform: str = "auto",
    note: Note = warn,
) -> EvalSet:
    """Embed (or load from the cache) a BEIR set, under the transform the Library would use."""
    directory = beir_cache_dir(
        folder, data.name, getattr(embedder, "cache_name", embedder.name), cache_root
    )

    def embed_docs(texts: Sequence[str]) -> np.ndarray:
        done = 0

        def step(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress("embedding documents", done, len(texts))

        return embedder.embed_documents(texts, on_progress=step)

    docs = cached_embeddings(directory, "docs", data.doc_texts, embed_docs, note)
    query_ids = list(data.queries)
    queries = cached_embeddings(
        directory,
        "queries",
        [data.queries[q] for q in query_ids],
        _embed_queries(embedder, "embedding queries", progress),
        note,
    )
    pseudo = pseudo_queries(data.doc_texts, WINDOWS)
    pseudo_vectors = cached_embeddings(
        directory,
        "pseudo",
        [text for _, text in pseudo],
        _embed_queries(embedder, "embedding pseudo-queries", progress),
        note,
    )
    route_pseudo = pseudo_queries(data.doc_texts, SHORT)
    route_vectors = cached_embeddings(
        directory,
        "route",
        [text for _, text in route_pseudo],
        _embed_queries(embedder, "embedding router pseudo-queries", progress),
        note,
    )
    raw = EvalSet(
        name=data.name,
        model=embedder.name,
        transform=NAIVE.label,
        index=NestedIndex(docs, device=index_device(embedder.device)),
        row_docs=list(data.doc_ids),
        query_ids=query_ids,
        query_vectors=queries,
        qrels=data.qrels,
        pseudo_vectors=pseudo_vectors,
        pseudo_sources=[row for row, _ in pseudo],
        query_texts=[data.queries[q] for q in query_ids],
        row_texts=list(data.doc_texts),
        route_vectors=route_vectors,
        route_sources=[row for row, _ in route_pseudo],
        route_texts=[text for _, text in route_pseudo],
    )
    return retransformed(raw, transform, embedder.spec.native_mrl, directory, note)


def resolve_transform(choice: str, native_mrl: bool) -> str:
    """Resolve "auto": "naive" for native MRL models (trained prefixes), else "pca"."""
    return resolve(choice, native_mrl).choice


def fit_transform(
    choice: str,
    docs: np.ndarray,
    native_mrl: bool,
    cache_dir: Path | None = None,
    device: str = "cpu",
    note: Note = warn,
) -> tuple[Transform | Adaptor, str]:
    """The transform `choice` resolves to, fitted on `docs`, and its label (as the Library's).
    An adaptor is fitted on `device`; with `cache_dir`, it is kept there (`cached_adaptor`)."""
    kind = resolve(choice, native_mrl)
    if kind is NAIVE or len(docs) < 2:
        return IDENTITY, NAIVE.label_for(native_mrl)
    if kind is PCA:
        return fit_pca(docs), PCA.label
    if cache_dir is None:
        return fit_adaptor(docs, device=device), ADAPTOR.label
    return cached_adaptor(cache_dir, docs, device, note), ADAPTOR.label


def folder_eval_set(library: Library, progress: Progress | None = None) -> EvalSet:
    """An indexed `Library` and its ``queries.tsv``: relevance is any chunk of the named file."""
    pairs = read_folder_queries(library.root)
    library.load()
    if library.index is None or library.index.n == 0:
        raise InputError(f"{library.root}: nothing indexable found")
    chunks = library.store.chunks(library.row_chunk_ids.tolist())
    row_docs = ["" if c.path == FOLDER_QUERIES else c.path for c in chunks]
    indexed = set(row_docs)
    for query, relevant in pairs:
        if relevant not in indexed:
            raise InputError(f"{FOLDER_QUERIES}: {relevant!r} (for {query!r}) is not in the index")
    query_vectors = []
    for i, (query, _) in enumerate(pairs, start=1):
        query_vectors.append(library.query(query).vector)
        if progress is not None:
            progress("embedding queries", i, len(pairs))
    texts = [c.text if doc else "" for c, doc in zip(chunks, row_docs, strict=True)]
    pseudo = pseudo_queries(texts, WINDOWS)
    pseudo_vectors = [library.query(text).vector for _, text in pseudo]
    route_pseudo = pseudo_queries(texts, SHORT)
    route_vectors = [library.query(text).vector for _, text in route_pseudo]
    return EvalSet(
        name=library.root.name,
        model=library.embedder.name,
        transform=library.transform_name,
        index=library.index,
        row_docs=row_docs,
        query_ids=[str(i) for i in range(len(pairs))],
        query_vectors=np.stack(query_vectors),
        qrels={str(i): {relevant: 1.0} for i, (_, relevant) in enumerate(pairs)},
        pseudo_vectors=np.stack(pseudo_vectors)
        if pseudo_vectors
        else np.zeros((0, library.full_dim), np.float32),
        pseudo_sources=[row for row, _ in pseudo],
        query_texts=[query for query, _ in pairs],
        row_texts=texts,
        route_vectors=np.stack(route_vectors)
        if route_vectors
        else np.zeros((0, library.full_dim), np.float32),
        route_sources=[row for row, _ in route_pseudo],
        route_texts=[text for _, text in route_pseudo],
    )


def retransformed(
    es: EvalSet,
    choice: str,
    native_mrl: bool,
    cache_dir: Path | None = None,
    note: Note = warn,
) -> EvalSet:
    """``es`` (its vectors as the model gave them: transform "naive") under the transform
    `choice`, fitted on its rows: a BEIR set's vectors or a folder's index, never embedded again.
    An adaptor is fitted on the index's device; with `cache_dir`, it is kept there
    (`fit_transform`)."""
    raw = es.index.vectors()
    started = time.perf_counter()
    fitted, label = fit_transform(choice, raw, native_mrl, cache_dir, es.index.device, note)
    fit_seconds = time.perf_counter() - started

    def apply(vectors: np.ndarray | None) -> np.ndarray | None:
        if vectors is None or len(vectors) == 0:
            return vectors
        return fitted.apply(vectors)

    return replace(
        es,
        transform=label,
        index=NestedIndex(fitted.apply(raw), device=es.index.device),
        query_vectors=fitted.apply(es.query_vectors),
        pseudo_vectors=apply(es.pseudo_vectors),
        route_vectors=apply(es.route_vectors),
        codes={},
        fit_seconds=fit_seconds,
        fit_cached=isinstance(fitted, Adaptor) and fitted.report is None,
    )
