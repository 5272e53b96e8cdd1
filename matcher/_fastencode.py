"""Vectorised core of :mod:`matcher.encoding`: token semantics, keyed tables and kernels.

Encoding works on *distinct values*, not rows: a column is factorised, each distinct raw
value is normalised once, each distinct normalised value of a field gets its segment bits
once (a row of a per-field table), and the rows of the filter array are filled from the
tables (:func:`fill_segment`). The per-record steps are numba kernels: the filling, the
keyed record seed (SipHash-2-4 over the record's value ids) and the blocking tokens
(SipHash-2-4 over a token's components); the value ids, soundex codes and
randomized-response flips are in :mod:`matcher.encoding._fastblock`, the reading of
columns in :mod:`matcher.encoding._textnorm`, ``_postcodes`` and ``_dates``. Token
positions come from keyed BLAKE2b-512, one compression per token after the key block
(:func:`b2_digests_masks`, equal to hashlib's).

Why SipHash and splitmix64: SipHash-2-4 is a keyed pseudo-random function (128-bit key
from HKDF), so a record's seed and a blocking token are unpredictable without the key even
though the value ids fed to it are unkeyed 64-bit digests. The flip noise is a splitmix64
stream seeded by that PRF output; splitmix64 is not cryptographic, but its only input is a
secret, per-record 64-bit seed that never leaves the force, so without the key the noise
cannot be reproduced or told apart from random.

>>> sorted(qgrams("ann", 2))
['_a', 'an', 'n_', 'nn']
>>> word_bigram_identity("12 ash road")
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from numba import njit
from numpy.typing import NDArray

from matcher import normalise as nz

__all__ = [
    "Token",
    "block_token_kernel",
    "qgrams",
    "siphash_columns",
    "sipkey",
    "value_tokens",
    "word_bigram_identity",
]

Token = tuple[str, int]  # (token text, weight: multiples of the field's k)
U64 = NDArray[np.uint64]


# Per-row helpers of the kernels allocate nothing, so they are compiled without numba's
# reference counting (``_nrt=False``): with it, passing arrays to a helper once per row
# costs an atomic increment and decrement per array, several times the work itself.
helper: Any = njit(cache=True, _nrt=False)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- tokens
def qgrams(text: str, q: int) -> list[str]:
    """The q-grams of ``text`` padded with ``_`` (spaces become ``_`` too)."""
    s = "_" + text.replace(" ", "_") + "_"
    if len(s) < q:
        return [s]
    return [s[i : i + q] for i in range(len(s) - q + 1)]


def word_bigram_identity(text: str) -> bool:
    """Check that the padded bigrams of a text are the union of its words' padded bigrams.

    This is why a q=2 text field can be encoded as the OR of cached per-word masks.
    """
    words = text.split()
    return set(qgrams(text, 2)) == {g for w in words for g in qgrams(w, 2)}


def value_tokens(kind: str, q: int, value: Any) -> list[Token]:
    """Tokens (text, weight) of one normalised field value; ``value`` is never missing."""
    if kind in ("name", "town"):
        return [(g, 1) for g in qgrams(value, q)]
    if kind == "nickname":
        root = nz.canonical_forename(nz.name_parts(value)[0])
        return [(g, 1) for g in qgrams(root, q)] + [("R:" + root, 2)]
    if kind == "names":
        return [(g, 1) for n in value for g in qgrams(n, q)]
    if kind == "date":
        y, m, dd = value
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
        return [("X:" + value, 1)]
    if kind == "postcode":
        toks = [(g, 1) for g in qgrams(value.full, q)] + [("F:" + value.full, 2)]
        if value.outward:
            toks.append(("O:" + value.outward, 2))
        if value.sector:
            toks.append(("S:" + value.sector, 1))
        return toks
    # address
    toks = [(g, 1) for g in qgrams(value, q)]
    toks.extend(("N:" + w, 2) for w in value.split() if w.isdigit())
    return toks


def word_tokens(kind: str, word: str) -> list[Token]:
    """Tokens of one word of a q=2 text field (the per-word cache unit)."""
    toks = [(g, 1) for g in qgrams(word, 2)]
    if kind == "address" and word.isdigit():
        toks.append(("N:" + word, 2))
    return toks


WORD_KINDS = frozenset({"name", "names", "address", "town"})


def value_words(kind: str, value: Any) -> list[str]:
    """The words whose masks OR to a q=2 text value's mask."""
    if kind == "names":
        return [w for n in value for w in n.split()]
    return str(value).split()


