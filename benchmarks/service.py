"""Service benchmark: ingest over gRPC into durable SQLite, FindMatches latency, memory.

Runs a real server on loopback (TLS, client certificates, the audit log on) in this
process and prints one JSON object as its last line::

    python benchmarks/service.py --json                     # modest default sizes
    python benchmarks/service.py --json --records 1000000   # the issue's 10^6 scale

Figures: ``ingest_records_per_s`` (signed batches streamed over gRPC, applied atomically
and durably before acknowledgement), ``find_p50_ms`` / ``find_p99_ms`` for one subject
against all stored records, and ``index_bytes_per_record`` / ``rss_bytes_per_record``.
Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from matcher.audit import create_audit_key
from matcher.batch import EncodedBatch, new_record_refs
from matcher.pki import (
    create_ca,
    issue_client_cert,
    issue_server_cert,
    load_signing_key,
)
from matcher.schema import default_schema
from matcher.service import Limits, MatcherClient, ServiceConfig, create_server
from matcher.service.config import write_accepted


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _batch(n: int, rng: np.random.Generator, force: str, density: float) -> EncodedBatch:
    schema = default_schema()
    words = schema.total_words
    bits = rng.random((n, words * 64), dtype=np.float32) < density
    filters = np.packbits(bits, axis=1, bitorder="little").view("<u8").astype(np.uint64)
    return EncodedBatch(
        force=force,
        epoch=1,
        schema_fingerprint=schema.fingerprint,
        filter_bits=schema.total_bits,
        record_refs=new_record_refs(n),
        filters=filters.reshape(n, words),
        blocking_tokens=list(rng.integers(0, 2**63, size=(n, 5), dtype=np.uint64)),
    )


def _noisy(row: NDArray[np.uint64], rng: np.random.Generator, flips: int) -> NDArray[np.uint64]:
    bits = np.unpackbits(row.astype("<u8").view(np.uint8), bitorder="little")
    idx = rng.choice(bits.size, size=flips, replace=False)
    bits[idx] ^= 1
    return np.packbits(bits, bitorder="little").view("<u8").astype(np.uint64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000, help="records stored")
    ap.add_argument("--batch", type=int, default=50_000, help="records per batch")
    ap.add_argument("--queries", type=int, default=300, help="FindMatches calls timed")
    ap.add_argument("--density", type=float, default=0.3, help="share of bits set")
    ap.add_argument("--store", default="", help="store URL (default: SQLite in a temp dir)")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    forces = ["F01", "F02", "F03", "F04"]
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        create_ca(keys)
        issue_server_cert(keys)
        create_audit_key(keys)
        write_accepted(keys, [1], [default_schema()])
        for f in forces:
            issue_client_cert(keys, f, "submitter")
        issue_client_cert(keys, "F09", "assessor")
        url = args.store or f"sqlite:///{tmp}/store.db"
        limits = Limits(
            calls_per_minute=10**9, subjects_per_minute=10**9, max_message_bytes=64 * 1024 * 1024
        )
        config = ServiceConfig(epochs=(1,), limits=limits)
        batches: list[EncodedBatch] = []
        left = args.records
        while left > 0:
            n = min(args.batch, left)
            batches.append(_batch(n, rng, forces[len(batches) % len(forces)], args.density))
            left -= n
        rss0 = _rss()
        server, port = create_server(keys, url, config=config)
        try:
            clients = {
                f: MatcherClient.open(f"127.0.0.1:{port}", keys, force=f, role="submitter")
                for f in forces
            }
            signing = {f: load_signing_key(keys, f) for f in forces}
            t0 = time.perf_counter()
            for b in batches:
                clients[b.force].submit(b, signing[b.force])
            ingest_s = time.perf_counter() - t0
            rss1 = _rss()
            index_bytes = server.core.index.memory_bytes()
            with MatcherClient.open(f"127.0.0.1:{port}", keys, force="F09", role="assessor") as c:
                lat = []
                hits = 0
                for q in range(args.queries + 10):
                    b = batches[q % len(batches)]
                    k = int(rng.integers(len(b)))
                    subj = EncodedBatch(
                        force="F09",
                        epoch=1,
                        schema_fingerprint=b.schema_fingerprint,
                        filter_bits=b.filter_bits,
                        record_refs=new_record_refs(1),
                        filters=_noisy(b.filters[k], rng, 40).reshape(1, -1),
                        blocking_tokens=[b.blocking_tokens[k]],
                    )
                    t = time.perf_counter()
                    res, _ = c.find(subj, purpose="vetting", case_reference="bench")
                    dt = time.perf_counter() - t
                    if q >= 10:  # warm-up (kernel compilation) excluded
                        lat.append(dt)
                        hits += any(m.record_ref == b.record_refs[k] for m in res[0].matches)
                # The same search in process: the kernel and scoring without RPC and audit.
                from matcher.service.matching import search

                core = server.core
                local: list[float] = []
                for q in range(args.queries):
                    b = batches[q % len(batches)]
                    row = _noisy(b.filters[int(rng.integers(len(b)))], rng, 40).reshape(1, -1)
                    t = time.perf_counter()
                    search(
                        core.index.snapshot(),
                        row,
                        schema=core.schema,
                        model=core.model,
                        exclude_force="F09",
                        threshold=config.candidate_threshold,
                    )
                    local.append(time.perf_counter() - t)
            for cl in clients.values():
                cl.close()
        finally:
            server.stop(0)
        db_bytes = sum(p.stat().st_size for p in Path(tmp).glob("store.db*"))
    ms = np.array(lat) * 1000
    out: dict[str, object] = {
        "benchmark": "service",
        "records": args.records,
        "batch_records": args.batch,
        "store": url.split(":", 1)[0] + (" (WAL, synchronous=FULL)" if not args.store else ""),
        "ingest_seconds": round(ingest_s, 3),
        "ingest_records_per_s": round(args.records / ingest_s),
        "queries": args.queries,
        "find_p50_ms": round(float(np.percentile(ms, 50)), 3),
        "find_p99_ms": round(float(np.percentile(ms, 99)), 3),
        "search_in_process_p50_ms": round(float(np.percentile(np.array(local) * 1000, 50)), 3),
        "search_in_process_p99_ms": round(float(np.percentile(np.array(local) * 1000, 99)), 3),
        "find_recall_noisy_copy": round(hits / args.queries, 4),
        "index_bytes_per_record": round(index_bytes / args.records, 1),
        "rss_bytes_per_record": round((rss1 - rss0) / args.records, 1),
        "store_bytes_per_record": None if args.store else round(db_bytes / args.records, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpus": os.cpu_count(),
    }
    if not args.json:
        for name, value in out.items():
            print(f"{name:>26}: {value}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
