"""Verify an exported audit log: canonical form, hash chain, sequence and signatures.

>>> import tempfile
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from matcher.audit import AuditEvent, AuditLog
>>> key = Ed25519PrivateKey.generate()
>>> with tempfile.TemporaryDirectory() as d:
...     with AuditLog.open(f"sqlite:///{d}/s.db", key) as log:
...         _ = log.append(AuditEvent(rpc="GetInfo", category="administration", outcome="ok"))
...     with AuditLog.open(f"sqlite:///{d}/s.db", None) as log:  # closing wrote a checkpoint
...         items = list(log.read())
>>> report = verify(items, key.public_key())
>>> report.ok, report.entries, report.unsigned_tail
(True, 1, 0)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from matcher.audit._keys import key_id
from matcher.audit._model import (
    GENESIS_HASH,
    AuditEntry,
    Checkpoint,
    canonical_json,
    checkpoint_digest,
    entry_hash,
    parse_record,
)
from matcher.errors import AuditError

__all__ = ["VerifyProblem", "VerifyReport", "iter_lines", "verify"]

Source = str | Path | Iterable[AuditEntry | Checkpoint | str | bytes]


@dataclass(frozen=True)
class VerifyProblem:
    """The first place where a log stops being trustworthy.

    ``line`` is the 1-based line (or item) number; ``kind`` says whether ``seq`` is an
    entry's sequence number (where it could be read, else the one expected there) or the
    seq a checkpoint claims to cover.
    """

    line: int
    seq: int | None
    message: str
    kind: str = "entry"

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.seq is not None:
            where += (
                f" (checkpoint at seq {self.seq})"
                if self.kind == "checkpoint"
                else (f" (entry seq {self.seq})")
            )
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`.

    ``unsigned_tail`` counts entries after the last valid checkpoint: a log cut short
    there cannot be told from a complete one, so a non-zero value is reported (and is a
    problem under ``strict``).
    """

    ok: bool
    entries: int
    checkpoints: int
    first_seq: int | None
    last_seq: int
    head_hash: str
    last_checkpoint_seq: int | None
    unsigned_tail: int
    problem: VerifyProblem | None

    def raise_for_problem(self) -> None:
        """Raise :class:`~matcher.errors.AuditError` naming the first bad entry, if any."""
        if self.problem is not None:
            raise AuditError(f"audit log verification failed at {self.problem}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head_hash": self.head_hash,
            "last_checkpoint_seq": self.last_checkpoint_seq,
            "unsigned_tail": self.unsigned_tail,
            "problem": None if self.problem is None else str(self.problem),
        }


class _Bad(Exception):
    def __init__(self, message: str, seq: int | None = None, kind: str = "entry") -> None:
        super().__init__(message)
        self.message = message
        self.seq = seq
        self.kind = kind


def iter_lines(path: str | Path) -> Iterable[bytes]:
    """The lines of a JSONL file split on ``\\n`` only; the file must end with one."""
    data = Path(path).read_bytes()
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] != b"":
        # Keep the unterminated last line: it will be reported as not canonical.
        lines[-1] = lines[-1] + b"\x00"
    else:
        lines.pop()
    return lines


def _record_of(item: AuditEntry | Checkpoint | str | bytes) -> dict[str, Any]:
    if isinstance(item, AuditEntry | Checkpoint):
        return item.to_record()
    if isinstance(item, bytes):
        try:
            text = item.decode("ascii")
        except UnicodeDecodeError:
            raise _Bad("line is not ASCII, so not canonical JSON") from None
    else:
        text = item
    try:
        record = json.loads(text)
    except ValueError:
        raise _Bad("line is not valid JSON") from None
    if not isinstance(record, dict):
        raise _Bad("line is not a JSON object")
    try:
        canonical = canonical_json(record)
    except ValueError:
        raise _Bad("line holds a non-finite number") from None
    if canonical != text:
        raise _Bad("line is not in canonical form (sorted keys, no whitespace, ASCII)")
    return record


