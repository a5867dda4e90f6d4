"""Token bucket rate limiting.

A bucket holds up to ``capacity`` tokens and gains ``refill_rate`` tokens per
second. Each request removes ``cost`` tokens; if not enough are left, the
request is rejected. This allows short bursts (up to ``capacity``) while
enforcing an average rate of ``refill_rate`` requests per second.

Only two numbers are stored per key: the token count (a float, because refill
is continuous and usually leaves a fractional token) and the time of the last
refill. Refill is computed lazily when a request arrives, so there is no
background timer.
"""

from __future__ import annotations

import math

from .clock import Clock
from .limiter import Decision, Limiter
from .storage import Storage


class TokenBucket(Limiter):
    """Classic token bucket.

    Args:
        capacity: maximum tokens, i.e. the largest burst allowed.
        refill_rate: tokens added per second. ``100/minute`` is ``100 / 60``.
        storage: backend for state; defaults to a new :class:`MemoryStorage`.
        clock: time source; defaults to :class:`MonotonicClock`.
        name: optional label reported in errors and headers.

    Example::

        bucket = TokenBucket(capacity=10, refill_rate=0.5)  # burst 10, 30/min
        if not bucket.hit(user_id):
            return too_many_requests()
    """

    prefix = "tb"

    def __init__(
        self,
        capacity: int,
        refill_rate: float,
        storage: Storage | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        if refill_rate <= 0:
            raise ValueError("refill_rate must be positive")
        super().__init__(storage=storage, clock=clock, name=name)
        self.capacity = capacity
        self.refill_rate = refill_rate

    def _ttl(self) -> float:
        # After this long an idle bucket is full again, so its state is
        # indistinguishable from a brand-new bucket and can be dropped.
        return self.capacity / self.refill_rate

    def _apply(self, state: object | None, now: float, cost: int) -> tuple[object, Decision]:
        if state is None:
            tokens, last = float(self.capacity), now
        else:
            tokens, last = state  # type: ignore[misc]

        # Refill lazily. max() guards against a clock that stepped backwards.
        elapsed = max(0.0, now - last)
        tokens = min(float(self.capacity), tokens + elapsed * self.refill_rate)

        if cost > self.capacity:
            # Can never succeed; report the wait as infinite instead of looping.
            decision = Decision(False, self.capacity, math.floor(tokens), 0.0, math.inf)
            return (tokens, now), decision

        allowed = tokens >= cost
        if allowed:
            tokens -= cost
            retry_after = 0.0
        else:
            retry_after = (cost - tokens) / self.refill_rate

        reset_after = (self.capacity - tokens) / self.refill_rate
        decision = Decision(
            allowed=allowed,
            limit=self.capacity,
            remaining=math.floor(tokens),
            reset_after=reset_after,
            retry_after=retry_after,
        )
        return (tokens, now), decision

    def __repr__(self) -> str:
        return f"TokenBucket(capacity={self.capacity}, refill_rate={self.refill_rate:g}/s)"
