"""Matching for the service: the live record index and the plain search function.

:class:`RecordIndex` keeps every record's filter, force and reference (for per-field
scoring) beside a :class:`matcher.index.MatchIndex` (for candidate generation: exhaustive
in small segments, LSH over the filter bits in large ones). It is updated while queries
run: a batch is written beyond the published row count and a retraction publishes a new
tombstone mask; each update then publishes one immutable :class:`Snapshot`, which also
freezes the match index as it stood (the match index swaps its own state in one
assignment, so a shallow copy is a frozen view). A reader sees each batch and each
retraction whole or not at all, and a snapshot answers the same way however long it is
kept, which is what audit replay relies on.

:func:`search` is the one place a query is answered (the servicer, watches and audit
replay all call it): Dice top-k candidates from the match index, then the scoring
model's probability, band and per-field agreement levels. Candidate generation uses
the filters only (not the blocking tokens), because the audit log records the filters
that replay must re-run.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
from numpy.typing import NDArray

from matcher.index import MatchIndex
from matcher.lsh import LshConfig
from matcher.schema import LinkageSchema
from matcher.scoring import MatchModel, default_model

__all__ = [
    "MatchResult",
    "RecordIndex",
    "Snapshot",
    "result_dicts",
    "search",
]

_NO_TOKENS = np.zeros(0, np.uint64)


@dataclass(frozen=True)
class MatchResult:
    """One stored record matching a subject; no record content."""

    force: str
    record_ref: str
    score: float
    band: str
    agreement: tuple[int, ...]


def result_dicts(found: Sequence[Sequence[MatchResult]]) -> list[dict[str, Any]]:
    """The audit form of :func:`search`'s answer: one dict per match, subjects numbered."""
    return [
        {
            "subject": i,
            "force": r.force,
            "record_ref": r.record_ref,
            "score": r.score,
            "band": r.band,
            "agreement": list(r.agreement),
        }
        for i, rs in enumerate(found)
        for r in rs
    ]


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of the index: rows ``[0, n)``, a tombstone mask, the match index.

    ``rows`` maps ``(force, record_ref)`` to a row; it only grows, and a row's entry
    outlives its retraction (``live`` decides), so old snapshots can still use it.
    """

    n: int
    filters: NDArray[np.uint64]
    force_ids: NDArray[np.int32]
    refs: list[str]
    live: NDArray[np.bool_]
    forces: tuple[str, ...]
    version: int
    matches: MatchIndex
    rows: dict[tuple[str, str], int]

    @property
    def live_count(self) -> int:
        return int(self.live[: self.n].sum())

    def live_row(self, force: str, ref: str) -> int | None:
        """The row of ``force``'s record ``ref`` if it is live in this view, else None."""
        row = self.rows.get((force, ref))
        return row if row is not None and row < self.n and self.live[row] else None


