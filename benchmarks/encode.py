"""Encoding speed: matcher's force-side encoder against clkhash on the same records.

Usage::

    python benchmarks/encode.py [--json] [--records N] [--repeat R]

The records are the standard multi-force sets (:data:`matcher.datasets.STANDARD_SETS`),
built with successive seeds and concatenated until there are ``N`` rows (default 50,000):
realistic FEBRL-based police extracts, with their typos, nicknames and mixed date formats.
They are written to one CSV file, a force's export, and every tool reads them from it.

* matcher: :func:`matcher.encoding.encode_frame` on the raw rows, one process, one thread,
  default (hardened) schema; the time includes matcher's own normalisation, hashing,
  hardening and blocking tokens. The headline encodes the frame ``matcher encode`` reads the
  CSV into (:func:`matcher.cli.link.read_table`: Arrow-backed text columns); reading the
  file is not timed, as building clkhash's input lists is not. ``matcher_object`` encodes
  the frame ``pandas.read_csv(dtype=str)`` reads from the same file, Python strings that
  are converted while encoding (timed). ``matcher_plain`` is the headline with
  ``Hardening(mode="none")``.
* clkhash: ``clk.generate_clks`` with a comparable v3 schema (``_anchors.clkhash_schema``:
  1024 bits, the same fields and bits per token), one process (``max_workers=1``), the
  headline comparison; and again with clkhash's own process pool (``max_workers`` = CPU
  count) for reference. clkhash is given rows already cleaned by
  ``_anchors.plain_normalise``, and that clean-up is *not* timed, which favours clkhash.

Each measurement is the best of ``--repeat`` runs. A short table goes to stderr; with
``--json`` the last line of stdout is one JSON object (see benchmarks/README.md). Nothing
here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _anchors import clkhash_rows, clkhash_schema, ensure_pkg_resources, plain_normalise
from _common import best_of

from matcher.cli.link import read_table
from matcher.datasets import STANDARD_SETS, build_multiforce
from matcher.encoding import clear_caches, encode_frame
from matcher.keys import LinkageSecret
from matcher.schema import Hardening, LinkageSchema, default_schema

DEFAULT_RECORDS = 50_000
TARGET_RATIO = 10.0


def build_records(n: int) -> pd.DataFrame:
    """``n`` rows from the standard sets, built with seeds 0, 1, ... and concatenated."""
    parts: list[pd.DataFrame] = []
    total = 0
    seed = 0
    while total < n:
        for source, n_forces in STANDARD_SETS.values():
            part = build_multiforce(source, n_forces=n_forces, seed=seed)
            parts.append(part)
            total += len(part)
            if total >= n:
                break
        seed += 1
    df = pd.concat(parts, ignore_index=True).iloc[:n].copy()
    df["id"] = [f"R{i:08d}" for i in range(len(df))]
    return df


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS, help="rows to encode")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (best kept)")
    parser.add_argument(
        "--no-multiprocess", action="store_true", help="skip clkhash with its process pool"
    )
    args = parser.parse_args(argv)
    if args.records < 1 or args.repeat < 1:
        parser.error("--records and --repeat must be positive")

    ensure_pkg_resources()
    from clkhash import clk
    from clkhash.schema import from_json_dict

    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export.csv"
        build_records(args.records).to_csv(export, index=False)
        arrow_df = read_table(export)  # as matcher encode reads it
        df = pd.read_csv(export, dtype=str, keep_default_na=False, na_values=[""])
    n = len(df)
    hardened = default_schema()
    plain = default_schema(Hardening(mode="none"))

    def run_matcher(schema: LinkageSchema, *, cold: bool = True, frame: Any = arrow_df) -> None:
        # Cold: the encoder's process-wide caches of normalised values are cleared first,
        # as for a force's first batch; clkhash has no such caches, so cold is the
        # headline. Warm: a long-running encoder that has seen these values before.
        if cold:
            clear_caches()
        fresh = LinkageSecret(epoch=1, secret=os.urandom(32))
        # One process, as the headline compares single-process speeds.
        encode_frame(frame, schema, fresh, "F01", id_column="id", workers=1)

    run_matcher(hardened, cold=False)  # compile / load the numba kernels first
    print(f"encode: {n} records, matcher (hardened) ...", file=sys.stderr, flush=True)
    t_matcher = best_of(lambda: run_matcher(hardened), args.repeat)
    print("encode: matcher (hardened, pandas' frame) ...", file=sys.stderr, flush=True)
    t_object = best_of(lambda: run_matcher(hardened, frame=df), args.repeat)
    print("encode: matcher (plain) ...", file=sys.stderr, flush=True)
    t_plain = best_of(lambda: run_matcher(plain), args.repeat)
    print("encode: matcher (hardened, warm caches) ...", file=sys.stderr, flush=True)
    t_warm = best_of(lambda: run_matcher(hardened, cold=False), args.repeat)

    rows = clkhash_rows(plain_normalise(df))
    cschema = from_json_dict(clkhash_schema())
    ckey = os.urandom(32).hex()
    print("encode: clkhash (1 process) ...", file=sys.stderr, flush=True)
    t_clk = best_of(
        lambda: clk.generate_clks(rows, cschema, ckey, validate=True, max_workers=1), args.repeat
    )
    # clkhash needs clean input that matcher makes itself while encoding; timing the
    # anchor's clean-up too compares the two from the same raw records.
    print("encode: clkhash incl. clean-up (1 process) ...", file=sys.stderr, flush=True)
    t_clk_clean = best_of(
        lambda: clk.generate_clks(
            clkhash_rows(plain_normalise(df)), cschema, ckey, validate=True, max_workers=1
        ),
        args.repeat,
    )
    workers = multiprocessing.cpu_count()
    t_clk_mp: float | None = None
    if not args.no_multiprocess and workers > 1:
        print(f"encode: clkhash ({workers} processes) ...", file=sys.stderr, flush=True)
        t_clk_mp = best_of(
            lambda: clk.generate_clks(rows, cschema, ckey, validate=True, max_workers=workers),
            args.repeat,
        )

    m_rps = n / t_matcher
    c_rps = n / t_clk
    result: dict[str, Any] = {
        "records": n,
        "matcher_records_per_s": round(m_rps, 1),
        "matcher_seconds": round(t_matcher, 3),
        "matcher_object_records_per_s": round(n / t_object, 1),
        "ratio_object": round(n / t_object / c_rps, 3),
        "matcher_plain_records_per_s": round(n / t_plain, 1),
        "matcher_warm_records_per_s": round(n / t_warm, 1),
        "ratio_warm": round(n / t_warm / c_rps, 3),
        "clkhash_records_per_s": round(c_rps, 1),
        "clkhash_seconds": round(t_clk, 3),
        "clkhash_processes": 1,
        "clkhash_with_cleanup_records_per_s": round(n / t_clk_clean, 1),
        "ratio_vs_clkhash_with_cleanup": round(m_rps / (n / t_clk_clean), 3),
        "ratio": round(m_rps / c_rps, 3),
        "target_ratio": TARGET_RATIO,
        "target_met": m_rps / c_rps >= TARGET_RATIO,
        "clkhash_multiprocess_records_per_s": round(n / t_clk_mp, 1) if t_clk_mp else None,
        "clkhash_multiprocess_processes": workers if t_clk_mp else None,
        "ratio_vs_multiprocess": round(m_rps / (n / t_clk_mp), 3) if t_clk_mp else None,
        "matcher_processes": 1,
        "repeat": args.repeat,
        "cpu_count": workers,
        "python": platform.python_version(),
    }
    print(
        f"matcher {m_rps:,.0f} rec/s (plain {n / t_plain:,.0f}, from pandas' frame "
        f"{n / t_object:,.0f}); clkhash {c_rps:,.0f} rec/s (1 process); ratio "
        f"{m_rps / c_rps:.1f}x, from pandas' frame {n / t_object / c_rps:.1f}x "
        f"(target >= {TARGET_RATIO:.0f}x)"
        + (f"; clkhash with {workers} processes {n / t_clk_mp:,.0f} rec/s" if t_clk_mp else ""),
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
