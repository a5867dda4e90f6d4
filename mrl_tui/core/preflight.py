"""Checks that need no model: run before loading one, so a typo fails in milliseconds.

Loading the model takes seconds (tens on a cold disk); a dimension out of range, an empty query or
an empty folder can be told without it. Pure Python: nothing here imports numpy or torch, and
the model registry is imported only to check a dim (the warm `search` imports little).
"""

from __future__ import annotations

import os
from pathlib import Path

from mrl_tui.core.errors import InputError
from mrl_tui.core.search.query_syntax import ParsedQuery, parse_query


def known_full_dim(model: str | None) -> tuple[str, int] | None:
    """(model name, full dim) where the registry knows the model's dimension without loading it;
    None for unknown models and for local folders (their files decide)."""
    from mrl_tui.core.embedding.models import DEFAULT_MODEL, find_spec

    name = model or DEFAULT_MODEL
    if model is not None and Path(model).expanduser().exists():
        return None
    spec = find_spec(name)
    if spec is None or spec.full_dim is None:
        return None
    return spec.name, spec.full_dim


def check_dim_known(dim: int, model: str | None) -> None:
    """A dim above the model's known full dim, said before the model loads."""
    known = known_full_dim(model)
    if known is not None and dim > known[1]:
        name, full = known
        raise InputError(
            f"dim must be between 1 and {full} for {name}, not {dim}", settings=("dim",)
        )


def check_query(text: str) -> ParsedQuery:
    """The query's words and path filter; an error when there are no words to search for."""
    parsed = parse_query(text)
    if not text.strip():
        raise InputError("the query is empty")
    if not parsed.words:
        raise InputError(f"the query {text!r} has only path: terms; add words to search for")
    return parsed


def check_has_entries(folder: Path) -> None:
    """An error for a folder with nothing in it but hidden entries: there is nothing to index.

    Cheap: one directory listing, stopped at the first visible entry. Whether what is there can
    be read is only known after the walk (the indexer reports it)."""
    try:
        with os.scandir(folder) as entries:
            if any(not entry.name.startswith(".") for entry in entries):
                return
    except OSError as exc:
        raise InputError(f"{folder}: cannot read the folder ({exc.strerror or exc})") from exc
    raise InputError(f"{folder}: nothing to index (the folder is empty or holds only hidden files)")


def check_folder(root: Path | str) -> Path:
    """The folder to index, resolved; a clear error for anything else."""
    path = Path(root).expanduser()
    if not path.exists():
        raise InputError(f"{root}: no such folder")
    if not path.is_dir():
        raise InputError(f"{root}: is a file; mrl-tui indexes a folder (give its parent folder)")
    return path.resolve()
