"""``matcher keys``: create key material in a keyring folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from matcher.keys import create_linkage_secret


def register(sub: argparse._SubParsersAction[Any]) -> None:
    keys = sub.add_parser("keys", help="create and manage key material")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    init = ksub.add_parser("init", help="create a keyring: linkage secret (next epoch)")
    init.add_argument("dir", type=Path, help="keyring folder (created, mode 0700)")
    init.set_defaults(handler=_init)


def _init(args: argparse.Namespace) -> int:
    secret = create_linkage_secret(args.dir)
    print(f"created linkage secret epoch {secret.epoch} in {args.dir}")
    return 0
