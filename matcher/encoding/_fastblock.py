"""Record-level kernels of :mod:`matcher.encoding`: soundex ids, value ids, flips.

These run after the field tables: the soundex codes behind the blocking tokens, the
unkeyed 64-bit ids of values that seed a record's noise (and name its postcode block),
and the randomized-response flips. Each kernel has a plain Python reference (here or in
the tests) that it must equal; where a kernel cannot decide a value (a byte it does not
handle) it says so and the reference answers for that value.

>>> [hex(c) for c in name_codes(["robert smith", "lee"])]  # bytes "R163", "L000", then 1
['0x133363152', '0x13030304c']
>>> int(name_codes(["robert"])[0]) == name_code("robert") == soundex_id("R163")
True
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import jellyfish
import numpy as np
from numba import njit
from numpy.typing import NDArray

from matcher import _fastencode as fe
from matcher import normalise as nz

__all__ = [
    "date_ids",
    "flip_bits",
    "hash_bytes",
    "hash_ids",
    "name_code",
    "name_codes",
    "or_rows",
    "root_code",
    "root_codes",
    "soundex_id",
    "value_ids",
]

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]


# --------------------------------------------------------------------------- soundex
def soundex_id(code: str) -> int:
    """A 64-bit id of a soundex code (keyed by the blocking PRF afterwards); never 0."""
    b = code.encode()
    if len(b) <= 7:
        return int.from_bytes(b + b"\x01", "little")
    return int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "little") | 1


def name_code(name: str) -> int:
    """The soundex id of a normalised name, its parts run together (the reference)."""
    return soundex_id(jellyfish.soundex("".join(nz.name_parts(name))))


def root_code(root: str) -> int:
    """The soundex id of a forename root, taken as it is (the reference)."""
    return soundex_id(jellyfish.soundex(root))


# A byte's soundex class: 1-6 its digit, 0 a vowel or y (it separates equal digits), 7 h
# or w (they do not), 8 the space; -1 any other byte, left to the reference.
_VOWEL, _HW, _SPACE = 0, 7, 8
_CLASSES = np.full(256, -1, dtype=np.int8)
for _digit, _letters in enumerate(("aeiouy", "bfpv", "cgjkqsxz", "dt", "l", "mn", "r")):
    for _ch in _letters:
        _CLASSES[ord(_ch)] = _digit
_CLASSES[ord("h")] = _CLASSES[ord("w")] = _HW
_CLASSES[ord(" ")] = _SPACE


@njit(cache=True)
def _soundex_kernel(blob, starts, classes, skip_spaces):  # type: ignore[no-untyped-def]
    """``soundex_id(jellyfish.soundex(text))`` of each text (spaces dropped first when
    ``skip_spaces``), built as its 4 code bytes and a 1 byte; 0 where the text has a byte
    outside a-z (and the space, when skipped) or no letter, for the reference to do."""
    n = starts.shape[0] - 1
    out = np.zeros(n, dtype=np.uint64)
    for i in range(n):
        code = np.uint64(0)
        count = 0
        last = _VOWEL  # the previous letter's digit; 0: none to repeat
        bad = False
        for j in range(starts[i], starts[i + 1]):
            b = blob[j]
            c = classes[b]
            if c < 0 or (c == _SPACE and not skip_spaces):
                bad = True
                break
            if c == _SPACE:
                continue
            if count == 0:  # the first letter is kept (upper case); its digit counts
                code = np.uint64(b - 32)
                count = 1
                last = c if c != _HW else _VOWEL
            elif c == _HW:  # transparent: equal digits either side of h or w merge
                pass
            elif c == _VOWEL:
                last = _VOWEL
            else:
                if c != last and count < 4:
                    code |= np.uint64(48 + c) << np.uint64(8 * count)
                    count += 1
                last = c
        if bad or count == 0:
            continue
        for k in range(count, 4):  # padded with "0"
            code |= np.uint64(48) << np.uint64(8 * k)
        out[i] = code | (np.uint64(1) << np.uint64(32))
    return out


def _soundex_ids(
    texts: Sequence[str], *, skip_spaces: bool, blob: tuple[NDArray[np.uint8], I64] | None = None
) -> U64:
    if not texts:
        return np.zeros(0, dtype=np.uint64)
    try:
        data, starts = fe.utf8_blob(texts) if blob is None else blob
    except UnicodeError:  # a lone surrogate: not a-z, so the reference does every text
        data, starts = np.zeros(1, np.uint8), np.zeros(len(texts) + 1, np.int64)
    out: U64 = _soundex_kernel(data, starts, _CLASSES, skip_spaces)
    ref = name_code if skip_spaces else root_code
    for i in np.flatnonzero(out == 0).tolist():
        out[i] = ref(texts[i])
    return out


def name_codes(names: Sequence[str], blob: tuple[NDArray[np.uint8], I64] | None = None) -> U64:
    """``[name_code(n) for n in names]``, by a kernel for names of a-z and spaces
    (``blob``: the names as :func:`fe.utf8_blob` gives them, if at hand)."""
    return _soundex_ids(names, skip_spaces=True, blob=blob)


def root_codes(roots: Sequence[str]) -> U64:
    """``[root_code(r) for r in roots]``, by a kernel for roots of a-z."""
    return _soundex_ids(roots, skip_spaces=False)


# --------------------------------------------------------------------------- tables
@njit(cache=True)
def _or_rows(masks, rows, table):  # type: ignore[no-untyped-def]
    n, k = rows.shape
    for i in range(n):
        for j in range(k):
            t = rows[i, j]
            if t >= 0:
                for w in range(masks.shape[1]):
                    masks[i, w] |= table[t, w]


def or_rows(masks: U64, rows: NDArray[np.int64], table: U64) -> None:
    """``masks[i] |= table[t]`` for every ``t = rows[i, j]`` that is not -1, in place
    (a value's several tokens, e.g. an address's house numbers, ORed into its mask)."""
    if rows.shape[0] != masks.shape[0] or table.shape[1] != masks.shape[1]:
        raise ValueError("one row of table rows per mask, and rows as wide as the masks")
    if rows.size and int(rows.max()) >= table.shape[0]:
        raise ValueError("a row is outside the table")
    _or_rows(masks, np.ascontiguousarray(rows, dtype=np.int64), np.ascontiguousarray(table))


# --------------------------------------------------------------------------- value ids
def value_text(value: Any) -> str:
    """A normalised value as text, for its 64-bit id (record seeds and blocking)."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        if value and isinstance(value[0], int):
            y, m, d = value
            return f"{y:04d}{m:02d}{d:02d}"
        return "\x1f".join(value)
    if isinstance(value, nz.Postcode):
        return value.full
    return str(value)


