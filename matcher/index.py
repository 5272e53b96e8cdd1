"""The in-memory match index the service queries while forces add and retract records.

The index is a tuple of immutable *segments* held in one snapshot. Writers (``add``,
``retract``, ``compact``) build new arrays under a lock and then swap the snapshot
reference in one assignment; readers take the current snapshot without locking, so a
query never sees a half-applied batch and never waits for a writer.

A segment stores, per record: the filter (``w`` words), its popcount (``uint16``), the
record reference as two ``uint64`` (rows are sorted by it, so a retraction is a binary
search), a force code (``uint16``) and a live flag. Blocking structures: for each LSH
table a bucketed CSR of row ids (``int32``; buckets are a power of two near ``n / 16``),
and the blocking tokens as sorted ``(uint32 hash, int32 row)`` pairs. At 1024 bits with
:meth:`LshConfig.for_schema`'s tables and four or five tokens that is 270-295 bytes a
record (:meth:`MatchIndex.memory_bytes` counts every array).

Each batch becomes a segment; equal-sized neighbours merge (a binary counter, so there
are ``O(log n)`` segments), dropping retracted rows. Segments smaller than
``exhaustive_below`` are scanned in full; larger ones score only the records that share
a token or an LSH bucket with the subject (:mod:`matcher.lsh`).

Ties in score are broken by record reference, which depends only on the stored records,
so a query replayed against the same records returns the same answer however the
segments happen to be laid out.

>>> rng = np.random.default_rng(0)
>>> idx = MatchIndex(words=16)
>>> refs = ["%032x" % i for i in range(1, 4)]
>>> f = rng.integers(0, 2**63, size=(3, 16), dtype=np.uint64)
>>> idx.add("b1", "F01", refs, f, [np.zeros(0, np.uint64)] * 3)
True
>>> [(m.force, m.record_ref[-1], m.score) for m in idx.query_one(f[1], k=1)]
[('F01', '2', 1.0)]
>>> idx.retract("F01", [refs[1]]), idx.query_one(f[1], k=1, threshold=0.9)
(1, [])
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numba import njit
from numpy.typing import NDArray

from matcher._dice_kernels import _popcnt, _score
from matcher.batch import flat_tokens
from matcher.errors import InputError
from matcher.lsh import _TOKEN_DOMAIN, LshConfig, lsh_keys
from matcher.similarity import popcounts

__all__ = ["Match", "MatchIndex"]

_NO_FORCE = np.int64(-1)


@dataclass(frozen=True, slots=True)
class Match:
    """One stored record that matches a subject: where to ask, and how close it is."""

    force: str
    record_ref: str
    score: float


# -- kernels -----------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _bucket_csr(keys, nbuckets):  # type: ignore[no-untyped-def]
    """Per table, row ids grouped by ``key & (nbuckets - 1)``: offsets and rows."""
    n, ntab = keys.shape
    mask = np.uint64(nbuckets - 1)
    offs = np.zeros((ntab, nbuckets + 1), dtype=np.int32)
    rows = np.empty((ntab, n), dtype=np.int32)
    for t in range(ntab):
        for i in range(n):
            offs[t, np.int64(keys[i, t] & mask) + 1] += 1
        for b in range(nbuckets):
            offs[t, b + 1] += offs[t, b]
        fill = offs[t, :nbuckets].copy()
        for i in range(n):
            bk = np.int64(keys[i, t] & mask)
            rows[t, fill[bk]] = i
            fill[bk] += 1
    return offs, rows


@njit(nogil=True, cache=True)
def _gather_candidates(qkeys, qtok, lsh_off, lsh_rows, tok_keys, tok_rows, max_bucket):  # type: ignore[no-untyped-def]
    """Distinct rows sharing an LSH bucket or a token with the subject, ascending.

    Buckets and token blocks holding more than ``max_bucket`` rows are passed over: a key
    that common says little, and scoring it would dominate the query's time.
    """
    ntab = lsh_off.shape[0]
    nb = lsh_off.shape[1] - 1
    mask = np.uint64(nb - 1)
    lo = np.empty(ntab + qtok.shape[0], dtype=np.int64)
    hi = np.empty(ntab + qtok.shape[0], dtype=np.int64)
    src = np.empty(ntab + qtok.shape[0], dtype=np.int64)  # table, or -1 for tokens
    for t in range(ntab):
        b = np.int64(qkeys[t] & mask)
        lo[t] = lsh_off[t, b]
        hi[t] = lsh_off[t, b + 1]
        src[t] = t
    starts = np.searchsorted(tok_keys, qtok, side="left")
    stops = np.searchsorted(tok_keys, qtok, side="right")
    for x in range(qtok.shape[0]):
        lo[ntab + x] = starts[x]
        hi[ntab + x] = stops[x]
        src[ntab + x] = -1
    total = 0
    for y in range(lo.shape[0]):
        if hi[y] - lo[y] <= max_bucket:
            total += hi[y] - lo[y]
    out = np.empty(total, dtype=np.int32)
    o = 0
    for y in range(lo.shape[0]):
        if hi[y] - lo[y] > max_bucket:
            continue
        for z in range(lo[y], hi[y]):
            out[o] = lsh_rows[src[y], z] if src[y] >= 0 else tok_rows[z]
            o += 1
    out.sort()
    keep = 0
    for y in range(total):
        if y == 0 or out[y] != out[y - 1]:
            out[keep] = out[y]
            keep += 1
    return out[:keep]


@njit(nogil=True, cache=True)
def _score_rows(q, qpop, rows, filters, pops, force, alive, exclude, threshold, k):  # type: ignore[no-untyped-def]
    """Best ``k`` live ``rows`` (given ascending) not of force ``exclude``.

    Returns rows and scores ordered by score descending, then row ascending.
    """
    w = filters.shape[1]
    best_r = np.empty(k, dtype=np.int64)
    best_s = np.empty(k, dtype=np.float64)
    filled = 0
    for x in range(rows.shape[0]):
        i = rows[x]
        if not alive[i] or force[i] == exclude:
            continue
        c = 0
        for t in range(w):
            c += _popcnt(q[t] & filters[i, t])
        s = _score(c, qpop + pops[i])
        if s < threshold:
            continue
        if filled < k:
            pos = filled
            filled += 1
        elif s > best_s[k - 1]:
            pos = k - 1
        else:
            continue
        while pos > 0 and best_s[pos - 1] < s:
            best_s[pos] = best_s[pos - 1]
            best_r[pos] = best_r[pos - 1]
            pos -= 1
        best_s[pos] = s
        best_r[pos] = i
    return best_r[:filled], best_s[:filled]


@njit(nogil=True, cache=True)
def _find_refs(ref_hi, ref_lo, hi, lo):  # type: ignore[no-untyped-def]
    """Binary search of ``(hi, lo)`` pairs in rows sorted by ``(ref_hi, ref_lo)``."""
    out = np.full(hi.shape[0], -1, dtype=np.int64)
    n = ref_hi.shape[0]
    for x in range(hi.shape[0]):
        left = 0
        right = n
        while left < right:
            mid = (left + right) >> 1
            if ref_hi[mid] < hi[x] or (ref_hi[mid] == hi[x] and ref_lo[mid] < lo[x]):
                left = mid + 1
            else:
                right = mid
        if left < n and ref_hi[left] == hi[x] and ref_lo[left] == lo[x]:
            out[x] = left
    return out


# -- segments ----------------------------------------------------------------------------


def _token_hash(tokens: NDArray[np.uint64]) -> NDArray[np.uint32]:
    x = tokens ^ _TOKEN_DOMAIN
    x = (x ^ (x >> np.uint64(33))) * np.uint64(0xFF51AFD7ED558CCD)
    return (x >> np.uint64(32)).astype(np.uint32)


def _refs_to_words(refs: Sequence[str]) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    try:
        raw = b"".join(bytes.fromhex(r) if len(r) == 32 else b"!" for r in refs)
    except (ValueError, TypeError):
        raise InputError(
            "record references must be 32 hex characters", field="record_ref"
        ) from None
    if len(raw) != 16 * len(refs):
        raise InputError("record references must be 32 hex characters", field="record_ref")
    words = np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)
    return words[:, 0].copy(), words[:, 1].copy()


@dataclass(frozen=True)
class _Segment:
    filters: NDArray[np.uint64]
    pops: NDArray[np.uint16]
    ref_hi: NDArray[np.uint64]
    ref_lo: NDArray[np.uint64]
    force: NDArray[np.uint16]
    alive: NDArray[np.bool_]
    lsh_off: NDArray[np.int32]
    lsh_rows: NDArray[np.int32]
    tok_keys: NDArray[np.uint32]
    tok_rows: NDArray[np.int32]
    live: int

    def __len__(self) -> int:
        return int(self.filters.shape[0])

    def nbytes(self) -> int:
        arrays = (
            self.filters, self.pops, self.ref_hi, self.ref_lo, self.force, self.alive,
            self.lsh_off, self.lsh_rows, self.tok_keys, self.tok_rows,
        )  # fmt: skip
        return sum(a.nbytes for a in arrays) + 512

    def find(self, hi: NDArray[np.uint64], lo: NDArray[np.uint64]) -> NDArray[np.int64]:
        """Row of each reference (``-1`` where absent), live or not."""
        return np.asarray(_find_refs(self.ref_hi, self.ref_lo, hi, lo))


def _build_segment(
    filters: NDArray[np.uint64],
    ref_hi: NDArray[np.uint64],
    ref_lo: NDArray[np.uint64],
    force: NDArray[np.uint16],
    tok_keys: NDArray[np.uint32],
    tok_rows: NDArray[np.int32],
    lsh: LshConfig,
) -> _Segment:
    """A segment from rows in any order; ``tok_rows`` index those rows."""
    order = np.lexsort((ref_lo, ref_hi))
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    filters = np.ascontiguousarray(filters[order])
    n = len(order)
    tok_rows = rank[tok_rows]
    by_key = np.lexsort((tok_rows, tok_keys))
    nb = 1 << max(4, int(n // 16).bit_length())
    keys = lsh_keys(filters, lsh) if lsh.n_tables and n else np.zeros((n, 0), np.uint64)
    lsh_off, lsh_rows = _bucket_csr(keys, nb)
    return _Segment(
        filters=filters,
        pops=popcounts(filters).astype(np.uint16),
        ref_hi=ref_hi[order],
        ref_lo=ref_lo[order],
        force=force[order],
        alive=np.ones(n, dtype=np.bool_),
        lsh_off=lsh_off,
        lsh_rows=lsh_rows,
        tok_keys=tok_keys[by_key],
        tok_rows=tok_rows[by_key],
        live=n,
    )


def _merge(segments: Sequence[_Segment], lsh: LshConfig) -> _Segment:
    """One segment holding the live rows of ``segments``."""
    parts_f, parts_hi, parts_lo, parts_force, parts_k, parts_r = [], [], [], [], [], []
    base = 0
    for seg in segments:
        keep = np.flatnonzero(seg.alive)
        newrow = np.full(len(seg), -1, dtype=np.int64)
        newrow[keep] = base + np.arange(len(keep))
        parts_f.append(seg.filters[keep])
        parts_hi.append(seg.ref_hi[keep])
        parts_lo.append(seg.ref_lo[keep])
        parts_force.append(seg.force[keep])
        live_tok = seg.alive[seg.tok_rows]
        parts_k.append(seg.tok_keys[live_tok])
        parts_r.append(newrow[seg.tok_rows[live_tok]].astype(np.int32))
        base += len(keep)
    return _build_segment(
        np.concatenate(parts_f),
        np.concatenate(parts_hi),
        np.concatenate(parts_lo),
        np.concatenate(parts_force),
        np.concatenate(parts_k),
        np.concatenate(parts_r),
        lsh,
    )


@dataclass(frozen=True)
class _Snapshot:
    segments: tuple[_Segment, ...]
    forces: tuple[str, ...]
    batches: frozenset[str]
    version: int


# -- the index ---------------------------------------------------------------------------


class MatchIndex:
    """Thread-safe in-memory index of encoded records from many forces.

    ``words`` is the filter width in 64-bit words. ``lsh`` chooses the LSH tables (default:
    :meth:`LshConfig.whole_filter`; use :meth:`LshConfig.for_schema` with a schema).
    Segments under ``exhaustive_below`` records are scanned in full, so small indexes
    answer exactly; in larger ones an LSH bucket or token block of more than
    ``max_bucket`` records is passed over.
    """

    def __init__(
        self,
        words: int = 16,
        *,
        lsh: LshConfig | None = None,
        exhaustive_below: int = 20_000,
        max_bucket: int = 2048,
    ) -> None:
        if words < 1:
            raise InputError("words must be at least 1", field="words")
        self.words = words
        self.lsh = lsh if lsh is not None else LshConfig.whole_filter(words)
        self.lsh.validate(words)
        self.exhaustive_below = exhaustive_below
        self.max_bucket = max_bucket
        self._write = threading.Lock()
        self._snap = _Snapshot((), (), frozenset(), 0)

    # -- reading ------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Bumped by every add or retract that changes what queries can see."""
        return self._snap.version

    def __len__(self) -> int:
        return sum(s.live for s in self._snap.segments)

    def memory_bytes(self) -> int:
        """Bytes held by the current snapshot's arrays."""
        return sum(s.nbytes() for s in self._snap.segments)

    def query_one(
        self,
        subject: NDArray[np.uint64],
        *,
        k: int = 10,
        threshold: float = 0.0,
        exclude_force: str | None = None,
        tokens: NDArray[np.uint64] | None = None,
    ) -> list[Match]:
        """Best ``k`` live records with ``Dice >= threshold`` for one subject filter.

        ``exclude_force`` leaves out the asking force's own records. ``tokens`` are the
        subject's blocking tokens (they widen the candidates in large segments).
        """
        return self.query(
            np.asarray(subject).reshape(1, -1),
            k=k,
            threshold=threshold,
            exclude_force=exclude_force,
            tokens=None if tokens is None else [tokens],
        )[0]

    def query(
        self,
        subjects: NDArray[np.uint64],
        *,
        k: int = 10,
        threshold: float = 0.0,
        exclude_force: str | None = None,
        tokens: Sequence[NDArray[np.uint64]] | None = None,
    ) -> list[list[Match]]:
        """:meth:`query_one` for each row of ``subjects``, against one snapshot.

        Results are ordered by score, highest first; equal scores by record reference.
        """
        snap = self._snap
        if subjects.ndim != 2 or subjects.dtype != np.uint64 or subjects.shape[1] != self.words:
            raise InputError(f"subjects must be uint64 rows of {self.words} words", field="filter")
        if k < 0 or not 0.0 <= threshold <= 1.0:
            raise InputError("k must be >= 0 and threshold in [0, 1]", field="k")
        if tokens is not None and len(tokens) != subjects.shape[0]:
            raise InputError("one token array per subject is needed", field="blocking_tokens")
        subjects = np.ascontiguousarray(subjects)
        exclude = (
            snap.forces.index(exclude_force)
            if exclude_force is not None and exclude_force in snap.forces
            else _NO_FORCE
        )
        qpops = popcounts(subjects)
        blocked = any(len(s) >= self.exhaustive_below for s in snap.segments)
        qkeys = lsh_keys(subjects, self.lsh) if blocked and self.lsh.n_tables else None
        out: list[list[Match]] = []
        for x in range(subjects.shape[0]):
            qtok = (
                np.sort(_token_hash(np.asarray(tokens[x], dtype=np.uint64)))
                if tokens is not None
                else np.zeros(0, np.uint32)
            )
            found: list[tuple[float, int, int, int]] = []
            for seg in snap.segments:
                if k == 0 or seg.live == 0:
                    continue
                if len(seg) >= self.exhaustive_below:
                    keys = qkeys[x] if qkeys is not None else np.zeros(0, np.uint64)
                    rows = _gather_candidates(
                        keys, qtok, seg.lsh_off, seg.lsh_rows, seg.tok_keys, seg.tok_rows,
                        self.max_bucket,
                    )  # fmt: skip
                else:
                    rows = np.arange(len(seg), dtype=np.int32)
                r, s = _score_rows(
                    subjects[x], int(qpops[x]), rows, seg.filters, seg.pops, seg.force,
                    seg.alive, exclude, threshold, k,
                )  # fmt: skip
                for row, score in zip(r.tolist(), s.tolist(), strict=True):
                    hi, lo = int(seg.ref_hi[row]), int(seg.ref_lo[row])
                    found.append((-score, hi, lo, int(seg.force[row])))
            found.sort()
            out.append(
                [Match(snap.forces[f], f"{hi:016x}{lo:016x}", -neg) for neg, hi, lo, f in found[:k]]
            )
        return out

    # -- writing ------------------------------------------------------------------------
    def add(
        self,
        batch_id: str,
        force: str,
        record_refs: Sequence[str],
        filters: NDArray[np.uint64],
        tokens: Sequence[NDArray[np.uint64]],
    ) -> bool:
        """Add a batch atomically; ``False`` (and no change) if ``batch_id`` was added before.

        Every reference must be new to the index (among live records).
        """
        n = len(record_refs)
        if not force:
            raise InputError("force code must not be empty", field="force")
        if filters.ndim != 2 or filters.dtype != np.uint64 or filters.shape != (n, self.words):
            raise InputError(f"filters must be uint64 of shape ({n}, {self.words})", field="filter")
        if len(tokens) != n:
            raise InputError("one token array per record is needed", field="blocking_tokens")
        hi, lo = _refs_to_words(record_refs)
        if n and len(np.unique(np.stack([hi, lo], axis=1), axis=0)) != n:
            raise InputError("a record reference appears twice in the batch", field="record_ref")
        flat, offsets = flat_tokens(tokens)
        with self._write:
            snap = self._snap
            if batch_id in snap.batches:
                return False
            for seg in snap.segments:
                rows = seg.find(hi, lo)
                hit = rows >= 0
                if np.any(seg.alive[rows[hit]]):
                    raise InputError("a record reference is already indexed", field="record_ref")
            forces = snap.forces if force in snap.forces else (*snap.forces, force)
            if len(forces) > np.iinfo(np.uint16).max:
                raise InputError("too many forces", field="force")
            code = np.full(n, forces.index(force), dtype=np.uint16)
            segments = list(snap.segments)
            if n:
                segments.append(
                    _build_segment(
                        np.ascontiguousarray(filters), hi, lo, code, _token_hash(flat),
                        np.repeat(np.arange(n, dtype=np.int32), np.diff(offsets)), self.lsh,
                    )
                )  # fmt: skip
                # binary-counter merging keeps O(log n) segments
                while len(segments) >= 2 and segments[-2].live <= 2 * segments[-1].live:
                    segments[-2:] = [_merge(segments[-2:], self.lsh)]
            self._snap = _Snapshot(
                tuple(segments), forces, snap.batches | {batch_id}, snap.version + (n > 0)
            )
            return True

    def retract(self, force: str, record_refs: Sequence[str]) -> int:
        """Hide ``force``'s records at once (tombstones); returns how many were live.

        References not held, or held for another force, are ignored.
        """
        hi, lo = _refs_to_words(record_refs)
        with self._write:
            snap = self._snap
            if force not in snap.forces or not len(hi):
                return 0
            code = snap.forces.index(force)
            segments = []
            total = 0
            for seg in snap.segments:
                rows = seg.find(hi, lo)
                rows = rows[rows >= 0]
                rows = rows[(seg.force[rows] == code) & seg.alive[rows]]
                if len(rows):
                    alive = seg.alive.copy()
                    alive[rows] = False
                    seg = replace(seg, alive=alive, live=seg.live - len(rows))
                    total += len(rows)
                segments.append(seg)
            if total:
                self._snap = _Snapshot(tuple(segments), snap.forces, snap.batches, snap.version + 1)
            return total

    def compact(self) -> None:
        """Drop retracted rows for good and merge all segments into one."""
        with self._write:
            snap = self._snap
            if not snap.segments:
                return
            if len(snap.segments) == 1 and snap.segments[0].live == len(snap.segments[0]):
                return
            merged = _merge(snap.segments, self.lsh)
            segments = (merged,) if len(merged) else ()
            self._snap = _Snapshot(segments, snap.forces, snap.batches, snap.version)
