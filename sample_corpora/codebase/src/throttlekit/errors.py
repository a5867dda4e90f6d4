"""Exception hierarchy for throttlekit.

All exceptions derive from :class:`ThrottleKitError`, so callers that only
want to know "did throttlekit complain?" can catch that single class.
"""

from __future__ import annotations


class ThrottleKitError(Exception):
    """Base class for every error raised by throttlekit."""


class ConfigError(ThrottleKitError):
    """A configuration file or rate string could not be understood.

    The message always names the offending value and, when loading from a
    file, the key path inside the file (for example ``limits[2].rate``).
    """


class StorageError(ThrottleKitError):
    """The storage backend failed, for example Redis was unreachable.

    Middleware catches this and, depending on ``fail_open``, either lets the
    request through or answers with HTTP 503.
    """


class RateLimitExceeded(ThrottleKitError):
    """Raised by :func:`throttlekit.rate_limited` when a call is over its limit.

    Attributes:
        key: the rate-limit key that was exhausted, e.g. ``"ip:203.0.113.7"``.
        retry_after: seconds until a retry could succeed.
        limit_name: name of the limit from the config, if it had one.
    """

    def __init__(self, key: str, retry_after: float, limit_name: str | None = None) -> None:
        self.key = key
        self.retry_after = retry_after
        self.limit_name = limit_name
        label = f" ({limit_name})" if limit_name else ""
        super().__init__(f"rate limit exceeded for {key!r}{label}; retry in {retry_after:.2f}s")
