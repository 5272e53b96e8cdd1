"""Text columns normalised byte by byte in numba: names, towns, addresses, name lists.

A force's export is almost all printable ASCII. For such a row the kernel here does
exactly what :mod:`matcher.normalise` does to it (missing-value placeholders, case,
apostrophes, punctuation, titles, "st" as street or saint, address abbreviations,
``;|/,``-separated name lists) without making a Python string; the distinct results are
then found by hashing their bytes. A row that is not printable ASCII is marked ``OTHER``
and left to the per-value normalisers (folding Unicode needs them).

>>> import pyarrow as pa
>>> rows = normalise_rows("address", pa.array(["12 St Albans Rd", None, "n/a", "Zoë"]))
>>> rows.status.tolist()
[0, 1, 1, 2]
>>> d = distinct(rows)
>>> d.codes.tolist(), d.texts()
([0, -1, -1, -1], ['12 saint albans road'])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit
from numpy.typing import NDArray

from matcher import _fastencode as fe
from matcher import normalise as nz
from matcher.encoding._fastblock import hash_bytes

U8 = NDArray[np.uint8]
I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]

NAME, TOWN, ADDRESS, NAMES = 0, 1, 2, 3
KINDS = {"name": NAME, "nickname": NAME, "town": TOWN, "address": ADDRESS, "names": NAMES}
OK, MISSING, OTHER = 0, 1, 2  # row status: a value (or none left), missing, not decided
NAMES_SEPARATOR = "\x1f"  # between a name list's entries (as fb.value_text joins them)
SAINT = np.frombuffer(b"saint", dtype=np.uint8)
STREET = np.frombuffer(b"street", dtype=np.uint8)


def _key(word: str) -> tuple[int, int]:
    """A word of at most 16 bytes as two little-endian uint64s, zero padded (unique:
    words hold no NUL)."""
    b = word.encode("ascii").ljust(16, b"\0")
    if len(b) > 16:  # pragma: no cover - the tables hold short words
        raise ValueError("table words are at most 16 bytes")
    return int.from_bytes(b[:8], "little"), int.from_bytes(b[8:], "little")


_MUL = 0x9E3779B97F4A7C15  # Fibonacci hashing of a word's key into a table slot


@dataclass(frozen=True)
class _Table:
    """A small hash table of words (open addressing, at most a quarter full): ``slot``
    holds 1 + the word's index (0: empty); each word's key and replacement."""

    slot: I64
    a: U64
    b: U64
    off: I64
    data: U8

    @classmethod
    def of(cls, words: Iterable[str], replace: dict[str, str] | None = None) -> _Table:
        ws = sorted(set(words))
        keys = np.array([_key(w) for w in ws], dtype=np.uint64).reshape(-1, 2)
        bits = max(3, (4 * len(ws) - 1).bit_length())
        slot = np.zeros(1 << bits, dtype=np.int64)
        for i, (a, b) in enumerate(keys.tolist()):
            h = _slot(a, b, bits)
            while slot[h]:
                h = (h + 1) & (len(slot) - 1)
            slot[h] = i + 1
        out = [(replace or {}).get(w, w).encode("ascii") for w in ws]
        off = np.zeros(len(out) + 1, dtype=np.int64)
        np.cumsum([len(o) for o in out], out=off[1:])
        data = np.frombuffer(b"".join(out) + b"\0", dtype=np.uint8).copy()
        return cls(slot, keys[:, 0].copy(), keys[:, 1].copy(), off, data)


def _slot(a: int, b: int, bits: int) -> int:
    """As :func:`_probe` places a key (uint64 arithmetic)."""
    m = (1 << 64) - 1
    return (((a ^ ((b * _MUL) & m)) * _MUL) & m) >> (64 - bits)


_PLACEHOLDERS = _Table.of(nz._PLACEHOLDERS)
_TITLES = _Table.of(nz._TITLES)
_LEADING = _Table.of(nz._LEADING_TITLES)
_ABBREVIATIONS = _Table.of(nz._ADDRESS_WORDS, nz._ADDRESS_WORDS)
_NOT_SAINT_BEFORE = _Table.of(nz._NOT_SAINT_BEFORE)
_ABBREVIATED = max(map(len, nz._ADDRESS_WORDS))  # longer words are not looked up
assert nz._STREET_OR_SAINT == "st"


# --------------------------------------------------------------------------- kernels
@fe.helper
def _lower(c):  # type: ignore[no-untyped-def]
    return c + 32 if 65 <= c <= 90 else c


@fe.helper
def _is_alpha(c):  # type: ignore[no-untyped-def]
    return 97 <= c <= 122


@fe.helper
def _is_digit(c):  # type: ignore[no-untyped-def]
    return 48 <= c <= 57


_LONG = np.uint64(0xFFFFFFFFFFFFFFFF)  # the key of a word of over 16 bytes: in no table


@fe.helper
def _word_key(buf, s, e):  # type: ignore[no-untyped-def]
    """The lower-cased bytes ``buf[s:e]`` as two zero-padded uint64s (``_LONG`` twice
    for more than 16 bytes)."""
    if e - s > 16:
        return _LONG, _LONG
    a = np.uint64(0)
    b = np.uint64(0)
    for i in range(e - s):
        c = np.uint64(_lower(buf[s + i]))
        if i < 8:
            a |= c << np.uint64(8 * i)
        else:
            b |= c << np.uint64(8 * (i - 8))
    return a, b


@fe.helper
def _probe(a, b, table):  # type: ignore[no-untyped-def]
    """Index of the word with key ``(a, b)`` in a word table, or -1."""
    slot, ka, kb, shift = table
    mul = np.uint64(_MUL)
    mask = len(slot) - 1
    h = np.int64(((a ^ (b * mul)) * mul) >> shift)
    while True:
        j = slot[h] - 1
        if j < 0:
            return -1
        if ka[j] == a and kb[j] == b:
            return j
        h = (h + 1) & mask


# What each byte is to the word splitter, per field kind (one table lookup a byte)
_SEP, _WORD, _SKIP, _AMP, _COMMA, _BAD, _DIGIT_SEP = range(7)


def _byte_classes() -> NDArray[np.uint8]:
    cls = np.full((3, 256), _BAD, dtype=np.uint8)  # (name lists are split into names)
    for kind in (NAME, TOWN, ADDRESS):
        row = cls[kind]
        row[32:127] = _SEP  # printable ASCII
        row[[ord("'"), ord("`")]] = _SKIP  # removed: joins what it stands between
        row[ord("a") : ord("z") + 1] = row[ord("A") : ord("Z") + 1] = _WORD
        digits = slice(ord("0"), ord("9") + 1)
        row[digits] = _DIGIT_SEP if kind == NAME else _WORD  # names keep letters
        if kind in (TOWN, ADDRESS):
            row[ord("&")] = _AMP
        if kind == ADDRESS:
            row[ord(",")] = _COMMA
    return cls


_CLASSES = _byte_classes()


@fe.helper
def _split_words(kind, data, s, e, w):  # type: ignore[no-untyped-def]
    """The words of printable ASCII ``data[s:e]`` for a field kind, lower case.

    Names keep letters; towns and addresses letters and digits, "&" being the word "and";
    apostrophes join what they stand between; anything else separates words (and, in an
    address, a comma separates parts). ``w`` holds the byte classes of the kind
    (``_CLASSES``), the words' bytes, their bounds, their part and their table keys.
    Returns the number of words and a flag: 0 for a value with a letter or digit, 1 for
    one without (a missing value), 2 for one that is not printable ASCII (left to the
    per-value normalisers).
    """
    classes, wbuf, ws, we, wpart, wa, wb = w
    cls = classes[kind]
    nw = 0
    pos = 0
    part = 0
    k = -1  # bytes in the open word (-1: none open)
    ka = np.uint64(0)
    kb = np.uint64(0)
    alnum = False
    for i in range(s, e):
        c = data[i]
        t = cls[c]
        if t == _WORD:
            alnum = True
            if k < 0:
                ws[nw] = pos
                wpart[nw] = part
                k = 0
                ka = np.uint64(0)
                kb = np.uint64(0)
            c = c | 32 if c >= 65 else c  # letters to lower case (digits are below 65)
            wbuf[pos] = c
            pos += 1
            if k < 8:
                ka |= np.uint64(c) << np.uint64(8 * k)
            elif k < 16:
                kb |= np.uint64(c) << np.uint64(8 * (k - 8))
            else:
                ka = _LONG
                kb = _LONG
            k += 1
            continue
        if t == _SKIP:
            continue
        if t == _BAD:
            return 0, 2
        if k >= 0:
            we[nw] = pos
            wa[nw] = ka
            wb[nw] = kb
            nw += 1
            k = -1
        if t == _DIGIT_SEP:
            alnum = True
        elif t == _AMP:  # "&" -> " and "
            ws[nw] = pos
            wpart[nw] = part
            wbuf[pos] = 97
            wbuf[pos + 1] = 110
            wbuf[pos + 2] = 100
            pos += 3
            we[nw] = pos
            wa[nw] = np.uint64(0x646E61)  # "and"
            wb[nw] = np.uint64(0)
            nw += 1
        elif t == _COMMA:
            part += 1
    if k >= 0:
        we[nw] = pos
        wa[nw] = ka
        wb[nw] = kb
        nw += 1
    return nw, 0 if alnum else 1


@fe.helper
def _put(out, pos, src, s, e, first):  # type: ignore[no-untyped-def]
    """``src[s:e]`` to ``out[pos:]``, after a space unless ``first``; the new end."""
    if not first:
        out[pos] = 32
        pos += 1
    for i in range(s, e):
        out[pos] = src[i]
        pos += 1
    return pos


@fe.helper
def _blank_or_placeholder(data, s, e, placeholders):  # type: ignore[no-untyped-def]
    """Whether ``data[s:e]`` is blank (spaces) or, without the spaces around it, a
    missing-value placeholder ("n/a", "unknown" ...)."""
    while s < e and data[s] == 32:
        s += 1
    while e > s and data[e - 1] == 32:
        e -= 1
    if s == e:
        return True
    a, b = _word_key(data, s, e)
    return _probe(a, b, placeholders) >= 0


@fe.helper
def _missing(data, s, e, placeholders):  # type: ignore[no-untyped-def]
    """:func:`matcher.normalise.is_missing` of printable ASCII ``data[s:e]``: blank, a
    placeholder ("n/a", "unknown" ...) or without a letter or digit."""
    alnum = False
    for i in range(s, e):
        c = _lower(data[i])
        if _is_alpha(c) or _is_digit(c):
            alnum = True
            break
    return not alnum or _blank_or_placeholder(data, s, e, placeholders)


@fe.helper
def _name(data, s, e, w, out, pos, titles, leading):  # type: ignore[no-untyped-def]
    """A name's words without titles (Sir, Lord ... only before another word) to
    ``out[pos:]``; returns the new end (-1: not printable ASCII)."""
    nw, flag = _split_words(NAME, data, s, e, w)
    if flag == 2:
        return -1
    _classes, wbuf, ws, we, _parts, wa, wb = w
    start = pos
    for i in range(nw):
        if _probe(wa[i], wb[i], titles) >= 0:
            continue
        if i + 1 < nw and _probe(wa[i], wb[i], leading) >= 0:
            continue
        pos = _put(out, pos, wbuf, ws[i], we[i], pos == start)
    return pos


@fe.helper
def _name_list(data, s, e, w, out, pos, ent, tables):  # type: ignore[no-untyped-def]
    """The entries of a name list (between ``;|/,``: names, without placeholders and
    repeats) to ``out[pos:]``, separated by ``NAMES_SEPARATOR``; returns the new end (-1: not
    printable ASCII)."""
    placeholders, titles, leading = tables
    es, ee = ent
    for i in range(s, e):
        if data[i] < 32 or data[i] > 126:
            return -1
    if _missing(data, s, e, placeholders):
        return pos
    ne = 0
    a = s
    for i in range(s, e + 1):
        if i < e and not (data[i] == 59 or data[i] == 124 or data[i] == 47 or data[i] == 44):
            continue
        if not _missing(data, a, i, placeholders):
            sep = pos
            if ne:
                out[pos] = 31  # NAMES_SEPARATOR
                pos += 1
            got = _name(data, a, i, w, out, pos, titles, leading)
            seen = got == pos
            for j in range(ne):
                if seen:
                    break
                if ee[j] - es[j] == got - pos:
                    same = True
                    for x in range(got - pos):
                        if out[es[j] + x] != out[pos + x]:
                            same = False
                            break
                    seen = same
            if seen:
                pos = sep
            else:
                es[ne] = pos
                ee[ne] = got
                ne += 1
                pos = got
        a = i + 1
    return pos


@fe.helper
def _place(data, s, e, kind, w, out, pos, tables, check):  # type: ignore[no-untyped-def]
    """A town's or address's words to ``out[pos:]``; returns the new end.

    Towns: "st" is saint. Addresses: "st" is street at the end of a part or before a
    number, saint at its start, after a number or after of/and/the, else street; whole
    words are expanded ("rd" -> "road"). Returns the new end (-1: not printable ASCII).
    ``check``: a value without a letter or digit is missing.
    """
    abbreviations, not_saint, aoff, adata = tables
    nw, flag = _split_words(kind, data, s, e, w)
    if flag == 2:
        return -1
    if flag == 1 and check:
        return pos
    _, wbuf, ws, we, wpart, wa, wb = w
    start = pos
    st = np.uint64(0x7473)
    for i in range(nw):
        first = pos == start
        if wa[i] == st and wb[i] == 0:
            if kind == TOWN:
                saint = True
            elif i + 1 == nw or wpart[i + 1] != wpart[i] or _is_digit(wbuf[ws[i + 1]]):
                saint = False
            elif i == 0 or wpart[i - 1] != wpart[i] or _is_digit(wbuf[ws[i - 1]]):
                saint = True
            else:
                saint = _probe(wa[i - 1], wb[i - 1], not_saint) >= 0
            if saint:
                pos = _put(out, pos, SAINT, 0, 5, first)
            else:
                pos = _put(out, pos, STREET, 0, 6, first)
            continue
        j = -1
        if kind == ADDRESS and we[i] - ws[i] <= _ABBREVIATED and not _is_digit(wbuf[ws[i]]):
            j = _probe(wa[i], wb[i], abbreviations)
        if j >= 0:
            pos = _put(out, pos, adata, aoff[j], aoff[j + 1], first)
        else:
            pos = _put(out, pos, wbuf, ws[i], we[i], first)
    return pos


@njit(cache=True)
def _work(offsets, classes):  # type: ignore[no-untyped-def]
    """The kernels' output and scratch arrays for a column."""
    n = len(offsets) - 1
    longest = 0
    for r in range(n):
        longest = max(longest, offsets[r + 1] - offsets[r])
    # at most 4 output bytes an input byte ("&" -> "and ", "av," -> "avenue ")
    out = np.empty(4 * (offsets[n] - offsets[0]) + n + 8, dtype=np.uint8)
    rows = (np.zeros(n, dtype=np.uint8), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64))
    m = longest + 2
    w = (
        classes,
        np.empty(3 * m, dtype=np.uint8),  # "&" -> "and"
        np.empty(m, dtype=np.int64),
        np.empty(m, dtype=np.int64),
        np.empty(m, dtype=np.int64),
        np.empty(m, dtype=np.uint64),
        np.empty(m, dtype=np.uint64),
    )
    return out, rows, w, (np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int64))


