"""Watches: registered subjects re-checked against every later batch; alerts are kept.

When a batch is applied, every watch (except those of the submitting force, unless
asked) is searched against that batch alone; matches become :class:`AlertRecord` rows
numbered per watch, persisted together with the watch's scanned version. At start,
batches applied after a watch's scanned version (e.g. before a crash) are scanned again,
so no alert is lost. Streams wait on a condition and read new alerts from the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from matcher.batch import EncodedBatch
from matcher.schema import LinkageSchema
from matcher.scoring import MatchModel
from matcher.service.matching import MatchResult, RecordIndex, Snapshot, search
from matcher.store import AlertRecord, BatchEvent, Store, WatchRecord

__all__ = ["WatchHub", "batch_snapshot", "scans_batch", "watch_search"]


class WatchHub:
    """Live watches of one service (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        schema: LinkageSchema,
        model: MatchModel,
        *,
        threshold: float,
        max_results: int,
    ) -> None:
        self._store = store
        self._schema = schema
        self._model = model
        self._threshold = threshold
        self._max_results = max_results
        self._cond = threading.Condition()
        self._generation = 0
        self._closed = False
        self._watches: dict[str, WatchRecord] = {w.watch_id: w for w in store.watches()}

    def __len__(self) -> int:
        return len(self._watches)

    @property
    def max_results(self) -> int:
        """Alerts kept per subject and batch (recorded in the Watch audit entry)."""
        return self._max_results

    @property
    def threshold(self) -> float:
        """The candidate threshold of watch searches (recorded in the audit entry)."""
        return self._threshold

    def count_for(self, owner: str) -> int:
        return sum(1 for w in self._watches.values() if w.owner == owner)

    def register(self, watch: WatchRecord) -> None:
        self._store.add_watch(watch)
        with self._cond:
            self._watches[watch.watch_id] = watch

    def get(self, watch_id: str) -> WatchRecord:
        watch = self._watches.get(watch_id)
        return watch if watch is not None else self._store.get_watch(watch_id)

    def catch_up(self) -> int:
        """Scan batches that watches have not yet seen (after a restart); alerts raised.

        Each batch is read and indexed once for all the watches that missed it.
        """
        since = min((w.scanned_version for w in self._watches.values()), default=None)
        if since is None:
            return 0
        return sum(
            self.on_batch(ev.batch, ev.version)
            for ev in self._store.events(since=since)
            if isinstance(ev, BatchEvent)
        )

    def on_batch(self, batch: EncodedBatch, version: int) -> int:
        """Check every watch against a newly applied batch; returns alerts raised."""
        raised = 0
        watches = list(self._watches.values())
        if watches:
            snap = batch_snapshot(batch, version)
            raised = sum(self._scan(w, batch, snap, version) for w in watches)
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        return raised

    def _scan(self, watch: WatchRecord, batch: EncodedBatch, snap: Snapshot, version: int) -> int:
        if version <= watch.scanned_version:
            return 0
        alerts: list[AlertRecord] = []
        if scans_batch(
            watch.force,
            watch.include_own_force,
            watch.epoch,
            watch.schema_fingerprint,
            watch.filter_bits,
            batch,
        ):
            found = watch_search(
                snap,
                watch.filters,
                schema=self._schema,
                model=self._model,
                max_results=self._max_results,
                threshold=self._threshold,
            )
            for sid, results in zip(watch.subject_ids, found, strict=True):
                for r in results:
                    alerts.append(
                        AlertRecord(
                            watch.watch_id,
                            0,
                            sid,
                            r.force,
                            r.record_ref,
                            r.score,
                            r.band,
                            r.agreement,
                            version,
                            0,
                        )
                    )
        self._store.append_alerts(watch.watch_id, alerts, scanned_version=version)
        with self._cond:
            self._watches[watch.watch_id] = replace(watch, scanned_version=version)
        return len(alerts)

    def stream(
        self,
        watch_id: str,
        after_seq: int,
        *,
        active: Callable[[], bool],
        is_live: Callable[[str, str], bool],
        poll_seconds: float = 0.5,
    ) -> Iterator[AlertRecord]:
        """Alerts of ``watch_id`` after ``after_seq``, then new ones as they come.

        Alerts for records retracted since are skipped. Ends when ``active()`` turns
        false or the hub closes.
        """
        seq = after_seq
        while active() and not self._closed:
            with self._cond:
                generation = self._generation
            new = self._store.alerts(watch_id, seq)
            for alert in new:
                seq = alert.seq
                if is_live(alert.force, alert.record_ref):
                    yield alert
            if not new:
                with self._cond:
                    self._cond.wait_for(
                        lambda g=generation: self._generation != g or self._closed,  # type: ignore[misc]
                        timeout=poll_seconds,
                    )

    def close(self) -> None:
        """Wake and end every stream."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def batch_snapshot(batch: EncodedBatch, version: int) -> Snapshot:
    """One small index of a new batch alone, shared by every watch's search.

    Audit replay builds the same snapshot from the store's batch event.
    """
    index = RecordIndex(words=batch.filter_bits // 64, capacity=max(1, len(batch)))
    index.add(batch.force, batch.record_refs, batch.filters, version)
    return index.snapshot()


def scans_batch(
    force: str,
    include_own_force: bool,
    epoch: int,
    schema_fingerprint: str,
    filter_bits: int,
    batch: EncodedBatch,
) -> bool:
    """Whether a watch of ``force`` with these encodings is searched against ``batch``.

    Only batches of the same key epoch, schema and filter length can match, and the
    watcher's own force only when the watch asked for it.
    """
    return (
        batch.epoch == epoch
        and batch.schema_fingerprint == schema_fingerprint
        and batch.filter_bits == filter_bits
        and (include_own_force or batch.force != force)
    )


def watch_search(
    snap: Snapshot,
    subjects: NDArray[np.uint64],
    *,
    schema: LinkageSchema,
    model: MatchModel,
    max_results: int,
    threshold: float,
) -> list[list[MatchResult]]:
    """A watch's subjects searched against one batch's snapshot (no force excluded:
    :func:`scans_batch` already decided); each result becomes one alert, in order."""
    return search(
        snap, subjects, schema=schema, model=model, max_results=max_results, threshold=threshold
    )
