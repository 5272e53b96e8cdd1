"""Dice kernel throughput: matcher against anonlink and faiss on identical inputs.

For each database size ``N`` and each kind of input (random bits, realistic encodings;
see ``_common.py``), ``Q`` query filters (perturbed copies of database rows, so there are
matches to find) are compared with all ``N`` database filters:

* ``ours``: :func:`matcher.similarity.dice_candidates` (all pairs with Dice >= threshold);
* ``anonlink``: ``find_candidate_pairs`` with ``dice_coefficient_accelerated`` (the same
  question; its C++ kernel is single-threaded, so its all-thread figure is the same call);
* ``faiss``: ``IndexBinaryFlat.search`` for the ``k`` nearest by Hamming distance (faiss has
  no Dice; brute-force Hamming k-NN is the same all-pairs popcount work);
* ``ours_topk``: :func:`matcher.similarity.dice_topk` with the same ``k``.

Throughput is millions of comparisons per second (``Q * N / seconds``), best of
``--repeat`` runs, with one thread and with all threads. Pair counts are printed so that
one can see ours and anonlink answered the same question.

The blocking section (skip it with ``--no-blocking``) reports, on the six FEBRL quality
sets, pair completeness and reduction ratio of :func:`matcher.lsh.candidate_pairs` with
the encoder's tokens alone, with tokens and ``LshConfig.for_schema`` tables (the
default), with the tables alone (what the service's index sees) and with the
``recall="high"`` tables, and the bytes per record of a
:class:`matcher.index.MatchIndex` built with each. The last line with ``--json`` is one
JSON object.

    .venv/bin/python benchmarks/similarity.py --json            # a few minutes on 2 cores
    .venv/bin/python benchmarks/similarity.py --json --large    # adds N = 1,000,000
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    best_of,
    cpu_info,
    emit,
    import_anonlink,
    perturbed_copies,
    random_filters,
    realistic_filters,
)

from matcher.similarity import dice_candidates, dice_topk, popcounts

ALL = numba.config.NUMBA_NUM_THREADS


def _bitarrays(x: np.ndarray[Any, Any]) -> list[Any]:
    from bitarray import bitarray

    raw = np.ascontiguousarray(x.astype("<u8")).view(np.uint8)
    out = []
    for row in raw:
        b = bitarray(endian="little")
        b.frombytes(row.tobytes())
        out.append(b)
    return out


def run_case(
    kind: str, n_db: int, n_q: int, threshold: float, k: int, repeat: int, anonlink: Any
) -> dict[str, Any]:
    if kind == "random":
        db = random_filters(n_db, 16, 0.28, seed=n_db)
    else:
        db = realistic_filters(n_db, seed=n_db)[0]
    rng = np.random.default_rng(1)
    queries = perturbed_copies(db[rng.integers(0, n_db, n_q)], 0.02, seed=2)
    pairs = n_q * n_db
    pop_db = popcounts(db)
    out: dict[str, Any] = {"kind": kind, "n_db": n_db, "n_queries": n_q, "threshold": threshold}

    def ours(threads: int) -> Any:
        return dice_candidates(queries, db, threshold, pop_b=pop_db, threads=threads)

    def ours_topk(threads: int) -> Any:
        return dice_topk(queries, db, k, pop_b=pop_db, threads=threads)

    ours(1)  # compile / warm caches
    out["pairs_ours"] = len(ours(1)[0])
    for label, threads in (("1t", 1), ("all", ALL)):
        out[f"ours_{label}_mcmp_s"] = pairs / best_of(lambda t=threads: ours(t), repeat) / 1e6
        out[f"ours_topk_{label}_mcmp_s"] = (
            pairs / best_of(lambda t=threads: ours_topk(t), repeat) / 1e6
        )
    if anonlink is not None:
        from anonlink.candidate_generation import find_candidate_pairs
        from anonlink.similarities import dice_coefficient_accelerated

        a_q, a_db = _bitarrays(queries), _bitarrays(db)

        def anon() -> Any:
            return find_candidate_pairs([a_q, a_db], dice_coefficient_accelerated, threshold)

        out["pairs_anonlink"] = len(anon()[0])
        rate = pairs / best_of(anon, repeat) / 1e6
        out["anonlink_1t_mcmp_s"] = out["anonlink_all_mcmp_s"] = rate
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        index = faiss.IndexBinaryFlat(db.shape[1] * 64)
        index.add(np.ascontiguousarray(db.astype("<u8")).view(np.uint8))
        qb = np.ascontiguousarray(queries.astype("<u8")).view(np.uint8)
        for label, threads in (("1t", 1), ("all", ALL)):
            faiss.omp_set_num_threads(threads)
            index.search(qb[:8], k)
            out[f"faiss_{label}_mcmp_s"] = (
                pairs / best_of(lambda: index.search(qb, k), repeat) / 1e6
            )
        faiss.omp_set_num_threads(ALL)
    return out


def blocking_quality() -> list[dict[str, Any]]:
    """Pair completeness, reduction ratio and index bytes per record on the FEBRL sets.

    Each set is encoded under one secret; true pairs are cross-force pairs of the same
    person. ``tokens+lsh`` is the default (``LshConfig.for_schema``); ``lsh_only`` is what
    the service's index sees (its queries carry no tokens). Bytes per record are those of
    a :class:`matcher.index.MatchIndex` holding the set with that configuration.
    """
    import secrets as _secrets

    from matcher.datasets import STANDARD_SETS, build_multiforce, true_cross_force_pairs
    from matcher.encoding import encode_frame
    from matcher.index import MatchIndex
    from matcher.keys import LinkageSecret
    from matcher.lsh import LshConfig, candidate_pairs, pair_quality
    from matcher.schema import default_schema

    schema = default_schema()
    cfg = LshConfig.for_schema(schema)
    high = LshConfig.for_schema(schema, recall="high")
    secret = LinkageSecret(1, b"b" * 32)
    rows = []
    for name, (source, forces) in STANDARD_SETS.items():
        df = build_multiforce(source, n_forces=forces, seed=0)
        batch = encode_frame(df, schema, secret, "ALL").batch
        pos = {str(v): r for r, v in enumerate(df["id"])}
        true = [(pos[x], pos[y]) for x, y in true_cross_force_pairs(df)]
        ti = np.array([min(p) for p in true], dtype=np.int64)
        tj = np.array([max(p) for p in true], dtype=np.int64)
        n = len(df)
        toks = batch.blocking_tokens
        refs = [_secrets.token_hex(16) for _ in range(n)]
        for label, config, use_tokens in (
            ("tokens", LshConfig(()), True),
            ("tokens+lsh", cfg, True),
            ("lsh_only", cfg, False),
            ("tokens+lsh_high_recall", high, True),
        ):
            t = toks if use_tokens else None
            cand = candidate_pairs(
                batch.filters, t, batch.filters, t, self_join=True, config=config
            )
            q = pair_quality(cand, (ti, tj), n, n, self_join=True)
            index = MatchIndex(batch.filters.shape[1], lsh=config)
            index.add("b", "F", refs, batch.filters, toks if use_tokens else [_NONE] * n)
            rows.append(
                {
                    "set": name,
                    "blocking": label,
                    "tables": config.n_tables,
                    "pair_completeness": round(q.pair_completeness, 5),
                    "reduction_ratio": round(q.reduction_ratio, 6),
                    "candidates_per_record": round(q.candidates / n, 2),
                    "index_bytes_per_record": round(index.memory_bytes() / n, 1),
                }
            )
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


_NONE = np.zeros(0, np.uint64)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object last")
    p.add_argument("--large", action="store_true", help="add N = 1,000,000 (slow)")
    p.add_argument("--sizes", default="10000,100000", help="database sizes N")
    p.add_argument("--queries", type=int, default=1000, help="query filters Q")
    p.add_argument("--threshold", type=float, default=0.8)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-blocking", action="store_true", help="skip the FEBRL blocking run")
    args = p.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.large:
        sizes.append(1_000_000)
    anonlink = import_anonlink()
    cases = []
    for n_db in sizes:
        for kind in ("random", "realistic"):
            case = run_case(kind, n_db, args.queries, args.threshold, args.k, args.repeat, anonlink)
            cases.append(case)
            print({k: round(v, 1) if isinstance(v, float) else v for k, v in case.items()},
                  file=sys.stderr, flush=True)  # fmt: skip
    # headline: the largest size, realistic filters
    head = [c for c in cases if c["kind"] == "realistic"][-1]
    result: dict[str, Any] = {
        "benchmark": "similarity",
        "threads_all": ALL,
        **cpu_info(),
        "headline_case": f"realistic N={head['n_db']} Q={head['n_queries']}",
    }
    for key in (
        "ours_1t_mcmp_s", "ours_all_mcmp_s", "ours_topk_1t_mcmp_s", "ours_topk_all_mcmp_s",
        "anonlink_1t_mcmp_s", "anonlink_all_mcmp_s", "faiss_1t_mcmp_s", "faiss_all_mcmp_s",
    ):  # fmt: skip
        if key in head:
            result[key] = round(head[key], 1)
    for label in ("1t", "all"):
        if f"anonlink_{label}_mcmp_s" in head:
            result[f"ratio_vs_anonlink_{label}"] = round(
                head[f"ours_{label}_mcmp_s"] / head[f"anonlink_{label}_mcmp_s"], 2
            )
        if f"faiss_{label}_mcmp_s" in head:
            result[f"ratio_topk_vs_faiss_{label}"] = round(
                head[f"ours_topk_{label}_mcmp_s"] / head[f"faiss_{label}_mcmp_s"], 2
            )
    # the "1 G comparisons/s/core" ceiling for 1024-bit AND + popcount
    result["ours_1t_fraction_of_1g"] = round(head["ours_1t_mcmp_s"] / 1000, 3)
    result["scaling_all_over_1t"] = round(head["ours_all_mcmp_s"] / head["ours_1t_mcmp_s"], 2)
    result["cases"] = [
        {k: round(v, 1) if isinstance(v, float) else v for k, v in c.items()} for c in cases
    ]
    if not args.no_blocking:
        result["blocking"] = blocking_quality()
    emit(result, args.json)


if __name__ == "__main__":
    main()
