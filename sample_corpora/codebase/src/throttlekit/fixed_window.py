"""Fixed window counter.

Time is cut into windows of ``window`` seconds aligned to the epoch of the
clock (0-60 s, 60-120 s, ...). Each key gets a counter per window; once the
counter reaches ``limit`` further requests are rejected until the next window
starts.

This is the cheapest algorithm (one integer per key) but it has a known flaw:
a client can send ``limit`` requests at the very end of one window and
``limit`` more at the start of the next, i.e. twice the limit within a couple
of seconds. :class:`throttlekit.SlidingWindow` smooths this out.
"""

from __future__ import annotations

import math

from .clock import Clock
from .limiter import Decision, Limiter
from .storage import Storage


class FixedWindow(Limiter):
    """Allow at most ``limit`` requests per aligned window of ``window`` seconds."""

    prefix = "fw"

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
        return self.window

    def _window_start(self, now: float) -> float:
        return math.floor(now / self.window) * self.window

    def _apply(self, state: object | None, now: float, cost: int) -> tuple[object, Decision]:
        start = self._window_start(now)
        same_window = state is not None and state[0] == start  # type: ignore[index]
        count = state[1] if same_window else 0  # type: ignore[index]

        reset_after = start + self.window - now
        allowed = count + cost <= self.limit
        if allowed:
            count += cost
        decision = Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=max(0, self.limit - count),
            reset_after=reset_after,
            retry_after=0.0 if allowed else reset_after,
        )
        return (start, count), decision