@fe.helper
def _fmix(h):  # type: ignore[no-untyped-def]
    # murmur3's 64-bit finaliser: every input bit reaches every output bit
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@fe.helper
def hash_bytes(buf, a, b):  # type: ignore[no-untyped-def]
    """A 64-bit hash of ``buf[a:b]``, 8 little-endian bytes a step (murmur3-like rounds)
    with its length mixed in, so zero-padding cannot conflate two texts."""
    c1 = np.uint64(0x87C37B91114253D5)
    c2 = np.uint64(0x4CF5AD432745937F)
    h = np.uint64(0x243F6A8885A308D3) ^ (np.uint64(b - a) * np.uint64(0x9E3779B97F4A7C15))
    for j in range(a, b, 8):
        w = np.uint64(0)
        for k in range(min(8, b - j)):
            w |= np.uint64(buf[j + k]) << np.uint64(8 * k)
        w *= c1
        w = (w << np.uint64(31)) | (w >> np.uint64(33))
        w *= c2
        h ^= w
        h = ((h << np.uint64(27)) | (h >> np.uint64(37))) * np.uint64(5) + np.uint64(0x52DCE729)
    return _fmix(h ^ np.uint64(b - a))


@njit(cache=True)
def _text_hashes(blob, starts):  # type: ignore[no-untyped-def]
    """:func:`hash_bytes` of each byte string ``blob[starts[i]:starts[i + 1]]``."""
    n = starts.shape[0] - 1
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        out[i] = hash_bytes(blob, starts[i], starts[i + 1])
    return out


def value_ids(values: Sequence[Any]) -> U64:
    """Stable (unkeyed) 64-bit ids of distinct normalised values, never 0 (0 means
    missing): dates as ``yyyymmdd + 2**40``, the rest a hash of :func:`value_text`'s UTF-8
    bytes. A pure function of the value; a keyed PRF is applied on top."""
    if not values:
        return np.zeros(0, dtype=np.uint64)
    first = values[0]
    if isinstance(first, tuple) and first and isinstance(first[0], int):  # dates
        return date_ids(np.array(values, dtype=np.int64).reshape(-1, 3))
    if isinstance(first, str):
        texts = values
    elif isinstance(first, nz.Postcode):  # a postcode column: all Postcodes
        texts = [v.full for v in values]
    else:
        texts = [value_text(v) for v in values]
    try:
        blob, starts = fe.utf8_blob(texts)
    except (ValueError, TypeError):  # a lone surrogate, or a value that is not text
        blob, starts = fe.messages([value_text(t).encode("utf-8", "surrogatepass") for t in texts])
    return hash_ids(_text_hashes(blob, starts))