def sipkey(key: bytes) -> tuple[np.uint64, np.uint64]:
    """The two 64-bit halves of a 128-bit SipHash key taken from a derived key."""
    return (
        np.uint64(int.from_bytes(key[:8], "little")),
        np.uint64(int.from_bytes(key[8:16], "little")),
    )


# --------------------------------------------------------------------------- kernels
@njit(cache=True, inline="always")
def _rotl(x, b):  # type: ignore[no-untyped-def]
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


@njit(cache=True, inline="always")
def _sipround(v0, v1, v2, v3):  # type: ignore[no-untyped-def]
    v0 += v1
    v1 = _rotl(v1, 13)
    v1 ^= v0
    v0 = _rotl(v0, 32)
    v2 += v3
    v3 = _rotl(v3, 16)
    v3 ^= v2
    v0 += v3
    v3 = _rotl(v3, 21)
    v3 ^= v0
    v2 += v1
    v1 = _rotl(v1, 17)
    v1 ^= v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


@njit(cache=True)
def _siphash_columns(k0, k1, cols):  # type: ignore[no-untyped-def]
    # Word by word over all messages (the four state words of each message kept in
    # arrays): the inner loop has no branches, so the compiler hashes several messages
    # at once, several times faster than one message at a time.
    m, n = cols.shape
    v0 = np.full(n, k0 ^ np.uint64(0x736F6D6570736575), dtype=np.uint64)
    v1 = np.full(n, k1 ^ np.uint64(0x646F72616E646F6D), dtype=np.uint64)
    v2 = np.full(n, k0 ^ np.uint64(0x6C7967656E657261), dtype=np.uint64)
    v3 = np.full(n, k1 ^ np.uint64(0x7465646279746573), dtype=np.uint64)
    length = np.uint64((8 * m) & 0xFF) << np.uint64(56)  # the final block: the length
    for i in range(m + 1):
        for r in range(n):
            w = cols[i, r] if i < m else length
            a0, a1, a2, a3 = _sipround(v0[r], v1[r], v2[r], v3[r] ^ w)
            a0, a1, a2, a3 = _sipround(a0, a1, a2, a3)
            v0[r] = a0 ^ w
            v1[r] = a1
            v2[r] = a2
            v3[r] = a3
    out = np.empty(n, dtype=np.uint64)
    for r in range(n):
        a0, a1, a2, a3 = v0[r], v1[r], v2[r] ^ np.uint64(0xFF), v3[r]
        for _ in range(4):
            a0, a1, a2, a3 = _sipround(a0, a1, a2, a3)
        out[r] = a0 ^ a1 ^ a2 ^ a3
    return out


def siphash_columns(key: tuple[np.uint64, np.uint64], cols: U64) -> U64:
    """SipHash-2-4 (keyed PRF) of each column of a ``(m, n)`` uint64 array: ``n``
    messages of ``m`` little-endian 64-bit words."""
    out: U64 = _siphash_columns(key[0], key[1], np.ascontiguousarray(cols, dtype=np.uint64))
    return out


@njit(cache=True, inline="always")
def _sip3(k0, k1, a, b, c):  # type: ignore[no-untyped-def]
    """SipHash-2-4 of the three words ``a, b, c`` (as :func:`siphash_columns`), over
    scalars: a loop calling it without branches hashes several messages at once."""
    v0 = k0 ^ np.uint64(0x736F6D6570736575)
    v1 = k1 ^ np.uint64(0x646F72616E646F6D)
    v2 = k0 ^ np.uint64(0x6C7967656E657261)
    v3 = k1 ^ np.uint64(0x7465646279746573)
    for w in (a, b, c, np.uint64(24) << np.uint64(56)):  # the last: the length, 24 bytes
        v3 ^= w
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0 ^= w
    v2 ^= np.uint64(0xFF)
    for _ in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


