"""`mrl-tui bench`: retrieval quality and cost at each prefix dimension, and of funnel searches.

Three families of search are measured on the same vectors (already in the index's basis):

- *full*: exact cosine at the model's full dimension, the reference;
- *fixed*: exact cosine at one prefix ``d`` (reads ``N·d`` values);
- *funnel*: an exact scan at a small prefix keeps a few candidates, later stages rerank them at
  larger prefixes, the last one at full dimension. Its cost is the values it reads, counted
  against a full exact scan (``N·full_dim``): ``scan_fraction``.

Funnels can be fixed, or chosen per corpus ("auto") from pseudo-queries cut out of the corpus
itself, never from the judgements: see `auto_funnel`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mrl_tui.core.cache import artifacts
from mrl_tui.core.cache.store import default_cache_root
from mrl_tui.core.errors import InputError
from mrl_tui.core.evaluation.beir import BeirSet, read_folder_queries
from mrl_tui.core.evaluation.metrics import Scores, evaluate, paired_difference
from mrl_tui.core.search.codes import DEFAULT_RESCORE, bytes_per_vector, encode, rescored_search
from mrl_tui.core.search.funnel import (
    Funnel,
    auto_funnel,
    default_funnels,
    scan_fraction,
    staged_search,
)
from mrl_tui.core.search.index import NestedIndex, index_device
from mrl_tui.core.search.pseudo import SHORT, WINDOWS, pseudo_queries
from mrl_tui.core.search.query_features import TermStats
from mrl_tui.core.search.router import Route, Router
from mrl_tui.core.transforms.adaptor import Adaptor, fit_adaptor
from mrl_tui.core.transforms.adaptor import fit_settings as adaptor_settings
from mrl_tui.core.transforms.kind import ADAPTOR, KINDS, NAIVE, PCA, resolve
from mrl_tui.core.transforms.pca import IDENTITY, Transform, fit_pca

DEFAULT_DIMS = (32, 64, 128, 256)
RECALL_K = 100
TIMED_QUERIES = 50
"""Queries whose single search is timed for ``search_ms`` (the rankings come from a batch)."""
COMPARE_TRANSFORMS = tuple(kind.choice for kind in KINDS)
"""`--compare`'s columns: every transform kind, "naive", "pca", "adaptor"."""

Progress = Callable[[str, int, int], None]
"""progress(what, done, total) while embedding."""


def parse_dims(text: str) -> list[int]:
    """``"32,64,128"`` → sorted unique dims; anything else is an `InputError`."""
    dims = set()
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise InputError(f"--dims: {part!r} is not a positive whole number (e.g. 32,64,128)")
        dims.add(int(part))
    return sorted(dims)


def check_dims(dims: Sequence[int], full_dim: int, *, given: bool = True) -> list[int]:
    """The dims below full (full itself is always measured); too large given dims are an error."""
    too_big = [d for d in dims if d > full_dim]
    if too_big and given:
        raise InputError(f"--dims: {too_big[0]} is above the model's {full_dim} dimensions")
    return [d for d in dims if d < full_dim]


# -- what gets measured ----------------------------------------------------------------------


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


def _documents(rows: np.ndarray, row_docs: list[str], limit: int) -> list[str]:
    """Row ids → document ids, first (best) occurrence only, at most ``limit``."""
    docs: list[str] = []
    seen = set()
    for row in rows.tolist():
        doc = row_docs[row]
        if doc and doc not in seen:
            seen.add(doc)
            docs.append(doc)
            if len(docs) == limit:
                break
    return docs


def _depth(es: EvalSet) -> int:
    """Rows to retrieve so that `RECALL_K` documents come out: all rows when docs have many."""
    one_row_each = len(set(es.row_docs)) == es.index.n
    return min(es.index.n, RECALL_K) if one_row_each else es.index.n


def _evaluate(es: EvalSet, search: Callable[[np.ndarray], np.ndarray], k: int) -> Scores:
    rankings = {
        qid: _documents(search(vector), es.row_docs, RECALL_K)
        for qid, vector in zip(es.query_ids, es.query_vectors, strict=True)
    }
    return evaluate(rankings, es.qrels, ndcg_k=k, recall_k=RECALL_K)


def _cells(scores: Scores, k: int) -> dict[str, float]:
    return {f"ndcg{k}": round(scores.ndcg, 4), "recall100": round(scores.recall, 4)}


def _score(es: EvalSet, search: Callable[[np.ndarray], np.ndarray], k: int) -> dict[str, float]:
    return _cells(_evaluate(es, search, k), k)


