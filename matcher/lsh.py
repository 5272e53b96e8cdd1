"""Candidate generation: keyed blocking tokens plus MinHash LSH over the filter bits.

Two records are candidates when they share a keyed blocking token (made by the force
from name codes, dates and postcodes; see :mod:`matcher.encoding`) or when they collide
in any LSH table. A table hashes MinHash values taken over one or more *spans* of the
filter's words, usually the segments of two fields (surname and address, forename and
town, ...; see :meth:`LshConfig.for_schema`), so that a pair agreeing strongly on both
fields collides even when the rest of the record differs. Each MinHash is
one-permutation style: the first set bit among ``bin_size`` bit positions drawn at random
(without replacement) from the band, which collides with probability about the Jaccard
similarity of the band's bits. Positions come from a public seed: the bits are already
keyed, so nothing secret is needed here.

:func:`find_pairs` adds the policy: the exhaustive Dice kernel when ``n * m`` is small
enough that it is cheaper (and exact), blocking plus exact scoring of the candidates
otherwise. :func:`pair_quality` measures pair completeness and reduction ratio.

>>> rng = np.random.default_rng(0)
>>> a = rng.integers(0, 2**63, size=(50, 16), dtype=np.uint64)
>>> tokens = [np.array([t % 10], dtype=np.uint64) for t in range(50)]
>>> i, j = candidate_pairs(a, tokens, a, tokens, self_join=True)
>>> bool(np.all(i < j)), (0, 10) in set(zip(i.tolist(), j.tolist()))
(True, True)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
from numba import njit
from numpy.typing import NDArray

from matcher.batch import flat_tokens
from matcher.errors import InputError
from matcher.schema import LinkageSchema
from matcher.similarity import dice_candidates, dice_pairs, popcounts

__all__ = [
    "LshBand",
    "LshConfig",
    "PairQuality",
    "candidate_pairs",
    "find_pairs",
    "lsh_keys",
    "pair_quality",
    "record_keys",
]

Strategy = Literal["auto", "exhaustive", "blocked"]

_TOKEN_DOMAIN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class LshBand:
    """LSH tables over words ``[word_start, word_stop)`` of the filter (and ``also``).

    ``tables`` tables, each keyed by ``hashes`` MinHash values of ``bin_size`` positions
    from those words, plus, for each ``(word_start, word_stop, hashes)`` in ``also``, that
    many from those words (a table over two fields collides only when both agree).
    More hashes per table: fewer chance collisions; more tables: fewer missed pairs.
    """

    word_start: int
    word_stop: int
    tables: int = 4
    hashes: int = 4
    bin_size: int = 16
    also: tuple[tuple[int, int, int], ...] = ()

    @property
    def spans(self) -> tuple[tuple[int, int, int], ...]:
        """``(word_start, word_stop, hashes)`` of every span feeding each table's key."""
        return ((self.word_start, self.word_stop, self.hashes), *self.also)

    @property
    def hashes_per_table(self) -> int:
        return sum(h for _, _, h in self.spans)


