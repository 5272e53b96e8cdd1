"""The service's side of the audit log: notes become :class:`matcher.audit.AuditEvent`.

The audit log itself (hash chain, signed checkpoints, storage) is :mod:`matcher.audit`;
this module only turns what a call did into an event and appends it. An append that
fails makes the call fail: nothing is disclosed without its audit entry.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from matcher.service.auth import AuditNote, NoteSink

if TYPE_CHECKING:
    from matcher.audit import AuditLog

__all__ = ["ServiceAudit"]

_EVENT_FIELDS = frozenset(
    {
        "purpose",
        "case_reference",
        "query_digest",
        "query_encodings",
        "results",
        "store_version",
        "schema_fingerprint",
        "key_epoch",
        "config_hash",
    }
)


class ServiceAudit(NoteSink):
    """Appends one audit event per note to ``log`` (or keeps them in memory if ``None``).

    The in-memory list (``events``) lets tests and embedded uses without an audit key
    still see what would have been logged.
    """

    def __init__(self, log: AuditLog | None, *, config_hash: str = "") -> None:
        self.log = log
        self.config_hash = config_hash
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append_note(self, note: AuditNote) -> None:
        ident = note.identity
        record: dict[str, Any] = {
            "rpc": note.rpc,
            "category": note.category,
            "outcome": note.outcome,
            "status_code": note.status_code,
            "caller_force": ident.force if ident else None,
            "caller_role": ident.role if ident else None,
            "caller_cert_fingerprint": ident.fingerprint if ident else None,
            "details": dict(note.details),
        }
        record.update({k: v for k, v in note.fields.items() if k in _EVENT_FIELDS})
        if note.fields.get("results") is not None or note.fields.get("query_digest"):
            record.setdefault("config_hash", self.config_hash)
        self.append(record)

    def append(self, record: dict[str, Any]) -> None:
        """Append one event given as a dict of :class:`~matcher.audit.AuditEvent` fields."""
        if self.log is not None:
            from matcher.audit import AuditEvent

            self.log.append(AuditEvent(**record))
        else:
            with self._lock:
                self.events.append(record)

    def read_lines(self, since_seq: int) -> Iterator[tuple[int, str, str]]:
        """``(seq, kind, json)`` of the stored log after ``since_seq``."""
        if self.log is None:
            return
        for line in self.log.read_lines(since_seq):
            rec = json.loads(line)
            yield int(rec.get("seq", 0)), str(rec.get("type", "entry")), line

    @property
    def public_key(self) -> bytes:
        """The checkpoint key's raw public bytes (empty without a key)."""
        key = self.log.public_key if self.log is not None else None
        if key is None:
            return b""
        from cryptography.hazmat.primitives import serialization

        raw: bytes = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return raw

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
