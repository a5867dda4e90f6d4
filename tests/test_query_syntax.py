"""`path:` terms in a query: parsed in the core, applied before top-k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import write_files
from fakes import HashEmbedder

from mrl_tui.core.library import Library
from mrl_tui.core.search.query_syntax import PathFilter, matching_rows, parse_query


def test_parse_splits_path_terms_from_the_words() -> None:
    parsed = parse_query('path:docs/ how to  bake -path:"old notes/" path:*.md')
    assert parsed.words == "how to bake"
    assert parsed.paths == PathFilter(include=("docs/", "*.md"), exclude=("old notes/",))
    assert parse_query("PYTHONPATH:/usr/lib setup").paths is None  # not a term of its own
    assert parse_query("plain words").paths is None


def test_patterns_match_at_component_starts_or_as_globs() -> None:
    docs = PathFilter(include=("docs/",))
    assert docs.matches("docs/a.md") and docs.matches("src/Docs/b.md")
    assert not docs.matches("mydocs/c.md")
    py = PathFilter(include=("*.py",))
    assert py.matches("a/b/c.py") and not py.matches("a/b/c.pyc")
    both = PathFilter(include=("src/",), exclude=("tests/",))
    assert both.matches("src/x.py") and not both.matches("src/tests/x.py")
    assert matching_rows(["a/x.md", "b/y.md", "a/z.md"], PathFilter(("a/",))) == [0, 2]


def test_filtered_search_is_the_true_top_k_of_the_matching_files(tmp_path: Path) -> None:
    hash_embedder = HashEmbedder()
    files = {f"{group}/{i}.md": f"note {group} {i}" for group in ("a", "b") for i in range(30)}
    folder = write_files(tmp_path / "f", files)
    library = Library(folder, hash_embedder, cache_root=tmp_path / "cache", transform="naive")
    library.update()
    query = library.query("path:b/ note seventeen")
    assert query.words == "note seventeen"
    got = library.search(query, 16, 5)
    # Brute force: every chunk of b/, scored at dim 16 by cosine, best first.
    ids, vectors = library.store.load_vectors()
    chunks = library.store.chunks(ids.tolist())
    q = query.raw[:16] / np.linalg.norm(query.raw[:16])
    scored = sorted(
        (float(v[:16] @ q / np.linalg.norm(v[:16])), int(i))
        for i, v, c in zip(ids, vectors, chunks, strict=True)
        if c.path.startswith("b/")
    )[::-1][:5]
    assert [h.id for h in got.hits] == [i for _, i in scored]
    assert all(h.chunk.path.startswith("b/") for h in got.hits)
    library.close()
