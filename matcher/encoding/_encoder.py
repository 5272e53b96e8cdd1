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

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from matcher import _fastencode as fe
from matcher import normalise as nz
from matcher.encoding import _dates as dt
from matcher.encoding import _fastblock as fb
from matcher.encoding._columns import NormalisedRecord
from matcher.encoding._postcodes import Postcodes
from matcher.keys import LinkageSecret
from matcher.schema import FieldSpec, LinkageSchema

Token = fe.Token
U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]
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


def forename_roots(names: Sequence[str]) -> list[str]:
    """``nz.canonical_forename(nz.name_parts(name)[0])`` of each normalised forename.

    One dict look-up a name and no per-name cache: the names are a batch's distinct
    forenames, each seen once here.
    """
    table = nz.nickname_table()
    firsts = [name.split(None, 1)[0] for name in names]  # name_parts(name)[0]
    return [table.get(f, f) for f in firsts]


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
        self._keys = {f.domain: secret.derive("field", f.domain) for f in schema.fields}
        self.block_key = fe.sipkey(secret.derive("block", "tokens"))
        self.rr_key = fe.sipkey(secret.derive("harden", "rr"))
        self._tok: dict[tuple[str, int, str, str, int], int] = {}
        self._word: dict[tuple[str, str, str], int] = {}
        self._bigrams: dict[tuple[str, int, int, bool], U64] = {}
        self._states: dict[str, U64] = {}

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
        pre = (salt + "\x1f").encode()
        blob, starts = fe.utf8_blob(tokens)
        if len(tokens) and len(pre) + int(np.max(np.diff(starts))) + 2 > fe.B2_MAX_MESSAGE:
            return _rows([self.token_mask(spec, salt, t, weight) for t in tokens], spec.bits)
        return self.hash_messages(spec, blob, starts, count, prefix=pre, tail=2)

    def hash_messages(
        self,
        spec: FieldSpec,
        blob: NDArray[np.uint8],
        starts: NDArray[np.int64],
        count: int,
        *,
        prefix: bytes = b"",
        tail: int = 0,
    ) -> U64:
        """Masks of messages ``prefix + blob[starts[i] : starts[i + 1]] + tail zero bytes``
        (``salt + "\\x1f" + token + "\\0\\0"``, at most one BLAKE2b block each), setting
        ``count`` positions each."""
        state = self._states.get(spec.domain)
        if state is None:
            state = self._states[spec.domain] = fe.blake2b_keyed_state(self._keys[spec.domain])
        return fe.b2_digests_masks(state, blob, starts, count, spec.bits, prefix=prefix, tail=tail)

    def _bigram_table(self, spec: FieldSpec, upper: bool) -> U64:
        ck = (spec.domain, spec.bits, spec.k, upper)
        table = self._bigrams.get(ck)
        if table is None:
            grams = [g.upper() for g in fe.BIGRAMS] if upper else fe.BIGRAMS
            table = self._bigrams[ck] = self.hash_tokens(spec, "", grams, 1)
        return table

    def _text_masks(
        self,
        spec: FieldSpec,
        texts: Sequence[str],
        upper: bool = False,
        blob: tuple[NDArray[np.uint8], I64] | None = None,
    ) -> U64:
        """Masks of q=2 texts (words OR digit-word tokens for addresses) by the kernel.

        ``upper``: the texts were lower-cased from upper-case values (postcodes), whose
        bigram tokens are upper case. ``blob``: the texts' bytes, if at hand.
        """
        address = spec.kind == "address"
        table = self._bigram_table(spec, upper)
        masks, nums, slow = fe.bigram_masks(texts, table, numbers=address, blob=blob)
        present = nums >= 0
        if address and present.any():
            which, uniq = pd.factorize(nums[present])  # each number hashed once
            ntab = self.hash_tokens(spec, "", [f"N:{u}" for u in uniq.tolist()], 2)
            at = np.full(nums.shape, -1, dtype=np.int64)  # each number's row of ntab
            at[present] = which
            fb.or_rows(masks, at, ntab)
        rows = np.flatnonzero(slow).tolist()
        if rows:  # the texts' tokens, each distinct token hashed once
            toks = [
                fe.value_tokens("address", 2, texts[i])
                if address
                else [(g, 1) for g in fe.qgrams(texts[i].upper() if upper else texts[i], 2)]
                for i in rows
            ]
            found: dict[tuple[str, int], int] = {}
            for tt in toks:
                for t in tt:
                    found.setdefault(t, len(found))
            tab = np.zeros((len(found), spec.bits // 64), dtype=np.uint64)
            for w in {w for _, w in found}:
                got = [(j, t) for (t, tw), j in found.items() if tw == w]
                tab[[j for j, _ in got]] = self.hash_tokens(spec, "", [t for _, t in got], w)
            for i, tt in zip(rows, toks, strict=True):
                masks[i] = np.bitwise_or.reduce(tab[[found[t] for t in tt]], axis=0)
        return masks

    def _postcode_masks(self, spec: FieldSpec, values: Sequence[nz.Postcode]) -> U64:
        if not isinstance(values, Postcodes):  # (its parts are read without making objects)
            values = Postcodes.of_parsed(list(values))
        fulls = values.texts
        masks = self._text_masks(spec, [f.lower() for f in fulls], upper=True)
        masks |= self.hash_tokens(spec, "", ["F:" + f for f in fulls], 2)
        for attr, prefix, weight in (("outward", "O:", 2), ("sector", "S:", 1)):
            parts = np.empty(len(values), dtype=object)
            parts[:] = values.parts(attr)
            inv, uniq = pd.factorize(parts, use_na_sentinel=True)  # None: no such part
            if len(uniq):
                sub = self.hash_tokens(spec, "", [prefix + t for t in uniq.tolist()], weight)
                rows = np.flatnonzero(inv >= 0)
                masks[rows] |= sub[inv[rows]]
        return masks

    def _date_masks(self, spec: FieldSpec, values: Sequence[tuple[int, int, int]]) -> U64:
        arr = dt.ymd_of(values)
        y, m, d = arr[:, 0], arr[:, 1], arr[:, 2]
        lo, hi = np.minimum(m, d), np.maximum(m, d)
        parts = (
            (y, "Y:", 4, 2),
            (m, "M:", 2, 1),
            (d, "D:", 2, 1),
            (lo * 100 + hi, "S:", 4, 2),
            (m * 100 + d, "MD:", 4, 2),
        )
        fits = ((y >= 0) & (y <= 9999) & (m >= 0) & (m <= 99) & (d >= 0) & (d <= 99)).all()
        if 2 * spec.k > 16 or not fits:  # the general path
            masks = self.hash_tokens(
                spec, "", [f"F:{a:04d}{b:02d}{c:02d}" for a, b, c in arr.tolist()], 2
            )
            for key, prefix, width, weight in parts:
                uniq, inv = np.unique(key, return_inverse=True)
                fmt = prefix + "{:0" + str(width) + "d}"
                sub = self.hash_tokens(spec, "", [fmt.format(u) for u in uniq.tolist()], weight)
                masks |= sub[inv.reshape(-1)]
            return masks
        # messages "\x1f" + token + "\0\0" written in numpy (no salt: see field_table)
        blob, starts = fe.digit_messages(b"\x1fF:", [(y, 4), (m, 2), (d, 2)], b"\0\0")
        masks = self.hash_messages(spec, blob, starts, 2 * spec.k)
        for key, prefix, width, weight in parts:
            # small keys (at most 4 digits): their distinct values by a lookup table
            seen = np.zeros(10**width, dtype=np.int64)
            seen[key] = 1
            uniq = np.flatnonzero(seen)
            seen[uniq] = np.arange(len(uniq))
            blob, starts = fe.digit_messages(b"\x1f" + prefix.encode(), [(uniq, width)], b"\0\0")
            masks |= self.hash_messages(spec, blob, starts, weight * spec.k)[seen[key]]
        return masks

    def _nickname_masks(self, spec: FieldSpec, values: Sequence[str]) -> U64:
        roots = forename_roots(values)
        masks = self._text_masks(spec, roots)
        inv, uniq = pd.factorize(np.array(roots, dtype=object))
        masks |= self.hash_tokens(spec, "", ["R:" + r for r in uniq.tolist()], 2)[inv]
        return masks

    def field_table(
        self,
        spec: FieldSpec,
        values: Sequence[Any],
        salts: list[str],
        *,
        blob: tuple[NDArray[np.uint8], I64] | None = None,
    ) -> U64:
        """``(len(values) + 1, words)``: one row per value, then a zero row for "missing".

        ``blob``: text values, their UTF-8 bytes end to end and where each starts (as
        :func:`fe.utf8_blob` gives them), which saves converting the values again.
        """
        table = np.zeros((len(values) + 1, spec.bits // 64), dtype=np.uint64)
        if not values:
            return table
        kind = spec.kind
        if any(salts) or spec.q != 2 or kind == "sex":
            masks = [self.value_mask(spec, s, v) for v, s in zip(values, salts, strict=True)]
            table[:-1] = _rows(masks, spec.bits)
        elif kind in fe.WORD_KINDS:
            texts = [" ".join(v) for v in values] if kind == "names" else values
            table[:-1] = self._text_masks(spec, texts, blob=None if kind == "names" else blob)
        elif kind == "date":
            table[:-1] = self._date_masks(spec, values)
        elif kind == "postcode":
            table[:-1] = self._postcode_masks(spec, values)
        else:
            table[:-1] = self._nickname_masks(spec, values)
        return table


def harden(
    filters: U64, seeds: U64, mode: str, flip_probability: float, *, copy: bool = True
) -> U64:
    """Apply the hardening stage to packed filters; ``seeds`` are the rows' keyed seeds.

    ``rr``: keyed randomized response. Each bit flips independently with probability
    ``flip_probability``, at positions drawn from a splitmix64 stream seeded by the row's
    seed (a keyed PRF of the record's content): the same record always gives the same
    encoding, equal field values in different records no longer give equal segments, and
    without the key the noise cannot be predicted. ``none`` returns ``filters`` unchanged.
    ``copy=False`` lets the stage flip ``filters`` in place (when it is C-ordered uint64).

    >>> f = np.zeros((2, 16), dtype=np.uint64)
    >>> h = harden(f, np.array([1, 1], dtype=np.uint64), "rr", 0.02)
    >>> bool((h[0] == h[1]).all()), 5 < int(np.bitwise_count(h[0]).sum()) < 45
    (True, True)
    """
    if mode == "none" or flip_probability <= 0.0 or len(filters) == 0:
        return filters
    return fb.flip_bits(filters, seeds, flip_probability, copy=copy)
