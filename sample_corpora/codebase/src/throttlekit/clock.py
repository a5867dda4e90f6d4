"""Time sources used by the limiters.

Every limiter asks a :class:`Clock` for the current time instead of calling
``time.monotonic()`` directly. Production code uses :class:`MonotonicClock`;
unit tests and notebooks use :class:`ManualClock`, which only moves when told
to, so a test can "wait" thirty seconds in zero real time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything with a ``now()`` method returning seconds as a float."""

    def now(self) -> float:
        """Return the current time in seconds."""
        ...


class MonotonicClock:
    """Wall-clock-independent time based on :func:`time.monotonic`.

    Monotonic time never jumps backwards when NTP adjusts the system clock,
    which matters because a backwards jump would make a token bucket refill
    negatively and reject traffic for no reason.
    """

    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """A fake clock for tests: time only advances when :meth:`advance` is called.

    Example::

        clock = ManualClock()
        bucket = TokenBucket(capacity=2, refill_rate=1.0, clock=clock)
        bucket.hit("alice"); bucket.hit("alice")
        assert not bucket.hit("alice").allowed
        clock.advance(1.0)          # one second "passes" instantly
        assert bucket.hit("alice").allowed
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError("ManualClock cannot go backwards")
        self._now += seconds

    def set(self, timestamp: float) -> None:
        """Jump to an absolute time, as long as it is not in the past."""
        if timestamp < self._now:
            raise ValueError("ManualClock cannot go backwards")
        self._now = float(timestamp)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now:.3f})"