@dataclass(frozen=True)
class LshConfig:
    """Which LSH tables to build and how large a block may be before it is skipped.

    ``max_block_pairs`` caps the pairs one key may produce (a key shared by very many
    records carries little information and would swamp the candidates).

    >>> LshConfig.whole_filter(16).bands[0].word_stop
    16
    """

    bands: tuple[LshBand, ...]
    seed: int = 0x5EED
    max_block_pairs: int = 250_000

    @classmethod
    def whole_filter(cls, words: int, *, tables: int = 8, hashes: int = 6) -> LshConfig:
        return cls((LshBand(0, words, tables, hashes),))

    @classmethod
    def for_schema(
        cls, schema: LinkageSchema, *, recall: Literal["balanced", "high"] = "balanced"
    ) -> LshConfig:
        """Tables keyed on two or three fields of ``schema`` (forename, surname, address,
        town), so that a pair agreeing on those fields collides even when the rest
        differs, and a few on the address or the town alone.

        Measured on the six FEBRL quality sets with the encoder's blocking tokens
        (``benchmarks/similarity.py``; four secrets): tokens alone keep 97.5-99.3% of
        true pairs (they miss pairs whose date and postcode both changed).
        ``"balanced"`` (24 tables, what the index uses; about 105 bytes a record in the
        index) lifts that to at least 99.52% on every set at a reduction ratio of
        0.9896-0.993 (0.9904-0.9916 under the benchmark's secret); ``"high"`` (35 tables,
        over the index's 300-byte budget, for batch linkage) to at least 99.62% at
        0.987-0.990. The tables alone (no tokens) keep 88-96%. Below about 80,000 records
        a side :func:`find_pairs` runs the exact kernel instead, which keeps every pair.
        """
        spans = _field_spans(schema)
        recipe = _RECIPES[recall]
        bands = []
        for parts, tables in recipe:
            if not all(role in spans for role, _ in parts):
                continue
            (first, h0), rest = parts[0], parts[1:]
            lo, hi = spans[first]
            also = tuple((*spans[role], h) for role, h in rest)
            bands.append(LshBand(lo, hi, tables, h0, also=also))
        if not bands:
            bands.append(LshBand(0, schema.total_words, 8, 8))
        return cls(tuple(bands))

    def validate(self, words: int) -> None:
        problems = []
        for b in self.bands:
            for start, stop, hashes in b.spans:
                if not 0 <= start < stop <= words:
                    problems.append(f"band words [{start}, {stop}) exceed {words}")
                elif b.bin_size > (stop - start) * 64:
                    problems.append("band bins are too large for its bits")
                if hashes < 1:
                    problems.append("band hashes must be positive")
            if b.tables < 0 or b.bin_size < 1:
                problems.append("band tables must be >= 0 and bin_size positive")
        if problems:
            raise InputError("; ".join(problems), field="lsh")

    @property
    def n_tables(self) -> int:
        return sum(b.tables for b in self.bands)


# Table recipes for :meth:`LshConfig.for_schema`: ((field role, MinHashes), ...), tables.
# Chosen by greedy search on the six FEBRL quality sets encoded under four secrets: a
# table over two fields (3 or 4 MinHashes each) collides for pairs that agree on both
# and rarely otherwise; the 3-field tables (2 each) and the town-only and address-only
# ones catch pairs where little else agrees. Pairs that agree on dates or postcodes are
# the blocking tokens' business.
_Recipe = tuple[tuple[tuple[tuple[str, int], ...], int], ...]
_RECIPES: dict[str, _Recipe] = {
    "balanced": (
        ((("surname", 3), ("address", 3)), 4),
        ((("forename", 3), ("address", 3)), 2),
        ((("forename", 3), ("town", 3)), 2),
        ((("surname", 3), ("town", 3)), 3),
        ((("address", 4), ("town", 4)), 5),
        ((("forename", 2), ("town", 2), ("address", 2)), 3),
        ((("address", 5),), 1),
        ((("town", 8),), 4),
    ),
    "high": (
        ((("surname", 3), ("address", 3)), 6),
        ((("forename", 3), ("address", 3)), 4),
        ((("forename", 3), ("town", 3)), 3),
        ((("surname", 3), ("town", 3)), 4),
        ((("address", 4), ("town", 4)), 6),
        ((("forename", 2), ("town", 2), ("address", 2)), 4),
        ((("forename", 3), ("surname", 3)), 2),
        ((("address", 5),), 2),
        ((("town", 8),), 4),
    ),
}


