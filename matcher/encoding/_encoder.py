"""Keys, token positions and per-field tables for :mod:`matcher.encoding`.

A token's positions are ``k * weight`` draws from BLAKE2b keyed with its field's domain
key (HKDF from the linkage secret). Tables hold one row of segment bits per distinct
value; q=2 text values are read by a kernel from a table of every bigram's mask.

>>> from matcher.keys import LinkageSecret
>>> from matcher.schema import default_schema
>>> enc = Encoder(default_schema(), LinkageSecret(1, bytes(32)))
>>> spec = default_schema().field("surname")
>>> table = enc.field_table(spec, ["smith"], [""])
>>> table.shape, int(np.bitwise_count(table[1]).sum())
((2, 2), 0)
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import jellyfish
import numpy as np
from numpy.typing import NDArray

from matcher import _fastencode as fe
from matcher import normalise as nz
from matcher.encoding._columns import NormalisedRecord
from matcher.keys import LinkageSecret
from matcher.schema import FieldSpec, LinkageSchema

Token = fe.Token
U64 = NDArray[np.uint64]
_CACHE_LIMIT = 1_000_000


# --------------------------------------------------------------------------- tokens
def _record_value(spec: FieldSpec, rec: NormalisedRecord) -> Any:
    """The normalised value a field's tokens are made from, or None."""
    kind = spec.kind
    if kind == "name":
        value = getattr(rec, spec.name, None)
    elif kind == "nickname":
        value = rec.forename
    elif kind == "names":
        value = rec.other_names
    elif kind == "date":
        value = rec.date_of_birth
    else:
        value = getattr(rec, kind, None)
    return value if value else None


def _tokens_for(spec: FieldSpec, rec: NormalisedRecord) -> list[Token]:
    """Tokens of one field of one record, each with its weight."""
    value = _record_value(spec, rec)
    return [] if value is None else fe.value_tokens(spec.kind, spec.q, value)


def _salt(spec: FieldSpec, rec: NormalisedRecord, salt_field: str | None) -> str:
    if salt_field is None or spec.domain != "name":
        return ""
    if salt_field == "year_of_birth":
        return str(rec.date_of_birth[0]) if rec.date_of_birth else "?"
    return rec.sex or "?"


def _soundex_id(code: str) -> int:
    """A 64-bit id of a soundex code (keyed by the blocking PRF afterwards); never 0."""
    b = code.encode()
    if len(b) <= 7:
        return int.from_bytes(b + b"\x01", "little")
    return int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "little") | 1


@functools.lru_cache(maxsize=1 << 18)
def _name_code(name: str) -> int:
    return _soundex_id(jellyfish.soundex("".join(nz.name_parts(name))))


@functools.lru_cache(maxsize=1 << 18)
def _root_code(name: str) -> int:
    return _soundex_id(jellyfish.soundex(nz.canonical_forename(nz.name_parts(name)[0])))