@fe.helper
def _settle(r, got, pos, status, ends):  # type: ignore[no-untyped-def]
    """Row ``r``'s output ends at ``got`` (-1: left to the normalisers; none written:
    missing); returns where the next row's starts."""
    if got < 0:
        status[r] = OTHER
        return pos
    ends[r] = got
    if got == pos:
        status[r] = MISSING
    return got


@njit(cache=True)
def _normalise_kernel(kind, offsets, data, null, tables, check):  # type: ignore[no-untyped-def]
    """Names, towns and addresses (name lists: ``_name_list_kernel``; with both in one
    function LLVM makes slower code of each)."""
    placeholders, titles, leading, abbreviations, not_saint, aoff, adata, classes = tables
    place_tables = (abbreviations, not_saint, aoff, adata)
    out, (status, starts, ends), w, _ = _work(offsets, classes)
    pos = 0
    for r in range(len(offsets) - 1):
        starts[r] = ends[r] = pos
        s, e = offsets[r], offsets[r + 1]
        # a placeholder first (its bytes are printable): the rest is read in one pass
        if null[r] or (check and _blank_or_placeholder(data, s, e, placeholders)):
            status[r] = MISSING
            continue
        if kind == NAME:
            got = _name(data, s, e, w, out, pos, titles, leading)
        else:
            got = _place(data, s, e, kind, w, out, pos, place_tables, check)
        pos = _settle(r, got, pos, status, ends)
    return out[:pos], starts, ends, status


