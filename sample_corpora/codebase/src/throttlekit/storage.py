"""Storage backends that hold per-key limiter state.

A backend only needs three operations. The important one is :meth:`update`,
an atomic read-modify-write: the limiter passes a function that turns the
old state into the new one, and the backend guarantees that no other caller
modifies the same key in between. How that guarantee is provided is up to
the backend (a lock in memory, WATCH/MULTI in Redis).
"""

from __future__ import annotations

import abc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

UpdateFn = Callable[[object | None], object]


class Storage(abc.ABC):
    """Abstract storage backend."""

    @abc.abstractmethod
    def get(self, key: str) -> object | None:
        """Return the state stored for ``key``, or ``None`` if absent or expired."""

    @abc.abstractmethod
    def update(self, key: str, fn: UpdateFn, ttl: float) -> object:
        """Atomically replace the state of ``key`` with ``fn(old_state)``.

        ``ttl`` is the number of seconds after which an untouched key may be
        dropped. Returns the new state.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``. Deleting a missing key is not an error."""

    def close(self) -> None:  # noqa: B027 - optional hook, default does nothing
        """Release connections. The default implementation does nothing."""


class MemoryStorage(Storage):
    """In-process storage backed by an ordered dict.

    Thread-safe, but **not** shared between processes: with four gunicorn
    workers each worker has its own counters, so the effective limit is four
    times higher. Use :class:`throttlekit.redis_storage.RedisStorage` when
    running more than one process.

    Args:
        max_keys: upper bound on tracked keys. When exceeded, the least
            recently used key is evicted, which keeps memory bounded when
            an attacker rotates through many IP addresses.
        time_func: source of wall time used for expiry (injectable for tests).
    """

    def __init__(self, max_keys: int = 100_000, time_func: Callable[[], float] = time.monotonic):
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self.max_keys = max_keys
        self._time = time_func
        self._data: OrderedDict[str, tuple[object, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> object | None:
        with self._lock:
            return self._get_locked(key)

    def update(self, key: str, fn: UpdateFn, ttl: float) -> object:
        with self._lock:
            new_state = fn(self._get_locked(key))
            self._data[key] = (new_state, self._time() + ttl)
            self._data.move_to_end(key)
            while len(self._data) > self.max_keys:
                self._data.popitem(last=False)
            return new_state

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def purge_expired(self) -> int:
        """Drop all expired keys now and return how many were removed."""
        now = self._time()
        with self._lock:
            expired = [k for k, (_, exp) in self._data.items() if exp <= now]
            for k in expired:
                del self._data[k]
        return len(expired)

    def __len__(self) -> int:
        return len(self._data)

    def _get_locked(self, key: str) -> object | None:
        item = self._data.get(key)
        if item is None:
            return None
        state, expires_at = item
        if expires_at <= self._time():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return state