@njit(cache=True, inline="always")
def _sorted6(a0, a1, a2, a3, a4, a5):  # type: ignore[no-untyped-def]
    """Six values in order, by an optimal sorting network (12 compare-exchanges)."""
    a0, a5 = min(a0, a5), max(a0, a5)
    a1, a3 = min(a1, a3), max(a1, a3)
    a2, a4 = min(a2, a4), max(a2, a4)
    a1, a2 = min(a1, a2), max(a1, a2)
    a3, a4 = min(a3, a4), max(a3, a4)
    a0, a3 = min(a0, a3), max(a0, a3)
    a2, a5 = min(a2, a5), max(a2, a5)
    a0, a1 = min(a0, a1), max(a0, a1)
    a2, a3 = min(a2, a3), max(a2, a3)
    a4, a5 = min(a4, a5), max(a4, a5)
    a1, a2 = min(a1, a2), max(a1, a2)
    a3, a4 = min(a3, a4), max(a3, a4)
    return a0, a1, a2, a3, a4, a5


@njit(cache=True)
def _block_tokens(k0, k1, types, yob, fn, sn, root, dsk, pc, oth, oth_off, oth_codes):  # type: ignore[no-untyped-def]
    """Each record's tokens, sorted and without repeats: ``flat[cap[r] : cap[r] + counts[r]]``.

    The six fixed tokens of every record are hashed first in a loop without branches,
    which the compiler runs several records at a time (a token that does not apply is
    hashed anyway and replaced by ``big``); a second loop sorts each record's six with a
    sorting network and drops repeats and those not applying, also without branches.
    Records with other names (and a year of birth) take a plain path.
    """
    n = yob.shape[0]
    zero = np.uint64(0)
    big = np.uint64(0xFFFFFFFFFFFFFFFF)
    tok = np.empty((n, 6), dtype=np.uint64)
    valid = np.empty(n, dtype=np.int64)
    for r in range(n):
        y, f, s, ro, d, q = yob[r], fn[r], sn[r], root[r], dsk[r], pc[r]
        # the pair token: the first two of the name codes present
        c0 = f if f != zero else (s if s != zero else ro)
        c1 = (s if s != zero else ro) if f != zero else (ro if s != zero else zero)
        h0 = _sip3(k0, k1, types[0], f, y)
        h1 = _sip3(k0, k1, types[0], s, y)
        h2 = _sip3(k0, k1, types[0], ro, y)
        h3 = _sip3(k0, k1, types[1], min(c0, c1), max(c0, c1))
        h4 = _sip3(k0, k1, types[2], d, zero)
        h5 = _sip3(k0, k1, types[3], q, zero)
        ok0 = (y != zero) & (f != zero)
        ok1 = (y != zero) & (s != zero)
        ok2 = (y != zero) & (ro != zero)
        ok3 = c1 != zero
        ok4 = d != zero
        ok5 = q != zero
        tok[r, 0] = h0 if ok0 else big
        tok[r, 1] = h1 if ok1 else big
        tok[r, 2] = h2 if ok2 else big
        tok[r, 3] = h3 if ok3 else big
        tok[r, 4] = h4 if ok4 else big
        tok[r, 5] = h5 if ok5 else big
        valid[r] = (
            np.int64(ok0) + np.int64(ok1) + np.int64(ok2)
            + np.int64(ok3) + np.int64(ok4) + np.int64(ok5)
        )  # fmt: skip
    cap = np.zeros(n + 1, dtype=np.int64)
    for r in range(n):
        c = 6
        if oth[r] >= 0:
            c += oth_off[oth[r] + 1] - oth_off[oth[r]]
        cap[r + 1] = cap[r] + c
    flat = np.empty(cap[n], dtype=np.uint64)
    counts = np.zeros(n, dtype=np.int64)
    for r in range(n):
        start = cap[r]
        # Sorted, the tokens that apply come first (a real token equal to ``big`` is
        # among the ``valid`` first too, since it sorts with the fillers).
        a0, a1, a2, a3, a4, a5 = tok[r, 0], tok[r, 1], tok[r, 2], tok[r, 3], tok[r, 4], tok[r, 5]
        v = valid[r]
        if oth[r] >= 0 and yob[r] != zero:  # with other names: the plain way
            c = 6
            for j in range(oth_off[oth[r]], oth_off[oth[r] + 1]):
                flat[start + c] = _sip3(k0, k1, types[0], oth_codes[j], yob[r])
                c += 1
            for i in range(6):
                flat[start + i] = tok[r, i]
            for i in range(start + 1, start + c):  # insertion sort: a handful each
                x = flat[i]
                j = i - 1
                while j >= start and flat[j] > x:
                    flat[j + 1] = flat[j]
                    j -= 1
                flat[j + 1] = x
            k = 0
            for i in range(start, start + v + c - 6):
                if k == 0 or flat[i] != flat[start + k - 1]:
                    flat[start + k] = flat[i]
                    k += 1
            counts[r] = k
            continue
        a0, a1, a2, a3, a4, a5 = _sorted6(a0, a1, a2, a3, a4, a5)
        # write each, moving on only past a new token that applies
        flat[start] = a0
        k = int(v > 0)
        flat[start + k] = a1
        k += int((a1 != a0) & (v > 1))
        flat[start + k] = a2
        k += int((a2 != a1) & (v > 2))
        flat[start + k] = a3
        k += int((a3 != a2) & (v > 3))
        flat[start + k] = a4
        k += int((a4 != a3) & (v > 4))
        flat[start + k] = a5
        k += int((a5 != a4) & (v > 5))
        counts[r] = k
    return flat, cap, counts


