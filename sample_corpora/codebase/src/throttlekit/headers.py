"""HTTP response headers describing the rate-limit state.

throttlekit follows the IETF "RateLimit header fields for HTTP" draft, which
uses three headers:

* ``RateLimit-Limit``: the request quota of the policy.
* ``RateLimit-Remaining``: requests left before being limited.
* ``RateLimit-Reset``: seconds until the quota is fully restored. The
  draft asks for a *delta in whole seconds*, not a Unix timestamp, so the
  value is ``ceil(decision.reset_after)``; a client clock that is off by an
  hour therefore doesn't matter.

Rejected requests additionally get ``Retry-After`` (RFC 9110), also rounded
up to whole seconds and never less than 1.

The older ``X-RateLimit-*`` names used by some APIs can be emitted too, with
``legacy=True``, for clients that were written against them.
"""

from __future__ import annotations

import math

from .limiter import Decision


def _ceil_seconds(value: float) -> int:
    if math.isinf(value):
        # A request that can never succeed: advertise one day rather than "inf".
        return 86_400
    return max(0, math.ceil(value))


def rate_limit_headers(
    decision: Decision,
    window: float | None = None,
    legacy: bool = False,
) -> list[tuple[str, str]]:
    """Return response headers for ``decision`` as a list of ``(name, value)`` pairs.

    Args:
        decision: the result of ``limiter.hit()``.
        window: policy window in seconds; when given, a ``RateLimit-Policy``
            header such as ``100;w=60`` is added.
        legacy: also emit ``X-RateLimit-Limit``/``-Remaining``/``-Reset``.
    """
    reset = _ceil_seconds(decision.reset_after)
    headers = [
        ("RateLimit-Limit", str(decision.limit)),
        ("RateLimit-Remaining", str(max(0, decision.remaining))),
        ("RateLimit-Reset", str(reset)),
    ]
    if window is not None:
        headers.append(("RateLimit-Policy", f"{decision.limit};w={math.ceil(window)}"))
    if not decision.allowed:
        headers.append(("Retry-After", str(max(1, _ceil_seconds(decision.retry_after)))))
    if legacy:
        headers.extend(
            [
                ("X-RateLimit-Limit", str(decision.limit)),
                ("X-RateLimit-Remaining", str(max(0, decision.remaining))),
                ("X-RateLimit-Reset", str(reset)),
            ]
        )
    return headers


def as_bytes(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Convert header pairs to the lowercase bytes form ASGI servers expect."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