class RecordIndex:
    """An in-memory, versioned index of live records (see the module docstring).

    >>> idx = RecordIndex(words=2)
    >>> idx.add("AA", ["a" * 32], np.ones((1, 2), np.uint64), version=1)
    >>> idx.snapshot().live_count
    1
    """

    def __init__(
        self, words: int, capacity: int = 1024, *, schema: LinkageSchema | None = None
    ) -> None:
        self.words = words
        self._lock = threading.Lock()
        self._filters = np.zeros((capacity, words), np.uint64)
        self._force_ids = np.zeros(capacity, np.int32)
        self._refs: list[str] = []
        self._rows: dict[tuple[str, str], int] = {}
        self._forces: list[str] = []
        # LSH tables over pairs of the schema's fields (``LshConfig.for_schema``) when the
        # schema is known and fits; whole-filter tables otherwise. Queries never pass
        # blocking tokens (audit replay has only the filters), so these tables alone
        # decide what large segments return: build the live and the replay index alike.
        lsh = (
            LshConfig.for_schema(schema)
            if schema is not None and schema.total_words == words
            else LshConfig.whole_filter(words)
        )
        self._matches = MatchIndex(words, lsh=lsh)
        self._updates = 0
        self._snap = self._publish(0, self._filters, self._force_ids, np.zeros(capacity, bool), 0)

    def _publish(
        self,
        n: int,
        filters: NDArray[np.uint64],
        force_ids: NDArray[np.int32],
        live: NDArray[np.bool_],
        version: int,
    ) -> Snapshot:
        snap = Snapshot(
            n, filters, force_ids, self._refs, live, tuple(self._forces), version,
            copy.copy(self._matches), self._rows,
        )  # fmt: skip
        self._snap = snap
        return snap

    def snapshot(self) -> Snapshot:
        """The current published view (safe to use without locks)."""
        return self._snap

    def add(
        self, force: str, refs: Sequence[str], filters: NDArray[np.uint64], version: int
    ) -> None:
        """Append a batch of one force's records and publish it."""
        with self._lock:
            snap = self._snap
            n, m = snap.n, len(refs)
            if force not in self._forces:
                self._forces.append(force)
            fid = self._forces.index(force)
            filt, fids, live = self._filters, self._force_ids, snap.live
            if n + m > len(filt):
                cap = max(2 * len(filt), n + m)
                filt = np.zeros((cap, self.words), np.uint64)
                filt[:n] = self._filters[:n]
                fids = np.zeros(cap, np.int32)
                fids[:n] = self._force_ids[:n]
                grown = np.zeros(cap, bool)
                grown[:n] = live[:n]
                live = grown
                self._filters, self._force_ids = filt, fids
            else:
                live = live.copy()
            # Rows beyond the published n are invisible to readers until the swap below.
            filt[n : n + m] = filters
            fids[n : n + m] = fid
            live[n : n + m] = True
            self._refs.extend(refs)
            keys = zip(repeat(force), refs, strict=False)  # repeat() is endless
            self._rows.update(zip(keys, range(n, n + m), strict=True))
            self._updates += 1
            self._matches.add(
                f"update-{self._updates}",
                force,
                list(refs),
                np.ascontiguousarray(filters, dtype=np.uint64),
                [_NO_TOKENS] * m,
            )
            self._publish(n + m, filt, fids, live, version)

    def retract(self, force: str, refs: Sequence[str], version: int) -> int:
        """Tombstone records of ``force``; returns how many were live."""
        with self._lock:
            snap = self._snap
            live = snap.live.copy()
            gone = []
            for ref in refs:
                row = self._rows.get((force, ref))
                if row is not None and live[row]:
                    live[row] = False
                    gone.append(ref)
            if gone:
                self._matches.retract(force, gone)
            self._publish(snap.n, snap.filters, snap.force_ids, live, version)
            return len(gone)

    def is_live(self, force: str, ref: str) -> bool:
        return self._snap.live_row(force, ref) is not None

    def __len__(self) -> int:
        return self._snap.live_count

    def memory_bytes(self) -> int:
        """Approximate bytes held per the published view (arrays, references, maps)."""
        snap = self._snap
        per_ref = 81 + 8 + 56 + 100  # str, list slot, (force, ref) tuple, dict entry
        return snap.n * (self.words * 8 + 4 + 1 + per_ref) + snap.matches.memory_bytes()


def search(
    snap: Snapshot,
    subjects: NDArray[np.uint64],
    *,
    schema: LinkageSchema,
    model: MatchModel | None = None,
    exclude_force: str | None = None,
    max_results: int = 10,
    threshold: float = 0.5,
) -> list[list[MatchResult]]:
    """For each subject row, its matches in ``snap`` best first (only banded ones).

    Deterministic for a given snapshot, which is what lets audit replay compare results.
    """
    model = model or default_model(schema)
    out: list[list[MatchResult]] = [[] for _ in range(len(subjects))]
    if snap.n == 0 or len(subjects) == 0:
        return out
    found = snap.matches.query(
        np.ascontiguousarray(subjects, dtype=np.uint64),
        k=max_results * 4 + 8,
        threshold=threshold,
        exclude_force=exclude_force,
    )
    qi: list[int] = []
    rows: list[int] = []
    for q, matches in enumerate(found):
        for m in matches:
            row = snap.live_row(m.force, m.record_ref)
            if row is not None:
                qi.append(q)
                rows.append(row)
    if qi:
        q_arr, j_arr = np.array(qi, np.int64), np.array(rows, np.int64)
        stored = snap.filters[: snap.n]
        probs, levels = model.score(schema, subjects, stored, q_arr, j_arr)
        for p, q, j, lv in zip(probs.tolist(), qi, rows, levels, strict=True):
            band = model.band(p)
            if band is None:
                continue
            out[q].append(
                MatchResult(
                    snap.forces[snap.force_ids[j]], snap.refs[j], round(float(p), 6), band,
                    tuple(int(x) for x in lv),
                )
            )  # fmt: skip
    for res in out:
        res.sort(key=lambda r: (-r.score, r.force, r.record_ref))
        del res[max_results:]
    return out
