"""Force-side encoding: normalised records become keyed, hardened Bloom-filter vectors.

Each field of the schema owns a word-aligned segment of the record vector. A field's
value is split into tokens (q-grams, date parts, postcode parts ...), and every token sets
``k * weight`` positions chosen by a keyed PRF (BLAKE2b keyed with a per-field key derived
by HKDF from the linkage secret): *random hashing*, with independent positions per token,
not double hashing. Fields sharing a ``key_domain`` (forename, surname, other names) share a
key, so a name lands on the same positions in each of their segments and transposed names
can be recognised.

The work is done per *distinct value* (see :mod:`matcher._fastencode`): each distinct raw
value is normalised once, each distinct normalised value of a field is hashed once into a
table row, and the filter rows are filled from the tables by fancy-indexing. Hardening runs
after hashing as a separate stage (:func:`harden`). The default is keyed randomized
response: each bit flips with a small probability, from a per-record stream seeded by a
keyed PRF of the record's content, so equal values in different records give different
segments while the same record always gives the same encoding.

>>> import pandas as pd
>>> from matcher.keys import LinkageSecret
>>> from matcher.schema import default_schema
>>> df = pd.DataFrame({"id": ["a"], "forename": ["Bill"], "surname": ["Smith"],
...                    "date_of_birth": ["12/03/1985"]})
>>> res = encode_frame(df, default_schema(), LinkageSecret(1, bytes(32)), "F01")
>>> res.batch.filters.shape
(1, 16)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from matcher import _fastencode as fe
from matcher.batch import EncodedBatch, TokenLists
from matcher.encoding import _dates as dt
from matcher.encoding import _fastblock as fb
from matcher.encoding._columns import (
    OTHER_NAME_COLUMNS,
    FieldIssue,
    NormalisedRecord,
    _Column,
    _combined,
    _field_column,
    _normalise_columns,
    normalise_frame,
)
from matcher.encoding._encoder import Encoder, forename_roots, harden
from matcher.errors import InputError
from matcher.keys import LinkageSecret
from matcher.schema import LinkageSchema

__all__ = [
    "EncodeResult",
    "Encoder",
    "FieldIssue",
    "NormalisedRecord",
    "clear_caches",
    "encode_frame",
    "harden",
    "normalise_frame",
]

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]


@dataclass
class EncodeResult:
    """An encoded batch, the force-private map of references to local ids, and issues."""

    batch: EncodedBatch
    refs: pd.DataFrame
    issues: list[FieldIssue] = field(default_factory=list)


# --------------------------------------------------------------------------- frames
def _salt_codes(schema: LinkageSchema, cols: dict[str, _Column], n: int) -> tuple[I64, list[str]]:
    """Per-row index into the salt texts ("?" last, for a missing salt value)."""
    sf = schema.hardening.salt_field
    col = cols.get("date_of_birth" if sf == "year_of_birth" else "sex")
    if col is None:
        return np.zeros(n, dtype=np.int64), ["?"]
    texts = [str(v[0]) if sf == "year_of_birth" else str(v) for v in col.values]
    seen: dict[str, int] = {}
    ids = np.array([seen.setdefault(t, len(seen)) for t in texts] + [-1], dtype=np.int64)
    salts = [*seen, "?"]
    row = ids[col.codes]
    row[row < 0] = len(salts) - 1
    return row, salts


def _salted(
    codes: I64, values: Sequence[Any], salt_row: I64, salts: list[str]
) -> tuple[I64, list[Any], list[str]]:
    """Codes and values of (value, salt) pairs: name-domain fields under a salt option."""
    present = codes >= 0
    pair = codes[present] * len(salts) + salt_row[present]
    uniq, inv = np.unique(pair, return_inverse=True)
    out = np.full(len(codes), -1, dtype=np.int64)
    out[present] = inv.reshape(-1)
    u = uniq.tolist()
    return out, [values[p // len(salts)] for p in u], [salts[p % len(salts)] for p in u]


def _value_ids(col: _Column | None, n: int) -> U64:
    if col is None:
        return np.zeros(n, dtype=np.uint64)
    if col.ids is None:  # (the kernels' text and date columns come with theirs)
        col.ids = np.append(fb.value_ids(col.values), np.uint64(0))
    out: U64 = col.ids[col.codes]
    return out


def _record_seeds(enc: Encoder, schema: LinkageSchema, cols: dict[str, _Column], n: int) -> U64:
    """Each record's keyed noise seed: SipHash of its value ids, one word per column."""
    ids = np.stack([_value_ids(cols.get(c), n) for c in schema.input_columns])
    return fe.siphash_columns(enc.rr_key, ids)


def _per_value(col: _Column | None, n: int, fn: Callable[[_Column], U64]) -> U64:
    """A uint64 per row, ``fn`` of the column (one per distinct value; 0 where missing)."""
    if col is None:
        return np.zeros(n, dtype=np.uint64)
    table = np.append(fn(col), np.uint64(0))
    out: U64 = table[col.codes]
    return out


def _name_codes(col: _Column) -> U64:
    return fb.name_codes(col.values, col.blob)


