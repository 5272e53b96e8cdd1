"""Shared inputs for the similarity and scale benchmarks.

*Random* filters have independent bits at a set density. *Realistic* filters are FEBRL
records encoded by :mod:`matcher.encoding` under the default schema; larger sets are
made by recombining field segments of encoded records (each new record takes each
field's segment from a randomly chosen encoded record), so field values keep their real
frequencies and shared structure. Their blocking tokens are keyed hashes of the sources
of the name and date segments, so token blocks have realistic sizes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import types
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

Filters = NDArray[np.uint64]


def emit(result: dict[str, Any], as_json: bool) -> None:
    """Print a result: one JSON line (``--json``) or readable key/value lines."""
    if as_json:
        print(json.dumps(result, sort_keys=True), flush=True)
    else:
        for key, value in result.items():
            print(f"{key:>32}: {value}", flush=True)


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of ``repeat`` runs in seconds (other processes share these cores)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def random_filters(n: int, words: int, density: float, seed: int) -> Filters:
    rng = np.random.default_rng(seed)
    out = np.zeros((n, words), dtype=np.uint64)
    for r0 in range(0, n, 65536):
        bits = rng.random((min(n, r0 + 65536) - r0, words * 64)) < density
        out[r0 : r0 + len(bits)] = np.packbits(bits, axis=1, bitorder="little").view("<u8")
    return out


@cache
def encoded_febrl() -> tuple[Filters, list[NDArray[np.uint64]], dict[str, tuple[int, int]]]:
    """FEBRL 4 (two forces) encoded under the default schema, and field segment spans."""
    from matcher.datasets import build_multiforce
    from matcher.encoding import encode_frame
    from matcher.keys import LinkageSecret
    from matcher.schema import default_schema

    schema = default_schema()
    secret = LinkageSecret(1, hashlib.sha256(b"benchmark secret").digest())
    df = build_multiforce("febrl4", n_forces=2, seed=1)
    batch = encode_frame(df, schema, secret, "BENCH").batch
    spans = {s.name: (s.word_offset, s.word_offset + s.words) for s in schema.segments}
    return batch.filters, batch.blocking_tokens, spans


def realistic_filters(n: int, seed: int) -> tuple[Filters, list[NDArray[np.uint64]]]:
    """``n`` realistic filters and blocking tokens (see the module docstring)."""
    base, _, spans = encoded_febrl()
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.uint64)
    names = list(spans)
    src = rng.integers(0, base.shape[0], size=(n, len(names)))
    for f, name in enumerate(names):
        lo, hi = spans[name]
        out[:, lo:hi] = base[src[:, f], lo:hi]
    # tokens: (surname, date of birth), (forename, date of birth), date of birth, postcode

    def key(field: str) -> NDArray[np.uint64]:
        col = names.index(field) if field in names else 0
        return src[:, col].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)

    dob = key("date_of_birth")
    cols = [
        key("surname") ^ (dob >> np.uint64(7)) ^ np.uint64(1),
        key("forename") ^ (dob >> np.uint64(9)) ^ np.uint64(2),
        dob ^ np.uint64(3),
        key("postcode") ^ np.uint64(4),
    ]
    tok = np.stack(cols, axis=1)
    return out, [tok[i] for i in range(n)]


def perturbed_copies(x: Filters, flip: float, seed: int) -> Filters:
    """Copies of ``x`` with each bit flipped with probability ``flip`` (true matches)."""
    noise = random_filters(x.shape[0], x.shape[1], flip, seed)
    return x ^ noise


def import_anonlink() -> types.ModuleType | None:
    """``anonlink`` if installed (``None`` otherwise), with a ``pkg_resources`` stand-in
    where recent setuptools no longer ships it (see ``_anchors.ensure_pkg_resources``)."""
    from _anchors import ensure_pkg_resources

    ensure_pkg_resources()
    try:
        import anonlink
    except ImportError:
        return None
    return anonlink


def cpu_info() -> dict[str, Any]:
    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "avx512_vpopcntdq": "avx512_vpopcntdq" in flags,
    }
