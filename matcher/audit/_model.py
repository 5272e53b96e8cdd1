"""Audit records: events, chained entries and signed checkpoints, and their canonical form.

Every record has one canonical serialisation: JSON with sorted keys, no whitespace, ASCII
only, and no NaN. An entry's ``hash`` is SHA-256 over the canonical JSON of the entry
without its ``hash``; a checkpoint's ``signature`` is Ed25519 over the canonical JSON of the
checkpoint without its ``signature``. Because the JSONL export is exactly these canonical
lines, any change to any byte of an exported log changes either a hashed or signed value or
the canonical form itself, and verification catches both.

>>> event = AuditEvent(rpc="GetInfo", category="administration", outcome="ok")
>>> entry = AuditEntry.build(1, "2026-01-01T00:00:00.000000Z", GENESIS_HASH, event)
>>> entry.hash == entry_hash(entry.to_record())
True
>>> AuditEntry.from_record(json.loads(entry.to_json())) == entry
True
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Final

from matcher.errors import AuditError

__all__ = [
    "CATEGORIES",
    "FORMAT_VERSION",
    "GENESIS_HASH",
    "RESULT_KEYS",
    "AuditEntry",
    "AuditEvent",
    "Checkpoint",
    "canonical_json",
    "checkpoint_digest",
    "entry_hash",
    "parse_record",
    "utc_now",
]

FORMAT_VERSION: Final = 1
GENESIS_HASH: Final = "0" * 64

# DPA 2018 s.62 categories, plus reads of the log itself and service administration.
CATEGORIES: Final = frozenset(
    {
        "collection",
        "alteration",
        "consultation",
        "disclosure",
        "combination",
        "erasure",
        "audit",
        "administration",
    }
)

# A result names where a probable match is held, never what it holds.
RESULT_KEYS: Final = frozenset(
    {"subject", "force", "record_ref", "score", "band", "agreement", "watch_id", "alert_id"}
)

# Keys that would only appear if a caller put record content into ``details``.
_FORBIDDEN_DETAIL_KEYS: Final = frozenset(
    {
        "name",
        "forename",
        "forenames",
        "surname",
        "given_name",
        "family_name",
        "dob",
        "date_of_birth",
        "birth_date",
        "address",
        "postcode",
        "phone",
        "email",
        "secret",
        "linkage_secret",
    }
)
_MAX_DETAIL_STRING = 512


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of ``obj``: sorted keys, no whitespace, ASCII, no NaN.

    >>> canonical_json({"b": 1, "a": [1.5, "é"]})
    '{"a":[1.5,"\\\\u00e9"],"b":1}'
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def utc_now() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(record: dict[str, Any]) -> str:
    """SHA-256 (hex) over the canonical JSON of an entry record without its ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def checkpoint_digest(record: dict[str, Any]) -> str:
    """SHA-256 (hex) over a whole checkpoint line; the next checkpoint names it."""
    return hashlib.sha256(canonical_json(record).encode("ascii")).hexdigest()


_Path = tuple[str | int, ...]


