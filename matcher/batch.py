"""Encoded batches: what a force hands to the matching service.

An :class:`EncodedBatch` holds only opaque random record references, packed bit vectors
(``uint64`` words), keyed blocking tokens, the key epoch and the schema fingerprint. It is
written to and read from Parquet; the file carries the same facts in its metadata.

Parquet columns: ``record_ref`` (string), ``filter`` (fixed-size binary, ``filter_bits/8``
bytes, little-endian words), ``blocking_tokens`` (list of uint64), ``epoch`` (int32),
``schema_fingerprint`` (string).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from matcher.errors import EncodingError, InputError

__all__ = [
    "BATCH_FORMAT",
    "EncodedBatch",
    "TokenLists",
    "flat_tokens",
    "new_batch_id",
    "new_record_refs",
]

BATCH_FORMAT = "matcher-encoded-batch/1"


def new_record_refs(n: int) -> list[str]:
    """``n`` opaque random record references (128 random bits each, hex)."""
    return [secrets.token_hex(16) for _ in range(n)]


def new_batch_id() -> str:
    return secrets.token_hex(16)


U64 = NDArray[np.uint64]


class TokenLists(Sequence[U64]):
    """Each record's blocking tokens, held end to end: record ``i``'s are
    ``flat[offsets[i]:offsets[i + 1]]``. Reads as a list of arrays does, without an
    array object per record until one is asked for.

    >>> t = TokenLists(np.array([7, 8, 9], dtype=np.uint64), np.array([0, 2, 2, 3]))
    >>> len(t), t[0].tolist(), t[1].tolist(), [x.tolist() for x in t[1:]]
    (3, [7, 8], [], [[], [9]])
    """

    __slots__ = ("flat", "offsets")

    def __init__(self, flat: NDArray[np.uint64], offsets: NDArray[np.int64]) -> None:
        self.flat: U64 = np.ascontiguousarray(flat, dtype=np.uint64)
        self.offsets: NDArray[np.int64] = np.ascontiguousarray(offsets, dtype=np.int64)
        if len(self.offsets) == 0 or self.offsets[0] != 0 or self.offsets[-1] != len(self.flat):
            raise EncodingError("token offsets must run from 0 to the tokens' end", field="tokens")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, i: int) -> U64: ...
    @overload
    def __getitem__(self, i: slice) -> TokenLists: ...
    def __getitem__(self, i: int | slice) -> U64 | TokenLists:
        if isinstance(i, slice):
            rows = range(len(self))[i]
            if rows.step != 1:
                return TokenLists.of([self[r] for r in rows])
            a, b = self.offsets[rows.start], self.offsets[max(rows.start, rows.stop)]
            return TokenLists(self.flat[a:b], self.offsets[rows.start : rows.stop + 1] - a)
        n = len(self)
        if not -n <= i < n:
            raise IndexError("record index out of range")
        i %= n
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    @classmethod
    def concat(cls, parts: Sequence[TokenLists]) -> TokenLists:
        """The records of ``parts``, one after another."""
        flat = np.concatenate([p.flat for p in parts]) if parts else np.zeros(0, np.uint64)
        offsets = [np.zeros(1, dtype=np.int64)]
        base = 0
        for p in parts:
            offsets.append(p.offsets[1:] + base)
            base += len(p.flat)
        return cls(flat, np.concatenate(offsets))

    @classmethod
    def of(cls, lists: Sequence[NDArray[np.uint64]]) -> TokenLists:
        """The token lists ``lists`` (any sequence of arrays), end to end."""
        return cls(*flat_tokens(lists))


def flat_tokens(lists: Sequence[NDArray[np.uint64]]) -> tuple[U64, NDArray[np.int64]]:
    """Token lists end to end, and where each starts (one more: the end)."""
    if isinstance(lists, TokenLists):
        return lists.flat, lists.offsets
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in lists])
    flat = np.concatenate(lists).astype(np.uint64) if len(lists) else np.zeros(0, np.uint64)
    return flat, offsets


@dataclass(frozen=True)
class EncodedBatch:
    """Encodings of one force's records.

    ``filters`` has shape ``(n, filter_bits // 64)``; ``blocking_tokens[i]`` are the keyed
    blocking tokens of record ``i`` (a list of arrays, or a :class:`TokenLists`).
    """

    force: str
    epoch: int
    schema_fingerprint: str
    filter_bits: int
    record_refs: list[str]
    filters: NDArray[np.uint64]
    blocking_tokens: Sequence[NDArray[np.uint64]]
    batch_id: str = field(default_factory=new_batch_id)

    def __post_init__(self) -> None:
        n = len(self.record_refs)
        if self.filters.dtype != np.uint64 or self.filters.ndim != 2:
            raise EncodingError("filters must be a 2-D uint64 array", field="filter")
        if self.filters.shape != (n, self.filter_bits // 64):
            raise EncodingError(
                f"filters must have shape ({n}, {self.filter_bits // 64})", field="filter"
            )
        if len(self.blocking_tokens) != n:
            raise EncodingError(
                "one blocking token list per record is needed", field="blocking_tokens"
            )

    def __len__(self) -> int:
        return len(self.record_refs)

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write atomically: a failed write leaves nothing behind."""
        n = len(self)
        nbytes = self.filter_bits // 8
        filt = np.ascontiguousarray(self.filters.astype("<u8", copy=False)).view(np.uint8)
        filter_arr = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(nbytes), n, [None, pa.py_buffer(filt.tobytes())]
        )
        flat, offsets = flat_tokens(self.blocking_tokens)
        tokens = pa.ListArray.from_arrays(
            pa.array(offsets.astype(np.int32)), pa.array(flat, type=pa.uint64())
        )
        table = pa.table(
            {
                "record_ref": pa.array(self.record_refs, type=pa.string()),
                "filter": filter_arr,
                "blocking_tokens": tokens,
                "epoch": pa.array(np.full(n, self.epoch, dtype=np.int32)),
                "schema_fingerprint": pa.array([self.schema_fingerprint] * n).dictionary_encode(),
            }
        ).replace_schema_metadata(
            {
                "format": BATCH_FORMAT,
                "force": self.force,
                "epoch": str(self.epoch),
                "schema_fingerprint": self.schema_fingerprint,
                "filter_bits": str(self.filter_bits),
                "batch_id": self.batch_id,
            }
        )
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike[str]) -> EncodedBatch:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(
                f"{path}: not a readable Parquet file ({type(exc).__name__})"
            ) from None
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        if meta.get("format") != BATCH_FORMAT:
            raise EncodingError(f"{path}: not a matcher encoded batch", field="format")
        for col in ("record_ref", "filter", "blocking_tokens"):
            if col not in table.column_names:
                raise EncodingError(f"{path}: column {col!r} is missing", field=col)
        try:
            filter_bits = int(meta["filter_bits"])
            epoch = int(meta["epoch"])
        except (KeyError, ValueError):
            raise EncodingError(f"{path}: batch metadata is incomplete", field="metadata") from None
        n = table.num_rows
        farr = table.column("filter").combine_chunks()
        if farr.type != pa.binary(filter_bits // 8):
            raise EncodingError(
                f"{path}: filter column must hold {filter_bits // 8}-byte values", field="filter"
            )
        buf = farr.buffers()[1]
        raw = np.frombuffer(
            buf, dtype="<u8", count=n * (filter_bits // 64), offset=farr.offset * (filter_bits // 8)
        )
        filters = raw.reshape(n, filter_bits // 64).astype(np.uint64)
        tok = table.column("blocking_tokens").combine_chunks()
        offs = tok.offsets.to_numpy().astype(np.int64)
        vals = tok.values.to_numpy(zero_copy_only=False).astype(np.uint64)
        blocking = TokenLists(vals[offs[0] : offs[-1]], offs - offs[0])
        return cls(
            force=meta.get("force", ""),
            epoch=epoch,
            schema_fingerprint=meta.get("schema_fingerprint", ""),
            filter_bits=filter_bits,
            record_refs=table.column("record_ref").to_pylist(),
            filters=filters,
            blocking_tokens=blocking,
            batch_id=meta.get("batch_id", new_batch_id()),
        )