def _field_spans(schema: LinkageSchema) -> dict[str, tuple[int, int]]:
    """Word spans of the roles the recipes use: the first two ``name`` fields are the
    forename and the surname; ``address``, ``town`` and ``postcode`` by kind (first of each)."""
    spans: dict[str, tuple[int, int]] = {}
    names = ("forename", "surname")
    n_names = 0
    for f, seg in zip(schema.fields, schema.segments, strict=True):
        span = (seg.word_offset, seg.word_offset + seg.words)
        if f.kind == "name" and n_names < len(names):
            spans[names[n_names]] = span
            n_names += 1
        elif f.kind in ("address", "town", "postcode"):
            spans.setdefault(f.kind, span)
    return spans


@functools.lru_cache(maxsize=32)
def _positions(config: LshConfig) -> NDArray[np.int64]:
    """Bit positions for every (table, hash, slot): shape ``(tables, hashes_max, bin)``.

    A table's positions depend only on the seed, its band's spans and bin size and its
    number within the band, so adding a band or a table leaves the other tables alone.
    """
    hmax = max((b.hashes_per_table for b in config.bands), default=1)
    bmax = max((b.bin_size for b in config.bands), default=1)
    out = np.full((config.n_tables, hmax, bmax), -1, dtype=np.int64)
    t = 0
    for band in config.bands:
        shape = [v for span in band.spans for v in span]
        for number in range(band.tables):
            rng = np.random.default_rng([config.seed, band.bin_size, number, *shape])
            h = 0
            for start, stop, hashes in band.spans:
                lo, hi = start * 64, stop * 64
                for _ in range(hashes):
                    out[t, h, : band.bin_size] = lo + rng.choice(
                        hi - lo, band.bin_size, replace=False
                    )
                    h += 1
            t += 1
    out.flags.writeable = False  # shared by every caller through the cache
    return out


@njit(nogil=True, cache=True, inline="always")
def _mix(x):  # type: ignore[no-untyped-def]
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    return x ^ (x >> np.uint64(31))


@njit(nogil=True, cache=True)
def _lsh_keys_kernel(filters, pos):  # type: ignore[no-untyped-def]
    n = filters.shape[0]
    ntab, nh, nb = pos.shape
    out = np.empty((n, ntab), dtype=np.uint64)
    for i in range(n):
        for t in range(ntab):
            key = np.uint64(t + 1) * _M2
            for h in range(nh):
                if pos[t, h, 0] < 0:
                    break
                v = nb
                for s in range(nb):
                    p = pos[t, h, s]
                    if p < 0:
                        break
                    if (filters[i, p >> 6] >> np.uint64(p & 63)) & np.uint64(1):
                        v = s
                        break
                key = _mix(key ^ np.uint64(v + 1 + 64 * h))
            out[i, t] = key
    return out


def lsh_keys(filters: NDArray[np.uint64], config: LshConfig) -> NDArray[np.uint64]:
    """One key per LSH table per record: shape ``(n, config.n_tables)``.

    >>> x = np.zeros((2, 16), np.uint64)
    >>> k = lsh_keys(x, LshConfig.whole_filter(16, tables=3))
    >>> k.shape, bool(np.all(k[0] == k[1]))
    ((2, 3), True)
    """
    if filters.ndim != 2 or filters.dtype != np.uint64:
        raise InputError("filters must be a 2-D uint64 array", field="filters")
    config.validate(filters.shape[1])
    return np.asarray(_lsh_keys_kernel(np.ascontiguousarray(filters), _positions(config)))


def record_keys(
    filters: NDArray[np.uint64], tokens: Sequence[NDArray[np.uint64]] | None, config: LshConfig
) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """All blocking keys of a set of records as flat ``(key, row)`` arrays.

    LSH keys carry their table, tokens a domain of their own, so keys of different kinds
    never meet.
    """
    n = filters.shape[0]
    keys = lsh_keys(filters, config)
    parts_k = [keys.reshape(-1)]
    parts_r = [np.repeat(np.arange(n, dtype=np.int64), keys.shape[1])]
    if tokens is not None:
        if len(tokens) != n:
            raise InputError("one token array per record is needed", field="tokens")
        flat, offsets = flat_tokens(tokens)
        parts_k.append(flat ^ _TOKEN_DOMAIN)
        parts_r.append(np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets)))
    return np.concatenate(parts_k), np.concatenate(parts_r)


