"""Write the standard multi-force quality sets (FEBRL-based) as CSV and print a summary.

Usage::

    python benchmarks/make_sets.py [--out DIR] [--seed N] [--corruption X]

Each set is written as ``DIR/<name>.csv`` (read it back with
:func:`matcher.datasets.read_set`); the JSON summary on stdout gives, per set, its rows,
persons, forces and true cross-force pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from matcher.datasets import STANDARD_SETS, build_multiforce, true_cross_force_pairs

DEFAULT_OUT = Path(__file__).resolve().parent / "data"
DEFAULT_SEED = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    parser.add_argument(
        "--corruption", type=float, default=1.0, help="scale of the corruption rates"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sets: dict[str, object] = {}
    for name, (source, n_forces) in STANDARD_SETS.items():
        df = build_multiforce(source, n_forces=n_forces, seed=args.seed, corruption=args.corruption)
        path = out / f"{name}.csv"
        df.to_csv(path, index=False)
        sets[name] = {
            "source": source,
            "file": str(path),
            "rows": len(df),
            "persons": int(df["person"].nunique()),
            "forces": int(df["force"].nunique()),
            "true_cross_force_pairs": len(true_cross_force_pairs(df)),
        }
    summary = {"seed": args.seed, "corruption": args.corruption, "sets": sets}
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