def _root_codes(col: _Column) -> U64:
    return fb.root_codes(forename_roots(col.values))


def _blocking(
    enc: Encoder, cols: dict[str, _Column], n: int, memo: dict[Any, Any] | None = None
) -> TokenLists:
    """Keyed blocking tokens per record (see :func:`matcher._fastencode.block_token_kernel`).

    Tokens: soundex of forename, surname and forename root (and of each other name) with
    the year of birth; the unordered pair of the first two name codes; year with the
    sorted day and month; the postcode. Records share a token exactly when they share
    those components.
    """
    dob = cols.get("date_of_birth")
    ocodes, ovalues = _combined(cols, OTHER_NAME_COLUMNS, n, memo)
    off = np.zeros(len(ovalues) + 1, dtype=np.int64)
    off[1:] = np.cumsum([len(v) for v in ovalues])
    yob = np.zeros(n, dtype=np.uint64)
    dsk = np.zeros(n, dtype=np.uint64)
    if dob is not None and dob.values:
        ymd = dt.ymd_of(dob.values).astype(np.uint64)
        lo, hi = np.minimum(ymd[:, 1], ymd[:, 2]), np.maximum(ymd[:, 1], ymd[:, 2])
        present = dob.codes >= 0
        yob[present] = ymd[dob.codes[present], 0]
        ds = ymd[:, 0] * np.uint64(10_000) + lo * np.uint64(100) + hi
        dsk[present] = ds[dob.codes[present]]
    other = fb.name_codes([x for v in ovalues for x in v])
    parts: dict[str, NDArray[Any]] = {
        "yob": yob,
        "dsk": dsk,
        "fn": _per_value(cols.get("forename"), n, _name_codes),
        "root": _per_value(cols.get("forename"), n, _root_codes),
        "sn": _per_value(cols.get("surname"), n, _name_codes),
        "pc": _value_ids(cols.get("postcode"), n),
        "oth": ocodes.astype(np.int64),
        "oth_off": off,
        "oth_codes": other,
    }
    types = np.arange(1, 5, dtype=np.uint64)  # NY, NN, DS, P
    return TokenLists(*fe.block_token_kernel(enc.block_key, types, parts))


def _encode_slice(
    frame: pd.DataFrame, schema: LinkageSchema, secret: LinkageSecret, offset: int
) -> tuple[U64, TokenLists, list[FieldIssue]]:
    """Normalise and encode one slice of rows (runs in a worker process for big inputs)."""
    n = len(frame)
    cols, issues = _normalise_columns(frame, schema, offset)
    enc = _encoder(schema, secret)
    hard = schema.hardening
    filters = np.zeros((n, schema.total_words), dtype=np.uint64)
    memo: dict[Any, Any] = {}
    salt_row, salts = (
        _salt_codes(schema, cols, n) if hard.salt_field else (np.zeros(n, np.int64), [""])
    )
    for spec, seg in zip(schema.fields, schema.segments, strict=True):
        codes, values = _field_column(spec, cols, n, memo)
        col = cols.get(spec.columns[0])
        blob = col.blob if col is not None and len(spec.columns) == 1 else None
        if hard.salt_field and spec.domain == "name":
            codes, values, vsalts = _salted(codes, values, salt_row, salts)
            blob = None  # the values are (value, salt) pairs now
        else:
            vsalts = [""] * len(values)
        table = enc.field_table(spec, values, vsalts, blob=blob)
        fe.fill_segment(filters, table, codes, seg.word_offset)
    if hard.mode != "none" and hard.flip_probability > 0.0:
        seeds = _record_seeds(enc, schema, cols, n)
        filters = harden(filters, seeds, hard.mode, hard.flip_probability, copy=False)
    return filters, _blocking(enc, cols, n, memo), issues


def _record_refs(n: int) -> list[str]:
    """``n`` opaque random references, 128 random bits each in hex (as ``new_record_refs``)."""
    if n <= 0:
        return []
    return os.urandom(16 * n).hex(" ", 16).split(" ")  # a space after every 16 bytes


def _ids(df: pd.DataFrame, id_column: str | None) -> Any:
    """The local ids as text: an object array, or an Arrow-backed array for an
    Arrow-backed column of text (which is checked without converting it)."""
    if id_column is None:
        return np.array([str(i) for i in range(len(df))], dtype=object)
    if id_column not in df.columns:
        raise InputError(f"id column {id_column!r} is missing", field=id_column)
    ids = df[id_column]
    if isinstance(ids.dtype, pd.ArrowDtype) and pa.types.is_string(ids.dtype.pyarrow_dtype):
        arr = pa.chunked_array(pa.array(ids.array))
        if arr.null_count:
            raise InputError(f"id column {id_column!r} has empty values", field=id_column)
        if pc.count_distinct(arr).as_py() != len(arr):
            raise InputError(f"id column {id_column!r} has duplicate values", field=id_column)
        return ids.array.copy()  # not the input's
    raw = ids.to_numpy()
    if raw.dtype == object and pd.api.types.infer_dtype(raw, skipna=False) == "string":
        sids = pd.Series(raw, copy=False)  # all strings: none missing, nothing to convert
    else:
        if ids.isna().any():
            raise InputError(f"id column {id_column!r} has empty values", field=id_column)
        sids = ids.astype(str)
    if sids.duplicated().any():
        raise InputError(f"id column {id_column!r} has duplicate values", field=id_column)
    out: NDArray[np.object_] = np.array(sids.to_numpy(), dtype=object)  # not the input's
    return out


