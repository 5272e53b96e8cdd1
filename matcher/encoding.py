"""Force-side encoding: normalised records become keyed, hardened Bloom-filter vectors.

Each field of the schema owns a word-aligned segment of the record vector. A field's
value is split into tokens (q-grams, date parts, postcode parts ...), and every token sets
``k * weight`` positions chosen by a keyed PRF (BLAKE2b keyed with a per-field key derived
by HKDF from the linkage secret): *random hashing*, with independent positions per token,
not double hashing. Fields sharing a ``key_domain`` (forename, surname, other names) share a
key, so a name lands on the same positions in each of their segments and transposed names
can be recognised.

Hardening runs after hashing as a separate stage (:func:`harden`). The default is keyed
randomized response: each bit is flipped with a small probability drawn from a keyed,
per-record stream, so equal values in different records give different segments.

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
import hmac
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jellyfish
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from matcher import normalise as nz
from matcher.batch import EncodedBatch, new_record_refs
from matcher.errors import InputError
from matcher.keys import LinkageSecret
from matcher.schema import FieldSpec, LinkageSchema

__all__ = [
    "EncodeResult",
    "Encoder",
    "FieldIssue",
    "NormalisedRecord",
    "encode_frame",
    "harden",
    "normalise_frame",
]

Token = tuple[str, int]  # (token text, weight: multiples of the field's k)
_CHUNK = 4096
_CACHE_LIMIT = 1_000_000


@dataclass(frozen=True)
class FieldIssue:
    """A value that could not be used: its row (0-based data row) and column, never the value."""

    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column!r}: {self.reason}"


@dataclass(frozen=True)
class NormalisedRecord:
    """One record after normalisation; every field may be missing."""

    forename: str | None = None
    surname: str | None = None
    other_names: tuple[str, ...] = ()
    date_of_birth: tuple[int, int, int] | None = None
    sex: str | None = None
    postcode: nz.Postcode | None = None
    address: str | None = None
    town: str | None = None


@dataclass
class EncodeResult:
    """An encoded batch, the force-private map of references to local ids, and issues."""

    batch: EncodedBatch
    refs: pd.DataFrame
    issues: list[FieldIssue] = field(default_factory=list)


# --------------------------------------------------------------------------- normalising
def _cell(row: dict[str, Any], col: str) -> Any:
    return row.get(col)


def normalise_frame(
    df: pd.DataFrame, schema: LinkageSchema
) -> tuple[list[NormalisedRecord], list[FieldIssue]]:
    """Normalise every row of ``df`` for ``schema``; report unusable values by row and column."""
    missing = [c for c in schema.required_columns if c not in df.columns]
    if missing:
        raise InputError(
            f"required column(s) missing: {', '.join(missing)}", field=",".join(missing)
        )
    cols = [c for c in schema.input_columns if c in df.columns]
    issues: list[FieldIssue] = []
    out: list[NormalisedRecord] = []
    kinds = {c: f.kind for f in schema.fields for c in f.columns}
    records = df[cols].to_dict("records") if cols else [{} for _ in range(len(df))]
    for rowno, row in enumerate(records):
        vals: dict[str, Any] = {}
        for col in cols:
            raw = row[col]
            kind = kinds[col]
            try:
                vals[col] = _normalise_value(kind, col, raw)
            except nz.UnparseableValue as exc:
                issues.append(FieldIssue(rowno, col, str(exc) or "unparseable value"))
                vals[col] = None
        others: list[str] = []
        for col in ("middle_names", "aliases"):
            v = vals.get(col)
            if v:
                others.extend(v)
        out.append(
            NormalisedRecord(
                forename=vals.get("forename"),
                surname=vals.get("surname"),
                other_names=tuple(others),
                date_of_birth=vals.get("date_of_birth"),
                sex=vals.get("sex"),
                postcode=vals.get("postcode"),
                address=vals.get("address"),
                town=vals.get("town"),
            )
        )
    return out, issues


def _normalise_value(kind: str, col: str, raw: Any) -> Any:
    if kind in ("name", "nickname"):
        return nz.normalise_name(raw)
    if kind == "names":
        return nz.split_names(raw)
    if kind == "date":
        return nz.parse_date(raw)
    if kind == "sex":
        return nz.normalise_sex(raw)
    if kind == "postcode":
        return nz.normalise_postcode(raw)
    if kind == "town":
        return nz.normalise_town(raw)
    return nz.normalise_address(raw)


# --------------------------------------------------------------------------- tokenising
def _qgrams(text: str, q: int) -> list[str]:
    s = "_" + text.replace(" ", "_") + "_"
    if len(s) < q:
        return [s]
    return [s[i : i + q] for i in range(len(s) - q + 1)]


def _name_tokens(name: str | None, q: int) -> list[Token]:
    if not name:
        return []
    return [(g, 1) for g in _qgrams(name, q)]


def _tokens_for(spec: FieldSpec, rec: NormalisedRecord) -> list[Token]:
    """Tokens of one field of one record, each with its weight."""
    kind = spec.kind
    if kind == "name":
        return _name_tokens(getattr(rec, spec.name, None), spec.q)
    if kind == "nickname":
        if not rec.forename:
            return []
        first = nz.name_parts(rec.forename)[0]
        root = nz.canonical_forename(first)
        return [(g, 1) for g in _qgrams(root, spec.q)] + [("R:" + root, 2)]
    if kind == "names":
        toks: list[Token] = []
        for n in rec.other_names:
            toks.extend(_name_tokens(n, spec.q))
        return toks
    if kind == "date":
        d = rec.date_of_birth
        if d is None:
            return []
        y, m, dd = d
        lo, hi = sorted((m, dd))
        return [
            (f"F:{y:04d}{m:02d}{dd:02d}", 2),
            (f"Y:{y:04d}", 2),
            (f"M:{m:02d}", 1),
            (f"D:{dd:02d}", 1),
            (f"S:{lo:02d}{hi:02d}", 2),
            (f"MD:{m:02d}{dd:02d}", 2),
        ]
    if kind == "sex":
        return [("X:" + rec.sex, 1)] if rec.sex else []
    if kind == "postcode":
        pc = rec.postcode
        if pc is None:
            return []
        toks = [(g, 1) for g in _qgrams(pc.full, spec.q)] + [("F:" + pc.full, 2)]
        if pc.outward:
            toks.append(("O:" + pc.outward, 2))
        if pc.sector:
            toks.append(("S:" + pc.sector, 1))
        return toks
    if kind == "address":
        a = rec.address
        if not a:
            return []
        toks = [(g, 1) for g in _qgrams(a, spec.q)]
        toks.extend(("N:" + w, 2) for w in a.split() if w.isdigit())
        return toks
    # town
    t = rec.town
    return [(g, 1) for g in _qgrams(t, spec.q)] if t else []


def _field_value(spec: FieldSpec, rec: NormalisedRecord) -> object:
    """The normalised value a field's tokens are made from (the cache key)."""
    kind = spec.kind
    if kind in ("name",):
        return getattr(rec, spec.name, None)
    if kind == "nickname":
        return rec.forename
    if kind == "names":
        return rec.other_names
    if kind == "date":
        return rec.date_of_birth
    if kind == "postcode":
        return rec.postcode.full if rec.postcode else None
    return getattr(rec, kind, None)


