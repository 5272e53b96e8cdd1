"""Column-wise normalisers for the common case: printable-ASCII text, in Arrow.

Each function takes many raw strings and returns, for each, exactly what the
:mod:`matcher.normalise` function returns for it, or ``...`` where the fast path cannot
decide (text that is not printable ASCII, or a tricky case); those values take the
per-value normaliser.

>>> fast_names(["Mr Seán O'Brien", "DR. Anne-Marie  SMITH iii", "Lord", "n/a", "O'Brien"])
[Ellipsis, 'anne marie smith', 'lord', None, 'obrien']
>>> fast_towns(["St. Albans", "Stratford-upon-Avon", "&", "Unknown"])
['saint albans', 'stratford upon avon', None, None]
>>> fast_name_lists(["Smith-Jones; J. SMITH | smith jones", "n/a", ""])
[('smith jones', 'j smith'), (), ()]
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matcher import normalise as nz

# Only printable ASCII is decided here: for it ``fold`` is ``lower`` and ``strip`` and
# ``split`` see only the space as whitespace.
_PRINTABLE = r"^[\x20-\x7e]*$"
_PLACEHOLDERS = pa.array(sorted(nz._PLACEHOLDERS), type=pa.string())
_TITLES = pa.array(sorted(nz._TITLES), type=pa.string())
_LEADING_TITLES = pa.array(sorted(nz._LEADING_TITLES), type=pa.string())


def _utf8_only(fast: Callable[[list[Any]], list[Any]]) -> Callable[[list[Any]], list[Any]]:
    """``fast``, leaving every value undecided where one is not UTF-8 (a lone surrogate)."""

    @functools.wraps(fast)
    def wrapper(values: list[Any]) -> list[Any]:
        try:
            return fast(values)
        except (pa.ArrowException, UnicodeError):
            return [...] * len(values)

    return wrapper


def _arrow(values: list[Any]) -> pa.Array:
    return pa.array(values, type=pa.string())


def flags(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """``ok`` (printable ASCII), ``placeholder`` (a missing-value word) and the lower case."""
    ok = pc.match_substring_regex(arr, _PRINTABLE).to_numpy(zero_copy_only=False)
    low = pc.ascii_lower(arr)
    trimmed = pc.utf8_trim(low, " ")
    placeholder = pc.is_in(trimmed, value_set=_PLACEHOLDERS).to_numpy(zero_copy_only=False)
    return ok, placeholder, low


def _alnum(arr: pa.Array) -> np.ndarray:
    """Whether each value holds a letter or digit."""
    alnum: np.ndarray = pc.match_substring_regex(arr, "[A-Za-z0-9]").to_numpy(zero_copy_only=False)
    return alnum


def list_offsets(lists: pa.Array) -> np.ndarray:
    """The list offsets of ``lists``, from 0."""
    offsets: np.ndarray = lists.offsets.to_numpy().astype(np.int64)
    offsets -= offsets[0]
    return offsets


def _set(out: list[Any], rows: np.ndarray, value: Any) -> None:
    """``out[i] = value`` for every ``i`` where ``rows`` is true."""
    for i in np.flatnonzero(rows).tolist():
        out[i] = value


def _words(s: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    """The words of printable text: the pieces between spaces, the row of each, whether
    each is a word (not empty), and whether a word follows it in its row."""
    lists = pc.split_pattern(s, " ")
    flat = pc.list_flatten(lists)
    offsets = list_offsets(lists)
    parent = np.repeat(np.arange(len(s), dtype=np.int64), np.diff(offsets))
    word = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    seen = np.zeros(len(flat) + 1, dtype=np.int64)  # words up to each piece
    np.cumsum(word, out=seen[1:])
    follows = seen[offsets[1:]][parent] > seen[1:]
    return flat, parent, word, follows


def _join(flat: pa.Array, parent: np.ndarray, keep: np.ndarray, n: int) -> list[Any]:
    """Rows of the kept words joined by single spaces (None where none is kept)."""
    counts = np.bincount(parent[keep], minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    kept = flat.filter(pa.array(keep, type=pa.bool_()))
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), kept), " ")
    return [t or None for t in joined.to_pylist()]


@_utf8_only
def fast_names(values: list[Any]) -> list[Any]:
    """:func:`matcher.normalise.normalise_name` of strings (``...``: not decided)."""
    n = len(values)
    if not n:
        return []
    arr = _arrow(values)
    ok, placeholder, low = flags(arr)
    s = pc.replace_substring_regex(pc.replace_substring_regex(low, "['`]", ""), "[^a-z]+", " ")
    flat, parent, word, follows = _words(s)
    title = pc.is_in(flat, value_set=_TITLES).to_numpy(zero_copy_only=False)
    leading = pc.is_in(flat, value_set=_LEADING_TITLES).to_numpy(zero_copy_only=False)
    # Sir, Dame, Lord, Lady and Master are dropped only where another word follows
    keep = word & ~title & ~(leading & follows)
    out = _join(flat, parent, keep, n)
    _set(out, placeholder, None)
    _set(out, ~ok, ...)
    return out


@_utf8_only
def fast_towns(values: list[Any]) -> list[Any]:
    """:func:`matcher.normalise.normalise_town` of strings (``...``: not decided)."""
    n = len(values)
    if not n:
        return []
    arr = _arrow(values)
    ok, placeholder, low = flags(arr)
    alnum = _alnum(arr)
    s = pc.replace_substring(low, "&", " and ")
    s = pc.replace_substring_regex(pc.replace_substring_regex(s, "['`]", ""), "[^a-z0-9]+", " ")
    flat, parent, keep, _ = _words(s)
    flat = pc.if_else(pc.equal(flat, "st"), "saint", flat)
    out = _join(flat, parent, keep, n)
    _set(out, placeholder | ~alnum, None)
    _set(out, ~ok, ...)
    return out


@_utf8_only
def fast_name_lists(values: list[Any]) -> list[Any]:
    """``tuple(split_names(v))`` of strings (``...``: not decided)."""
    n = len(values)
    if not n:
        return []
    arr = _arrow(values)
    ok, placeholder, _ = flags(arr)
    alnum = _alnum(arr)
    lists = pc.split_pattern_regex(arr, "[;|/,]")
    parts = pc.dictionary_encode(pc.list_flatten(lists))
    # a part of a printable-ASCII value is printable ASCII, so decided (the others'
    # rows are left undecided below)
    names = fast_names(parts.dictionary.to_pylist())
    got = [names[j] for j in parts.indices.to_numpy(zero_copy_only=False).tolist()]
    bounds = list_offsets(lists).tolist()
    out: list[Any] = [
        tuple(dict.fromkeys(w for w in got[a:b] if w)) for a, b in itertools.pairwise(bounds)
    ]
    _set(out, placeholder | ~alnum, ())
    _set(out, ~ok, ...)
    return out


_ADDRESS_KEYS = pa.array(list(nz._ADDRESS_WORDS), type=pa.string())
_ADDRESS_FULL = pa.array(list(nz._ADDRESS_WORDS.values()), type=pa.string())


@_utf8_only
def fast_address_pieces(pieces: list[Any]) -> list[Any]:
    """The words of whitespace-free lower-case address pieces (``...``: not decided).

    As :func:`matcher.encoding._columns._address_token` for a piece of printable ASCII
    without "&", without a word "st" (before or after apostrophes are dropped) and not a
    placeholder; the others are left undecided.

    >>> fast_address_pieces(["rd.", "o'neill", "st", "12a", "--", "n/a", "&"])
    ['road', 'oneill', Ellipsis, '12a', '', Ellipsis, Ellipsis]
    """
    n = len(pieces)
    if not n:
        return []
    arr = _arrow(pieces)
    ok, placeholder, _ = flags(arr)
    amp = pc.match_substring(arr, "&").to_numpy(zero_copy_only=False)
    s0 = pc.replace_substring_regex(arr, "[^a-z0-9]+", " ")
    s = pc.replace_substring_regex(pc.replace_substring_regex(arr, "['`]", ""), "[^a-z0-9]+", " ")
    decided = ok & ~amp & ~placeholder  # unless a word is "st"
    for text in (s0, s):
        flat, parent, _, _ = _words(text)
        st = pc.equal(flat, "st").to_numpy(zero_copy_only=False)
        decided[parent[st]] = False
    flat, parent, keep, _ = _words(s)
    at = pc.index_in(flat, value_set=_ADDRESS_KEYS)
    flat = pc.if_else(pc.is_valid(at), _ADDRESS_FULL.take(at), flat)
    out = [t or "" for t in _join(flat, parent, keep, n)]
    _set(out, ~decided, ...)
    return out


_POSTCODE = re.compile(rf"^(?P<outward>{nz._OUTWARD})(?P<inward>[0-9][ABD-HJLNP-UW-Z]{{2}})$")


@_utf8_only
def fast_postcodes(values: list[Any]) -> list[Any]:
    """:func:`matcher.normalise.normalise_postcode` of strings that are full UK postcodes
    or missing (``...``: not decided; outward codes, corrections and foreign codes).

    >>> got = fast_postcodes(["sw1a 1aa", "n/a", "-", "2074", "SW1A"])
    >>> [p if p in (None, ...) else p.full for p in got]
    ['SW1A1AA', None, None, Ellipsis, Ellipsis]
    """
    n = len(values)
    if not n:
        return []
    arr = _arrow(values)
    ok, placeholder, _ = flags(arr)
    alnum = _alnum(arr)
    s = pc.replace_substring_regex(pc.ascii_upper(arr), "[^A-Z0-9]+", "")
    parts = pc.extract_regex(s, _POSTCODE.pattern)
    full = pc.is_valid(parts).to_numpy(zero_copy_only=False)
    out: list[Any] = [...] * n
    rows = np.flatnonzero(ok & alnum & ~placeholder & full)
    if len(rows):
        take = pa.array(rows, type=pa.int64())
        outward = pc.struct_field(parts, "outward").take(take).to_pylist()
        inward = pc.struct_field(parts, "inward").take(take).to_pylist()
        area = pc.extract_regex(pa.array(outward, type=pa.string()), "^(?P<area>[A-Z]+)")
        areas = pc.struct_field(area, "area").to_pylist()
        for i, o, w, a in zip(rows.tolist(), outward, inward, areas, strict=True):
            out[i] = nz.Postcode(
                full=o + w, outward=o, inward=w, area=a, district=o, sector=o + w[0], uk=True
            )
    _set(out, ok & (placeholder | ~alnum), None)
    return out
