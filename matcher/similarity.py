"""Dice similarity over packed bit vectors: a fast kernel and a plain reference.

Records are Bloom filters packed into ``uint64`` words, one row per record (see
:mod:`matcher.batch`). The Dice coefficient of two rows is ``2|a & b| / (|a| + |b|)``,
defined as ``0.0`` when both are empty.

The fast functions are multithreaded numba kernels. They compute the score exactly as
the reference does (the same float64 expression on the same integers), so they return
exactly the reference's pairs and scores; the property tests check this. How they are
fast:

* ``b`` is laid out in blocks of 8 rows stored word-major, so one 512-bit load holds the
  same word of 8 rows: AND with a broadcast word of ``a``, a vector popcount (VPOPCNTQ on
  AVX-512 CPUs; LLVM lowers it to what the CPU has elsewhere) and a vector add give 8
  pair counts at once with no horizontal sum. 8 rows of ``a`` share each load (64 pairs
  per block), which runs at about one pair per 3.5 cycles;
* a pair is looked at closely only when its count reaches a per-row lower bound derived
  exactly from the threshold and the popcounts (for top-k, from the current ``k``-th
  best score); the vector compare sets a 64-bit mask and the exact float test runs on
  its set bits only;
* popcounts are computed once (pass ``pop_a``/``pop_b`` to reuse them); tiles of ``b``
  stay in L2 while 64 rows of ``a`` pass over them; tasks are scheduled dynamically, and
  with few rows ``b`` is split into chunks so that every thread has work.

``threads`` limits the numba threads for one call (numba's thread count is per calling
thread, so concurrent callers do not interfere).

>>> rng = np.random.default_rng(0)
>>> a = rng.integers(0, 2**63, size=(3, 16), dtype=np.uint64)
>>> i, j, s = dice_candidates(a, a, 0.99)
>>> i.tolist(), j.tolist(), s.tolist()
([0, 1, 2], [0, 1, 2], [1.0, 1.0, 1.0])
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from matcher._dice_kernels import (
    _BIG,
    _R,
    _TILE,
    _candidates_kernel,
    _cmin_table,
    _pairs_kernel,
    _popcounts_kernel,
    _popcounts_serial,
    _topk_kernel,
)
from matcher.errors import InputError

__all__ = [
    "dice_candidates",
    "dice_candidates_reference",
    "dice_pairs",
    "dice_topk",
    "dice_topk_reference",
    "popcounts",
]

Pairs = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]

_numba: Any = numba
_LAUNCH_LOCK = threading.Lock()
_MAX_THREADS: int = getattr(numba.config, "NUMBA_NUM_THREADS", 1)


# -- typed wrappers ----------------------------------------------------------------------


@contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    """Limit numba's threads for the calling thread, restoring the previous value.

    numba's ``workqueue`` threading layer (the fallback where neither TBB nor OpenMP is
    installed) aborts when two threads launch parallel kernels at once, so launches are
    serialised under it (and before the first launch, while the layer is unknown).
    """
    if threads is not None and threads < 1:
        raise InputError("threads must be at least 1", field="threads")
    try:
        layer: str | None = _numba.threading_layer()
    except ValueError:
        layer = None
    lock = _LAUNCH_LOCK if layer in (None, "workqueue") else contextlib.nullcontext()
    with lock:
        if threads is None:
            yield
            return
        previous = numba.get_num_threads()
        numba.set_num_threads(min(threads, _MAX_THREADS))
        try:
            yield
        finally:
            numba.set_num_threads(previous)


def _as_filters(x: NDArray[np.uint64], name: str) -> NDArray[np.uint64]:
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype != np.uint64:
        raise InputError(f"{name} must be a 2-D uint64 array", field=name)
    return np.ascontiguousarray(x)


def _as_pops(pop: NDArray[np.int32] | None, x: NDArray[np.uint64], name: str) -> NDArray[np.int32]:
    if pop is None:
        return popcounts(x)
    pop = np.ascontiguousarray(pop, dtype=np.int32)
    if pop.shape != (x.shape[0],):
        raise InputError(f"{name} must have one popcount per row", field=name)
    return pop


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 <= t <= 1.0:
        raise InputError("threshold must lie in [0, 1]", field="threshold")
    return t


def _check_pair(
    a: NDArray[np.uint64], b: NDArray[np.uint64]
) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    a = _as_filters(a, "a")
    b = _as_filters(b, "b")
    if a.shape[1] != b.shape[1]:
        raise InputError("a and b must have the same number of words", field="b")
    return a, b


def popcounts(x: NDArray[np.uint64]) -> NDArray[np.int32]:
    """Number of set bits in each row of a ``(n, w)`` ``uint64`` array.

    >>> popcounts(np.array([[0, 1], [3, 2**63]], dtype=np.uint64)).tolist()
    [1, 3]
    """
    x = _as_filters(x, "x")
    kernel = _popcounts_kernel if x.shape[0] * x.shape[1] >= 1 << 16 else _popcounts_serial
    return np.asarray(kernel(x), dtype=np.int32)


def _pad_rows(x: NDArray[np.uint64], mult: int) -> NDArray[np.uint64]:
    n = x.shape[0]
    if n % mult == 0:
        return x
    out = np.zeros(((n + mult - 1) // mult * mult, x.shape[1]), dtype=np.uint64)
    out[:n] = x
    return out


def _blocked(b: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """``b`` as blocks of 8 rows stored word-major: shape ``(ceil(m / 8), w, 8)``."""
    padded = _pad_rows(b, 8)
    blocks = padded.reshape(padded.shape[0] // 8, 8, padded.shape[1])
    return np.ascontiguousarray(blocks.transpose(0, 2, 1))


def _plan(n: int, m: int) -> tuple[int, int]:
    """Super-group size (in row groups) and number of chunks of ``b`` for a call.

    Many rows: 8 groups (64 rows) share each cache tile and each task covers all of
    ``b``. Few rows: split ``b`` so that every thread has several tasks.
    """
    threads = numba.get_num_threads()
    ngroups = (n + _R - 1) // _R
    if ngroups >= 8 * threads * 8:
        return 8, 1
    tiles = max(1, (m + 8 * _TILE - 1) // (8 * _TILE))
    return 1, max(1, min(tiles, (4 * threads + ngroups - 1) // ngroups))


@contextmanager
def _dynamic_schedule() -> Iterator[None]:
    # tasks differ in cost (self-joins, hits), and other processes share the cores
    previous = numba.set_parallel_chunksize(1)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(previous)


def dice_candidates(
    a: NDArray[np.uint64],
    b: NDArray[np.uint64],
    threshold: float,
    *,
    pop_a: NDArray[np.int32] | None = None,
    pop_b: NDArray[np.int32] | None = None,
    self_join: bool = False,
    threads: int | None = None,
) -> Pairs:
    """Every pair ``(i, j)`` with ``Dice(a[i], b[j]) >= threshold``, sorted by ``(i, j)``.

    With ``self_join=True``, ``b`` must be ``a`` and only pairs with ``i < j`` are
    returned. Returns ``(i, j, score)`` arrays.

    >>> a = np.array([[0b1111], [0b0111], [0b1000]], dtype=np.uint64)
    >>> i, j, s = dice_candidates(a, a, 0.8, self_join=True)
    >>> list(zip(i.tolist(), j.tolist(), s.round(3).tolist()))
    [(0, 1, 0.857)]
    """
    a, b = _check_pair(a, b)
    t = _check_threshold(threshold)
    if self_join and a.shape[0] != b.shape[0]:
        raise InputError("self_join needs b to be a", field="b")
    pa = _as_pops(pop_a, a, "pop_a")
    pb = pa if self_join and pop_b is None else _as_pops(pop_b, b, "pop_b")
    n, m = a.shape[0], b.shape[0]
    with _num_threads(threads):
        if n == 0 or m == 0:
            return _empty()
        cmin_p = _cmin_table(a.shape[1] * 64, t)
        ap = _pad_rows(a, _R)
        cmin = np.full(ap.shape[0], _BIG, dtype=np.int64)
        cmin[:n] = cmin_p[pa]
        sg, nchunks = _plan(n, m)
        with _dynamic_schedule():
            i, j, c = _candidates_kernel(
                ap, _blocked(b), pa, pb, cmin, t, self_join, n, m, sg, nchunks
            )
    denom = (pa[i].astype(np.int64) + pb[j]).astype(np.float64)
    scores = np.zeros(len(c), dtype=np.float64)
    np.divide(2.0 * c, denom, out=scores, where=denom > 0)
    return i, j, scores


def dice_topk(
    query: NDArray[np.uint64],
    b: NDArray[np.uint64],
    k: int,
    threshold: float = 0.0,
    *,
    pop_b: NDArray[np.int32] | None = None,
    threads: int | None = None,
) -> Pairs:
    """For each query row, its best ``k`` rows of ``b`` scoring at least ``threshold``.

    Ties are broken by lower ``j``. Returns ``(q, j, score)`` sorted by ``q``, then score
    descending, then ``j``.

    >>> b = np.array([[0b1111], [0b0111], [0b1000]], dtype=np.uint64)
    >>> q, j, s = dice_topk(b[:1], b, 2)
    >>> j.tolist(), s.round(3).tolist()
    ([0, 1], [1.0, 0.857])
    """
    query, b = _check_pair(query, b)
    t = _check_threshold(threshold)
    if k < 0:
        raise InputError("k must not be negative", field="k")
    pq = popcounts(query)
    pb = _as_pops(pop_b, b, "pop_b")
    n, m = query.shape[0], b.shape[0]
    k = min(int(k), m)
    with _num_threads(threads):
        if n == 0 or k == 0:
            return _empty()
        cmin_p = _cmin_table(query.shape[1] * 64, t)
        sg, nchunks = _plan(n, m)
        qmin_blk = np.full(-(-m // 8) * 8, _BIG, dtype=np.int64)
        qmin_blk[:m] = pb
        qmin_blk = qmin_blk.reshape(-1, 8).min(axis=1)
        with _dynamic_schedule():
            return _topk_kernel(  # type: ignore[no-any-return]
                _pad_rows(query, _R),
                _blocked(b),
                pq,
                pb,
                cmin_p,
                qmin_blk,
                t,
                n,
                m,
                k,
                sg,
                nchunks,
            )


def dice_pairs(
    a: NDArray[np.uint64],
    b: NDArray[np.uint64],
    i: NDArray[np.int64],
    j: NDArray[np.int64],
    *,
    pop_a: NDArray[np.int32] | None = None,
    pop_b: NDArray[np.int32] | None = None,
    threads: int | None = None,
) -> NDArray[np.float64]:
    """Dice scores of the given pairs ``(a[i[t]], b[j[t]])``.

    >>> x = np.array([[0b1111], [0b0111]], dtype=np.uint64)
    >>> dice_pairs(x, x, np.array([0, 0]), np.array([0, 1])).round(3).tolist()
    [1.0, 0.857]
    """
    a, b = _check_pair(a, b)
    pi = np.ascontiguousarray(i, dtype=np.int64)
    pj = np.ascontiguousarray(j, dtype=np.int64)
    if pi.shape != pj.shape or pi.ndim != 1:
        raise InputError("i and j must be 1-D arrays of the same length", field="j")
    if len(pi) and (pi.min() < 0 or pi.max() >= a.shape[0]):
        raise InputError("i holds a row outside a", field="i")
    if len(pj) and (pj.min() < 0 or pj.max() >= b.shape[0]):
        raise InputError("j holds a row outside b", field="j")
    pa = _as_pops(pop_a, a, "pop_a")
    pb = _as_pops(pop_b, b, "pop_b")
    with _num_threads(threads):
        return np.asarray(_pairs_kernel(a, b, pa, pb, pi, pj), dtype=np.float64)


def _empty() -> Pairs:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)


# -- references --------------------------------------------------------------------------


def _reference_pops(x: NDArray[np.uint64]) -> NDArray[np.int32]:
    """Row popcounts the obvious way (independent of the kernels)."""
    return np.asarray(np.bitwise_count(x).sum(axis=1, dtype=np.int32))


def _reference_scores(
    a: NDArray[np.uint64],
    b: NDArray[np.uint64],
    pa: NDArray[np.int32],
    pb: NDArray[np.int32],
) -> NDArray[np.float64]:
    """The full ``(n, m)`` Dice matrix, computed the obvious way (a few rows at a time)."""
    scores = np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    for r0 in range(0, a.shape[0], 32):
        x = a[r0 : r0 + 32]
        c = np.bitwise_count(x[:, None, :] & b[None, :, :]).sum(axis=2, dtype=np.int64)
        denom = (pa[r0 : r0 + 32, None].astype(np.int64) + pb[None, :]).astype(np.float64)
        np.divide(2.0 * c, denom, out=scores[r0 : r0 + 32], where=denom > 0)
    return scores


def dice_candidates_reference(
    a: NDArray[np.uint64],
    b: NDArray[np.uint64],
    threshold: float,
    *,
    pop_a: NDArray[np.int32] | None = None,
    pop_b: NDArray[np.int32] | None = None,
    self_join: bool = False,
) -> Pairs:
    """Plain numpy version of :func:`dice_candidates`; quadratic memory, for tests.

    >>> a = np.array([[0b1111], [0b0111]], dtype=np.uint64)
    >>> dice_candidates_reference(a, a, 0.8, self_join=True)[0].tolist()
    [0]
    """
    a, b = _check_pair(a, b)
    t = _check_threshold(threshold)
    pa = _reference_pops(a) if pop_a is None else pop_a
    pb = _reference_pops(b) if pop_b is None else pop_b
    scores = _reference_scores(a, b, pa, pb)
    keep = scores >= t
    if self_join:
        keep &= np.triu(np.ones_like(keep), k=1)
    i, j = np.nonzero(keep)  # row-major, so already sorted by (i, j)
    return i.astype(np.int64), j.astype(np.int64), scores[i, j]


def dice_topk_reference(
    query: NDArray[np.uint64],
    b: NDArray[np.uint64],
    k: int,
    threshold: float = 0.0,
    *,
    pop_b: NDArray[np.int32] | None = None,
) -> Pairs:
    """Plain numpy version of :func:`dice_topk`.

    >>> b = np.array([[0b1111], [0b0111]], dtype=np.uint64)
    >>> dice_topk_reference(b, b, 1)[1].tolist()
    [0, 1]
    """
    query, b = _check_pair(query, b)
    t = _check_threshold(threshold)
    pq = _reference_pops(query)
    pb = _reference_pops(b) if pop_b is None else pop_b
    scores = _reference_scores(query, b, pq, pb)
    qs: list[NDArray[np.int64]] = []
    js: list[NDArray[np.int64]] = []
    ss: list[NDArray[np.float64]] = []
    for q in range(query.shape[0]):
        row = scores[q]
        order = np.lexsort((np.arange(len(row)), -row))
        order = order[row[order] >= t][: max(k, 0)]
        qs.append(np.full(len(order), q, dtype=np.int64))
        js.append(order.astype(np.int64))
        ss.append(row[order])
    if not qs:
        return _empty()
    return np.concatenate(qs), np.concatenate(js), np.concatenate(ss)