def block_token_kernel(
    key: tuple[np.uint64, np.uint64],
    types: U64,
    parts: dict[str, NDArray[Any]],
) -> tuple[U64, NDArray[np.int64]]:
    """Per-record keyed blocking tokens from per-row component ids (0 = absent), end to
    end, and where each record's start (one more: the end).

    ``parts``: ``yob, fn, sn, root, dsk, pc`` (uint64 per row), ``oth`` (int64 index into
    the other-names lists, -1 for none), ``oth_off`` and ``oth_codes`` (CSR of soundex ids).
    """
    flat, cap, counts = _block_tokens(
        key[0], key[1], types, parts["yob"], parts["fn"], parts["sn"], parts["root"],
        parts["dsk"], parts["pc"], parts["oth"], parts["oth_off"], parts["oth_codes"],
    )  # fmt: skip
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    # each record's tokens sit at the start of its slot of the kernel's output
    take = np.arange(offsets[-1], dtype=np.int64) + np.repeat(cap[:-1] - offsets[:-1], counts)
    return flat[take], offsets


# --------------------------------------------------------------------------- bigram masks
# Text fields (q=2) are encoded from a table of every bigram's mask: characters map to
# 0 ("_" and space, the padding) .. 36, and a bigram (a, b) is row a * 37 + b.
ALPHABET = "_" + "abcdefghijklmnopqrstuvwxyz" + "0123456789"
_CHAR_INDEX = np.full(256, -1, dtype=np.int8)
for _i, _ch in enumerate(ALPHABET):
    _CHAR_INDEX[ord(_ch)] = _i
_CHAR_INDEX[ord(" ")] = 0
BIGRAMS = [a + b for a in ALPHABET for b in ALPHABET]
MAX_NUMBERS = 8  # house numbers read per address by the kernel; more go the slow way


@njit(cache=True)
def _bigram_masks(blob, starts, chars, table, numbers):  # type: ignore[no-untyped-def]
    """OR each text's padded-bigram masks; note its short canonical digit words.

    Returns ``(masks, nums, slow)``: ``nums[i]`` holds up to MAX_NUMBERS digit words
    (-1 padded); ``slow[i]`` marks texts the kernel cannot do (a character outside the
    alphabet, or a digit word it cannot store) for the per-value path.
    """
    n = starts.shape[0] - 1
    words = table.shape[1]
    masks = np.zeros((n, words), dtype=np.uint64)
    nums = np.full((n, 8), -1, dtype=np.int64)
    slow = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        prev = 0
        nn = 0
        num = 0
        ndig = 0
        alldig = True
        lead0 = False
        for j in range(starts[i], starts[i + 1] + 1):
            c = chars[blob[j]] if j < starts[i + 1] else 0
            if c < 0:
                slow[i] = True
                break
            row = prev * 37 + c
            for w in range(words):
                masks[i, w] |= table[row, w]
            prev = c
            if not numbers:
                continue
            if c == 0:  # end of a word
                if ndig > 0 and alldig:
                    if ndig > 6 or (lead0 and ndig > 1) or nn == 8:
                        slow[i] = True
                    else:
                        nums[i, nn] = num
                        nn += 1
                num = 0
                ndig = 0
                alldig = True
            elif c >= 27:
                if ndig == 0:
                    lead0 = c == 27
                num = num * 10 + (c - 27)
                ndig += 1
            else:
                alldig = False
                ndig = max(ndig, 1)
    return masks, nums, slow


