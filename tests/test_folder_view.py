"""A folder's saved view: the reference mode's older name still loads."""

from __future__ import annotations

from mrl_tui.ui.state import FolderView


def test_the_reference_mode_reads_its_older_name_and_rejects_unknown_ones() -> None:
    assert FolderView.from_dict({"ref_mode": "graph", "ref_dim": 384}).ref_mode == "graph"
    assert FolderView.from_dict({"ref_mode": "funnel"}).ref_mode == "graph"  # before the rename
    assert FolderView.from_dict({"ref_mode": "warp"}).ref_mode == "exact"
