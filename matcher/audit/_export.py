"""JSONL export and import: one canonical record per line, each with a ``type`` field.

The lines are written exactly as stored (and as ``ReadAuditLog`` sends them), so what an
auditor verifies is byte for byte what the service hashed and signed.

>>> import tempfile
>>> from matcher.audit import AuditEvent, AuditLog
>>> with tempfile.TemporaryDirectory() as d:
...     with AuditLog.open(f"sqlite:///{d}/s.db", None) as log:
...         _ = log.append(AuditEvent(rpc="GetInfo", category="administration", outcome="ok"))
...     count = export_from_store(f"sqlite:///{d}/s.db", Path(d) / "audit.jsonl")
...     items = list(read_jsonl(Path(d) / "audit.jsonl"))
>>> count, items[0].seq
(1, 1)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from matcher.audit._model import AuditEntry, Checkpoint, parse_record
from matcher.audit._verify import iter_lines
from matcher.errors import AuditError

__all__ = ["export_from_server", "export_from_store", "read_jsonl", "write_jsonl"]


def write_jsonl(lines: Iterable[str | AuditEntry | Checkpoint], path: str | Path) -> int:
    """Write records to ``path`` (atomically, fsynced), one per line; return the count.

    Strings are written verbatim: pass the stored canonical lines.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with open(tmp, "w", encoding="ascii", newline="\n") as out:
        for item in lines:
            text = item if isinstance(item, str) else item.to_json()
            if "\n" in text:
                raise AuditError("an audit record may not contain a newline")
            out.write(text + "\n")
            count += 1
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return count


def read_jsonl(path: str | Path) -> Iterator[AuditEntry | Checkpoint]:
    """Parse an exported log (no chain or signature checks: use :func:`verify`)."""
    for number, raw in enumerate(iter_lines(path), start=1):
        try:
            record: Any = json.loads(raw)
            item = parse_record(record)
        except (ValueError, AuditError) as exc:
            raise AuditError(f"{path}: line {number} is not an audit record: {exc}") from None
        yield item


def export_from_store(store_url: str, path: str | Path, *, since_seq: int = 0) -> int:
    """Export the log kept in the store at ``store_url`` to ``path``; return the line count.

    For operators with direct access to the database; auditors use the service.
    """
    from matcher.audit._log import AuditLog

    with AuditLog.open(store_url, None) as log:
        return write_jsonl(log.read_lines(since_seq), path)


def export_from_server(
    server: str, keys_dir: Path, path: str | Path, *, force: str | None = None, since_seq: int = 0
) -> int:
    """Stream the log from the service's ``ReadAuditLog`` (auditor certificate) to ``path``.

    Each record's canonical ``json`` is written verbatim. ``force`` picks the auditor's
    client certificate in ``keys_dir`` when it holds several. Returns the line count.

    >>> # export_from_server("127.0.0.1:50051", Path("keys"), "audit.jsonl", force="F01")
    """
    import grpc

    from matcher.service.client import MatcherClient

    try:
        with MatcherClient.open(server, keys_dir, force=force, role="auditor") as client:
            lines = (line for _, _, line in client.read_audit(since_seq))
            return write_jsonl(lines, path)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else ""
        raise AuditError(f"ReadAuditLog failed: {code} {details}".strip()) from None
