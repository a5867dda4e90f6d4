"""Sliding window counter (the "approximated sliding log").

Keeps the counts of the current and the previous fixed window and estimates
how many requests fell inside the last ``window`` seconds by weighting the
previous window's count by how much of it still overlaps::

    estimate = previous * (1 - elapsed / window) + current

where ``elapsed`` is the time since the current window started. This costs two
integers per key, avoids the double burst at window boundaries that
:class:`FixedWindow` allows, and is accurate to within a few percent when
traffic is roughly uniform. An exact sliding log would need to store one
timestamp per request.
"""

from __future__ import annotations

import math

from .clock import Clock
from .limiter import Decision, Limiter
from .storage import Storage


class SlidingWindow(Limiter):
    """Approximate "at most ``limit`` requests in any ``window`` seconds"."""

    prefix = "sw"

    def __init__(
        self,
        limit: int,
        window: float,
        storage: Storage | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        if window <= 0:
            raise ValueError("window must be positive")
        super().__init__(storage=storage, clock=clock, name=name)
        self.limit = limit
        self.window = window

    def _ttl(self) -> float:
        # The previous window's count is still needed for one more window.
        return 2 * self.window

    def _apply(self, state: object | None, now: float, cost: int) -> tuple[object, Decision]:
        start = math.floor(now / self.window) * self.window
        prev_count, cur_count = 0, 0
        if state is not None:
            stored_start, stored_prev, stored_cur = state  # type: ignore[misc]
            if stored_start == start:
                prev_count, cur_count = stored_prev, stored_cur
            elif stored_start == start - self.window:
                # We moved into the next window: current becomes previous.
                prev_count = stored_cur
            # Anything older than one window is simply forgotten.

        elapsed = now - start
        weight = 1.0 - elapsed / self.window
        estimate = prev_count * weight + cur_count

        allowed = estimate + cost <= self.limit
        if allowed:
            cur_count += cost
            estimate += cost
            retry_after = 0.0
        else:
            retry_after = self._time_until_room(prev_count, cur_count, elapsed, cost)

        if cur_count:
            reset_after = (self.window - elapsed) + self.window
        elif prev_count:
            reset_after = self.window - elapsed
        else:
            reset_after = 0.0

        decision = Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=max(0, math.floor(self.limit - estimate)),
            reset_after=reset_after,
            retry_after=retry_after,
        )
        return (start, prev_count, cur_count), decision

    def _time_until_room(self, prev: int, cur: int, elapsed: float, cost: int) -> float:
        """Seconds until ``cost`` more requests fit, assuming no other traffic."""
        if prev and cur + cost <= self.limit:
            # Room appears as the previous window's weight decays:
            # prev * (1 - t / window) + cur + cost <= limit
            t = self.window * (1.0 - (self.limit - cur - cost) / prev)
            return max(0.0, t - elapsed)
        # Otherwise wait until the current count itself becomes the decaying
        # "previous" window, then for its weight to shrink far enough.
        wait_next = self.window - elapsed
        if cur == 0:
            return wait_next
        fraction = max(0.0, 1.0 - (self.limit - cost) / cur)
        return wait_next + self.window * fraction
