"""``matcher serve``, ``submit``, ``retract``, ``query`` and ``watch``.

Forces and assessors encode locally (``query`` and ``watch`` normalise and encode their
subjects here, with the linkage secret from ``--keys``); only encodings and opaque
references cross to the service. Subject ids stay local: the service sees row numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from matcher.errors import MatcherError

__all__ = ["ServiceCallError", "register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this module's sub-commands to ``sub``."""
    p = sub.add_parser("serve", help="run the matching service (TLS, client certificates)")
    p.add_argument("--keys", type=Path, required=True, help="keyring folder (CA, server cert)")
    p.add_argument("--store", required=True, help="sqlite:///path or postgresql://...")
    p.add_argument("--listen", default="127.0.0.1:50051", help="HOST:PORT (port 0: any)")
    p.set_defaults(handler=_serve)

    p = sub.add_parser("submit", help="sign and submit an encoded batch (submitter)")
    p.add_argument("batch", type=Path, help="encoded batch (.parquet) from 'matcher encode'")
    _client_args(p)
    p.set_defaults(handler=_submit)

    p = sub.add_parser("retract", help="retract records of your force (submitter)")
    p.add_argument("refs", type=Path, help="CSV with a record_ref column (e.g. a .refs.csv)")
    p.add_argument("--id", action="append", dest="ids", help="only the rows with this id")
    _client_args(p)
    p.set_defaults(handler=_retract)

    for name, help_text in (
        ("query", "find subjects in other forces' records (assessor)"),
        ("watch", "watch for subjects in later submissions (assessor)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "subjects", type=Path, help="subjects, .csv or .parquet (an id column and fields)"
        )
        _client_args(p)
        p.add_argument("--purpose", required=True, help="purpose code, e.g. safeguarding_child")
        p.add_argument("--reference", required=True, help="case reference (free text)")
        p.add_argument("--id-column", default="id", help="the subjects' id column")
        p.add_argument("--include-own-force", action="store_true")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "query":
            p.add_argument("--max-results", type=int, default=0, help="per subject")
            p.set_defaults(handler=_query)
        else:
            p.add_argument("--resume", default="", help="resume token of an earlier watch")
            p.add_argument("--max-alerts", type=int, default=0, help="stop after N alerts")
            p.add_argument("--timeout", type=float, default=None, help="stop after N seconds")
            p.set_defaults(handler=_watch)


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", type=Path, required=True, help="keyring folder")
    p.add_argument("--force", required=True, help="your force code")
    p.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT of the service")


class ServiceCallError(MatcherError):
    """The service refused a call (its status and message, never a value)."""


@contextmanager
def _rpc_errors() -> Iterator[None]:
    import grpc

    try:
        yield
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else ""
        raise ServiceCallError(f"{code}: {details}") from None


def _serve(args: argparse.Namespace) -> int:
    from matcher.service import serve

    return serve(args.keys, args.store, args.listen)


def _client(args: argparse.Namespace, role: str) -> Any:
    from matcher.service import MatcherClient

    return MatcherClient.open(args.server, args.keys, force=args.force, role=role)


def _submit(args: argparse.Namespace) -> int:
    from matcher.batch import EncodedBatch
    from matcher.errors import InputError
    from matcher.pki import load_signing_key

    batch = EncodedBatch.from_parquet(args.batch)
    if batch.force != args.force:
        raise InputError("force: the batch was encoded for another force", field="force")
    key = load_signing_key(args.keys, args.force)
    with _rpc_errors(), _client(args, "submitter") as c:
        res = c.submit(batch, key)
    state = "already applied" if res.already_applied else "applied"
    print(
        f"batch {res.batch_id}: {res.record_count} records {state} at store version "
        f"{res.store_version}"
    )
    return 0


def _retract(args: argparse.Namespace) -> int:
    import pandas as pd

    from matcher.errors import InputError

    try:
        df = pd.read_csv(args.refs, dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        raise InputError(f"{args.refs}: not a readable CSV file", field="refs") from None
    if "record_ref" not in df.columns:
        raise InputError("column 'record_ref' is missing", field="record_ref")
    if args.ids:
        if "id" not in df.columns:
            raise InputError("column 'id' is missing", field="id")
        df = df[df["id"].isin(args.ids)]
    refs = [r for r in df["record_ref"].tolist() if r]
    if not refs:
        raise InputError("no record references to retract", field="record_ref")
    with _rpc_errors(), _client(args, "submitter") as c:
        res = c.retract(args.force, refs)
    print(f"retracted {res.retracted} records at store version {res.store_version}")
    return 0


def _encode_subjects(args: argparse.Namespace) -> tuple[Any, list[str]]:
    from matcher.cli.link import read_table
    from matcher.encoding import encode_frame
    from matcher.keys import load_linkage_secret
    from matcher.schema import default_schema

    df = read_table(Path(args.subjects))  # as matcher encode reads a force's records
    secret = load_linkage_secret(args.keys)
    res = encode_frame(df, default_schema(), secret, args.force, id_column=args.id_column)
    return res.batch, [str(x) for x in res.refs["id"].tolist()]


def _alert_dict(sid: str, m: Any, fields: list[str]) -> dict[str, Any]:
    return {
        "subject_id": sid,
        "force": m.force,
        "record_ref": m.record_ref,
        "score": round(m.score, 6),
        "band": m.band,
        "agreement": dict(zip(fields, m.agreement, strict=False)),
    }


def _query(args: argparse.Namespace) -> int:
    batch, ids = _encode_subjects(args)
    with _rpc_errors(), _client(args, "assessor") as c:
        fields = list(c.info().field_names)
        results, version = c.find(
            batch,
            purpose=args.purpose,
            case_reference=args.reference,
            subject_ids=[str(i) for i in range(len(ids))],
            include_own_force=args.include_own_force,
            max_results=args.max_results,
        )
    alerts = [_alert_dict(ids[int(r.subject_id)], m, fields) for r in results for m in r.matches]
    if args.json:
        print(json.dumps(alerts, indent=2))
    else:
        for a in alerts:
            print(
                f"{a['subject_id']}: {a['band']:<8} {a['score']:.4f} "
                f"force {a['force']} ref {a['record_ref']}"
            )
        print(f"{len(alerts)} matches for {len(ids)} subjects at store version {version}")
    return 0


def _watch(args: argparse.Namespace) -> int:
    import grpc

    from matcher.service import WatchStarted

    batch, ids = (None, []) if args.resume else _encode_subjects(args)
    shown = 0
    with _rpc_errors(), _client(args, "assessor") as c:
        fields = list(c.info().field_names)
        stream = c.watch(
            batch,
            purpose=args.purpose,
            case_reference=args.reference,
            subject_ids=[str(i) for i in range(len(ids))],
            include_own_force=args.include_own_force,
            resume_token=args.resume,
            timeout=args.timeout,
        )
        emit: Callable[[dict[str, Any]], None] = (
            (lambda d: print(json.dumps(d), flush=True))
            if args.json
            else (lambda d: print(" ".join(f"{k}={v}" for k, v in d.items()), flush=True))
        )
        try:
            for ev in stream:
                if isinstance(ev, WatchStarted):
                    emit(
                        {
                            "event": "started",
                            "watch_id": ev.watch_id,
                            "resume_token": ev.resume_token,
                        }
                    )
                    continue
                sid = ids[int(ev.subject_id)] if ids else ev.subject_id
                emit(
                    {
                        "event": "alert",
                        **_alert_dict(sid, ev.match, fields),
                        "resume_token": ev.resume_token,
                    }
                )
                shown += 1
                if args.max_alerts and shown >= args.max_alerts:
                    stream.cancel()
                    break
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # --timeout ends quietly
                raise
    print(f"{shown} alerts", file=sys.stderr)
    return 0