def utf8_blob(texts: Sequence[str]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """The texts' UTF-8 bytes end to end (one more zero byte) and their ``starts``."""
    arr = pa.array(texts, type=pa.large_string())
    _, offsets, data = arr.buffers()
    starts = np.frombuffer(offsets, dtype=np.int64, count=arr.offset + len(arr) + 1)
    starts = starts[arr.offset :]
    lo, hi = int(starts[0]), int(starts[-1])
    blob = np.zeros(hi - lo + 1, dtype=np.uint8)
    if data is not None and hi > lo:
        blob[:-1] = np.frombuffer(data, dtype=np.uint8, count=hi)[lo:]
    return blob, starts - lo


def bigram_masks(
    texts: Sequence[str],
    table: U64,
    *,
    numbers: bool,
    blob: tuple[NDArray[np.uint8], NDArray[np.int64]] | None = None,
) -> tuple[U64, NDArray[np.int64], NDArray[np.bool_]]:
    """Masks of q=2 texts from a bigram table (see :func:`_bigram_masks`); ``blob``: the
    texts as :func:`utf8_blob` gives them, if at hand."""
    data, starts = utf8_blob(texts) if blob is None else blob
    out: tuple[U64, NDArray[np.int64], NDArray[np.bool_]] = _bigram_masks(
        data, starts, _CHAR_INDEX, table, numbers
    )
    return out


def positions_table(digests: bytes, n: int, count: int, bits: int) -> U64:
    """Masks (n, bits // 64) from 64-byte digests: ``count`` positions of 4 bytes each."""
    pos = np.frombuffer(digests, dtype="<u4").reshape(n, 16)[:, :count].astype(np.int64) % bits
    out = np.zeros((n, bits // 64), dtype=np.uint64)
    rows = np.repeat(np.arange(n), count)
    flat = pos.reshape(-1)
    np.bitwise_or.at(
        out, (rows, flat >> 6), np.left_shift(np.uint64(1), (flat & 63).astype(np.uint64))
    )
    return out


# --------------------------------------------------------------------------- keyed BLAKE2b
# BLAKE2b-512 keyed with a domain key, of messages up to one block (128 bytes): the
# same digests as ``hashlib.blake2b(msg, key=key, digest_size=64)``. The key block is
# compressed once per key (:func:`blake2b_keyed_state`); each message is one more
# compression, in a kernel that also turns the digest into a token's positions.
_B2_IV = np.array(
    [
        0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
        0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
    ],
    dtype=np.uint64,
)  # fmt: skip
# (BLAKE2b's message schedule is written out in _b2_compress)
B2_MAX_MESSAGE = 128


# (_rotr and _b2_g are inlined by LLVM; inlining them in numba's IR instead made the 96 G
# calls of a compression take seconds to compile)
@njit(cache=True)
def _rotr(x, b):  # type: ignore[no-untyped-def]
    return (x >> np.uint64(b)) | (x << np.uint64(64 - b))


@njit(cache=True)
def _b2_g(a, b, c, d, x, y):  # type: ignore[no-untyped-def]
    a = a + b + x
    d = _rotr(d ^ a, 32)
    c = c + d
    b = _rotr(b ^ c, 24)
    a = a + b + y
    d = _rotr(d ^ a, 16)
    c = c + d
    b = _rotr(b ^ c, 63)
    return a, b, c, d


@njit(cache=True)
def _b2_compress(h, m, t, last, iv, out):  # type: ignore[no-untyped-def]
    """One BLAKE2b compression of block ``m`` (16 words) into ``out``, from state ``h``."""
    v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
    v8, v9, v10, v11 = iv[0], iv[1], iv[2], iv[3]
    v12 = iv[4] ^ np.uint64(t)
    v13 = iv[5]
    v14 = ~iv[6] if last else iv[6]
    v15 = iv[7]
    # the 12 rounds unrolled (message schedule of BLAKE2b written out)
    m0, m1, m2, m3, m4, m5, m6, m7 = m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]
    m8, m9, m10, m11, m12, m13, m14, m15 = m[8], m[9], m[10], m[11], m[12], m[13], m[14], m[15]
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m0, m1)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m2, m3)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m4, m5)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m6, m7)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m8, m9)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m10, m11)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m12, m13)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m14, m15)
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m14, m10)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m4, m8)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m9, m15)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m13, m6)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m1, m12)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m0, m2)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m11, m7)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m5, m3)
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m11, m8)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m12, m0)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m5, m2)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m15, m13)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m10, m14)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m3, m6)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m7, m1)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m9, m4)
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m7, m9)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m3, m1)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m13, m12)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m11, m14)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m2, m6)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m5, m10)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m4, m0)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m15, m8)
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m9, m0)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m5, m7)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m2, m4)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m10, m15)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m14, m1)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m11, m12)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m6, m8)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m3, m13)
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m2, m12)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m6, m10)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m0, m11)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m8, m3)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m4, m13)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m7, m5)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m15, m14)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m1, m9)
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m12, m5)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m1, m15)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m14, m13)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m4, m10)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m0, m7)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m6, m3)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m9, m2)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m8, m11)
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m13, m11)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m7, m14)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m12, m1)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m3, m9)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m5, m0)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m15, m4)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m8, m6)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m2, m10)
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m6, m15)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m14, m9)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m11, m3)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m0, m8)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m12, m2)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m13, m7)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m1, m4)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m10, m5)
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m10, m2)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m8, m4)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m7, m6)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m1, m5)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m15, m11)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m9, m14)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m3, m12)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m13, m0)
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m0, m1)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m2, m3)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m4, m5)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m6, m7)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m8, m9)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m10, m11)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m12, m13)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m14, m15)
    v0, v4, v8, v12 = _b2_g(v0, v4, v8, v12, m14, m10)
    v1, v5, v9, v13 = _b2_g(v1, v5, v9, v13, m4, m8)
    v2, v6, v10, v14 = _b2_g(v2, v6, v10, v14, m9, m15)
    v3, v7, v11, v15 = _b2_g(v3, v7, v11, v15, m13, m6)
    v0, v5, v10, v15 = _b2_g(v0, v5, v10, v15, m1, m12)
    v1, v6, v11, v12 = _b2_g(v1, v6, v11, v12, m0, m2)
    v2, v7, v8, v13 = _b2_g(v2, v7, v8, v13, m11, m7)
    v3, v4, v9, v14 = _b2_g(v3, v4, v9, v14, m5, m3)
    out[0] = h[0] ^ v0 ^ v8
    out[1] = h[1] ^ v1 ^ v9
    out[2] = h[2] ^ v2 ^ v10
    out[3] = h[3] ^ v3 ^ v11
    out[4] = h[4] ^ v4 ^ v12
    out[5] = h[5] ^ v5 ^ v13
    out[6] = h[6] ^ v6 ^ v14
    out[7] = h[7] ^ v7 ^ v15


