"""Redis storage backend, shared by every process and host that uses it.

Install with ``pip install throttlekit[redis]``.

State is stored as a small JSON array per key with a millisecond TTL. The
read-modify-write in :meth:`RedisStorage.update` uses optimistic locking:
``WATCH`` the key, read it, compute the new state in Python, then write it
inside ``MULTI``/``EXEC``. If another client changed the key in between,
Redis aborts the transaction with ``WatchError`` and we retry, up to
``max_retries`` times.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import StorageError
from .storage import Storage, UpdateFn


def _encode(state: object) -> str:
    return json.dumps(state, separators=(",", ":"))


def _decode(raw: bytes | str | None) -> object | None:
    if raw is None:
        return None
    return json.loads(raw)


class RedisStorage(Storage):
    """Storage backed by a Redis server.

    Args:
        url: connection URL, e.g. ``redis://cache.internal:6379/2``.
        prefix: prepended to every key so throttlekit can share a database.
        max_retries: attempts for one update under contention.
        client: an existing ``redis.Redis`` instance (the URL is then ignored).
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        prefix: str = "throttlekit:",
        max_retries: int = 5,
        client: Any | None = None,
    ) -> None:
        try:
            import redis
            from redis.exceptions import RedisError, WatchError
        except ImportError as exc:  # pragma: no cover - depends on environment
            hint = "RedisStorage needs redis-py: pip install throttlekit[redis]"
            raise StorageError(hint) from exc
        self._client = client if client is not None else redis.Redis.from_url(url)
        self._redis_error = RedisError
        self._watch_error = WatchError
        self.prefix = prefix
        self.max_retries = max_retries

    def get(self, key: str) -> object | None:
        try:
            return _decode(self._client.get(self.prefix + key))
        except self._redis_error as exc:
            raise StorageError(f"redis GET failed: {exc}") from exc

    def update(self, key: str, fn: UpdateFn, ttl: float) -> object:
        full_key = self.prefix + key
        ttl_ms = max(1, int(ttl * 1000))
        for _attempt in range(self.max_retries):
            try:
                with self._client.pipeline() as pipe:
                    pipe.watch(full_key)
                    new_state = fn(_decode(pipe.get(full_key)))
                    pipe.multi()
                    pipe.set(full_key, _encode(new_state), px=ttl_ms)
                    pipe.execute()
                    return new_state
            except self._watch_error:
                continue  # someone else wrote the key first; recompute
            except self._redis_error as exc:
                raise StorageError(f"redis update failed: {exc}") from exc
        raise StorageError(f"gave up on {full_key!r} after {self.max_retries} conflicting writes")

    def delete(self, key: str) -> None:
        try:
            self._client.delete(self.prefix + key)
        except self._redis_error as exc:
            raise StorageError(f"redis DEL failed: {exc}") from exc

    def ping(self) -> bool:
        """Return ``True`` if the server answers, ``False`` otherwise."""
        try:
            return bool(self._client.ping())
        except self._redis_error:
            return False

    def close(self) -> None:
        self._client.close()
