"""Vector engine backends (`--backend`): the same tiers and funnel, held and run by an engine.

``qdrant:DIR`` is Qdrant Edge embedded in this process; ``qdrant://HOST:PORT[/COLLECTION]`` a
Qdrant server through qdrant-client. Both need ``pip install 'mrl-tui[engine]'``.
"""

from __future__ import annotations

from pathlib import Path

from mrl_tui.core.engines.base import (
    CollectionSpec,
    EngineError,
    EngineHits,
    EngineInfo,
    EnginePoint,
    VectorEngine,
    collection_name,
    tiers_for,
)

__all__ = [
    "CollectionSpec",
    "EngineError",
    "EngineHits",
    "EngineInfo",
    "EnginePoint",
    "VectorEngine",
    "check_backend",
    "collection_name",
    "open_engine",
    "tiers_for",
]

SCHEMES = ("qdrant:DIR", "qdrant://HOST:PORT")


def backend_ef(backend: str) -> tuple[str, int | None]:
    """A ``--backend`` value without its options, and the HNSW search ef it sets: ``…?ef=N``
    (None: the ef measured on the collection, see `binding.tune_ef`)."""
    base, mark, options = backend.partition("?")
    if not mark:
        return backend, None
    name, _, value = options.partition("=")
    if name != "ef" or not value.isdigit() or int(value) < 1:
        raise EngineError(
            f"backend {backend}: the one option is ?ef=N (N ≥ 1, the HNSW search beam)",
            settings=("backend",),
        )
    return base, int(value)


def check_backend(backend: str) -> tuple[str, str, str | None]:
    """(kind "edge" or "server", where, collection or None) of a ``--backend`` value."""
    backend = backend_ef(backend)[0]
    if backend.startswith("qdrant://"):
        rest = backend[len("qdrant://") :]
        address, _, collection = rest.partition("/")
        if not address:
            raise EngineError(f"backend {backend}: give qdrant://HOST:PORT", settings=("backend",))
        return "server", address, collection or None
    if backend.startswith("qdrant:"):
        folder = backend[len("qdrant:") :]
        if not folder:
            raise EngineError(
                f"backend {backend}: give qdrant:DIR (a folder for the engine)",
                settings=("backend",),
            )
        return "edge", folder, None
    raise EngineError(
        f"backend {backend!r}: choose one of {', '.join(SCHEMES)}", settings=("backend",)
    )


def open_engine(backend: str, collection: str) -> VectorEngine:
    """The engine a ``--backend`` value names, on `collection` (unless the value names one).
    Opening reads only: the collection is made on the first `ensure`."""
    kind, where, named = check_backend(backend)
    from mrl_tui.core.engines import qdrant

    if kind == "edge":
        return qdrant.EdgeEngine(Path(where).expanduser().absolute(), named or collection)
    return qdrant.open_server(where, named or collection)


def check_installed(backend: str) -> None:
    """The ``--backend`` value's form, and its package, checked in milliseconds (before any model
    loads)."""
    import importlib.util

    from mrl_tui.core.engines.base import INSTALL_HINT

    kind, _, _ = check_backend(backend)
    module, package = (
        ("qdrant_edge", "qdrant-edge-py") if kind == "edge" else ("qdrant_client", "qdrant-client")
    )
    if importlib.util.find_spec(module) is None:
        raise EngineError(
            f"backend {backend} needs {package}, which is not installed: {INSTALL_HINT}",
            settings=("backend",),
        )