@njit(cache=True)
def _b2_key_state(keyblock, keylen, iv):  # type: ignore[no-untyped-def]
    h = iv.copy()
    h[0] ^= np.uint64(0x01010000) ^ (np.uint64(keylen) << np.uint64(8)) ^ np.uint64(64)
    out = np.empty(8, dtype=np.uint64)
    _b2_compress(h, keyblock, 128, False, iv, out)
    return out


def blake2b_keyed_state(key: bytes) -> U64:
    """BLAKE2b-512 state after the (padded) key block of ``key`` (at most 64 bytes)."""
    if not 0 < len(key) <= 64:
        raise ValueError("a BLAKE2b key has 1 to 64 bytes")
    block = np.frombuffer(key.ljust(128, b"\0"), dtype="<u8").astype(np.uint64)
    out: U64 = _b2_key_state(block, len(key), _B2_IV)
    return out


@njit(cache=True)
def _b2_masks(state, pre, blob, starts, tail, count, bits, words, iv):  # type: ignore[no-untyped-def]
    n = starts.shape[0] - 1
    masks = np.zeros((n, words), dtype=np.uint64)
    m = np.empty(16, dtype=np.uint64)
    d = np.empty(8, dtype=np.uint64)
    nb = np.uint64(bits)
    np_ = pre.shape[0]
    for i in range(n):
        m[:] = 0
        for j in range(np_):
            m[j >> 3] |= np.uint64(pre[j]) << np.uint64(8 * (j & 7))
        a = starts[i]
        ln = starts[i + 1] - a
        for j in range(ln):
            k = np_ + j
            m[k >> 3] |= np.uint64(blob[a + j]) << np.uint64(8 * (k & 7))
        _b2_compress(state, m, 128 + np_ + ln + tail, True, iv, d)
        for c in range(count):
            p = (d[c >> 1] >> np.uint64(32 * (c & 1))) & np.uint64(0xFFFFFFFF)
            p = p % nb
            masks[i, p >> np.uint64(6)] |= np.uint64(1) << (p & np.uint64(63))
    return masks


