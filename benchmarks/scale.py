"""Index scale: single-subject query latency and memory per record at 10^4 to 10^6.

Builds a :class:`matcher.index.MatchIndex` (default schema's LSH tables) from realistic
filters and blocking tokens (see ``_common.py``) added in batches of 100,000 from five
forces, then times single-subject queries in process: each subject is a stored record
with 2% of its bits flipped, queried with its blocking tokens, ``k=10``, threshold 0.5,
excluding no force. Reports p50/p99 latency, how often the record itself came back
first, build time and bytes per stored record (every array of the index counted). The
target is p99 <= 5 ms at 10^6 records.

    .venv/bin/python benchmarks/scale.py --json               # 10^4, 10^5, 10^6
    .venv/bin/python benchmarks/scale.py --json --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import cpu_info, emit, perturbed_copies, realistic_filters

from matcher.index import MatchIndex
from matcher.lsh import LshConfig
from matcher.schema import default_schema


def run_size(n: int, n_queries: int, batch: int) -> dict[str, Any]:
    filters, tokens = realistic_filters(n, seed=n)
    refs = [secrets.token_hex(16) for _ in range(n)]
    idx = MatchIndex(filters.shape[1], lsh=LshConfig.for_schema(default_schema()))
    t0 = time.perf_counter()
    for b, start in enumerate(range(0, n, batch)):
        stop = min(n, start + batch)
        idx.add(f"batch{b}", f"F{b % 5:02d}", refs[start:stop], filters[start:stop],
                tokens[start:stop])  # fmt: skip
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(7)
    picks = rng.integers(0, n, n_queries)
    subjects = perturbed_copies(filters[picks], 0.02, seed=8)
    for x in range(min(20, n_queries)):  # warm up (JIT caches, page faults)
        idx.query_one(subjects[x], k=10, threshold=0.5, tokens=tokens[picks[x]])
    lat = np.empty(n_queries)
    found = 0
    for x in range(n_queries):
        t = time.perf_counter()
        res = idx.query_one(subjects[x], k=10, threshold=0.5, tokens=tokens[picks[x]])
        lat[x] = time.perf_counter() - t
        found += bool(res) and res[0].record_ref == refs[picks[x]]
    lat_ms = lat * 1e3
    return {
        "records": n,
        "segments": len(idx._snap.segments),
        "build_s": round(build_s, 2),
        "query_p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
        "query_p99_ms": round(float(np.percentile(lat_ms, 99)), 3),
        "query_max_ms": round(float(lat_ms.max()), 3),
        "self_found_first": round(found / n_queries, 4),
        "bytes_per_record": round(idx.memory_bytes() / n, 1),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object last")
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--batch", type=int, default=100_000)
    args = p.parse_args(argv)
    rows = []
    for n in (int(s) for s in args.sizes.split(",") if s):
        rows.append(run_size(n, args.queries, args.batch))
        print(rows[-1], file=sys.stderr, flush=True)
    result: dict[str, Any] = {"benchmark": "scale", **cpu_info(), "sizes": rows}
    for row in rows:
        tag = {10**4: "1e4", 10**5: "1e5", 10**6: "1e6"}.get(row["records"], str(row["records"]))
        for key in ("query_p50_ms", "query_p99_ms", "bytes_per_record"):
            result[f"{key}_{tag}"] = row[key]
    emit(result, args.json)


if __name__ == "__main__":
    main()
