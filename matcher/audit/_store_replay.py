"""A replayer over the real store and the service's own search function.

:class:`StoreReplayer` rebuilds the service's in-memory index exactly as the service does
(each batch added, each retraction tombstoned, in store order) up to an entry's
``store_version``, decodes the entry's recorded query encodings and calls
:func:`matcher.service.matching.search` with the recorded settings (own force excluded
unless ``include_own_force``, ``max_results``, ``candidate_threshold``). The scoring
model must be the one the entry names in ``config_hash``; a different one is reported.

Watches (:meth:`StoreReplayer.replay_watches`): the watch's subjects are the encodings its
registration entry recorded (their digest checked), cross-checked with the watch the
store holds; every batch the store applied after the watch's version is searched alone,
as the service does (:mod:`matcher.service.watches`), with the recorded settings, so the
alerts come out numbered as the service numbered them.

>>> # with StoreReplayer("sqlite:///store.db") as replayer:
>>> #     report = replay(read_jsonl("audit.jsonl"), replayer)
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from matcher.audit._model import AuditEntry
from matcher.audit._replay import WatchLog, WatchReplay
from matcher.errors import AuditError, MatcherError, NotFoundError

if TYPE_CHECKING:
    from matcher.schema import LinkageSchema
    from matcher.scoring import MatchModel
    from matcher.service.matching import RecordIndex, Snapshot

__all__ = ["SearchAt", "StoreReplayer"]

SearchAt = Callable[["Snapshot", AuditEntry], list[dict[str, Any]]]
"""``(index snapshot at the entry's version, entry) -> results`` like ``event.results``."""

_CACHED_SNAPSHOTS: Final = 8


@dataclass(frozen=True)
class _WatchSpec:
    """How one watch ran: what replay needs to re-derive its alerts."""

    watch_id: str
    force: str
    include_own_force: bool
    epoch: int
    schema_fingerprint: str
    filter_bits: int
    filters: np.ndarray[Any, np.dtype[np.uint64]]
    subject_index: list[int]
    created_version: int
    last_version: int
    max_results: int
    threshold: float


class StoreReplayer:
    """Callable replayer: ``StoreReplayer(url)(entry) -> results``.

    ``schema`` defaults to the first schema the service accepts in ``keys_dir``'s
    ``service.json`` (else the default schema); ``model`` to the schema's default model.
    ``search`` replaces the service's search (tests).
    """

    def __init__(
        self,
        store_url: str,
        *,
        keys_dir: Path | None = None,
        schema: LinkageSchema | None = None,
        model: MatchModel | None = None,
        search: SearchAt | None = None,
    ) -> None:
        from matcher.schema import default_schema
        from matcher.scoring import default_model
        from matcher.store import open_store

        if schema is None and keys_dir is not None:
            from matcher.service.config import load_accepted

            schema = load_accepted(keys_dir)[1][0]
        self.schema = schema if schema is not None else default_schema()
        self.model = model if model is not None else default_model(self.schema)
        self._search = search if search is not None else self._service_search
        self._store = open_store(store_url)
        self._index: RecordIndex | None = None
        self._applied = 0
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()

    def snapshot(self, version: int) -> Snapshot:
        """The service's index as it stood at store ``version`` (recent ones cached)."""
        from matcher.service.matching import RecordIndex
        from matcher.store import BatchEvent

        if version in self._snapshots:
            self._snapshots.move_to_end(version)
            return self._snapshots[version]
        if version > self._store.version():
            raise AuditError(f"store_version: the store holds no version {version} yet")
        if self._index is None or version < self._applied:
            self._index, self._applied = (
                RecordIndex(words=self.schema.total_words, schema=self.schema),
                0,
            )
        index = self._index
        for ev in self._store.events(self._applied, version):
            if isinstance(ev, BatchEvent):
                index.add(ev.batch.force, ev.batch.record_refs, ev.batch.filters, ev.version)
            else:
                index.retract(ev.force, ev.record_refs, ev.version)
        self._applied = version
        snap = index.snapshot()
        self._snapshots[version] = snap
        while len(self._snapshots) > _CACHED_SNAPSHOTS:
            self._snapshots.popitem(last=False)
        return snap

    def subjects(self, entry: AuditEntry) -> np.ndarray[Any, np.dtype[np.uint64]]:
        """The entry's query filters as a ``(subjects, words)`` array."""
        words = self.schema.total_words
        rows = []
        for i, text in enumerate(entry.event.query_encodings or []):
            try:
                raw = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise AuditError(
                    f"entry seq {entry.seq}: query_encodings[{i}] is not base64"
                ) from None
            if len(raw) != words * 8:
                raise AuditError(
                    f"entry seq {entry.seq}: query_encodings[{i}] is not {words * 8} bytes"
                )
            rows.append(np.frombuffer(raw, dtype="<u8").astype(np.uint64))
        if not rows:
            return np.zeros((0, words), np.uint64)
        return np.vstack(rows)

    def _service_search(self, snap: Snapshot, entry: AuditEntry) -> list[dict[str, Any]]:
        from matcher.service.matching import result_dicts, search

        ev = entry.event
        if ev.config_hash and ev.config_hash != self.model.fingerprint:
            raise AuditError(
                f"config_hash: entry seq {entry.seq} ran with another scoring model"
                f" ({ev.config_hash[:12]}, replay has {self.model.fingerprint[:12]})"
            )
        details = ev.details
        found = search(
            snap,
            self.subjects(entry),
            schema=self.schema,
            model=self.model,
            exclude_force=None if details.get("include_own_force") else ev.caller_force,
            max_results=int(details.get("max_results", 10)),
            threshold=float(details.get("candidate_threshold", 0.5)),
        )
        return result_dicts(found)

    # -- watches -----------------------------------------------------------------------
    def replay_watches(self, watches: Sequence[WatchLog]) -> dict[str, WatchReplay | str]:
        """Re-derive each watch's alerts up to its last disclosed version (one pass over
        the store's events); every later retraction is reported beside them, with its
        time, for the check that no alert was left out."""
        from matcher.service.watches import batch_snapshot, scans_batch, watch_search
        from matcher.store import BatchEvent

        out: dict[str, WatchReplay | str] = {}
        specs: list[_WatchSpec] = []
        for log in watches:
            try:
                specs.append(self._watch_spec(log))
            except MatcherError as exc:
                out[log.watch_id] = str(exc)
        if not specs:
            return out
        alerts: dict[str, list[dict[str, Any]]] = {s.watch_id: [] for s in specs}
        retracted: dict[tuple[str, str], list[tuple[int, str]]] = {}
        lo = min(s.created_version for s in specs)
        hi = max(s.last_version for s in specs)
        for ev in self._store.events(lo):
            if not isinstance(ev, BatchEvent):
                for ref in ev.record_refs:
                    retracted.setdefault((ev.force, ref), []).append((ev.version, ev.created_at))
                continue
            if ev.version > hi:
                continue
            b, v = ev.batch, ev.version
            todo = [
                s
                for s in specs
                if s.created_version < v <= s.last_version
                and scans_batch(
                    s.force, s.include_own_force, s.epoch, s.schema_fingerprint, s.filter_bits, b
                )
            ]
            if not todo:
                continue
            snap = batch_snapshot(b, v)
            for s in todo:
                found = watch_search(
                    snap,
                    s.filters,
                    schema=self.schema,
                    model=self.model,
                    max_results=s.max_results,
                    threshold=s.threshold,
                )
                numbered = alerts[s.watch_id]
                for i, rs in enumerate(found):
                    for r in rs:
                        numbered.append(
                            {
                                "watch_id": s.watch_id,
                                "alert_id": len(numbered) + 1,
                                "store_version": v,
                                "subject": s.subject_index[i],
                                "force": r.force,
                                "record_ref": r.record_ref,
                                "score": r.score,
                                "band": r.band,
                            }
                        )
        for s in specs:
            out[s.watch_id] = WatchReplay(alerts[s.watch_id], retracted, owner_force=s.force)
        return out

    def _watch_spec(self, log: WatchLog) -> _WatchSpec:
        from matcher.service.config import Limits, ServiceConfig
        from matcher.service.core import query_digest

        wid = log.watch_id
        for config_hash in sorted(log.config_hashes):
            if config_hash != self.model.fingerprint:
                raise AuditError(
                    f"config_hash: watch {wid} ran with another scoring model"
                    f" ({config_hash[:12]}, replay has {self.model.fingerprint[:12]})"
                )
        try:
            stored = self._store.get_watch(wid)
        except NotFoundError:
            raise AuditError(f"watch_id: the store holds no watch {wid}") from None
        bits = self.schema.total_words * 64
        reg = log.registration
        details: dict[str, Any] = {}
        if reg is None:
            # The export starts after the registration: the store's copy is all there is.
            filters, force, own = stored.filters, stored.force, stored.include_own_force
            epoch, fingerprint, created = stored.epoch, stored.schema_fingerprint, None
        else:
            ev = reg.event
            details = ev.details
            filters = self.subjects(reg)
            force = ev.caller_force or ""
            own = bool(details.get("include_own_force", stored.include_own_force))
            epoch = ev.key_epoch if ev.key_epoch is not None else stored.epoch
            fingerprint = ev.schema_fingerprint or stored.schema_fingerprint
            created = ev.store_version
            if ev.query_digest and ev.query_digest != query_digest(
                epoch, fingerprint, bits, filters
            ):
                raise AuditError(
                    f"query_digest: entry seq {reg.seq}: the encodings do not match their digest"
                )
            differ = [
                name
                for name, same in (
                    ("subject encodings", np.array_equal(filters, stored.filters)),
                    ("force", force == stored.force),
                    ("include_own_force", own == stored.include_own_force),
                    ("key epoch", epoch == stored.epoch),
                    ("schema", fingerprint == stored.schema_fingerprint),
                    ("filter length", bits == stored.filter_bits),
                    ("store version", created == stored.created_version),
                )
                if not same
            ]
            if differ:
                raise AuditError(
                    f"watch {wid}: the store's watch differs from its registration"
                    f" (entry seq {reg.seq}) in " + ", ".join(differ)
                )
        ids = stored.subject_ids
        if len(ids) != len(filters):
            raise AuditError(f"watch {wid}: the store's watch has another number of subjects")
        return _WatchSpec(
            watch_id=wid,
            force=force,
            include_own_force=own,
            epoch=epoch,
            schema_fingerprint=fingerprint,
            filter_bits=bits,
            filters=filters,
            # A disclosure names a subject by the first index of its subject id.
            subject_index=[ids.index(sid) for sid in ids],
            created_version=stored.created_version if created is None else created,
            last_version=log.last_version,
            max_results=int(details.get("max_results", Limits.default_results_per_subject)),
            threshold=float(details.get("candidate_threshold", ServiceConfig.candidate_threshold)),
        )

    def __call__(self, entry: AuditEntry) -> list[dict[str, Any]]:
        version = entry.event.store_version
        if version is None:
            raise AuditError(f"store_version: entry seq {entry.seq} has none to replay at")
        return self._search(self.snapshot(version), entry)

    def close(self) -> None:
        """Close the store."""
        self._store.close()

    def __enter__(self) -> StoreReplayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
