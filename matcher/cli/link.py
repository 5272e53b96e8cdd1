"""``matcher encode``, ``matcher link`` and ``matcher evaluate``."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Filled in with the encoder."""
