"""Moved to `mrl_tui.core.search.side_by_side` (#14); kept only for the tests that still import
these names from here. Remove once they import from the core."""

from mrl_tui.core.search.side_by_side import TOP_K, compare_at, embed_and_rank

__all__ = ["TOP_K", "compare_at", "embed_and_rank"]