def date_ids(ymd: I64) -> U64:
    """:func:`value_ids` of dates given as a ``(n, 3)`` array of year, month, day."""
    ids: U64 = ymd.astype(np.uint64) @ np.array([10_000, 100, 1], dtype=np.uint64)
    return ids + np.uint64(1 << 40)


def hash_ids(hashes: U64) -> U64:
    """Value ids of texts from their :func:`hash_bytes` (0 is kept for "missing")."""
    return np.where(hashes == 0, np.uint64(1), hashes)


# --------------------------------------------------------------------------- flips
@functools.lru_cache(maxsize=64)
def _binomial_table(nbits: int, p: float) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The CDF of Binomial(nbits, p) at 0..nbits, and its guide table.

    The CDF is exactly 1.0 where the rest of the mass is below double precision (so an
    absurd count is never drawn). ``guide[g]`` is the least count whose CDF exceeds
    ``g / len(guide)``: a uniform ``u`` starts its search there, a step or two from its
    count, instead of bisecting (whose unpredictable branches cost more than the flips).
    """
    k = np.arange(nbits + 1, dtype=np.float64)
    lgam = np.vectorize(math.lgamma, otypes=[np.float64])
    logpmf = (
        math.lgamma(nbits + 1)
        - lgam(k + 1)
        - lgam(nbits - k + 1)
        + k * math.log(p)
        + (nbits - k) * math.log1p(-p)
    )
    cdf = np.cumsum(np.exp(logpmf))
    cdf = np.minimum(cdf / cdf[-1], 1.0)
    cdf[-1] = 1.0
    guide = np.searchsorted(cdf, np.arange(nbits + 1) / (nbits + 1), side="right")
    return cdf, guide.astype(np.int64)


@njit(cache=True, inline="always")
def _splitmix(state):  # type: ignore[no-untyped-def]
    state += np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@njit(cache=True)
def _flip(filters, seeds, cdf, guide, width):  # type: ignore[no-untyped-def]
    """Flip ``k ~ Binomial(nbits, p)`` distinct uniform positions of each row.

    A binomial count of flips at uniformly chosen distinct positions is the same
    distribution as each bit flipping independently with probability p, at one uniform
    for the count and ``width`` bits per position (``64 // width`` positions a draw,
    rejecting positions past the end or already chosen) instead of a log per flip.
    """
    n, words = filters.shape
    nbits = np.uint64(words * 64)
    per_draw = 64 // width
    drop = np.uint64(64 - width)
    mask = np.empty(words, dtype=np.uint64)
    for r in range(n):
        # The seed is scrambled (murmur3's finaliser, a bijection) before use as the
        # splitmix64 state, so seeds in arithmetic progression (splitmix64's own step)
        # do not give overlapping streams.
        state = _fmix(seeds[r])
        state, z = _splitmix(state)
        u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
        k = guide[min(int(u * guide.shape[0]), guide.shape[0] - 1)]
        while cdf[k] <= u:
            k += 1
        mask[:] = 0
        got = 0
        while got < k:
            state, z = _splitmix(state)
            for _ in range(per_draw):
                pos = z >> drop
                z <<= np.uint64(width)
                if pos >= nbits:
                    continue
                w = pos >> np.uint64(6)
                bit = np.uint64(1) << (pos & np.uint64(63))
                if mask[w] & bit:
                    continue
                mask[w] |= bit
                got += 1
                if got == k:
                    break
        for w in range(words):
            filters[r, w] ^= mask[w]


def flip_bits(filters: U64, seeds: U64, flip_probability: float, *, copy: bool = True) -> U64:
    """Flip each bit of each row independently with ``flip_probability``, from the row's
    splitmix64 stream (seeded by ``seeds``: the same seed, the same flips).

    ``copy=False``: flip a C-contiguous uint64 ``filters`` in place (and return it).
    """
    if not 0.0 <= flip_probability < 1.0:
        raise ValueError("the flip probability must be in [0, 1)")
    if copy or filters.dtype != np.uint64 or not filters.flags.c_contiguous:
        out = np.array(filters, dtype=np.uint64, order="C", copy=True)
    else:
        out = filters
    if flip_probability > 0.0 and out.size:
        nbits = out.shape[1] * 64
        _flip(
            out,
            np.ascontiguousarray(seeds, dtype=np.uint64),
            *_binomial_table(nbits, float(flip_probability)),
            (nbits - 1).bit_length(),
        )
    return out