def against_fixed(
    routed: Scores, scan: float, fixed: dict[int, Scores], full_dim: int
) -> list[dict[str, Any]]:
    """Routed minus each fixed dim that costs at least as much (``dim/full_dim >= scan``): the
    mean nDCG difference and its paired-bootstrap 95 % interval over the judged queries."""
    rows = []
    for dim, scores in sorted(fixed.items()):
        if dim / full_dim < scan or not scores.per_query_ndcg:
            continue
        diff, low, high = paired_difference(routed.per_query_ndcg, scores.per_query_ndcg)
        rows.append(
            {
                "dim": dim,
                "scan_fraction": round(dim / full_dim, 4),
                "ndcg_diff": round(diff, 4),
                "ci95": [round(low, 4), round(high, 4)],
            }
        )
    return rows


def _routed(es: EvalSet, k: int, funnel: Funnel) -> tuple[dict[str, Any], Scores] | None:
    """Every query through a `Router` whose ladder is ``funnel`` (the auto funnel), its stop
    rules calibrated on this corpus's pseudo-queries (no qrels)."""
    if not es.row_texts or es.route_vectors is None:
        return None
    index, depth = es.index, _depth(es)
    stats = TermStats.from_texts(es.row_texts)
    texts = es.route_texts or None
    router = Router.calibrate(
        index, stats, es.route_vectors, es.route_sources, k, texts, funnel=funnel
    )
    routes: list[Route] = []
    rankings = {}
    for qid, text, vector in zip(es.query_ids, es.query_texts, es.query_vectors, strict=True):
        found, route = router.search(index, text, vector, depth)
        routes.append(route)
        rankings[qid] = _documents(found.ids, es.row_docs, RECALL_K)
    scores = evaluate(rankings, es.qrels, ndcg_k=k, recall_k=RECALL_K)
    dims = [r.dim for r in routes]
    report = {
        "mean_dim": round(float(np.mean(dims)), 1),
        "scan_fraction": round(
            float(np.mean([r.values_read for r in routes])) / (index.n * index.full_dim), 4
        ),
        f"ndcg{k}": round(scores.ndcg, 4),
        "recall100": round(scores.recall, 4),
        "scan_dim": router.scan_dim,
        "dims": {str(d): dims.count(d) for d in sorted(set(dims))},
        "calibration": router.notes,
    }
    return report, scores