# --------------------------------------------------------------------------- encoder
def _rows(masks: list[int], bits: int) -> U64:
    """Python-int masks as uint64 rows."""
    nbytes = bits // 8
    blob = b"".join(m.to_bytes(nbytes, "little") for m in masks)
    out: U64 = np.frombuffer(blob, dtype="<u8").reshape(len(masks), bits // 64).astype(np.uint64)
    return out


class Encoder:
    """Keys and position caches for one schema and linkage secret.

    A token's positions are ``k * weight`` draws from BLAKE2b keyed with its field's
    domain key; a value's segment bits are the OR of its tokens' (q=2 text values: of its
    words', since their padded bigrams are the union of the words' padded bigrams).
    Masks are Python ints relative to the segment, cached per key.
    """

    def __init__(self, schema: LinkageSchema, secret: LinkageSecret) -> None:
        self.schema = schema
        self.secret = secret
        self._keys = {f.domain: secret.derive("field", f.domain) for f in schema.fields}
        self.block_key = fe.sipkey(secret.derive("block", "tokens"))
        self.rr_key = fe.sipkey(secret.derive("harden", "rr"))
        self._bases = {s.name: s.word_offset * 64 for s in schema.segments}
        self._tok: dict[tuple[str, int, str, str, int], int] = {}
        self._word: dict[tuple[str, str, str], int] = {}
        self._bigrams: dict[tuple[str, int, int, bool], U64] = {}

    def token_offsets(self, spec: FieldSpec, salt: str, token: str, weight: int) -> list[int]:
        """Positions of one token inside its field's segment."""
        count = spec.k * weight
        msg = (salt + "\x1f" + token).encode()
        key = self._keys[spec.domain]
        buf = b""
        ctr = 0
        while len(buf) < 4 * count:
            buf += hashlib.blake2b(
                msg + ctr.to_bytes(2, "little"), key=key, digest_size=64
            ).digest()
            ctr += 1
        return [int.from_bytes(buf[4 * c : 4 * c + 4], "little") % spec.bits for c in range(count)]

    def token_mask(self, spec: FieldSpec, salt: str, token: str, weight: int) -> int:
        ck = (spec.domain, spec.bits, salt, token, weight)
        mask = self._tok.get(ck)
        if mask is None:
            mask = 0
            for p in self.token_offsets(spec, salt, token, weight):
                mask |= 1 << p
            if len(self._tok) < _CACHE_LIMIT:
                self._tok[ck] = mask
        return mask

    def _word_mask(self, spec: FieldSpec, salt: str, word: str) -> int:
        ck = (spec.domain if spec.kind != "address" else "\x00address", salt, word)
        mask = self._word.get(ck)
        if mask is None:
            mask = 0
            for tok, w in fe.word_tokens(spec.kind, word):
                mask |= self.token_mask(spec, salt, tok, w)
            if len(self._word) < _CACHE_LIMIT:
                self._word[ck] = mask
        return mask

    def value_mask(self, spec: FieldSpec, salt: str, value: Any) -> int:
        """Segment bits of one normalised (non-missing) value, as an int."""
        mask = 0
        if spec.q == 2 and spec.kind in fe.WORD_KINDS:
            for word in fe.value_words(spec.kind, value):
                mask |= self._word_mask(spec, salt, word)
            return mask
        for tok, w in fe.value_tokens(spec.kind, spec.q, value):
            mask |= self.token_mask(spec, salt, tok, w)
        return mask

    def hash_tokens(self, spec: FieldSpec, salt: str, tokens: list[str], weight: int) -> U64:
        """Masks ``(len(tokens), words)`` of many tokens at once (one digest per token)."""
        count = spec.k * weight
        if count > 16:  # more than one 64-byte digest per token: the general path
            return _rows([self.token_mask(spec, salt, t, weight) for t in tokens], spec.bits)
        key = self._keys[spec.domain]
        pre = (salt + "\x1f").encode()
        blob = b"".join(
            hashlib.blake2b(pre + t.encode() + b"\0\0", key=key, digest_size=64).digest()
            for t in tokens
        )
        return fe.positions_table(blob, len(tokens), count, spec.bits)

    def _bigram_table(self, spec: FieldSpec, upper: bool) -> U64:
        ck = (spec.domain, spec.bits, spec.k, upper)
        table = self._bigrams.get(ck)
        if table is None:
            grams = [g.upper() for g in fe.BIGRAMS] if upper else fe.BIGRAMS
            table = self._bigrams[ck] = self.hash_tokens(spec, "", grams, 1)
        return table

    def _text_masks(self, spec: FieldSpec, texts: list[str], upper: bool = False) -> U64:
        """Masks of q=2 texts (words OR digit-word tokens for addresses) by the kernel.

        ``upper``: the texts were lower-cased from upper-case values (postcodes), whose
        bigram tokens are upper case.
        """
        address = spec.kind == "address"
        table = self._bigram_table(spec, upper)
        masks, nums, slow = fe.bigram_masks(texts, table, numbers=address)
        if address and (nums >= 0).any():
            uniq = np.unique(nums[nums >= 0])
            ntab = self.hash_tokens(spec, "", [f"N:{u}" for u in uniq.tolist()], 2)
            for j in range(nums.shape[1]):
                sel = nums[:, j] >= 0
                masks[sel] |= ntab[np.searchsorted(uniq, nums[sel, j])]
        for i in np.flatnonzero(slow).tolist():
            mask = 0
            for g in fe.qgrams(texts[i].upper() if upper else texts[i], 2):
                mask |= self.token_mask(spec, "", g, 1)
            if address:
                mask |= self.value_mask(spec, "", texts[i])
            masks[i] = _rows([mask], spec.bits)[0]
        return masks

    def _postcode_masks(self, spec: FieldSpec, values: list[nz.Postcode]) -> U64:
        masks = self._text_masks(spec, [v.full.lower() for v in values], upper=True)
        masks |= self.hash_tokens(spec, "", ["F:" + v.full for v in values], 2)
        for attr, prefix, weight in (("outward", "O:", 2), ("sector", "S:", 1)):
            got = [(i, getattr(v, attr)) for i, v in enumerate(values) if getattr(v, attr)]
            if got:
                rows = np.array([i for i, _ in got], dtype=np.int64)
                uniq, inv = np.unique(
                    np.array([t for _, t in got], dtype=object), return_inverse=True
                )
                sub = self.hash_tokens(spec, "", [prefix + t for t in uniq.tolist()], weight)
                masks[rows] |= sub[inv.reshape(-1)]
        return masks

    def _date_masks(self, spec: FieldSpec, values: list[tuple[int, int, int]]) -> U64:
        arr = np.array(values, dtype=np.int64).reshape(-1, 3)
        y, m, d = arr[:, 0], arr[:, 1], arr[:, 2]
        lo, hi = np.minimum(m, d), np.maximum(m, d)
        masks = self.hash_tokens(spec, "", [f"F:{a:04d}{b:02d}{c:02d}" for a, b, c in values], 2)
        parts = (
            (y, "Y:{:04d}", 2),
            (m, "M:{:02d}", 1),
            (d, "D:{:02d}", 1),
            (lo * 100 + hi, "S:{:04d}", 2),
            (m * 100 + d, "MD:{:04d}", 2),
        )
        for key, fmt, weight in parts:
            uniq, inv = np.unique(key, return_inverse=True)
            sub = self.hash_tokens(spec, "", [fmt.format(u) for u in uniq.tolist()], weight)
            masks |= sub[inv.reshape(-1)]
        return masks

    def _nickname_masks(self, spec: FieldSpec, values: list[str]) -> U64:
        roots = [nz.canonical_forename(nz.name_parts(v)[0]) for v in values]
        masks = self._text_masks(spec, roots)
        uniq, inv = np.unique(np.array(roots, dtype=object), return_inverse=True)
        masks |= self.hash_tokens(spec, "", ["R:" + r for r in uniq.tolist()], 2)[inv.reshape(-1)]
        return masks

    def field_table(self, spec: FieldSpec, values: list[Any], salts: list[str]) -> U64:
        """``(len(values) + 1, words)``: one row per value, then a zero row for "missing"."""
        table = np.zeros((len(values) + 1, spec.bits // 64), dtype=np.uint64)
        if not values:
            return table
        kind = spec.kind
        if any(salts) or spec.q != 2 or kind == "sex":
            masks = [self.value_mask(spec, s, v) for v, s in zip(values, salts, strict=True)]
            table[:-1] = _rows(masks, spec.bits)
        elif kind in fe.WORD_KINDS:
            texts = [" ".join(v) for v in values] if kind == "names" else values
            table[:-1] = self._text_masks(spec, texts)
        elif kind == "date":
            table[:-1] = self._date_masks(spec, values)
        elif kind == "postcode":
            table[:-1] = self._postcode_masks(spec, values)
        else:
            table[:-1] = self._nickname_masks(spec, values)
        return table

    def record_positions(self, rec: NormalisedRecord) -> list[int]:
        """Bit positions (in the whole vector) that ``rec`` sets before hardening.

        The per-record reference for the vectorised path (tests compare the two).
        """
        out: list[int] = []
        salt_field = self.schema.hardening.salt_field
        for spec in self.schema.fields:
            salt = _salt(spec, rec, salt_field)
            base = self._bases[spec.name]
            for tok, w in _tokens_for(spec, rec):
                out.extend(base + p for p in self.token_offsets(spec, salt, tok, w))
        return out


def harden(filters: U64, seeds: U64, mode: str, flip_probability: float) -> U64:
    """Apply the hardening stage to packed filters; ``seeds`` are the rows' keyed seeds.

    ``rr``: keyed randomized response. Each bit flips independently with probability
    ``flip_probability``, at positions drawn from a splitmix64 stream seeded by the row's
    seed (a keyed PRF of the record's content): the same record always gives the same
    encoding, equal field values in different records no longer give equal segments, and
    without the key the noise cannot be predicted. ``none`` returns ``filters`` unchanged.

    >>> f = np.zeros((2, 16), dtype=np.uint64)
    >>> h = harden(f, np.array([1, 1], dtype=np.uint64), "rr", 0.02)
    >>> bool((h[0] == h[1]).all()), 5 < int(np.bitwise_count(h[0]).sum()) < 45
    (True, True)
    """
    if mode == "none" or flip_probability <= 0.0 or len(filters) == 0:
        return filters
    return fe.flip_bits(filters, seeds, flip_probability)