def _salt(spec: FieldSpec, rec: NormalisedRecord, salt_field: str | None) -> str:
    if salt_field is None or spec.domain != "name":
        return ""
    if salt_field == "year_of_birth":
        return str(rec.date_of_birth[0]) if rec.date_of_birth else "?"
    return rec.sex or "?"


def _block_tokens(rec: NormalisedRecord) -> list[str]:
    """Blocking keys (hashed with a keyed PRF before they leave the force)."""
    out: list[str] = []
    yob = str(rec.date_of_birth[0]) if rec.date_of_birth else ""
    codes: list[str] = []
    for n in (rec.forename, rec.surname):
        if n:
            parts = nz.name_parts(n)
            codes.append(jellyfish.soundex("".join(parts)))
    if rec.forename:
        root = nz.canonical_forename(nz.name_parts(rec.forename)[0])
        codes.append(jellyfish.soundex(root))
    for c in sorted(set(codes)):
        if yob:
            out.append(f"NY:{c}:{yob}")
    if len(codes) >= 2:
        a, b = sorted(codes[:2])
        out.append(f"NN:{a}:{b}")
    if rec.date_of_birth:
        y, m, d = rec.date_of_birth
        lo, hi = sorted((m, d))
        out.append(f"DS:{y}:{lo}:{hi}")
    if rec.postcode is not None:
        out.append(f"P:{rec.postcode.full}")
    for n in rec.other_names:
        if yob:
            out.append(f"NY:{jellyfish.soundex(n.replace(' ', ''))}:{yob}")
    return out


