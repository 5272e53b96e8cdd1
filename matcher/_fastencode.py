"""Vectorised core of :mod:`matcher.encoding`: token semantics, keyed tables and kernels.

Encoding works on *distinct values*, not rows: a column is factorised, each distinct raw
value is normalised once, each distinct normalised value of a field gets its segment bits
once (a row of a per-field table), and the rows of the filter array are filled by one
fancy-index per field. Only three steps are per record, and they are numba kernels:
the keyed record seed (SipHash-2-4 over the record's value ids), the randomized-response
bit flips, and the blocking tokens (SipHash-2-4 over a token's components).

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

import hashlib
from typing import Any

import numpy as np
import pandas as pd
from numba import njit
from numpy.typing import NDArray

from matcher import normalise as nz

__all__ = [
    "Token",
    "block_token_kernel",
    "flip_bits",
    "qgrams",
    "siphash_rows",
    "sipkey",
    "value_ids",
    "value_tokens",
    "word_bigram_identity",
]

Token = tuple[str, int]  # (token text, weight: multiples of the field's k)
U64 = NDArray[np.uint64]


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


def value_text(value: Any) -> str:
    """A normalised value as text, for its 64-bit id (record seeds and blocking)."""
    if isinstance(value, tuple):
        if value and isinstance(value[0], int):
            y, m, d = value
            return f"{y:04d}{m:02d}{d:02d}"
        return "\x1f".join(value)
    if isinstance(value, nz.Postcode):
        return value.full
    return str(value)


def value_ids(values: list[Any]) -> U64:
    """Stable (unkeyed) 64-bit ids of distinct values; a keyed PRF is applied on top."""
    if not values:
        return np.zeros(0, dtype=np.uint64)
    first = values[0]
    if isinstance(first, tuple) and first and isinstance(first[0], int):  # dates
        ids: U64 = np.array(values, dtype=np.uint64).reshape(-1, 3) @ np.array(
            [10_000, 100, 1], dtype=np.uint64
        )
        return ids + np.uint64(1 << 40)
    texts = values if isinstance(first, str) else [value_text(v) for v in values]
    ids = pd.util.hash_array(np.array(texts, dtype=object), categorize=False).astype(np.uint64)
    ids[ids == 0] = 1  # 0 means "missing"
    return ids


def sipkey(key: bytes) -> tuple[np.uint64, np.uint64]:
    """The two 64-bit halves of a 128-bit SipHash key taken from a derived key."""
    return (
        np.uint64(int.from_bytes(key[:8], "little")),
        np.uint64(int.from_bytes(key[8:16], "little")),
    )


def keyed_id(key: bytes, text: str) -> int:
    """A keyed 64-bit BLAKE2b value (type constants of blocking tokens)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), key=key, digest_size=8).digest(), "little")


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
def _siphash(k0, k1, msg, m):  # type: ignore[no-untyped-def]
    """SipHash-2-4 of the first ``m`` little-endian 64-bit words of ``msg``."""
    v0 = k0 ^ np.uint64(0x736F6D6570736575)
    v1 = k1 ^ np.uint64(0x646F72616E646F6D)
    v2 = k0 ^ np.uint64(0x6C7967656E657261)
    v3 = k1 ^ np.uint64(0x7465646279746573)
    for i in range(m):
        w = msg[i]
        v3 ^= w
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0 ^= w
    b = np.uint64((8 * m) & 0xFF) << np.uint64(56)
    v3 ^= b
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= np.uint64(0xFF)
    for _ in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


@njit(cache=True)
def _siphash_rows(k0, k1, words):  # type: ignore[no-untyped-def]
    n, m = words.shape
    out = np.empty(n, dtype=np.uint64)
    for r in range(n):
        out[r] = _siphash(k0, k1, words[r], m)
    return out


def siphash_rows(key: tuple[np.uint64, np.uint64], words: U64) -> U64:
    """SipHash-2-4 (keyed PRF) of each row of a ``(n, m)`` uint64 array."""
    out: U64 = _siphash_rows(key[0], key[1], np.ascontiguousarray(words, dtype=np.uint64))
    return out


@njit(cache=True)
def _flip(filters, seeds, nbits, p):  # type: ignore[no-untyped-def]
    # Geometric gaps between flipped bits: each bit flips independently with probability p.
    log_q = np.log1p(-p)
    golden = np.uint64(0x9E3779B97F4A7C15)
    for r in range(filters.shape[0]):
        # The seed is scrambled (a murmur3 finaliser, a bijection) before use as the
        # splitmix64 state, so seeds in arithmetic progression (splitmix64's own step)
        # do not give overlapping streams.
        state = seeds[r]
        state = (state ^ (state >> np.uint64(33))) * np.uint64(0xFF51AFD7ED558CCD)
        state = (state ^ (state >> np.uint64(33))) * np.uint64(0xC4CEB9FE1A85EC53)
        state ^= state >> np.uint64(33)
        pos = -1
        while True:
            state += golden
            z = state
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z ^= z >> np.uint64(31)
            u = (np.float64(z >> np.uint64(11)) + 1.0) * (1.0 / 9007199254740992.0)
            gap = np.log(u) / log_q
            if gap >= nbits:
                break
            pos += int(gap) + 1
            if pos >= nbits:
                break
            filters[r, pos >> 6] ^= np.uint64(1) << np.uint64(pos & 63)


