"""``matcher audit``: export, verify, replay and report on the audit log.

::

    matcher audit export --keys DIR --server HOST:PORT -o AUDIT.jsonl   # auditor certificate
    matcher audit export --store URL -o AUDIT.jsonl                     # operator, direct
    matcher audit verify AUDIT.jsonl --keys DIR [--strict] [--json]
    matcher audit replay AUDIT.jsonl --store URL [--json]
    matcher audit report AUDIT.jsonl [--format csv|json|html] [--force F] [--role R]

``verify`` and ``replay`` exit 1 when the log fails (naming the first bad entry) or a
replayed search or watch alert differs (or an alert was left out); errors such as a
missing file exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from matcher.audit import (
    REPORT_FORMATS,
    StoreReplayer,
    build_report,
    export_from_server,
    export_from_store,
    load_audit_public_key,
    read_jsonl,
    render,
    replay,
    verify,
)
from matcher.errors import InputError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``audit export|verify|replay|report`` to ``sub``."""
    audit = sub.add_parser("audit", help="export, verify, replay and report on the audit log")
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    export = asub.add_parser("export", help="write the audit log as JSONL")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--server", metavar="HOST:PORT", help="read it from the service")
    source.add_argument("--store", metavar="URL", help="read it from the store directly")
    export.add_argument("--keys", type=Path, metavar="DIR", help="keyring (with --server)")
    export.add_argument("--force", metavar="CODE", help="which auditor certificate to use")
    export.add_argument("--since", type=int, default=0, metavar="SEQ", help="after this seq")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="AUDIT.jsonl")
    export.set_defaults(handler=_export)

    check = asub.add_parser("verify", help="check the chain, sequence and signatures")
    check.add_argument("log", type=Path, metavar="AUDIT.jsonl")
    check.add_argument("--keys", type=Path, required=True, metavar="DIR", help="keyring")
    check.add_argument(
        "--strict", action="store_true", help="fail when entries follow the last checkpoint"
    )
    check.add_argument("--partial", action="store_true", help="the export started after seq 1")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=_verify)

    rerun = asub.add_parser(
        "replay", help="re-run every search and watch alert at its store version"
    )
    rerun.add_argument("log", type=Path, metavar="AUDIT.jsonl")
    rerun.add_argument("--store", required=True, metavar="URL", help="the service's store")
    rerun.add_argument(
        "--keys", type=Path, metavar="DIR", help="keyring with service.json (its schema)"
    )
    rerun.add_argument(
        "--model", type=Path, metavar="FILE", help="the trained scoring model the service ran"
    )
    rerun.add_argument("--json", action="store_true", help="print the report as JSON")
    rerun.set_defaults(handler=_replay)

    rep = asub.add_parser("report", help="searches, denials, out-of-hours use, volumes")
    rep.add_argument("log", type=Path, metavar="AUDIT.jsonl")
    rep.add_argument("--format", choices=REPORT_FORMATS, default="json")
    rep.add_argument("--force", metavar="CODE", help="only this caller force")
    rep.add_argument("--role", metavar="ROLE", help="only this caller role")
    rep.add_argument("--purpose", metavar="CODE", help="only this purpose")
    rep.add_argument("--since", metavar="YYYY-MM-DD", help="from this UK date")
    rep.add_argument("--until", metavar="YYYY-MM-DD", help="up to this UK date (included)")
    rep.add_argument("-o", "--output", type=Path, metavar="FILE", help="default: stdout")
    rep.set_defaults(handler=_report)


def _export(args: argparse.Namespace) -> int:
    if args.server is not None:
        if args.keys is None:
            raise InputError("--keys is required with --server", field="keys")
        count = export_from_server(
            args.server, args.keys, args.output, force=args.force, since_seq=args.since
        )
    else:
        count = export_from_store(args.store, args.output, since_seq=args.since)
    print(f"exported {count} audit records to {args.output}")
    return 0


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"audit log {path} does not exist", field="log")


def _verify(args: argparse.Namespace) -> int:
    _require_file(args.log)
    report = verify(
        args.log, load_audit_public_key(args.keys), strict=args.strict, partial=args.partial
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    elif report.ok:
        print(
            f"ok: {report.entries} entries (seq {report.first_seq or 0}..{report.last_seq}),"
            f" {report.checkpoints} checkpoints, head {report.head_hash[:16]}"
        )
    if report.problem is not None:
        print(f"matcher: audit log {args.log} is not valid at {report.problem}", file=sys.stderr)
        return 1
    if report.unsigned_tail:
        print(
            f"warning: {report.unsigned_tail} entries after the last checkpoint"
            f" (seq {report.last_checkpoint_seq or 0}) are not signed: a cut-off tail"
            " cannot be ruled out",
            file=sys.stderr,
        )
    return 0


def _replay(args: argparse.Namespace) -> int:
    _require_file(args.log)
    model = None
    if args.model is not None:
        from matcher.scoring import MatchModel

        try:
            model = MatchModel.from_dict(json.loads(args.model.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(f"{args.model} is not a scoring model file", field="model") from None
    with StoreReplayer(args.store, keys_dir=args.keys, model=model) as replayer:
        report = replay(read_jsonl(args.log), replayer)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        kinds = report.differences_by_kind()
        print(
            f"replayed {report.replayed} searches and {report.watch_alerts} watch alerts"
            f" of {report.watches} watches ({report.skipped} other entries skipped):"
            f" {len(report.differences)} differ ("
            + ", ".join(f"{kind} {n}" for kind, n in kinds.items())
            + ")"
        )
        for diff in report.differences:
            print(f"  {diff}", file=sys.stderr)
    return 0 if report.ok else 1


def _report(args: argparse.Namespace) -> int:
    _require_file(args.log)
    report = build_report(
        read_jsonl(args.log),
        force=args.force,
        role=args.role,
        purpose=args.purpose,
        since=args.since,
        until=args.until,
    )
    text = render(report, args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote the {args.format} report to {args.output}")
    return 0
