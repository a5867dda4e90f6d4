"""Rate limiting for ordinary Python functions (not just HTTP handlers).

Useful for outgoing calls: wrap the function that talks to a third-party API
so your own code never exceeds the provider's quota.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from .errors import RateLimitExceeded
from .limiter import Limiter

P = ParamSpec("P")
R = TypeVar("R")


def rate_limited(
    limiter: Limiter,
    key: str | Callable[..., str] = "default",
    wait: bool = False,
    max_wait: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function so each call consumes one unit from ``limiter``.

    Args:
        limiter: any throttlekit limiter.
        key: a fixed key, or a callable receiving the function's arguments
            and returning a key (e.g. ``lambda user, *_: f"user:{user.id}"``).
        wait: if ``False`` (default), an over-limit call raises
            :class:`RateLimitExceeded` immediately. If ``True``, the call
            sleeps for ``retry_after`` and tries again, blocking the thread.
        max_wait: with ``wait=True``, give up and raise once the total time
            spent sleeping for a single call would exceed this many seconds.
        sleep: injectable sleep function, handy for tests.

    Example::

        github = TokenBucket(capacity=5, refill_rate=5000 / 3600)

        @rate_limited(github, wait=True)
        def fetch_repo(name):
            return session.get(f"https://api.example.com/repos/{name}")
    """

    def decorator(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            k = key(*args, **kwargs) if callable(key) else key
            waited = 0.0
            while True:
                decision = limiter.hit(k)
                if decision.allowed:
                    return func(*args, **kwargs)
                delay = decision.retry_after
                if not wait or waited + delay > max_wait:
                    raise RateLimitExceeded(k, delay, limiter.name)
                sleep(delay)
                waited += delay

        wrapper.limiter = limiter  # type: ignore[attr-defined]
        return wrapper

    return decorator