# --------------------------------------------------------------------------- encoder
class Encoder:
    """Encodes normalised records under one schema and linkage secret.

    Keys are derived once; token positions are cached (names, q-grams and date parts repeat
    heavily), which is what makes encoding fast.
    """

    def __init__(self, schema: LinkageSchema, secret: LinkageSecret) -> None:
        self.schema = schema
        self.secret = secret
        self._keys = {f.domain: secret.derive("field", f.domain) for f in schema.fields}
        self._block_key = secret.derive("block", "tokens")
        self._rr_key = secret.derive("harden", "rr")
        self._tcache: dict[tuple[str, str, str, int], tuple[int, ...]] = {}
        self._fcache: dict[tuple[str, str, object], tuple[int, ...]] = {}
        self._bcache: dict[str, int] = {}
        self._bases = {s.name: s.word_offset * 64 for s in schema.segments}

    def _token_positions(
        self, spec: FieldSpec, salt: str, token: str, weight: int
    ) -> tuple[int, ...]:
        """Absolute bit positions of one token: ``k * weight`` draws from a keyed PRF."""
        key = (spec.name, salt, token, weight)
        pos = self._tcache.get(key)
        if pos is None:
            count = spec.k * weight
            msg = (salt + "\x1f" + token).encode()
            buf = b""
            ctr = 0
            while len(buf) < 4 * count:
                buf += hashlib.blake2b(
                    msg + ctr.to_bytes(2, "little"), key=self._keys[spec.domain], digest_size=64
                ).digest()
                ctr += 1
            base = self._bases[spec.name]
            pos = tuple(
                base + int.from_bytes(buf[4 * c : 4 * c + 4], "little") % spec.bits
                for c in range(count)
            )
            if len(self._tcache) < _CACHE_LIMIT:
                self._tcache[key] = pos
        return pos

    def _field_positions(
        self, spec: FieldSpec, rec: NormalisedRecord, salt: str
    ) -> tuple[int, ...]:
        value = _field_value(spec, rec)
        if value is None or value == ():
            return ()
        key = (spec.name, salt, value)
        hit = self._fcache.get(key)
        if hit is None:
            out: list[int] = []
            for tok, w in _tokens_for(spec, rec):
                out.extend(self._token_positions(spec, salt, tok, w))
            hit = tuple(out)
            if spec.kind != "address" and len(self._fcache) < _CACHE_LIMIT:
                self._fcache[key] = hit
        return hit

    def record_positions(self, rec: NormalisedRecord) -> list[int]:
        """Bit positions (in the whole vector) that ``rec`` sets before hardening."""
        out: list[int] = []
        salt_field = self.schema.hardening.salt_field
        for spec in self.schema.fields:
            salt = _salt(spec, rec, salt_field)
            out.extend(self._field_positions(spec, rec, salt))
        return out

    def record_digest(self, rec: NormalisedRecord) -> bytes:
        """A keyed digest of the record's content: the seed of its hardening stream."""
        text = repr(
            (
                rec.forename,
                rec.surname,
                rec.other_names,
                rec.date_of_birth,
                rec.sex,
                rec.postcode.full if rec.postcode else None,
                rec.address,
                rec.town,
            )
        )
        return hmac.new(self._rr_key, text.encode(), hashlib.sha256).digest()

    def blocking_tokens(self, rec: NormalisedRecord) -> NDArray[np.uint64]:
        vals = []
        for t in sorted(set(_block_tokens(rec))):
            v = self._bcache.get(t)
            if v is None:
                digest = hashlib.blake2b(t.encode(), key=self._block_key, digest_size=8).digest()
                v = int.from_bytes(digest, "little")
                if len(self._bcache) < _CACHE_LIMIT:
                    self._bcache[t] = v
            vals.append(v)
        return np.array(vals, dtype=np.uint64)

    def encode_records(
        self, records: list[NormalisedRecord], *, progress: Callable[[int], None] | None = None
    ) -> NDArray[np.uint64]:
        """Pack and harden ``records`` into an ``(n, words)`` uint64 array."""
        n = len(records)
        words = self.schema.total_words
        out = np.zeros((n, words), dtype=np.uint64)
        nbits = self.schema.total_bits
        for start in range(0, n, _CHUNK):
            chunk = records[start : start + _CHUNK]
            bits = np.zeros((len(chunk), nbits), dtype=np.bool_)
            digests: list[bytes] = []
            cols: list[int] = []
            lens: list[int] = []
            for rec in chunk:
                pos = self.record_positions(rec)
                cols.extend(pos)
                lens.append(len(pos))
                digests.append(self.record_digest(rec))
            rows = np.repeat(np.arange(len(chunk)), lens)
            bits[rows, np.array(cols, dtype=np.int64)] = True
            bits = harden(
                bits, digests, self.schema.hardening.mode, self.schema.hardening.flip_probability
            )
            packed = np.packbits(bits, axis=1, bitorder="little")
            out[start : start + len(chunk)] = packed.view("<u8").astype(np.uint64)
            if progress is not None:
                progress(len(chunk))
        return out


