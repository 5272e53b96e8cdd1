"""Dates of birth read byte by byte in numba: the layouts forces export most.

``yyyymmdd``, ``yyyy-mm-dd``, ``dd-mm-yyyy`` (``-``, ``/`` or ``.``; a month over 12 with a
day up to 12 is taken as swapped) and ``dd-Mon-yyyy`` (also with spaces) are read here as
:func:`matcher.normalise.parse_date` reads them; any other value (and any out of range)
is not ``ok`` and takes the parser.

>>> import pyarrow as pa
>>> ok, ymd = read_dates(pa.array(["1985-03-12", "12/25/1985", "30-Jun-84", None]))
>>> ok.tolist(), ymd[:2].tolist()
([True, True, False, False], [[1985, 3, 12], [1985, 12, 25]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import numpy as np
import pyarrow as pa
from numba import njit
from numpy.typing import NDArray

from matcher import _fastencode as fe
from matcher import normalise as nz
from matcher.encoding._textnorm import _arrays

__all__ = ["Dates", "read_dates", "ymd_of"]

I64 = NDArray[np.int64]
# three-letter month names as 24-bit keys ("jan" -> 0x6A616E)
_NAMES = [k for k in nz._MONTHS if len(k) == 3 and k.isascii() and k.isalpha()]
_MONTH_KEYS = np.array([int.from_bytes(k.encode(), "big") for k in _NAMES], dtype=np.int64)
_MONTH_VALUES = np.array([nz._MONTHS[k] for k in _NAMES], dtype=np.int64)


@fe.helper
def _digits(data, a, b):  # type: ignore[no-untyped-def]
    """The number written ``data[a:b]`` in ASCII digits, or -1."""
    v = 0
    for j in range(a, b):
        ch = data[j]
        if ch < 48 or ch > 57:
            return -1
        v = v * 10 + (ch - 48)
    return v


@fe.helper
def _is_sep(ch, space):  # type: ignore[no-untyped-def]
    return ch == 45 or ch == 47 or ch == 46 or (space and ch == 32)


@njit(cache=True)
def _date_kernel(offsets, data, null, month_keys, month_values):  # type: ignore[no-untyped-def]
    n = len(offsets) - 1
    ok = np.zeros(n, dtype=np.bool_)
    ymd = np.zeros((n, 3), dtype=np.int64)
    for i in range(n):
        if null[i]:
            continue
        s = offsets[i]
        ln = offsets[i + 1] - s
        y = m = d = -1
        swap = False
        if ln == 8:
            y = _digits(data, s, s + 4)
            m, d = _digits(data, s + 4, s + 6), _digits(data, s + 6, s + 8)
        elif ln == 10 and _is_sep(data[s + 4], False) and data[s + 7] == data[s + 4]:
            y = _digits(data, s, s + 4)
            m, d = _digits(data, s + 5, s + 7), _digits(data, s + 8, s + 10)
            swap = True
        elif ln == 10 and _is_sep(data[s + 2], False) and data[s + 5] == data[s + 2]:
            d, m = _digits(data, s, s + 2), _digits(data, s + 3, s + 5)
            y = _digits(data, s + 6, s + 10)
            swap = True
        elif ln == 11 and _is_sep(data[s + 2], True) and _is_sep(data[s + 6], True):
            d, y = _digits(data, s, s + 2), _digits(data, s + 7, s + 11)
            key = 0
            for j in range(s + 3, s + 6):
                ch = data[j] | 0x20
                if ch < 97 or ch > 122:
                    key = -1
                    break
                key = key * 256 + ch
            if key >= 0:
                for k in range(month_keys.shape[0]):
                    if month_keys[k] == key:
                        m = month_values[k]
        if y < 0 or m < 0 or d < 0:
            continue
        if swap and m > 12 and d <= 12:
            m, d = d, m
        if 1850 <= y <= 2100 and 1 <= m <= 12 and 1 <= d <= 31:
            ok[i] = True
            ymd[i, 0] = y
            ymd[i, 1] = m
            ymd[i, 2] = d
    return ok, ymd


def read_dates(arr: pa.Array) -> tuple[NDArray[np.bool_], I64]:
    """``ok, ymd`` of each row of a string array (``ymd``: ``(n, 3)``, 0 where not ok)."""
    offsets, data, null = _arrays(arr)
    out: tuple[NDArray[np.bool_], I64] = _date_kernel(
        offsets, data, null, _MONTH_KEYS, _MONTH_VALUES
    )
    return out


class Dates(Sequence[tuple[int, int, int]]):
    """Distinct dates held as a ``(n, 3)`` array of year, month, day; a tuple is made only
    when one is asked for (the encoder reads the array).

    >>> d = Dates(np.array([[1985, 3, 12]])); len(d), d[0], list(d) == [(1985, 3, 12)]
    (1, (1985, 3, 12), True)
    """

    __slots__ = ("ymd",)

    def __init__(self, ymd: I64) -> None:
        self.ymd = ymd

    def __len__(self) -> int:
        return len(self.ymd)

    @overload
    def __getitem__(self, i: int) -> tuple[int, int, int]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[int, int, int]]: ...
    def __getitem__(self, i: int | slice) -> tuple[int, int, int] | list[tuple[int, int, int]]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        y, m, d = self.ymd[i].tolist()
        return y, m, d

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


def ymd_of(values: Sequence[tuple[int, int, int]]) -> I64:
    """Dates as a ``(n, 3)`` array of year, month, day (a :class:`Dates` as it holds them)."""
    if isinstance(values, Dates):
        return values.ymd
    return np.array(values, dtype=np.int64).reshape(-1, 3)
