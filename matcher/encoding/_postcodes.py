"""Postcode columns read byte by byte in numba: full UK postcodes, the common case.

For a printable-ASCII row the kernel does what :func:`matcher.normalise.normalise_postcode`
does with a full UK postcode: placeholders are missing, letters and digits are kept in
upper case, the Royal Mail grammar is checked (with O, I or L read as a digit at the
start of the inward code). Any other row (an outward code alone, a foreign code, an
unusable value, text that is not printable ASCII) is left ``OTHER`` for the normaliser.

>>> import pyarrow as pa
>>> rows, outward, area = read_postcodes(pa.array(["sw1a 1aa", "n/a", "2074", "M1 lAA"]))
>>> rows.status.tolist(), outward.tolist(), area.tolist()
([0, 1, 2, 0], [4, 0, 0, 2], [2, 0, 0, 1])
>>> from matcher.encoding._textnorm import distinct
>>> distinct(rows).texts()
['SW1A1AA', 'M11AA']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import overload

import numpy as np
import pyarrow as pa
from numba import njit
from numpy.typing import NDArray

from matcher import _fastencode as fe
from matcher import normalise as nz
from matcher.encoding._textnorm import (
    _PLACEHOLDERS,
    MISSING,
    OTHER,
    Rows,
    _arrays,
    _blank_or_placeholder,
    _is_digit,
    _lookup,
    _probe,
    _Table,
    _word_key,
)

__all__ = ["Postcodes", "postcode_values", "read_postcodes"]

I64 = NDArray[np.int64]


def _mask(char_class: str) -> int:
    """The letters A-Z a regex character class admits, as bits (A: bit 0)."""
    return sum(1 << i for i in range(26) if re.fullmatch(char_class, chr(65 + i)))


# The grammar's letter classes, by place (see matcher.normalise._OUTWARD and _FULL_RE).
_FIRST, _SECOND, _THIRD, _FOURTH, _INWARD = (
    "[A-PR-UWYZ]",
    "[A-HK-Y]",
    "[A-HJKPSTUW]",
    ("[ABEHMNPRVWXY]"),
    "[ABD-HJLNP-UW-Z]",
)
assert all(c in nz._OUTWARD for c in (_FIRST, _SECOND, _THIRD, _FOURTH))
assert _INWARD in nz._FULL_RE.pattern
_MASKS = np.array([_mask(c) for c in (_FIRST, _SECOND, _THIRD, _FOURTH, _INWARD)], np.int64)
# outward codes that are whole words (GIR, the overseas territories' codes)
_SPECIAL = _Table.of(
    w.lower() for w in nz._OUTWARD.removeprefix("(?:").removesuffix(")").split("|") if w.isalpha()
)
_FIX = np.zeros(128, dtype=np.uint8)
for _wrong, _right in nz._INWARD_DIGIT_FIX.items():
    _FIX[ord(_wrong)] = ord(_right)


@fe.helper
def _is(c, masks, k):  # type: ignore[no-untyped-def]
    """Whether upper-case letter ``c`` is in letter class ``k``."""
    return 65 <= c <= 90 and (masks[k] >> (c - 65)) & 1 == 1


@fe.helper
def _outward(buf, s, n, masks, special):  # type: ignore[no-untyped-def]
    """Whether ``buf[s:s + n]`` is a UK outward code (A9, A99, AA9, AA99, A9A, AA9A, GIR
    and the overseas codes)."""
    if n < 2 or n > 4:
        return False
    a, b = _word_key(buf, s, s + n)
    if _probe(a, b, special) >= 0:
        return True
    if not _is(buf[s], masks, 0):
        return False
    c1 = buf[s + 1]
    if n == 2:
        return _is_digit(c1)
    c2 = buf[s + 2]
    if n == 3:
        return (_is_digit(c1) and (_is_digit(c2) or _is(c2, masks, 2))) or (
            _is(c1, masks, 1) and _is_digit(c2)
        )
    c3 = buf[s + 3]
    return _is(c1, masks, 1) and _is_digit(c2) and (_is_digit(c3) or _is(c3, masks, 3))


@njit(cache=True)
def _postcode_kernel(offsets, data, null, placeholders, masks, special, fix):  # type: ignore[no-untyped-def]
    n = len(offsets) - 1
    status = np.zeros(n, dtype=np.uint8)
    starts = np.zeros(n, dtype=np.int64)
    ends = np.zeros(n, dtype=np.int64)
    outward = np.zeros(n, dtype=np.int64)
    area = np.zeros(n, dtype=np.int64)
    out = np.empty(offsets[n] - offsets[0] + 8, dtype=np.uint8)
    pos = 0
    for r in range(n):
        starts[r] = pos
        ends[r] = pos
        if null[r]:
            status[r] = MISSING
            continue
        s, e = offsets[r], offsets[r + 1]
        if _blank_or_placeholder(data, s, e, placeholders):
            status[r] = MISSING
            continue
        p = pos
        printable = True
        for i in range(s, e):
            c = data[i]
            if c < 32 or c > 126:
                printable = False
                break
            if 97 <= c <= 122:
                c -= 32
            if _is_digit(c) or 65 <= c <= 90:
                out[p] = c
                p += 1
        if not printable:
            status[r] = OTHER
            continue
        if p == pos:  # no letter or digit: missing
            status[r] = MISSING
            continue
        ln = p - pos
        ok = False
        if ln >= 5:
            i0 = p - 3
            if fix[out[i0]]:
                out[i0] = fix[out[i0]]
            ok = (
                _is_digit(out[i0])
                and _is(out[i0 + 1], masks, 4)
                and _is(out[i0 + 2], masks, 4)
                and _outward(out, pos, ln - 3, masks, special)
            )
        if not ok:
            status[r] = OTHER
            continue
        k = 0
        while k < ln - 3 and 65 <= out[pos + k] <= 90:
            k += 1
        outward[r] = ln - 3
        area[r] = k
        pos = ends[r] = p
    return out[:pos], starts, ends, status, outward, area


_SPECIALS = _lookup(_SPECIAL)


def read_postcodes(arr: pa.Array) -> tuple[Rows, I64, I64]:
    """Each row's full UK postcode (upper case, no space), and its outward code's and
    area's lengths; rows that are not full UK postcodes are ``OTHER``."""
    offsets, data, null = _arrays(arr)
    out, starts, ends, status, outward, area = _postcode_kernel(
        offsets, data, null, _lookup(_PLACEHOLDERS), _MASKS, _SPECIALS, _FIX
    )
    return Rows(out, starts, ends, status), outward, area