@njit(nogil=True, cache=True)
def _join(ka, ra, kb, rb, self_join, max_block, emit, out_i, out_j):  # type: ignore[no-untyped-def]
    """Pairs of rows sharing a key (``ka``/``kb`` sorted). Counts, or fills when ``emit``."""
    x = 0
    y = 0
    k = 0
    na = ka.shape[0]
    nb = kb.shape[0]
    while x < na and y < nb:
        if ka[x] < kb[y]:
            x += 1
        elif ka[x] > kb[y]:
            y += 1
        else:
            key = ka[x]
            x1 = x
            while x1 < na and ka[x1] == key:
                x1 += 1
            y1 = y
            while y1 < nb and kb[y1] == key:
                y1 += 1
            if (x1 - x) * (y1 - y) <= max_block:
                for u in range(x, x1):
                    # a self-join meets each pair of entries once
                    for v in range(u + 1 if self_join else y, y1):
                        i = ra[u]
                        j = rb[v]
                        if self_join:
                            if i == j:
                                continue
                            if i > j:
                                i, j = j, i
                        if emit:
                            out_i[k] = i
                            out_j[k] = j
                        k += 1
            x = x1
            y = y1
    return k


def candidate_pairs(
    a_filters: NDArray[np.uint64],
    a_tokens: Sequence[NDArray[np.uint64]] | None,
    b_filters: NDArray[np.uint64],
    b_tokens: Sequence[NDArray[np.uint64]] | None,
    *,
    self_join: bool = False,
    config: LshConfig | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Distinct candidate pairs ``(i, j)``, sorted; with ``self_join`` only ``i < j``.

    ``config`` defaults to :meth:`LshConfig.whole_filter`.

    >>> x = np.zeros((3, 2), np.uint64)
    >>> candidate_pairs(x, None, x, None, self_join=True)[0].tolist()
    [0, 0, 1]
    """
    if a_filters.ndim != 2 or b_filters.ndim != 2 or a_filters.shape[1] != b_filters.shape[1]:
        raise InputError("a and b filters must be 2-D with the same width", field="filters")
    if self_join and a_filters.shape[0] != b_filters.shape[0]:
        raise InputError("self_join needs b to be a", field="b_filters")
    cfg = config or LshConfig.whole_filter(a_filters.shape[1])
    ka, ra = record_keys(a_filters, a_tokens, cfg)
    if self_join:
        kb, rb = ka, ra
    else:
        kb, rb = record_keys(b_filters, b_tokens, cfg)
    oa = np.argsort(ka, kind="stable")
    ob = oa if self_join else np.argsort(kb, kind="stable")
    args = (ka[oa], ra[oa], kb[ob], rb[ob], self_join, cfg.max_block_pairs)
    count = _join(*args, False, np.empty(0, np.int64), np.empty(0, np.int64))
    pi = np.empty(count, dtype=np.int64)
    pj = np.empty(count, dtype=np.int64)
    _join(*args, True, pi, pj)
    m = max(1, b_filters.shape[0])
    flat = _sorted_unique(pi * m + pj)
    return flat // m, flat % m


def _sorted_unique(x: NDArray[np.int64]) -> NDArray[np.int64]:
    # np.unique hashes first in numpy 2.x, which is several times slower than this
    x = np.sort(x)
    if len(x) == 0:
        return x
    keep = np.empty(len(x), dtype=np.bool_)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


@dataclass(frozen=True)
class PairQuality:
    """How well a candidate set covers the true pairs.

    ``pair_completeness``: share of true pairs among the candidates. ``reduction_ratio``:
    ``1 - candidates / all comparable pairs``.
    """

    candidates: int
    true_pairs: int
    found: int
    comparable: int

    @property
    def pair_completeness(self) -> float:
        return self.found / self.true_pairs if self.true_pairs else 1.0

    @property
    def reduction_ratio(self) -> float:
        return 1.0 - self.candidates / self.comparable if self.comparable else 0.0


def pair_quality(
    cand: tuple[NDArray[np.int64], NDArray[np.int64]],
    true: tuple[NDArray[np.int64], NDArray[np.int64]],
    n: int,
    m: int,
    *,
    self_join: bool = False,
) -> PairQuality:
    """Pair completeness and reduction ratio of candidates against known true pairs.

    With ``self_join`` pairs are unordered (give them with ``i < j``).

    >>> q = pair_quality((np.array([0]), np.array([1])), (np.array([0, 1]), np.array([1, 2])),
    ...                  3, 3, self_join=True)
    >>> q.pair_completeness, round(q.reduction_ratio, 3)
    (0.5, 0.667)
    """
    width = max(1, m)
    ci = _sorted_unique(cand[0].astype(np.int64) * width + cand[1])
    ti = _sorted_unique(true[0].astype(np.int64) * width + true[1])
    comparable = n * (n - 1) // 2 if self_join else n * m
    found = int(np.isin(ti, ci, assume_unique=True).sum())
    return PairQuality(len(ci), len(ti), found, comparable)


def _exhaustive_is_cheaper(n: int, m: int, self_join: bool, threads: int | None) -> bool:
    # Measured with realistic filters on 2 cores (benchmarks/similarity.py): the kernel
    # does about 1e9 pairs/s per thread; blocking (hashing, join, dedupe, scoring) costs
    # 20-35 us per record and runs on one thread. Break-even near 80,000 records a side.
    pairs = n * m / (2 if self_join else 1)
    workers = max(1, threads or numba.get_num_threads())
    return pairs * 1.2e-9 / workers <= (n + (0 if self_join else m)) * 25e-6


def find_pairs(
    a_filters: NDArray[np.uint64],
    a_tokens: Sequence[NDArray[np.uint64]] | None,
    b_filters: NDArray[np.uint64],
    b_tokens: Sequence[NDArray[np.uint64]] | None,
    threshold: float,
    *,
    self_join: bool = False,
    config: LshConfig | None = None,
    strategy: Strategy = "auto",
    threads: int | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Scored pairs with ``Dice >= threshold``: exhaustive or blocked, whichever is cheaper.

    ``strategy="exhaustive"`` is exact; ``"blocked"`` scores only :func:`candidate_pairs`
    (exact scores, some pairs may be missed); ``"auto"`` picks by estimated cost. Output
    is sorted by ``(i, j)``.

    >>> x = np.array([[0b1111], [0b0111], [0b1000]], dtype=np.uint64)
    >>> find_pairs(x, None, x, None, 0.8, self_join=True)[1].tolist()
    [1]
    """
    n, m = a_filters.shape[0], b_filters.shape[0]
    if strategy not in ("auto", "exhaustive", "blocked"):
        raise InputError("strategy must be auto, exhaustive or blocked", field="strategy")
    if strategy == "exhaustive" or (
        strategy == "auto" and _exhaustive_is_cheaper(n, m, self_join, threads)
    ):
        return dice_candidates(
            a_filters, b_filters, threshold, self_join=self_join, threads=threads
        )
    i, j = candidate_pairs(
        a_filters, a_tokens, b_filters, b_tokens, self_join=self_join, config=config
    )
    pop_a = popcounts(a_filters)
    pop_b = pop_a if self_join else popcounts(b_filters)
    scores = dice_pairs(a_filters, b_filters, i, j, pop_a=pop_a, pop_b=pop_b)
    keep = scores >= threshold
    return i[keep], j[keep], scores[keep]