@njit(cache=True)
def _name_list_kernel(offsets, data, null, tables):  # type: ignore[no-untyped-def]
    placeholders, titles, leading, _abbreviations, _not_saint, _aoff, _adata, classes = tables
    out, (status, starts, ends), w, ent = _work(offsets, classes)
    list_tables = (placeholders, titles, leading)
    pos = 0
    for r in range(len(offsets) - 1):
        starts[r] = ends[r] = pos
        s, e = offsets[r], offsets[r + 1]
        if null[r] or _blank_or_placeholder(data, s, e, placeholders):
            status[r] = MISSING
            continue
        got = _name_list(data, s, e, w, out, pos, ent, list_tables)
        pos = _settle(r, got, pos, status, ends)
    return out[:pos], starts, ends, status


@njit(cache=True)
def _distinct_kernel(out, starts, ends):  # type: ignore[no-untyped-def]
    """Codes of the rows' byte strings (-1: empty) in order of first appearance, by
    hashing (:func:`hash_bytes`); the distinct strings end to end (one zero byte more),
    and the first row of each and its hash."""
    n = len(starts)
    size = 8
    while size < 2 * n:
        size <<= 1
    mask = size - 1
    # a slot: a hash and 1 + its value's code (0: empty), side by side (one cache line)
    table = np.zeros((size, 2), dtype=np.uint64)
    codes = np.full(n, -1, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    hashes = np.empty(n, dtype=np.uint64)
    nd = 0
    total = 0
    for r in range(n):
        s, e = starts[r], ends[r]
        if e == s:
            continue
        h = hash_bytes(out, s, e)
        slot = np.int64(h & np.uint64(mask))
        while True:
            d = np.int64(table[slot, 1]) - 1
            if d < 0:
                table[slot, 0] = h
                table[slot, 1] = nd + 1
                first[nd] = r
                hashes[nd] = h
                codes[r] = nd
                nd += 1
                total += e - s
                break
            if table[slot, 0] == h:
                fs, fe = starts[first[d]], ends[first[d]]
                same = fe - fs == e - s
                if same:
                    for i in range(e - s):
                        if out[fs + i] != out[s + i]:
                            same = False
                            break
                if same:
                    codes[r] = d
                    break
            slot = (slot + 1) & mask
    blob = np.zeros(total + 1, dtype=np.uint8)
    bstarts = np.zeros(nd + 1, dtype=np.int64)
    p = 0
    for v in range(nd):
        s, e = starts[first[v]], ends[first[v]]
        for i in range(s, e):
            blob[p] = out[i]
            p += 1
        bstarts[v + 1] = p
    return codes, blob, bstarts, first[:nd], hashes[:nd]


# --------------------------------------------------------------------------- wrappers
def _lookup(t: _Table) -> tuple[I64, U64, U64, np.uint64]:
    """A table as the kernels take it: slots, keys and the hash's shift."""
    return t.slot, t.a, t.b, np.uint64(65 - len(t.slot).bit_length())


_TABLES = (
    _lookup(_PLACEHOLDERS),
    _lookup(_TITLES),
    _lookup(_LEADING),
    _lookup(_ABBREVIATIONS),
    _lookup(_NOT_SAINT_BEFORE),
    _ABBREVIATIONS.off,
    _ABBREVIATIONS.data,
    _CLASSES,
)


@dataclass
class Rows:
    """Each row's normalised bytes ``out[starts[i]:ends[i]]`` (empty: none) and status."""

    out: U8
    starts: I64
    ends: I64
    status: NDArray[np.uint8]

    def set_rows(self, rows: I64, texts: list[bytes]) -> None:
        """Give ``rows`` the normalised ``texts`` (from the per-value normalisers)."""
        if not len(rows):
            return
        lens = np.array([len(t) for t in texts], dtype=np.int64)
        base = len(self.out)
        self.out = np.concatenate([self.out, np.frombuffer(b"".join(texts), dtype=np.uint8)])
        ends = base + np.cumsum(lens)
        self.starts[rows] = ends - lens
        self.ends[rows] = ends


def _arrays(arr: pa.Array) -> tuple[I64, U8, NDArray[np.bool_]]:
    """Offsets (from 0), data and null flags of an Arrow string array."""
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64, count=arr.offset + len(arr) + 1)
    offsets = offsets[arr.offset :]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)
        if data_buf is not None
        else np.zeros(0, dtype=np.uint8)
    )
    null = arr.is_null().to_numpy(zero_copy_only=False)
    return offsets, data, null