def _where(path: _Path) -> str:
    text = str(path[0])
    for part in path[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _check_jsonable(value: Any, path: _Path) -> None:
    # Paths are formatted only when something is wrong: this runs for every entry read.
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return
    if kind is str:
        if len(value) > _MAX_DETAIL_STRING:
            raise AuditError(
                f"audit event {_where(path)} holds a string longer than 512 characters"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AuditError(f"audit event {_where(path)} holds a non-finite number")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_jsonable(item, (*path, i))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditError(f"audit event {_where(path)} has a non-string key")
            if key.lower() in _FORBIDDEN_DETAIL_KEYS:
                raise AuditError(f"audit event {_where(path)} may not hold the key {key!r}")
            _check_jsonable(item, (*path, key))
        return
    if isinstance(value, str | int):  # subclasses (e.g. enums) of the plain types
        return
    raise AuditError(f"audit event {_where(path)} holds a {kind.__name__}, not JSON data")


@dataclass(frozen=True)
class AuditEvent:
    """What happened: one rpc call, allowed or not. Never holds a record value.

    ``category`` is a DPA 2018 s.62 category (``collection``, ``alteration``,
    ``consultation``, ``disclosure``, ``combination``, ``erasure``) or ``audit`` for reads
    of the log, ``administration`` for the rest. ``query_encodings`` are the base64 packed
    filters of each subject (needed to replay a search); ``results`` are
    ``{"subject", "force", "record_ref", "score", "band"}`` dicts (optionally
    ``agreement``); ``details`` holds counts and identifiers such as a batch id.

    >>> AuditEvent(rpc="FindMatches", category="consultation", outcome="ok",
    ...            purpose="SAFEGUARDING", results=[{"subject": 0, "force": "01",
    ...            "record_ref": "r1", "score": 0.97, "band": "strong"}]).category
    'consultation'
    >>> AuditEvent(rpc="X", category="gossip", outcome="ok")
    Traceback (most recent call last):
    matcher.errors.AuditError: audit event category 'gossip' is not one of ...
    """

    rpc: str
    category: str
    outcome: str
    status_code: str = "OK"
    caller_force: str | None = None
    caller_role: str | None = None
    caller_cert_fingerprint: str | None = None
    purpose: str | None = None
    case_reference: str | None = None
    query_digest: str | None = None
    query_encodings: list[str] | None = None
    results: list[dict[str, Any]] | None = None
    store_version: int | None = None
    schema_fingerprint: str | None = None
    key_epoch: int | None = None
    config_hash: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.rpc or not isinstance(self.rpc, str):
            raise AuditError("audit event rpc must be a non-empty string")
        if self.category not in CATEGORIES:
            raise AuditError(
                f"audit event category {self.category!r} is not one of "
                + ", ".join(sorted(CATEGORIES))
            )
        if not self.outcome or not isinstance(self.outcome, str):
            raise AuditError("audit event outcome must be a non-empty string")
        for name in ("store_version", "key_epoch"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise AuditError(f"audit event {name} must be an integer")
        if self.query_encodings is not None and not all(
            isinstance(e, str) for e in self.query_encodings
        ):
            raise AuditError("audit event query_encodings must be base64 strings")
        for i, result in enumerate(self.results or []):
            if not isinstance(result, dict):
                raise AuditError(f"audit event results[{i}] must be a mapping")
            extra = set(result) - RESULT_KEYS
            if extra:
                raise AuditError(
                    f"audit event results[{i}] has keys outside the allowed set: "
                    + ", ".join(sorted(extra))
                )
            _check_jsonable(result, ("results", i))
        _check_jsonable(self.details, ("details",))

    def to_record(self) -> dict[str, Any]:
        """The event's fields as JSON data (lists, not tuples)."""
        record = asdict(self)
        return json.loads(canonical_json(record))  # type: ignore[no-any-return]

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AuditEvent:
        """The event held in an entry record (ignores the entry's own keys)."""
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in record.items() if k in names})
        except TypeError as exc:
            raise AuditError(f"audit record is missing an event field: {exc}") from None


_ENTRY_KEYS: Final = frozenset({"type", "v", "seq", "time", "prev_hash", "hash"})
_EVENT_KEYS: Final = frozenset(f.name for f in fields(AuditEvent))


@dataclass(frozen=True)
class AuditEntry:
    """An event in the chain: its sequence number, UTC time, the previous hash and its own."""

    seq: int
    time: str
    prev_hash: str
    hash: str
    event: AuditEvent

    @classmethod
    def build(cls, seq: int, time: str, prev_hash: str, event: AuditEvent) -> AuditEntry:
        """Make the entry that follows ``prev_hash``, computing its hash."""
        record = {"type": "entry", "v": FORMAT_VERSION, "seq": seq, "time": time}
        record["prev_hash"] = prev_hash
        record.update(event.to_record())
        return cls(seq=seq, time=time, prev_hash=prev_hash, hash=entry_hash(record), event=event)

    def to_record(self) -> dict[str, Any]:
        """The entry as a flat JSON record with ``type: "entry"``."""
        record: dict[str, Any] = {"type": "entry", "v": FORMAT_VERSION, "seq": self.seq}
        record.update(time=self.time, prev_hash=self.prev_hash, hash=self.hash)
        record.update(self.event.to_record())
        return record

    def to_json(self) -> str:
        """The canonical JSON line of this entry (no newline)."""
        return canonical_json(self.to_record())

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AuditEntry:
        """Parse an entry record; the hash is carried, not checked (``verify`` checks)."""
        unknown = set(record) - _ENTRY_KEYS - _EVENT_KEYS
        if unknown:
            raise AuditError("audit entry has unknown keys: " + ", ".join(sorted(unknown)))
        try:
            seq, time = record["seq"], record["time"]
            prev_hash, own = record["prev_hash"], record["hash"]
        except KeyError as exc:
            raise AuditError(f"audit entry lacks {exc.args[0]!r}") from None
        if record.get("type") != "entry" or record.get("v") != FORMAT_VERSION:
            raise AuditError("audit entry has a wrong type or format version")
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise AuditError("audit entry seq is not an integer")
        if not all(isinstance(x, str) for x in (time, prev_hash, own)):
            raise AuditError("audit entry time and hashes must be strings")
        event = AuditEvent.from_record(record)
        return cls(seq=seq, time=time, prev_hash=prev_hash, hash=own, event=event)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that the log's head was entry ``seq`` with hash ``head_hash``.

    ``prev_checkpoint`` is the digest of the previous checkpoint's line (so a deleted
    checkpoint is noticed), ``key_id`` the SHA-256 of the raw Ed25519 public key, and
    ``signature`` the hex Ed25519 signature over the canonical JSON without ``signature``.
    """

    seq: int
    head_hash: str
    time: str
    prev_checkpoint: str
    key_id: str
    signature: str

    def signed_record(self) -> dict[str, Any]:
        """The record the signature covers (everything except the signature)."""
        return {
            "type": "checkpoint",
            "v": FORMAT_VERSION,
            "seq": self.seq,
            "head_hash": self.head_hash,
            "time": self.time,
            "prev_checkpoint": self.prev_checkpoint,
            "key_id": self.key_id,
        }

    def signed_bytes(self) -> bytes:
        """The exact bytes the Ed25519 signature is over."""
        return canonical_json(self.signed_record()).encode("ascii")

    def to_record(self) -> dict[str, Any]:
        """The checkpoint as a JSON record with ``type: "checkpoint"``."""
        return {**self.signed_record(), "signature": self.signature}

    def to_json(self) -> str:
        """The canonical JSON line of this checkpoint (no newline)."""
        return canonical_json(self.to_record())

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the whole checkpoint line."""
        return checkpoint_digest(self.to_record())

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Checkpoint:
        """Parse a checkpoint record; the signature is carried, not checked."""
        keys = {"type", "v", "seq", "head_hash", "time", "prev_checkpoint", "key_id", "signature"}
        if set(record) != keys:
            raise AuditError("audit checkpoint has missing or unknown keys")
        if record["type"] != "checkpoint" or record["v"] != FORMAT_VERSION:
            raise AuditError("audit checkpoint has a wrong type or format version")
        seq = record["seq"]
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise AuditError("audit checkpoint seq is not an integer")
        strings = [record[k] for k in sorted(keys - {"type", "v", "seq"})]
        if not all(isinstance(s, str) for s in strings):
            raise AuditError("audit checkpoint fields must be strings")
        return cls(
            seq=seq,
            head_hash=record["head_hash"],
            time=record["time"],
            prev_checkpoint=record["prev_checkpoint"],
            key_id=record["key_id"],
            signature=record["signature"],
        )


def parse_record(record: dict[str, Any]) -> AuditEntry | Checkpoint:
    """Turn one JSON record (an exported line) into an entry or a checkpoint.

    >>> parse_record({"type": "nonsense"})
    Traceback (most recent call last):
    matcher.errors.AuditError: audit record has unknown type 'nonsense'
    """
    kind = record.get("type") if isinstance(record, dict) else None
    if kind == "entry":
        return AuditEntry.from_record(record)
    if kind == "checkpoint":
        return Checkpoint.from_record(record)
    raise AuditError(f"audit record has unknown type {kind!r}")