def b2_digests_masks(
    state: U64,
    blob: NDArray[np.uint8],
    starts: NDArray[np.int64],
    count: int,
    bits: int,
    *,
    prefix: bytes = b"",
    tail: int = 0,
) -> U64:
    """Masks ``(n, bits // 64)``: the first ``count`` 4-byte words of each message's keyed
    BLAKE2b-512 digest, modulo ``bits``, as positions. Message ``i`` is ``prefix``, then
    ``blob[starts[i] : starts[i + 1]]``, then ``tail`` zero bytes: 1 to 128 bytes."""
    longest = int(np.max(np.diff(starts))) if len(starts) > 1 else 0
    if len(prefix) + longest + tail > B2_MAX_MESSAGE:
        raise ValueError("a message is longer than one BLAKE2b block")
    pre = np.frombuffer(prefix, dtype=np.uint8) if prefix else np.zeros(0, dtype=np.uint8)
    out: U64 = _b2_masks(state, pre, blob, starts, tail, count, bits, bits // 64, _B2_IV)
    return out


def messages(parts: list[bytes]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """One byte blob and its ``starts`` (length ``n + 1``) from ``n`` messages."""
    starts = np.zeros(len(parts) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(p) for p in parts])
    return np.frombuffer(b"".join(parts) + b"\0", dtype=np.uint8), starts


def digit_messages(
    prefix: bytes, cols: list[tuple[NDArray[np.int64], int]], suffix: bytes
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Fixed-width messages ``prefix + digits... + suffix``: each column ``(values, width)``
    written as zero-padded decimal (values must fit the width)."""
    n = len(cols[0][0])
    width = len(prefix) + sum(w for _, w in cols) + len(suffix)
    out = np.empty((n, width), dtype=np.uint8)
    out[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    at = len(prefix)
    for vals, w in cols:
        v = np.asarray(vals, dtype=np.int64)
        for j in range(w - 1, -1, -1):
            out[:, at + j] = 48 + v % 10
            v = v // 10
        at += w
    if suffix:
        out[:, at:] = np.frombuffer(suffix, dtype=np.uint8)
    return out.reshape(-1), np.arange(n + 1, dtype=np.int64) * width


# --------------------------------------------------------------------------- filling
@njit(cache=True)
def _fill_segment(filters, table, codes, offset):  # type: ignore[no-untyped-def]
    words = table.shape[1]
    last = table.shape[0] - 1
    for r in range(codes.shape[0]):
        c = codes[r]
        if c < 0:
            c = last
        for w in range(words):
            filters[r, offset + w] = table[c, w]


def fill_segment(filters: U64, table: U64, codes: NDArray[np.int64], offset: int) -> None:
    """``filters[:, offset : offset + words] = table[codes]`` in place (code -1: the last
    row of ``table``, as numpy reads it)."""
    if table.shape[0] == 0 or len(codes) != filters.shape[0]:
        raise ValueError("one code per row and a table with its missing-value row are needed")
    if offset < 0 or offset + table.shape[1] > filters.shape[1]:
        raise ValueError("the segment does not fit the filters")
    if len(codes) and (int(codes.max()) >= table.shape[0] or int(codes.min()) < -1):
        raise ValueError("a code is outside the table")
    _fill_segment(
        filters, np.ascontiguousarray(table), np.ascontiguousarray(codes, np.int64), offset
    )