def flip_bits(filters: U64, seeds: U64, flip_probability: float) -> U64:
    """Flip each bit of each row with ``flip_probability``, from the row's splitmix64 stream."""
    out = np.array(filters, dtype=np.uint64, order="C", copy=True)
    if flip_probability > 0.0 and len(out):
        _flip(
            out,
            np.ascontiguousarray(seeds, dtype=np.uint64),
            out.shape[1] * 64,
            float(flip_probability),
        )
    return out


@njit(cache=True)
def _block_tokens(k0, k1, types, yob, fn, sn, root, dsk, pc, oth, oth_off, oth_codes):  # type: ignore[no-untyped-def]
    n = yob.shape[0]
    cap = np.zeros(n + 1, dtype=np.int64)
    for r in range(n):
        c = 6
        if oth[r] >= 0:
            c += oth_off[oth[r] + 1] - oth_off[oth[r]]
        cap[r + 1] = cap[r] + c
    flat = np.empty(cap[n], dtype=np.uint64)
    counts = np.zeros(n, dtype=np.int64)
    msg = np.empty(3, dtype=np.uint64)
    codes = np.empty(3, dtype=np.uint64)
    zero = np.uint64(0)
    for r in range(n):
        start = cap[r]
        c = 0
        y = yob[r]
        nc = 0
        for v in (fn[r], sn[r], root[r]):
            if v != zero:
                codes[nc] = v
                nc += 1
        if y != zero:
            for i in range(nc):
                msg[0] = types[0]
                msg[1] = codes[i]
                msg[2] = y
                flat[start + c] = _siphash(k0, k1, msg, 3)
                c += 1
            if oth[r] >= 0:
                for j in range(oth_off[oth[r]], oth_off[oth[r] + 1]):
                    msg[0] = types[0]
                    msg[1] = oth_codes[j]
                    msg[2] = y
                    flat[start + c] = _siphash(k0, k1, msg, 3)
                    c += 1
        if nc >= 2:
            msg[0] = types[1]
            msg[1] = min(codes[0], codes[1])
            msg[2] = max(codes[0], codes[1])
            flat[start + c] = _siphash(k0, k1, msg, 3)
            c += 1
        if dsk[r] != zero:
            msg[0] = types[2]
            msg[1] = dsk[r]
            msg[2] = zero
            flat[start + c] = _siphash(k0, k1, msg, 3)
            c += 1
        if pc[r] != zero:
            msg[0] = types[3]
            msg[1] = pc[r]
            msg[2] = zero
            flat[start + c] = _siphash(k0, k1, msg, 3)
            c += 1
        # sorted and without repeats, as a set of tokens (insertion sort: a handful each)
        for i in range(start + 1, start + c):
            v = flat[i]
            j = i - 1
            while j >= start and flat[j] > v:
                flat[j + 1] = flat[j]
                j -= 1
            flat[j + 1] = v
        k = 0
        for i in range(start, start + c):
            if k == 0 or flat[i] != flat[start + k - 1]:
                flat[start + k] = flat[i]
                k += 1
        counts[r] = k
    return flat, cap, counts


def block_token_kernel(
    key: tuple[np.uint64, np.uint64],
    types: U64,
    parts: dict[str, NDArray[Any]],
) -> list[U64]:
    """Per-record keyed blocking tokens from per-row component ids (0 = absent).

    ``parts``: ``yob, fn, sn, root, dsk, pc`` (uint64 per row), ``oth`` (int64 index into
    the other-names lists, -1 for none), ``oth_off`` and ``oth_codes`` (CSR of soundex ids).
    """
    flat, cap, counts = _block_tokens(
        key[0], key[1], types, parts["yob"], parts["fn"], parts["sn"], parts["root"],
        parts["dsk"], parts["pc"], parts["oth"], parts["oth_off"], parts["oth_codes"],
    )  # fmt: skip
    starts = cap[:-1]
    return [flat[a : a + c] for a, c in zip(starts.tolist(), counts.tolist(), strict=True)]


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


def bigram_masks(
    texts: list[str], table: U64, *, numbers: bool
) -> tuple[U64, NDArray[np.int64], NDArray[np.bool_]]:
    """Masks of q=2 texts from a bigram table (see :func:`_bigram_masks`)."""
    enc = [t.encode() for t in texts]
    starts = np.zeros(len(enc) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(b) for b in enc])
    blob = np.frombuffer(b"".join(enc) + b"\0", dtype=np.uint8)
    out: tuple[U64, NDArray[np.int64], NDArray[np.bool_]] = _bigram_masks(
        blob, starts, _CHAR_INDEX, table, numbers
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
