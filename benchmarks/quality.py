"""Linkage quality: matcher against plaintext recordlinkage (ECM) and clkhash+anonlink.

Usage::

    python benchmarks/quality.py [--json] [--sets febrl3_f5,febrl4_f2] [--seed N]

For each standard multi-force set (:data:`matcher.datasets.STANDARD_SETS`, all six by
default), built once and shared by every method in the same run:

* ``matcher``: the production path (:func:`matcher.evaluate.evaluate_frame`), default
  hardening; ``matcher_plain``: the same with ``Hardening(mode="none")`` (what hardening
  costs); ``matcher_salted``: default hardening plus names salted with the year of birth;
* ``recordlinkage_ecm``: plaintext Fellegi-Sunter by ECM (see ``_anchors.py``);
* ``clkhash_anonlink``: clkhash CLKs per force, anonlink Dice candidates and multi-party
  ``greedy_solve``; the best F1 over a threshold grid (tuned on the truth, so optimistic).

Quality is over cross-force record pairs for every method. A table goes to stderr; with
``--json`` the last line of stdout is one JSON object (see benchmarks/README.md). Nothing
here asserts on time or quality: it reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _anchors import ANONLINK_THRESHOLDS, clkhash_anonlink, recordlinkage_ecm

from matcher.datasets import STANDARD_SETS, build_multiforce
from matcher.evaluate import evaluate_frame
from matcher.schema import Hardening, default_schema

DEFAULT_SEED = 0
METHODS = ("matcher", "matcher_plain", "matcher_salted", "recordlinkage_ecm", "clkhash_anonlink")

#: issue 2's targets for matcher with hardening on, by FEBRL source.
TARGET_F1 = {"febrl3": 0.985, "febrl2": 0.985, "febrl4": 0.998}
#: issue 2's "today's anchors on such data" (F1), for comparison only.
ANCHOR_F1 = {"recordlinkage_ecm": [0.98, 0.98], "clkhash_anonlink": [0.85, 0.87]}


def _matcher(df: Any, hardening: Hardening) -> dict[str, Any]:
    return evaluate_frame(df, schema=default_schema(hardening)).to_dict()


def run_set(name: str, seed: int) -> dict[str, Any]:
    source, n_forces = STANDARD_SETS[name]
    df = build_multiforce(source, n_forces=n_forces, seed=seed)
    out: dict[str, Any] = {}
    out["matcher"] = _matcher(df, Hardening())
    out["matcher_plain"] = _matcher(df, Hardening(mode="none"))
    out["matcher_salted"] = _matcher(df, Hardening(salt_field="year_of_birth"))
    out["recordlinkage_ecm"] = recordlinkage_ecm(df)
    out["clkhash_anonlink"] = clkhash_anonlink(df)
    out["source"] = source
    out["records"] = len(df)
    out["forces"] = n_forces
    out["persons"] = int(df["person"].nunique())
    return out


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 6) if values else 0.0


def summarise(sets: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    targets: dict[str, Any] = {"matcher_f1_min_by_source": TARGET_F1, "anchors_f1": ANCHOR_F1}
    per_set: dict[str, Any] = {}
    for name, res in sets.items():
        target = TARGET_F1[res["source"]]
        f1 = res["matcher"]["f1"]
        per_set[name] = {"target_f1": target, "matcher_f1": f1, "met": f1 >= target}
    targets["sets"] = per_set
    targets["all_met"] = all(v["met"] for v in per_set.values())

    summary: dict[str, Any] = {
        "mean_f1": {m: _mean([r[m]["f1"] for r in sets.values()]) for m in METHODS},
        "min_f1": {m: min((r[m]["f1"] for r in sets.values()), default=0.0) for m in METHODS},
        # Positive: hardening costs F1; negative: hardened did better on this run.
        "hardening_cost_f1": _mean(
            [r["matcher_plain"]["f1"] - r["matcher"]["f1"] for r in sets.values()]
        ),
        "salting_cost_f1": _mean(
            [r["matcher"]["f1"] - r["matcher_salted"]["f1"] for r in sets.values()]
        ),
        "matcher_minus_ecm_f1": _mean(
            [r["matcher"]["f1"] - r["recordlinkage_ecm"]["f1"] for r in sets.values()]
        ),
        "matcher_minus_clkhash_f1": _mean(
            [r["matcher"]["f1"] - r["clkhash_anonlink"]["f1"] for r in sets.values()]
        ),
        "seconds": {m: round(sum(r[m]["seconds"] for r in sets.values()), 3) for m in METHODS},
        "anonlink_thresholds": list(ANONLINK_THRESHOLDS),
    }
    return targets, summary


def _table(sets: dict[str, dict[str, Any]]) -> str:
    head = f"{'set':<12} {'method':<18} {'prec':>7} {'recall':>7} {'f1':>7} {'secs':>7}"
    lines = [head, "-" * len(head)]
    for name, res in sets.items():
        for m in METHODS:
            r = res[m]
            extra = f"  (threshold {r['threshold']:.2f})" if "threshold" in r else ""
            lines.append(
                f"{name:<12} {m:<18} {r['precision']:>7.4f} {r['recall']:>7.4f} "
                f"{r['f1']:>7.4f} {r['seconds']:>7.1f}{extra}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument(
        "--sets",
        default=",".join(STANDARD_SETS),
        help=f"comma-separated set names (default: all of {', '.join(STANDARD_SETS)})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="data generator seed")
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in names if s not in STANDARD_SETS]
    if unknown or not names:
        parser.error(f"unknown set(s): {', '.join(unknown) or '(none given)'}")

    t0 = time.perf_counter()
    sets: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"quality: {name} ...", file=sys.stderr, flush=True)
        sets[name] = run_set(name, args.seed)
    targets, summary = summarise(sets)
    summary["total_seconds"] = round(time.perf_counter() - t0, 3)
    print(_table(sets), file=sys.stderr)
    print(
        f"matcher targets met: {targets['all_met']}"
        f"; mean F1 matcher {summary['mean_f1']['matcher']}"
        f", ECM {summary['mean_f1']['recordlinkage_ecm']}"
        f", clkhash+anonlink {summary['mean_f1']['clkhash_anonlink']}",
        file=sys.stderr,
    )
    if args.json:
        result = {"seed": args.seed, "sets": sets, "targets": targets, "summary": summary}
        print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