def _check_signature(cp: Checkpoint, keys: dict[str, Ed25519PublicKey]) -> None:
    key = keys.get(cp.key_id)
    if key is None:
        raise _Bad("checkpoint is signed by an unknown key", cp.seq, "checkpoint")
    sig = cp.signature
    if len(sig) != 128 or sig != sig.lower():
        raise _Bad("checkpoint signature is not 128 lower-case hex digits", cp.seq, "checkpoint")
    try:
        key.verify(bytes.fromhex(sig), cp.signed_bytes())
    except (ValueError, InvalidSignature):
        raise _Bad("checkpoint signature is invalid", cp.seq, "checkpoint") from None


def verify(
    source: Source,
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey],
    *,
    strict: bool = False,
    partial: bool = False,
) -> VerifyReport:
    """Check an audit log's canonical form, hash chain, sequence and checkpoint signatures.

    ``source`` is a JSONL path, or an iterable of entries and checkpoints (as objects or
    lines). Checking stops at the first problem, which the report names (line and entry
    sequence number). With ``strict`` entries after the last checkpoint are a problem too.
    With ``partial`` the log may start after seq 1 (an export ``--since``): its first entry
    and checkpoint are trusted to link to what came before.
    """
    keys_list = [public_key] if isinstance(public_key, Ed25519PublicKey) else list(public_key)
    keys = {key_id(k): k for k in keys_list}
    items: Iterable[AuditEntry | Checkpoint | str | bytes]
    items = iter_lines(source) if isinstance(source, str | Path) else source

    head_seq, head_hash = 0, GENESIS_HASH
    first_seq: int | None = None
    cp_digest: str | None = None if partial else GENESIS_HASH
    cp_seq: int | None = None
    n_entries = n_cps = 0
    line = 0
    problem: VerifyProblem | None = None
    for line, item in enumerate(items, start=1):
        try:
            record = _record_of(item)
            try:
                parsed = parse_record(record)
            except AuditError as exc:
                seq = record.get("seq") if record.get("type") == "entry" else None
                raise _Bad(str(exc), seq if isinstance(seq, int) else None) from None
            if isinstance(parsed, AuditEntry):
                expected = head_seq + 1
                if first_seq is None and partial:
                    expected, head_hash = parsed.seq, parsed.prev_hash
                if parsed.seq != expected:
                    raise _Bad(f"sequence number is {parsed.seq}, {expected} expected", parsed.seq)
                if parsed.prev_hash != head_hash:
                    raise _Bad("prev_hash does not match the previous entry's hash", parsed.seq)
                if entry_hash(record) != parsed.hash:
                    raise _Bad("hash does not match the entry's content", parsed.seq)
                head_seq, head_hash = parsed.seq, parsed.hash
                first_seq = parsed.seq if first_seq is None else first_seq
                n_entries += 1
            else:
                if parsed.seq != head_seq:
                    raise _Bad(
                        f"checkpoint covers seq {parsed.seq} but the log is at seq {head_seq}",
                        parsed.seq,
                        "checkpoint",
                    )
                if parsed.head_hash != head_hash:
                    raise _Bad(
                        "checkpoint head_hash does not match the chain", parsed.seq, "checkpoint"
                    )
                if cp_digest is not None and parsed.prev_checkpoint != cp_digest:
                    raise _Bad(
                        "checkpoint does not follow the previous checkpoint",
                        parsed.seq,
                        "checkpoint",
                    )
                _check_signature(parsed, keys)
                cp_digest, cp_seq = checkpoint_digest(record), parsed.seq
                n_cps += 1
        except _Bad as bad:
            seq = bad.seq if bad.seq is not None else head_seq + 1
            problem = VerifyProblem(line=line, seq=seq, message=bad.message, kind=bad.kind)
            break
    unsigned = head_seq - (cp_seq if cp_seq is not None else (first_seq or 1) - 1)
    if problem is None and strict and unsigned > 0:
        problem = VerifyProblem(
            line=line,
            seq=head_seq,
            message=f"{unsigned} entries after the last checkpoint are not covered by a signature",
        )
    if problem is None and not partial and n_entries == 0 and n_cps == 0 and strict:
        problem = VerifyProblem(line=0, seq=None, message="the log is empty")
    return VerifyReport(
        ok=problem is None,
        entries=n_entries,
        checkpoints=n_cps,
        first_seq=first_seq,
        last_seq=head_seq,
        head_hash=head_hash,
        last_checkpoint_seq=cp_seq,
        unsigned_tail=unsigned,
        problem=problem,
    )
