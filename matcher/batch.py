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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from matcher.errors import EncodingError, InputError

__all__ = ["BATCH_FORMAT", "EncodedBatch", "new_batch_id", "new_record_refs"]

BATCH_FORMAT = "matcher-encoded-batch/1"


def new_record_refs(n: int) -> list[str]:
    """``n`` opaque random record references (128 random bits each, hex)."""
    return [secrets.token_hex(16) for _ in range(n)]


def new_batch_id() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class EncodedBatch:
    """Encodings of one force's records.

    ``filters`` has shape ``(n, filter_bits // 64)``; ``blocking_tokens[i]`` are the keyed
    blocking tokens of record ``i``.
    """

    force: str
    epoch: int
    schema_fingerprint: str
    filter_bits: int
    record_refs: list[str]
    filters: NDArray[np.uint64]
    blocking_tokens: list[NDArray[np.uint64]]
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
        offsets = np.zeros(n + 1, dtype=np.int32)
        if n:
            offsets[1:] = np.cumsum([len(t) for t in self.blocking_tokens])
        flat = (np.concatenate(self.blocking_tokens) if n else np.zeros(0)).astype(np.uint64)
        tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.uint64()))
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
        offs = tok.offsets.to_numpy()
        vals = tok.values.to_numpy(zero_copy_only=False).astype(np.uint64)
        blocking = [vals[offs[i] : offs[i + 1]] for i in range(n)]
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
