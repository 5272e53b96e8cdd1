"""Tamper-evident audit log: hash-chained entries, signed checkpoints, verify and replay.

Every rpc, allowed or denied, appends an :class:`AuditEvent` to the :class:`AuditLog` kept
in the service's store (DPA 2018 s.62: collection, alteration, consultation, disclosure,
combination, erasure). Entries are chained by SHA-256 over their canonical JSON and
checkpoints are signed with the service's Ed25519 audit key. Auditors export the log as
JSONL, :func:`verify` it, :func:`replay` its searches and watch alerts and
:func:`build_report` on it.

>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as d:
...     key = create_audit_key(Path(d) / "keys")
...     with AuditLog.open(f"sqlite:///{d}/store.db", key, checkpoint_every=10) as log:
...         _ = log.append(AuditEvent(rpc="FindMatches", category="consultation",
...                                   outcome="denied", status_code="PERMISSION_DENIED"))
...     _ = export_from_store(f"sqlite:///{d}/store.db", Path(d) / "audit.jsonl")
...     report = verify(Path(d) / "audit.jsonl", load_audit_public_key(Path(d) / "keys"))
>>> report.ok, report.entries, report.checkpoints
(True, 1, 1)
"""

from __future__ import annotations

from matcher.audit._export import export_from_server, export_from_store, read_jsonl, write_jsonl
from matcher.audit._keys import (
    AUDIT_PRIVATE_KEY_FILE,
    AUDIT_PUBLIC_KEY_FILE,
    create_audit_key,
    key_id,
    load_audit_private_key,
    load_audit_public_key,
)
from matcher.audit._log import AuditLog
from matcher.audit._model import (
    CATEGORIES,
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    Checkpoint,
    canonical_json,
    parse_record,
)
from matcher.audit._replay import (
    ReplayDifference,
    Replayer,
    ReplayReport,
    compare_results,
    is_replayable,
    replay,
)
from matcher.audit._report import REPORT_FORMATS, AuditReport, build_report, render
from matcher.audit._store import grant_service_role
from matcher.audit._store_replay import StoreReplayer
from matcher.audit._verify import VerifyProblem, VerifyReport, verify

__all__ = [
    "AUDIT_PRIVATE_KEY_FILE",
    "AUDIT_PUBLIC_KEY_FILE",
    "CATEGORIES",
    "GENESIS_HASH",
    "REPORT_FORMATS",
    "AuditEntry",
    "AuditEvent",
    "AuditLog",
    "AuditReport",
    "Checkpoint",
    "ReplayDifference",
    "ReplayReport",
    "Replayer",
    "StoreReplayer",
    "VerifyProblem",
    "VerifyReport",
    "build_report",
    "canonical_json",
    "compare_results",
    "create_audit_key",
    "export_from_server",
    "export_from_store",
    "grant_service_role",
    "is_replayable",
    "key_id",
    "load_audit_private_key",
    "load_audit_public_key",
    "parse_record",
    "read_jsonl",
    "render",
    "replay",
    "verify",
    "write_jsonl",
]