def encode_frame(
    df: pd.DataFrame,
    schema: LinkageSchema,
    secret: LinkageSecret,
    force: str,
    *,
    id_column: str | None = "id",
    progress: bool = False,
    workers: int | None = None,
) -> EncodeResult:
    """Normalise and encode a force's records; nothing raw is in the returned batch.

    ``refs`` (columns ``record_ref, id``) maps the opaque references back to local ids and
    must stay with the force. Large inputs are encoded in ``workers`` processes (default:
    one per core once the input is big enough to repay starting them).
    """
    if not force or not force.replace("-", "").replace("_", "").isalnum():
        raise InputError("force code must be a non-empty alphanumeric code", field="force")
    if len(df) == 0:
        raise InputError("the input has no records", field="rows")
    ids = _ids(df, id_column)
    missing = [c for c in schema.required_columns if c not in df.columns]
    if missing:
        raise InputError(
            f"required column(s) missing: {', '.join(missing)}", field=",".join(missing)
        )
    cols = [c for c in schema.input_columns if c in df.columns]
    n_workers = _workers(len(df), workers)
    # one process reads the columns in place; workers are sent only the columns they need
    frame = df if n_workers <= 1 else df[cols]
    bar = _progress_bar(len(frame), "encoding", enabled=progress)
    parts: list[tuple[U64, TokenLists, list[FieldIssue]]] = []
    starts = range(0, len(frame), _SLICE)
    try:
        if n_workers <= 1:
            for start in starts:
                part = frame if len(frame) <= _SLICE else frame.iloc[start : start + _SLICE]
                parts.append(_encode_slice(part, schema, secret, start))
                if bar:
                    bar.update(len(parts[-1][1]))
        else:
            import concurrent.futures as cf
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with cf.ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
                futs = [
                    pool.submit(
                        _encode_slice, frame.iloc[start : start + _SLICE], schema, secret, start
                    )
                    for start in starts
                ]
                for fut in futs:
                    parts.append(fut.result())
                    if bar:
                        bar.update(len(parts[-1][1]))
    finally:
        if bar:
            bar.close()
    if len(parts) == 1:
        filters, tokens, issues = parts[0]
    else:
        filters = np.concatenate([p[0] for p in parts])
        tokens = TokenLists.concat([p[1] for p in parts])
        issues = [i for p in parts for i in p[2]]
    refs = _record_refs(len(tokens))
    batch = EncodedBatch(
        force=force,
        epoch=secret.epoch,
        schema_fingerprint=schema.fingerprint,
        filter_bits=schema.total_bits,
        record_refs=refs,
        filters=filters,
        blocking_tokens=tokens,
    )
    ref_arr = np.empty(len(refs), dtype=object)
    ref_arr[:] = refs
    frame_refs = pd.DataFrame({"record_ref": ref_arr, "id": ids}, copy=False)
    return EncodeResult(batch, frame_refs, issues)


# Slices bound memory and drive the progress bar; distinct values are found per slice.
_SLICE = 100_000
_PARALLEL_MIN = 400_000


def _workers(n: int, workers: int | None) -> int:
    if workers is not None:
        return max(1, workers)
    if n < _PARALLEL_MIN:
        return 1
    return max(1, min(os.cpu_count() or 1, n // _SLICE))


_ENCODERS: dict[tuple[str, int, bytes], Encoder] = {}


def _encoder(schema: LinkageSchema, secret: LinkageSecret) -> Encoder:
    """One encoder (and its caches) per schema and secret in a process."""
    key = (schema.fingerprint, secret.epoch, hashlib.sha256(secret.secret).digest())
    enc = _ENCODERS.get(key)
    if enc is None:
        _ENCODERS.clear()
        enc = _ENCODERS[key] = Encoder(schema, secret)
    return enc


def clear_caches() -> None:
    """Forget every cached normalised value and token position in this process.

    The caches speed up a long-running encoder that sees the same values batch after
    batch (they are bounded, but can reach a few hundred MB); call this to release them,
    or to measure a first encoding honestly. Tables read once from the package's data
    (the nicknames) are kept.
    """
    from matcher import normalise as nz
    from matcher.encoding import _columns, _encoder

    _ENCODERS.clear()
    _columns._NORMED.clear()
    for module in (nz, _columns, _encoder):
        for name in dir(module):
            fn = getattr(module, name)
            if callable(fn) and hasattr(fn, "cache_clear") and fn is not nz.nickname_table:
                fn.cache_clear()


class _Bar:
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def _progress_bar(total: int, desc: str, *, enabled: bool) -> _Bar | None:
    if not enabled or total < _SLICE:
        return None
    from tqdm import tqdm

    return _Bar(tqdm(total=total, desc=desc, unit="rec", leave=False))