def harden(
    bits: NDArray[np.bool_], digests: list[bytes], mode: str, flip_probability: float
) -> NDArray[np.bool_]:
    """Apply the hardening stage to unpacked bit rows; ``digests`` seed each row's stream.

    ``rr``: keyed randomized response. Each bit flips when a byte of the row's SHAKE-256
    stream (seeded by the keyed record digest) falls below ``flip_probability * 256``: the
    same record always gives the same encoding, but equal field values in different records
    no longer give equal segments.
    """
    if mode == "none" or flip_probability <= 0.0 or len(digests) == 0:
        return bits
    nbits = bits.shape[1]
    stream = b"".join(hashlib.shake_256(d).digest(nbits) for d in digests)
    noise = np.frombuffer(stream, dtype=np.uint8).reshape(len(digests), nbits)
    flips: NDArray[np.bool_] = noise < round(flip_probability * 256)
    return np.logical_xor(bits, flips)


def _ids(df: pd.DataFrame, id_column: str | None) -> list[str]:
    if id_column is None:
        return [str(i) for i in range(len(df))]
    if id_column not in df.columns:
        raise InputError(f"id column {id_column!r} is missing", field=id_column)
    ids = df[id_column]
    if ids.isna().any():
        raise InputError(f"id column {id_column!r} has empty values", field=id_column)
    sids = ids.astype(str)
    if sids.duplicated().any():
        raise InputError(f"id column {id_column!r} has duplicate values", field=id_column)
    return list(sids)


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
    frame = df[cols]
    n_workers = _workers(len(frame), workers)
    bar = _progress_bar(len(frame), "encoding", enabled=progress)
    parts: list[tuple[NDArray[np.uint64], list[NDArray[np.uint64]], list[FieldIssue]]] = []
    try:
        if n_workers <= 1:
            for start in range(0, len(frame), _SLICE):
                parts.append(
                    _encode_slice(frame.iloc[start : start + _SLICE], schema, secret, start)
                )
                if bar:
                    bar.update(min(_SLICE, len(frame) - start))
        else:
            import concurrent.futures as cf
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with cf.ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
                futs = [
                    pool.submit(
                        _encode_slice, frame.iloc[start : start + _SLICE], schema, secret, start
                    )
                    for start in range(0, len(frame), _SLICE)
                ]
                for fut in futs:
                    parts.append(fut.result())
                    if bar:
                        bar.update(len(parts[-1][1]))
    finally:
        if bar:
            bar.close()
    filters = np.concatenate([p[0] for p in parts])
    tokens = [t for p in parts for t in p[1]]
    issues = [i for p in parts for i in p[2]]
    refs = new_record_refs(len(tokens))
    batch = EncodedBatch(
        force=force,
        epoch=secret.epoch,
        schema_fingerprint=schema.fingerprint,
        filter_bits=schema.total_bits,
        record_refs=refs,
        filters=filters,
        blocking_tokens=tokens,
    )
    return EncodeResult(batch, pd.DataFrame({"record_ref": refs, "id": ids}), issues)


_SLICE = 20_000
_PARALLEL_MIN = 200_000


def _workers(n: int, workers: int | None) -> int:
    if workers is not None:
        return max(1, workers)
    if n < _PARALLEL_MIN:
        return 1
    return max(1, min(os.cpu_count() or 1, n // _SLICE))


def _encode_slice(
    frame: pd.DataFrame, schema: LinkageSchema, secret: LinkageSecret, offset: int
) -> tuple[NDArray[np.uint64], list[NDArray[np.uint64]], list[FieldIssue]]:
    """Normalise and encode one slice of rows (runs in a worker process for big inputs)."""
    records, issues = normalise_frame(frame, schema)
    enc = _encoder(schema, secret)
    filters = enc.encode_records(records)
    tokens = [enc.blocking_tokens(r) for r in records]
    shifted = [FieldIssue(i.row + offset, i.column, i.reason) for i in issues]
    return filters, tokens, shifted


_ENCODERS: dict[tuple[str, int, bytes], Encoder] = {}


def _encoder(schema: LinkageSchema, secret: LinkageSecret) -> Encoder:
    """One encoder (and its caches) per schema and secret in a process."""
    key = (schema.fingerprint, secret.epoch, hashlib.sha256(secret.secret).digest())
    enc = _ENCODERS.get(key)
    if enc is None:
        _ENCODERS.clear()
        enc = _ENCODERS[key] = Encoder(schema, secret)
    return enc


class _Bar:
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def _progress_bar(total: int, desc: str, *, enabled: bool) -> _Bar | None:
    if not enabled or total < 20_000:
        return None
    from tqdm import tqdm

    return _Bar(tqdm(total=total, desc=desc, unit="rec", leave=False))


def iter_chunks(seq: Iterable[Any], size: int) -> Iterable[list[Any]]:
    buf: list[Any] = []
    for x in seq:
        buf.append(x)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf
