"""ASGI middleware that applies one or more limits to incoming HTTP requests.

Works with any ASGI framework (Starlette, FastAPI, Quart, plain ASGI apps)::

    app = ThrottleMiddleware(app, limiter=TokenBucket(20, 5.0), key_func=client_ip())

When a request is over the limit the wrapped app is **not** called; the
middleware answers directly with ``429 Too Many Requests``, a small JSON body
and the rate-limit headers. Allowed responses get the same headers added.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .config import Config, build_limiter, make_storage
from .errors import StorageError
from .headers import as_bytes, rate_limit_headers
from .keys import KeyFunc, client_ip, header_key
from .limiter import Decision, Limiter

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


@dataclass
class Rule:
    """A limiter plus the requests it applies to."""

    limiter: Limiter
    key_func: KeyFunc
    paths: tuple[str, ...] = ("/",)
    methods: frozenset[str] | None = None
    window: float | None = None

    def matches(self, scope: dict) -> bool:
        path = scope.get("path", "/")
        if not any(path.startswith(prefix) for prefix in self.paths):
            return False
        return self.methods is None or scope.get("method", "GET") in self.methods


class ThrottleMiddleware:
    """Rate-limit an ASGI application.

    Args:
        app: the ASGI app to wrap.
        rules: explicit list of :class:`Rule` objects, or
        limiter / key_func: shorthand for a single rule covering every path.
        exempt_paths: exact paths never limited, e.g. health checks.
        fail_open: if the storage backend errors, let requests through
            (``True``) or answer ``503`` (``False``).
        legacy_headers: also send ``X-RateLimit-*`` headers.
    """

    def __init__(
        self,
        app: ASGIApp,
        rules: Sequence[Rule] | None = None,
        *,
        limiter: Limiter | None = None,
        key_func: KeyFunc | None = None,
        exempt_paths: Sequence[str] = ("/health",),
        fail_open: bool = True,
        legacy_headers: bool = False,
    ) -> None:
        if rules is None:
            if limiter is None:
                raise ValueError("pass either rules=[...] or limiter=...")
            rules = [Rule(limiter, key_func or client_ip())]
        self.app = app
        self.rules = list(rules)
        self.exempt_paths = frozenset(exempt_paths)
        self.fail_open = fail_open
        self.legacy_headers = legacy_headers

    @classmethod
    def from_config(cls, app: ASGIApp, config: Config) -> ThrottleMiddleware:
        """Build the middleware from a loaded :class:`throttlekit.config.Config`."""
        storage = make_storage(config.storage_url)
        ip_key = client_ip(config.trust_forwarded, config.trusted_proxies)
        rules = []
        for spec in config.limits:
            if spec.key == "ip":
                key_func = ip_key
            elif spec.key.startswith("header:"):
                key_func = header_key(spec.key.split(":", 1)[1])
            else:
                raise ValueError(f"unknown key type {spec.key!r} in limit {spec.name!r}")
            methods = frozenset(m.upper() for m in spec.methods) if spec.methods else None
            limiter = build_limiter(spec, storage)
            rules.append(Rule(limiter, key_func, tuple(spec.paths), methods, spec.window))
        return cls(
            app,
            rules,
            exempt_paths=config.exempt_paths,
            fail_open=config.fail_open,
            legacy_headers=config.legacy_headers,
        )

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt_paths:
            await self.app(scope, receive, send)
            return

        tightest: tuple[Decision, Rule] | None = None
        for rule in self.rules:
            if not rule.matches(scope):
                continue
            key = rule.key_func(scope)
            if key is None:
                continue
            try:
                decision = rule.limiter.hit(key)
            except StorageError:
                if self.fail_open:
                    continue
                await self._send_json(send, 503, {"error": "rate_limiter_unavailable"}, [])
                return
            if not decision.allowed:
                headers = rate_limit_headers(decision, rule.window, self.legacy_headers)
                body = {
                    "error": "rate_limited",
                    "limit": rule.limiter.name,
                    "retry_after": round(decision.retry_after, 3),
                }
                await self._send_json(send, 429, body, headers)
                return
            if tightest is None or decision.remaining < tightest[0].remaining:
                tightest = (decision, rule)

        if tightest is None:
            await self.app(scope, receive, send)
            return

        extra = as_bytes(rate_limit_headers(tightest[0], tightest[1].window, self.legacy_headers))

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _send_json(
        send: Callable, status: int, body: dict, headers: list[tuple[str, str]]
    ) -> None:
        payload = json.dumps(body).encode("utf-8")
        raw_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode("latin-1")),
            *as_bytes(headers),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})
