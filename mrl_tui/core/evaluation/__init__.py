"""Judged retrieval: BEIR readers, metrics, and `mrl-tui bench`."""
