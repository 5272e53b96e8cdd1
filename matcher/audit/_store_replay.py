"""A replayer over the real store and the service's own search function.

:class:`StoreReplayer` rebuilds the service's in-memory index exactly as the service does
(each batch added, each retraction tombstoned, in store order) up to an entry's
``store_version``, decodes the entry's recorded query encodings and calls
:func:`matcher.service.matching.search` with the recorded settings (own force excluded
unless ``include_own_force``, ``max_results``, ``candidate_threshold``). The scoring
model must be the one the entry names in ``config_hash``; a different one is reported.

>>> # with StoreReplayer("sqlite:///store.db") as replayer:
>>> #     report = replay(read_jsonl("audit.jsonl"), replayer)
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from matcher.audit._model import AuditEntry
from matcher.errors import AuditError

if TYPE_CHECKING:
    from matcher.schema import LinkageSchema
    from matcher.scoring import MatchModel
    from matcher.service.matching import RecordIndex, Snapshot

__all__ = ["SearchAt", "StoreReplayer"]

SearchAt = Callable[["Snapshot", AuditEntry], list[dict[str, Any]]]
"""``(index snapshot at the entry's version, entry) -> results`` like ``event.results``."""

_CACHED_SNAPSHOTS: Final = 8


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
            self._index, self._applied = RecordIndex(words=self.schema.total_words), 0
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
        from matcher.service.matching import search

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