def _timed(
    index: NestedIndex, dim: int, depth: int, elapsed: list[float]
) -> Callable[[np.ndarray], np.ndarray]:
    """An exact search at ``dim`` that appends its wall time (s) to ``elapsed``."""

    def search(query: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        ids = index.search(query, dim, depth).ids
        elapsed.append(time.perf_counter() - started)
        return ids

    return search


def _batched(
    index: NestedIndex, queries: np.ndarray, dim: int, depth: int
) -> Callable[[np.ndarray], np.ndarray]:
    """A search function that answers ``queries``, in order, from one `NestedIndex.search_many`."""
    found = iter(index.search_many(queries, dim, depth))
    return lambda _query: next(found).ids


def _searcher(
    es: EvalSet, dim: int, precision: str, elapsed: list[float] | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Exact search at ``dim``, or codes of ``precision`` rescored exactly; optionally timed."""
    index, depth = es.index, _depth(es)
    if precision == "float32":
        return _timed(index, dim, depth, [] if elapsed is None else elapsed)
    codes = es.codes.get(precision)
    if codes is None:
        codes = es.codes[precision] = encode(index.vectors(), precision)

    def search(query: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        found = rescored_search(index, codes, query, dim, depth, DEFAULT_RESCORE[precision])
        if elapsed is not None:
            elapsed.append(time.perf_counter() - started)
        return found.ids

    return search


def run_bench(
    es: EvalSet, dims: Sequence[int], k: int = 10, precision: str = "float32"
) -> dict[str, Any]:
    """The report `mrl-tui bench --json` prints (``routed`` is None without query texts).

    ``precision`` int8 or binary changes the fixed-dim searches only: codes keep
    ``DEFAULT_RESCORE × depth`` candidates, which are scored exactly. Funnels stay float32."""
    index, depth = es.index, _depth(es)
    full_dim, n = index.full_dim, index.n
    full = _score(es, _batched(index, es.query_vectors, full_dim, depth), k)
    fixed = []
    per_dim: dict[int, Scores] = {}
    for dim in [*dims, full_dim]:
        elapsed: list[float] = []
        _searcher(es, dim, precision)(es.query_vectors[0])  # warm-up: first-touch costs aside
        if precision == "float32":  # ranked in one batch; latency timed on single queries
            per_dim[dim] = _evaluate(es, _batched(index, es.query_vectors, dim, depth), k)
            timed = _searcher(es, dim, precision, elapsed)
            for query in es.query_vectors[:TIMED_QUERIES]:
                timed(query)
        else:
            per_dim[dim] = _evaluate(es, _searcher(es, dim, precision, elapsed), k)
        row = {"dim": dim, **_cells(per_dim[dim], k)}
        row["search_ms"] = round(1000 * float(np.median(elapsed)), 3)
        row["bytes_per_vector"] = bytes_per_vector(dim, precision)
        fixed.append(row)

    funnels = default_funnels(full_dim, n)
    auto, agreement = auto_funnel(index, es.pseudo_vectors, es.pseudo_sources, k)
    funnels.append(auto)
    funnel_rows = []
    for funnel in funnels:
        scores = _score(es, lambda q, f=funnel: staged_search(index, q, f, depth), k)
        funnel_rows.append(
            {
                "label": funnel.label,
                "dim": funnel.stages[0][0],
                "candidates": funnel.stages[0][1],
                "rerank_dim": full_dim,
                "stages": [{"dim": d, "kept": kept} for d, kept in funnel.stages],
                "auto": funnel.auto,
                "pseudo_agreement": round(agreement, 4) if funnel.auto else None,
                **scores,
                "scan_fraction": round(scan_fraction(funnel, n, full_dim), 4),
            }
        )
    routed = None
    measured = _routed(es, k, auto)
    if measured is not None:
        routed, scores = measured
        routed["against_fixed"] = against_fixed(scores, routed["scan_fraction"], per_dim, full_dim)
    return {
        "dataset": es.name,
        "model": es.model,
        "transform": es.transform,
        "precision": precision,
        "docs": len({d for d in es.row_docs if d}),
        "rows": n,
        "queries": len(es.query_ids),
        "full_dim": full_dim,
        "k": k,
        "full": full,
        "fixed": fixed,
        "funnel": funnel_rows,
        "routed": routed,
    }


def run_compare(
    sets: dict[str, EvalSet], chosen: str, dims: Sequence[int], k: int = 10
) -> dict[str, Any]:
    """Transforms side by side: rows = dims (then full), one column per transform in `sets`
    (exact float32), then int8 and binary codes of the `chosen` transform (rescored exactly).
    Every cell holds nDCG@k and recall@100."""
    first = sets[chosen]
    full_dim = first.index.full_dim
    columns = [*sets, f"{chosen} int8", f"{chosen} binary"]
    rows = []
    for dim in [*dims, full_dim]:
        row: dict[str, Any] = {"dim": dim}
        for name, es in sets.items():
            row[name] = _score(es, _batched(es.index, es.query_vectors, dim, _depth(es)), k)
        for precision in ("int8", "binary"):
            row[f"{chosen} {precision}"] = _score(first, _searcher(first, dim, precision), k)
        rows.append(row)
    return {
        "dataset": first.name,
        "model": first.model,
        "docs": len({d for d in first.row_docs if d}),
        "queries": len(first.query_ids),
        "full_dim": full_dim,
        "k": k,
        "compare": {
            "chosen": chosen,
            "columns": columns,
            "rows": rows,
            "fit_seconds": {name: round(es.fit_seconds, 2) for name, es in sets.items()},
            "fit_cached": [name for name, es in sets.items() if es.fit_cached],
        },
    }


# -- building the evaluation sets ------------------------------------------------------------


def beir_cache_dir(folder: Path, name: str, model: str, cache_root: Path | None = None) -> Path:
    """`<cache>/bench/<set>-<model>-<hash of the corpus file's size and mtime>`."""
    stat = (Path(folder) / "corpus.jsonl").stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:{model}".encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}-{Path(model).name}")[:80]
    return (cache_root or default_cache_root()) / "bench" / f"{slug}-{digest[:16]}"


def cached_embeddings(
    directory: Path, kind: str, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray]
) -> np.ndarray:
    """``embed(texts)``, saved as ``<kind>-<hash of the texts>.npy`` and loaded from it later
    (verified against the folder's manifest: `artifacts.load_or_build`)."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = directory / f"{kind}-{digest}.npy"
    directory.mkdir(parents=True, exist_ok=True)

    def load(path: Path) -> np.ndarray:
        vectors = artifacts.load_npy(path)
        if vectors.ndim != 2 or len(vectors) != len(texts) or vectors.dtype != np.float32:
            raise ValueError(f"{path.name}: {vectors.dtype} {vectors.shape}")
        return vectors

    return artifacts.load_or_build(
        path,
        artifacts.JsonManifest(directory),
        (len(texts),),
        load=load,
        build=lambda: np.ascontiguousarray(embed(texts), dtype=np.float32),
        writer=artifacts.npy_writer,
        what="cached embeddings",
        note=_warn,
    )


def _warn(message: str) -> None:
    """Bench caches have no message list: their one line goes to stderr."""
    print(f"mrl-tui: {message}", file=sys.stderr)


def _embed_queries(embedder: Any, what: str, progress: Progress | None):
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
    embedder: Any,
    progress: Progress | None = None,
    cache_root: Path | None = None,
    transform: str = "auto",
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

    docs = cached_embeddings(directory, "docs", data.doc_texts, embed_docs)
    query_ids = list(data.queries)
    queries = cached_embeddings(
        directory,
        "queries",
        [data.queries[q] for q in query_ids],
        _embed_queries(embedder, "embedding queries", progress),
    )
    pseudo = pseudo_queries(data.doc_texts, WINDOWS)
    pseudo_vectors = cached_embeddings(
        directory,
        "pseudo",
        [text for _, text in pseudo],
        _embed_queries(embedder, "embedding pseudo-queries", progress),
    )
    route_pseudo = pseudo_queries(data.doc_texts, SHORT)
    route_vectors = cached_embeddings(
        directory,
        "route",
        [text for _, text in route_pseudo],
        _embed_queries(embedder, "embedding router pseudo-queries", progress),
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
    return retransformed(raw, transform, embedder.spec.native_mrl, directory)


def resolve_transform(choice: str, native_mrl: bool) -> str:
    """Resolve "auto": "naive" for native MRL models (trained prefixes), else "pca"."""
    return resolve(choice, native_mrl).choice


def fit_transform(
    choice: str,
    docs: np.ndarray,
    native_mrl: bool,
    cache_dir: Path | None = None,
    device: str = "cpu",
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
    return cached_adaptor(cache_dir, docs, device), ADAPTOR.label


def cached_adaptor(directory: Path, docs: np.ndarray, device: str = "cpu") -> Adaptor:
    """`fit_adaptor(docs)` on `device`, saved as ``adaptor-<hash of the vectors and the fit's
    settings>.npz`` (no pickle) and loaded from it later, so a second bench run does not train
    again."""
    vectors = np.ascontiguousarray(docs, dtype=np.float32)
    digest = hashlib.sha256(f"{vectors.shape}".encode())
    digest.update(vectors.tobytes())
    digest.update(json.dumps(adaptor_settings(), sort_keys=True).encode())
    path = Path(directory) / f"adaptor-{digest.hexdigest()[:16]}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)

    def load(path: Path) -> Adaptor:
        adaptor = Adaptor.from_arrays("adaptor", artifacts.load_npz(path))
        if adaptor.dim != vectors.shape[1]:
            raise ValueError(f"{path.name}: an adaptor of dimension {adaptor.dim}")
        return adaptor

    return artifacts.load_or_build(
        path,
        artifacts.JsonManifest(path.parent),
        (vectors.shape[1],),
        load=load,
        build=lambda: fit_adaptor(vectors, device=device),
        writer=lambda adaptor: artifacts.npz_writer(adaptor.to_arrays()),
        what="cached adaptor",
        note=_warn,
    )


def folder_eval_set(library: Any, progress: Progress | None = None) -> EvalSet:
    """An indexed `Library` and its ``queries.tsv``: relevance is any chunk of the named file."""
    from mrl_tui.core.evaluation.beir import FOLDER_QUERIES

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
    es: EvalSet, choice: str, native_mrl: bool, cache_dir: Path | None = None
) -> EvalSet:
    """``es`` (its vectors as the model gave them: transform "naive") under the transform
    `choice`, fitted on its rows: a BEIR set's vectors or a folder's index, never embedded again.
    An adaptor is fitted on the index's device; with `cache_dir`, it is kept there
    (`fit_transform`)."""
    raw = es.index.vectors()
    started = time.perf_counter()
    fitted, label = fit_transform(choice, raw, native_mrl, cache_dir, es.index.device)
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


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)


# -- plot ------------------------------------------------------------------------------------

_W, _H, _PAD = 440, 320, 50


def _panel(
    left: int, title: str, x_label: str, xs: tuple[float, float], ys: tuple[float, float]
) -> tuple[list[str], Callable[[float, float], tuple[float, float]]]:
    """SVG elements of an empty log-x panel and a function mapping (x, y) data to pixels."""
    (x_lo, x_hi), (y_lo, y_hi) = (math.log2(xs[0]), math.log2(xs[1])), ys
    x0, x1, y0, y1 = left + _PAD, left + _W - 20, _H - _PAD, 40

    def at(x: float, y: float) -> tuple[float, float]:
        fx = (math.log2(x) - x_lo) / ((x_hi - x_lo) or 1)
        fy = (y - y_lo) / ((y_hi - y_lo) or 1)
        return round(x0 + fx * (x1 - x0), 1), round(y0 - fy * (y0 - y1), 1)

    parts = [
        f'<text x="{left + _W / 2}" y="22" text-anchor="middle" font-weight="bold">{title}</text>',
        f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#888"/>',
        f'<text x="{(x0 + x1) / 2}" y="{_H - 10}" text-anchor="middle">{x_label}</text>',
    ]
    for i in range(5):
        y = y_lo + i * (y_hi - y_lo) / 4
        py = at(xs[0], y)[1]
        parts.append(f'<text x="{x0 - 6}" y="{py + 4}" text-anchor="end">{y:.2f}</text>')
    return parts, at


def _line(points: list[tuple[float, float]], color: str, dash: str = "") -> str:
    path = " ".join(f"{x},{y}" for x, y in points)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{extra}/>'


def plot_svg(report: dict[str, Any]) -> str:
    """Two panels: nDCG@k against the prefix dim (labelled with bytes per vector), and against the
    share of a full scan read, where funnel settings appear as dots. No plotting library needed."""
    key, full_dim = f"ndcg{report['k']}", report["full_dim"]
    fixed, funnels = report["fixed"], report["funnel"]
    full = report["full"][key]
    values = [r[key] for r in fixed + funnels] + [full]
    ys = (math.floor(min(values) * 20) / 20, math.ceil(max(values) * 20) / 20 + 0.01)
    dims = [r["dim"] for r in fixed]
    fractions = [r["dim"] / full_dim for r in fixed] + [r["scan_fraction"] for r in funnels]

    left, at = _panel(
        0, f"nDCG@{report['k']} by prefix dim", "dim (bytes/vector)", (min(dims), full_dim), ys
    )
    left.append(_line([at(d, full) for d in (min(dims), full_dim)], "#999", "4 3"))
    left.append(_line([at(r["dim"], r[key]) for r in fixed], "#1f77b4"))
    for r in fixed:
        x, y = at(r["dim"], r[key])
        left.append(f'<circle cx="{x}" cy="{y}" r="3.5" fill="#1f77b4"/>')
        label = f"{r['dim']} ({r['bytes_per_vector']} B)"
        left.append(f'<text x="{x}" y="{_H - _PAD + 16}" text-anchor="middle">{label}</text>')

    right, at2 = _panel(
        _W,
        f"nDCG@{report['k']} by share of a full scan read",
        "scan fraction (log)",
        (min(fractions), 1.0),
        ys,
    )
    right.append(_line([at2(f, 0.995 * full) for f in (min(fractions), 1.0)], "#2ca02c", "4 3"))
    right.append(_line([at2(r["dim"] / full_dim, r[key]) for r in fixed], "#1f77b4"))
    for r in funnels:
        x, y = at2(r["scan_fraction"], r[key])
        color = "#ff7f0e" if r["auto"] else "#d62728"
        right.append(
            f'<circle cx="{x}" cy="{y}" r="3.5" fill="{color}"><title>{r["label"]}</title></circle>'
        )
    for f in sorted({min(fractions), 0.1, 1.0}):
        x = at2(f, ys[0])[0]
        right.append(
            f'<text x="{x}" y="{_H - _PAD + 16}" text-anchor="middle">{100 * f:.0f} %</text>'
        )
    legend = (
        "blue: exact at one dim · red: funnel · orange: auto funnel · "
        "green dashed: 99.5 % of full · grey dashed: full"
    )
    body = "\n".join([*left, *right])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * _W}" height="{_H + 24}" '
        'font-family="sans-serif" font-size="11">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n{body}\n'
        f'<text x="{_W}" y="{_H + 16}" text-anchor="middle" fill="#555">{legend}</text>\n</svg>\n'
    )
