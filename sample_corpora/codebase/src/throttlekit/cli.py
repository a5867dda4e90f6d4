"""Command-line interface: ``throttlekit check-config`` and ``throttlekit simulate``.

``simulate`` replays a steady stream of requests against a limit using a
:class:`ManualClock`, so it runs instantly and shows how a policy would treat
a given traffic level before you deploy it::

    $ throttlekit simulate --rate 10/second --burst 20 --rps 25 --seconds 5
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .clock import ManualClock
from .config import ALGORITHMS, LimitSpec, build_limiter, load_config
from .errors import ConfigError
from .storage import MemoryStorage


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.path)
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.path}: OK, {len(config.limits)} limit(s), storage {config.storage_url}")
    for spec in config.limits:
        burst = f", burst {spec.burst}" if spec.burst else ""
        print(f"  - {spec.name}: {spec.rate} ({spec.algorithm}{burst}) key={spec.key}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    try:
        spec = LimitSpec(name="sim", rate=args.rate, algorithm=args.algorithm, burst=args.burst)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    limiter = build_limiter(spec, MemoryStorage())
    clock = ManualClock()
    limiter.clock = clock

    interval = 1.0 / args.rps
    total = int(args.rps * args.seconds)
    per_second: dict[int, list[int]] = {}
    first_denied: float | None = None
    for i in range(total):
        clock.set(i * interval)
        decision = limiter.hit("client")
        bucket = per_second.setdefault(int(clock.now()), [0, 0])
        bucket[0 if decision.allowed else 1] += 1
        if not decision.allowed and first_denied is None:
            first_denied = clock.now()

    allowed = sum(a for a, _ in per_second.values())
    print(f"{total} requests at {args.rps:g}/s for {args.seconds:g}s against {args.rate}")
    print(f"allowed {allowed}, denied {total - allowed}")
    if first_denied is not None:
        print(f"first 429 after {first_denied:.2f}s")
    for second, (ok, denied) in sorted(per_second.items()):
        print(f"  t={second:>3}s  {'#' * ok}{'.' * denied}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="throttlekit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"throttlekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check-config", help="validate a YAML or JSON config file")
    check.add_argument("path")
    check.set_defaults(func=_cmd_check_config)

    sim = sub.add_parser("simulate", help="replay steady traffic against a rate")
    sim.add_argument("--rate", required=True, help="e.g. 100/minute")
    sim.add_argument("--algorithm", choices=ALGORITHMS, default="token_bucket")
    sim.add_argument("--burst", type=int, default=None, help="token bucket capacity")
    sim.add_argument("--rps", type=float, default=10.0, help="requests per second to send")
    sim.add_argument("--seconds", type=float, default=5.0, help="how long to simulate")
    sim.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
