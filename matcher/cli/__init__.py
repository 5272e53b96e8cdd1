"""The ``matcher`` command line.

Each sub-module owns its sub-commands and exposes ``register(subparsers)``; every handler
returns an exit status. :class:`~matcher.errors.MatcherError` becomes a one-line message on
standard error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from matcher.errors import MatcherError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from matcher.cli import audit, keys, link, service

    parser = argparse.ArgumentParser(
        prog="matcher", description="Privacy-preserving cross-force record matching."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (keys, link, service, audit):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except MatcherError as exc:
        print(f"matcher: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("matcher: interrupted", file=sys.stderr)
        return 130