class Postcodes(Sequence[nz.Postcode]):
    """Distinct postcodes held as their texts and the lengths of their parts; a
    :class:`matcher.normalise.Postcode` is made only when one is asked for (the encoder
    reads the parts' texts directly).

    ``outward``, ``sector``, ``area``: lengths of those prefixes of the text (-1: none);
    ``uk``: whether each is a UK postcode.

    >>> p = Postcodes.of_parsed([nz.normalise_postcode("SW1A 1AA"), nz.normalise_postcode("2074")])
    >>> p[0] == nz.normalise_postcode("sw1a1aa"), p[1].uk, p.parts("sector")
    (True, False, ['SW1A1', None])
    """

    __slots__ = ("area", "outward", "sector", "texts", "uk")

    def __init__(
        self, texts: list[str], outward: I64, sector: I64, area: I64, uk: NDArray[np.bool_]
    ) -> None:
        self.texts, self.outward, self.sector, self.area, self.uk = texts, outward, sector, area, uk

    @classmethod
    def of_parsed(cls, parsed: list[nz.Postcode]) -> Postcodes:
        """The postcodes of :func:`matcher.normalise.normalise_postcode` results."""

        def length(part: str | None) -> int:
            return -1 if part is None else len(part)

        return cls(
            [p.full for p in parsed],
            np.array([length(p.outward) for p in parsed], dtype=np.int64),
            np.array([length(p.sector) for p in parsed], dtype=np.int64),
            np.array([length(p.area) for p in parsed], dtype=np.int64),
            np.array([p.uk for p in parsed], dtype=np.bool_),
        )

    def __len__(self) -> int:
        return len(self.texts)

    @overload
    def __getitem__(self, i: int) -> nz.Postcode: ...
    @overload
    def __getitem__(self, i: slice) -> list[nz.Postcode]: ...
    def __getitem__(self, i: int | slice) -> nz.Postcode | list[nz.Postcode]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        t = self.texts[i]
        o, s, a = int(self.outward[i]), int(self.sector[i]), int(self.area[i])
        outward = t[:o] if o >= 0 else None
        return nz.Postcode(
            full=t,
            outward=outward,
            inward=t[o:] if s >= 0 else None,
            area=t[:a] if a >= 0 else None,
            district=outward,
            sector=t[:s] if s >= 0 else None,
            uk=bool(self.uk[i]),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def parts(self, part: str) -> list[str | None]:
        """Each postcode's ``"outward"`` or ``"sector"`` (None where it has none)."""
        lengths = (self.outward if part == "outward" else self.sector).tolist()
        return [t[:k] if k >= 0 else None for t, k in zip(self.texts, lengths, strict=True)]


def postcode_values(
    texts: list[str],
    kernel: NDArray[np.bool_],
    outward: I64,
    area: I64,
    parsed: dict[str, nz.Postcode],
) -> Postcodes:
    """Distinct postcode texts: full UK postcodes the kernel read (``kernel``; their
    outward and area lengths given), the others as the normaliser ``parsed`` them."""
    other = np.flatnonzero(~kernel).tolist()
    if not other:
        return Postcodes(texts, outward, outward + 1, area, np.ones(len(texts), dtype=np.bool_))
    theirs = Postcodes.of_parsed([parsed[texts[i]] for i in other])
    out_len, sec_len, area_len = outward.copy(), outward + 1, area.copy()
    uk = np.ones(len(texts), dtype=np.bool_)
    out_len[other], sec_len[other], area_len[other] = theirs.outward, theirs.sector, theirs.area
    uk[other] = theirs.uk
    return Postcodes(texts, out_len, sec_len, area_len, uk)
