"""Store events, watch and alert records, and the packing of batch columns into blobs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from matcher.batch import EncodedBatch, flat_tokens
from matcher.errors import EncodingError, InputError

__all__ = [
    "AlertRecord",
    "AppendResult",
    "BatchEvent",
    "PackedColumns",
    "RetractEvent",
    "StoreEvent",
    "StoreState",
    "WatchRecord",
    "check_id",
    "check_refs",
    "pack_columns",
    "pack_record_columns",
    "pack_tokens",
    "unpack_refs",
    "unpack_tokens",
]

_HEX32 = re.compile(r"[0-9a-f]{32}\Z")


def check_id(value: str, field_name: str) -> str:
    """Return ``value`` if it is 32 lower-case hex characters, else raise :class:`InputError`."""
    if not isinstance(value, str) or not _HEX32.match(value):
        raise InputError(f"{field_name}: must be 32 lower-case hex characters", field=field_name)
    return value


def check_refs(refs: list[str], field_name: str = "record_refs") -> bytes:
    """Validate record references (32 lower-case hex, unique) and pack them (16 bytes each)."""
    joined = "".join(refs)
    if any(len(r) != 32 for r in refs) or joined != joined.lower():
        raise InputError(
            f"{field_name}: each must be 32 lower-case hex characters", field=field_name
        )
    try:
        packed = bytes.fromhex(joined)
    except ValueError:
        raise InputError(
            f"{field_name}: each must be 32 lower-case hex characters", field=field_name
        ) from None
    if len(set(refs)) != len(refs):
        raise InputError(f"{field_name}: a reference appears twice", field=field_name)
    return packed


def unpack_refs(packed: bytes) -> list[str]:
    """Inverse of the packing in :func:`check_refs`."""
    h = packed.hex()
    return [h[i : i + 32] for i in range(0, len(h), 32)]


def pack_tokens(lists: Sequence[NDArray[np.uint64]]) -> tuple[bytes, bytes]:
    """``<u4`` per-record counts and the ``<u8`` tokens end to end (see :func:`unpack_tokens`)."""
    flat, offsets = flat_tokens(lists)
    return np.diff(offsets).astype("<u4").tobytes(), flat.astype("<u8", copy=False).tobytes()


def unpack_tokens(counts: bytes, tokens: bytes) -> list[NDArray[np.uint64]]:
    """Split concatenated ``<u8`` tokens by ``<u4`` per-record counts."""
    c = np.frombuffer(counts, dtype="<u4").astype(np.int64)
    flat = np.frombuffer(tokens, dtype="<u8").astype(np.uint64)
    if int(c.sum()) != len(flat):
        raise EncodingError("token counts do not add up to the tokens", field="token_counts")
    return list(np.split(flat, np.cumsum(c)[:-1])) if len(c) else []


@dataclass(frozen=True)
class PackedColumns:
    """A batch's record columns as the bytes that are stored and signed."""

    refs: bytes
    filters: bytes
    token_counts: bytes
    tokens: bytes


def pack_record_columns(batch: EncodedBatch) -> tuple[bytes, bytes, bytes]:
    """A batch's filters, ``<u4`` token counts and ``<u8`` tokens as bytes (no validation)."""
    filters = np.ascontiguousarray(batch.filters, dtype="<u8")
    return filters.tobytes(), *pack_tokens(batch.blocking_tokens)


def pack_columns(batch: EncodedBatch) -> PackedColumns:
    """Validate a batch's references and pack its columns (little-endian)."""
    return PackedColumns(check_refs(batch.record_refs), *pack_record_columns(batch))


@dataclass(frozen=True)
class AppendResult:
    """Outcome of an append: the event's store version and whether it was applied now."""

    version: int
    applied: bool
    count: int


@dataclass(frozen=True)
class BatchEvent:
    """A batch of one force's encodings, applied at ``version``."""

    version: int
    created_at: str
    batch: EncodedBatch
    signature: bytes


@dataclass(frozen=True)
class RetractEvent:
    """Records of ``force`` removed at ``version`` (MoPI disposal)."""

    version: int
    created_at: str
    retraction_id: str
    force: str
    record_refs: list[str]


StoreEvent = BatchEvent | RetractEvent


@dataclass
class StoreState:
    """The fold of the events up to ``version``: every live record, in submission order."""

    version: int
    filter_bits: int
    forces: list[str] = field(default_factory=list)
    record_refs: list[str] = field(default_factory=list)
    filters: NDArray[np.uint64] = field(default_factory=lambda: np.zeros((0, 0), np.uint64))
    blocking_tokens: list[NDArray[np.uint64]] = field(default_factory=list)
    record_versions: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.record_refs)


@dataclass(frozen=True)
class WatchRecord:
    """A registered watch: who, why, and the encoded subjects to look for."""

    watch_id: str
    owner: str
    force: str
    purpose: str
    case_reference: str
    include_own_force: bool
    epoch: int
    schema_fingerprint: str
    filter_bits: int
    subject_ids: list[str]
    filters: NDArray[np.uint64]
    blocking_tokens: list[NDArray[np.uint64]]
    created_version: int
    scanned_version: int
    created_at: str


@dataclass(frozen=True)
class AlertRecord:
    """One persisted alert of a watch; ``seq`` counts from 1 within the watch."""

    watch_id: str
    seq: int
    subject_id: str
    force: str
    record_ref: str
    score: float
    band: str
    agreement: tuple[int, ...]
    store_version: int
    created_ms: int
