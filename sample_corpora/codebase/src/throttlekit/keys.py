"""Key functions: decide *who* a request is counted against.

A key function receives an ASGI ``scope`` dict and returns a string such as
``"ip:198.51.100.4"`` or ``"hdr:x-api-key:abc123"``. Returning ``None`` means
"don't rate limit this request at all".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

KeyFunc = Callable[[dict], "str | None"]


def _header(scope: dict, name: str) -> str | None:
    """Return the first value of header ``name`` (case-insensitive) from a scope."""
    wanted = name.lower().encode("latin-1")
    for raw_name, raw_value in scope.get("headers", []):
        if raw_name.lower() == wanted:
            return raw_value.decode("latin-1")
    return None


def client_ip(
    trust_forwarded: bool = False,
    trusted_proxies: Iterable[str] = (),
) -> KeyFunc:
    """Build a key function that counts requests per client IP address.

    By default the TCP peer address (``scope["client"]``) is used. Behind a
    reverse proxy or load balancer that address is the proxy's, so every
    user shares one bucket. Set ``trust_forwarded=True`` and list the proxy
    networks in ``trusted_proxies``; the function then walks the
    ``X-Forwarded-For`` header from right to left and returns the first
    address that is *not* a trusted proxy.

    Never trust the header without a proxy list: clients can put anything
    they like in it and would get a fresh bucket for every request.
    """
    networks = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    def key(scope: dict) -> str | None:
        client = scope.get("client")
        peer = client[0] if client else None
        if trust_forwarded and peer is not None and is_trusted(peer):
            forwarded = _header(scope, "x-forwarded-for")
            if forwarded:
                hops = [h.strip() for h in forwarded.split(",") if h.strip()]
                for hop in reversed(hops):
                    if not is_trusted(hop):
                        return f"ip:{hop}"
        return f"ip:{peer}" if peer else None

    return key


def header_key(name: str, prefix: str | None = None) -> KeyFunc:
    """Count requests per value of a header, e.g. an API key.

    Requests without the header return ``None`` and are not limited by this
    key function; combine it with :func:`client_ip` via :func:`composite` to
    fall back to per-IP limits for anonymous callers.
    """
    label = prefix or f"hdr:{name.lower()}"

    def key(scope: dict) -> str | None:
        value = _header(scope, name)
        return f"{label}:{value}" if value else None

    return key


def composite(*funcs: KeyFunc) -> KeyFunc:
    """Try several key functions in order and use the first non-``None`` key."""
    if not funcs:
        raise ValueError("composite() needs at least one key function")

    def key(scope: dict) -> str | None:
        for func in funcs:
            result = func(scope)
            if result is not None:
                return result
        return None

    return key


def path_prefix(scope: dict) -> str:
    """Return the first path segment, used to give each API area its own bucket."""
    path = scope.get("path", "/")
    first = path.strip("/").split("/", 1)[0]
    return f"/{first}"
