"""The common interface shared by all rate-limiting algorithms."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from .clock import Clock, MonotonicClock
from .storage import MemoryStorage, Storage


@dataclass(frozen=True)
class Decision:
    """The outcome of asking a limiter about one request.

    Attributes:
        allowed: whether the request may proceed.
        limit: the maximum number of requests (or tokens) in the policy.
        remaining: how many more requests would be allowed right now.
        reset_after: seconds until the limiter is completely "fresh" again.
        retry_after: seconds to wait before retrying; 0.0 when allowed.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float = 0.0

    def __bool__(self) -> bool:
        return self.allowed


class Limiter(abc.ABC):
    """Base class for limiters.

    Subclasses implement :meth:`_apply`, which receives the stored state for a
    key (or ``None``) and returns ``(new_state, decision)``. The base class
    takes care of the atomic read-modify-write through the storage backend,
    so algorithms never deal with locking themselves.
    """

    #: Short prefix used in storage keys, e.g. ``"tb"`` for token bucket.
    prefix: str = "limiter"

    def __init__(
        self,
        storage: Storage | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        self.storage = storage if storage is not None else MemoryStorage()
        self.clock = clock if clock is not None else MonotonicClock()
        self.name = name

    def hit(self, key: str, cost: int = 1) -> Decision:
        """Record a request of the given ``cost`` for ``key`` and decide."""
        if cost < 0:
            raise ValueError("cost must be >= 0")
        return self._run(key, cost)

    def peek(self, key: str) -> Decision:
        """Report the current state for ``key`` without consuming anything."""
        return self._run(key, 0)

    def reset(self, key: str) -> None:
        """Forget everything about ``key`` (for example after a manual unblock)."""
        self.storage.delete(self._storage_key(key))

    def _run(self, key: str, cost: int) -> Decision:
        now = self.clock.now()
        result: list[Decision] = []

        def update(state: object | None) -> object:
            new_state, decision = self._apply(state, now, cost)
            result.append(decision)
            return new_state

        self.storage.update(self._storage_key(key), update, ttl=self._ttl())
        return result[-1]

    def _storage_key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    @abc.abstractmethod
    def _apply(self, state: object | None, now: float, cost: int) -> tuple[object, Decision]:
        """Compute the new state and the decision for one request."""

    @abc.abstractmethod
    def _ttl(self) -> float:
        """How long an idle key's state needs to be kept, in seconds."""
