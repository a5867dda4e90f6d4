"""Loading limits from YAML/JSON files or plain dicts.

A minimal config looks like::

    limits:
      - name: api
        rate: 100/minute
        algorithm: sliding_window
        key: ip

See ``docs/configuration.md`` for every option.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fixed_window import FixedWindow
from .limiter import Limiter
from .sliding_window import SlidingWindow
from .storage import MemoryStorage, Storage
from .token_bucket import TokenBucket

_UNIT_SECONDS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}  # fmt: skip

_RATE_RE = re.compile(
    r"^\s*(?P<count>\d+)\s*(?:/|per)\s*(?P<mult>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+?)s?\s*$",
    re.IGNORECASE,
)

ALGORITHMS = ("token_bucket", "sliding_window", "fixed_window")


def parse_rate(text: str) -> tuple[int, float]:
    """Parse a human rate string into ``(count, window_seconds)``.

    Accepted forms include ``"100/minute"``, ``"5/10s"``, ``"1000 per day"``,
    ``"20/ 1.5 hours"``. Units are case-insensitive and may be plural.

    >>> parse_rate("100/minute")
    (100, 60.0)
    >>> parse_rate("5/10s")
    (5, 10.0)
    """
    match = _RATE_RE.match(text)
    if not match:
        raise ConfigError(f"cannot parse rate {text!r}; expected e.g. '100/minute'")
    unit = match["unit"].lower()
    if unit not in _UNIT_SECONDS:
        raise ConfigError(f"unknown time unit {match['unit']!r} in rate {text!r}")
    count = int(match["count"])
    window = float(match["mult"] or 1) * _UNIT_SECONDS[unit]
    if count <= 0 or window <= 0:
        raise ConfigError(f"rate {text!r} must have a positive count and window")
    return count, window


@dataclass
class LimitSpec:
    """One entry of the ``limits`` list in a config file."""

    name: str
    rate: str
    algorithm: str = "token_bucket"
    burst: int | None = None
    key: str = "ip"
    paths: list[str] = field(default_factory=lambda: ["/"])
    methods: list[str] | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(
                f"limit {self.name!r}: algorithm must be one of {', '.join(ALGORITHMS)}"
            )
        self.count, self.window = parse_rate(self.rate)
        if self.burst is not None and self.algorithm != "token_bucket":
            raise ConfigError(f"limit {self.name!r}: 'burst' only applies to token_bucket")


@dataclass
class Config:
    """The whole parsed configuration."""

    limits: list[LimitSpec]
    storage_url: str = "memory://"
    exempt_paths: list[str] = field(default_factory=lambda: ["/health"])
    trust_forwarded: bool = False
    trusted_proxies: list[str] = field(default_factory=list)
    fail_open: bool = True
    legacy_headers: bool = False


def _read_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - depends on environment
            raise ConfigError("reading YAML needs PyYAML: pip install throttlekit[yaml]") from exc
        data = yaml.safe_load(text) or {}
    elif path.suffix == ".json":
        data = json.loads(text)
    else:
        raise ConfigError(f"unsupported config format {path.suffix!r}; use .yaml or .json")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(source: str | Path | dict[str, Any] | None = None) -> Config:
    """Load a :class:`Config` from a path, a dict, or the environment.

    With no argument, the path is taken from ``THROTTLEKIT_CONFIG`` (default
    ``throttlekit.yaml`` in the working directory). ``THROTTLEKIT_REDIS_URL``,
    if set, overrides ``storage.url`` from the file.
    """
    if source is None:
        source = os.environ.get("THROTTLEKIT_CONFIG", "throttlekit.yaml")
    data = source if isinstance(source, dict) else _read_file(Path(source))

    raw_limits = data.get("limits")
    if not raw_limits:
        raise ConfigError("config needs a non-empty 'limits' list")
    limits = []
    for i, entry in enumerate(raw_limits):
        try:
            limits.append(LimitSpec(**entry))
        except TypeError as exc:
            raise ConfigError(f"limits[{i}]: {exc}") from exc

    storage = data.get("storage", {})
    proxies = data.get("proxies", {})
    return Config(
        limits=limits,
        storage_url=os.environ.get("THROTTLEKIT_REDIS_URL") or storage.get("url", "memory://"),
        exempt_paths=list(data.get("exempt_paths", ["/health"])),
        trust_forwarded=bool(proxies.get("trust_forwarded", False)),
        trusted_proxies=list(proxies.get("trusted", [])),
        fail_open=bool(data.get("fail_open", True)),
        legacy_headers=bool(data.get("legacy_headers", False)),
    )


def make_storage(url: str) -> Storage:
    """Create a storage backend from a URL (``memory://`` or ``redis://...``)."""
    if url.startswith("memory://"):
        return MemoryStorage()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis_storage import RedisStorage

        return RedisStorage(url)
    raise ConfigError(f"unknown storage URL scheme in {url!r}")


def build_limiter(spec: LimitSpec, storage: Storage | None = None) -> Limiter:
    """Instantiate the limiter described by ``spec``."""
    if spec.algorithm == "token_bucket":
        capacity = spec.burst if spec.burst is not None else spec.count
        return TokenBucket(capacity, spec.count / spec.window, storage=storage, name=spec.name)
    if spec.algorithm == "sliding_window":
        return SlidingWindow(spec.count, spec.window, storage=storage, name=spec.name)
    return FixedWindow(spec.count, spec.window, storage=storage, name=spec.name)
