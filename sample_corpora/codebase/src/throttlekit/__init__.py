"""throttlekit: small, dependency-free rate limiting for Python web apps.

The public API is re-exported here so that users can write::

    from throttlekit import TokenBucket, MemoryStorage, ThrottleMiddleware

Everything else in the package is considered internal and may change
between minor releases.
"""

from .clock import Clock, ManualClock, MonotonicClock
from .config import LimitSpec, build_limiter, load_config, parse_rate
from .decorators import rate_limited
from .errors import ConfigError, RateLimitExceeded, StorageError, ThrottleKitError
from .fixed_window import FixedWindow
from .headers import rate_limit_headers
from .keys import client_ip, composite, header_key
from .limiter import Decision, Limiter
from .middleware import ThrottleMiddleware
from .sliding_window import SlidingWindow
from .storage import MemoryStorage, Storage
from .token_bucket import TokenBucket

__version__ = "0.4.1"

__all__ = [
    "Clock",
    "ConfigError",
    "Decision",
    "FixedWindow",
    "LimitSpec",
    "Limiter",
    "ManualClock",
    "MemoryStorage",
    "MonotonicClock",
    "RateLimitExceeded",
    "SlidingWindow",
    "Storage",
    "StorageError",
    "ThrottleKitError",
    "ThrottleMiddleware",
    "TokenBucket",
    "__version__",
    "build_limiter",
    "client_ip",
    "composite",
    "header_key",
    "load_config",
    "parse_rate",
    "rate_limit_headers",
    "rate_limited",
]
