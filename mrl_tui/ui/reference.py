"""Which side the comparison is made against when the user has not chosen one.

The reference is the full dimension: what every prefix gives up is measured against it. When the
chosen dim is full itself (the router often picks it on a small folder), both sides would be the
same ranking and show nothing; the reference then moves to a small prefix, so the first screen
always shows a trade-off: what a 64-d prefix would have found instead.
"""

from __future__ import annotations

from mrl_tui.core.search.compare import power_of_two_dims

SMALL_REFERENCE = 64
"""The prefix compared against full, or the largest power of two below full for smaller models."""


def default_reference(dim: int, full_dim: int) -> tuple[int, str]:
    """(reference dim, why: "" when it is full, else one short line saying why not)."""
    smaller = [d for d in power_of_two_dims(full_dim) if d < full_dim]
    if dim != full_dim or not smaller:
        return full_dim, ""
    ref = SMALL_REFERENCE if SMALL_REFERENCE in smaller else smaller[-1]
    return ref, f"reference: {ref}-d, because the chosen dim is full"