def normalise_rows(kind: str, arr: pa.Array, *, folded: bool = False) -> Rows:
    """Normalise every row of a string array (``kind``: a key of :data:`KINDS`).

    ``folded``: the rows are :func:`matcher.normalise.fold` of values already found not
    to be missing (the normalisers test the raw value for that, then work on its folded
    form): the missing-value rules are not applied again. Not for lists of names, which
    are split before folding.
    """
    if folded and kind == "names":
        raise ValueError("lists of names are split before they are folded")
    offsets, data, null = _arrays(arr)
    if kind == "names":
        out, starts, ends, status = _name_list_kernel(offsets, data, null, _TABLES)
    else:
        out, starts, ends, status = _normalise_kernel(
            KINDS[kind], offsets, data, null, _TABLES, not folded
        )
    return Rows(out, starts, ends, status)


@dataclass
class Distinct:
    """The rows' codes into their distinct normalised values (-1: none), and those
    values' bytes end to end (``blob[starts[i]:starts[i + 1]]``, one zero byte after)
    the first row holding each, and each one's :func:`hash_bytes` (which
    :func:`matcher.encoding._fastblock.hash_ids` makes value ids of)."""

    codes: I64
    blob: U8
    starts: I64
    first: I64
    hashes: U64

    def texts(self) -> list[str]:
        """The distinct values as strings."""
        n = len(self.starts) - 1
        if n == 0:
            return []
        arr = pa.Array.from_buffers(
            pa.large_string(), n, [None, pa.py_buffer(self.starts), pa.py_buffer(self.blob)]
        )
        texts: list[str] = arr.to_pylist()
        return texts


def distinct(rows: Rows) -> Distinct:
    """Codes of the rows' normalised values, in order of first appearance."""
    return Distinct(*_distinct_kernel(rows.out, rows.starts, rows.ends))
