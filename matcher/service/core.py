"""The matching service's domain logic, free of protobuf: what each rpc does.

:class:`MatcherCore` owns the store, the in-memory index (rebuilt from the store's
events at start), the scoring model, the watches and the quotas. The servicer converts
messages to the domain types here and calls one method per rpc.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from matcher.batch import EncodedBatch
from matcher.errors import AuthError, EncodingError, EpochError, FingerprintError, InputError
from matcher.pki import ForceKeyRegistry, Identity, batch_digest
from matcher.scoring import MatchModel, default_model
from matcher.service.auth import current_note
from matcher.service.config import PURPOSES, ServiceConfig
from matcher.service.matching import MatchResult, RecordIndex, result_dicts, search
from matcher.service.quotas import Quotas
from matcher.service.watches import WatchHub
from matcher.store import AlertRecord, AppendResult, BatchEvent, Store, WatchRecord, check_id

__all__ = ["FindOutcome", "MatcherCore", "Query", "query_digest"]


@dataclass(frozen=True)
class Query:
    """A FindMatches or Watch request in domain form."""

    purpose: str
    case_reference: str
    epoch: int
    schema_fingerprint: str
    filter_bits: int
    subject_ids: list[str]
    filters: NDArray[np.uint64]
    blocking_tokens: list[NDArray[np.uint64]]
    include_own_force: bool = False
    max_results: int = 0


@dataclass(frozen=True)
class FindOutcome:
    """Results per subject (request order), the store version and the query digest."""

    results: list[list[MatchResult]]
    store_version: int
    query_digest: str


def query_digest(
    epoch: int, schema_fingerprint: str, filter_bits: int, filters: NDArray[np.uint64]
) -> str:
    """SHA-256 (hex) of a query's encodings, as recorded in the audit log (and checked by
    its replay)."""
    h = hashlib.sha256(f"{epoch}/{schema_fingerprint}/{filter_bits}\n".encode())
    h.update(np.ascontiguousarray(filters, dtype="<u8").tobytes())
    return h.hexdigest()


class MatcherCore:
    """Everything the rpcs do, over a store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        config: ServiceConfig,
        registry: ForceKeyRegistry,
        *,
        keys_dir: Path | None = None,
        model: MatchModel | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.schema = config.schema
        self.model = model or default_model(self.schema)
        self.registry = registry
        self.keys_dir = keys_dir
        self.quotas = Quotas(config.limits)
        self.index = RecordIndex(words=self.schema.total_words, schema=self.schema)
        self._write_lock = threading.Lock()
        self._rebuild()
        self.watches = WatchHub(
            store,
            self.schema,
            self.model,
            threshold=config.candidate_threshold,
            max_results=config.limits.default_results_per_subject,
        )
        self.watches.catch_up()

    def _rebuild(self) -> None:
        for ev in self.store.events():
            if isinstance(ev, BatchEvent):
                b = ev.batch
                self.index.add(b.force, b.record_refs, b.filters, ev.version)
            else:
                self.index.retract(ev.force, ev.record_refs, ev.version)

    @property
    def store_version(self) -> int:
        return self.index.snapshot().version

    # -- checks ------------------------------------------------------------------------
    def check_encoding(self, epoch: int, fingerprint: str, filter_bits: int) -> None:
        """Refuse an epoch, schema or filter length the service does not accept."""
        if epoch not in self.config.epochs:
            raise EpochError("epoch: not a key epoch this service accepts")
        if fingerprint not in self.config.fingerprints:
            raise FingerprintError("schema_fingerprint: not a schema this service accepts")
        if filter_bits != self.schema.total_bits:
            raise EncodingError(
                f"filter_bits: must be {self.schema.total_bits}", field="filter_bits"
            )

    def _check_own_force(self, identity: Identity, force: str) -> None:
        if force != identity.force:
            raise AuthError("force: a force may only submit or retract its own records")

    def check_header(
        self,
        identity: Identity,
        force: str,
        epoch: int,
        fingerprint: str,
        filter_bits: int,
        record_count: int,
    ) -> None:
        """What a batch header alone rules out, checked before any record is read."""
        self._check_own_force(identity, force)
        self.check_encoding(epoch, fingerprint, filter_bits)
        if record_count > self.config.limits.max_batch_records:
            raise InputError(
                f"record_count: at most {self.config.limits.max_batch_records} records",
                field="record_count",
            )

    # -- SubmitBatch ---------------------------------------------------------------------
    def submit(self, identity: Identity, batch: EncodedBatch, signature: bytes) -> AppendResult:
        """Verify and apply a batch; durable before this returns."""
        note = current_note()
        note.set(key_epoch=batch.epoch, schema_fingerprint=batch.schema_fingerprint)
        note.details.update(batch_id=batch.batch_id, records=len(batch))
        self.check_header(
            identity,
            batch.force,
            batch.epoch,
            batch.schema_fingerprint,
            batch.filter_bits,
            len(batch),
        )
        check_id(batch.batch_id, "batch_id")
        if len(batch) == 0:
            raise InputError("record_count: a batch needs at least one record", field="chunk")
        digest = batch_digest(batch)
        try:
            self.registry.verify(batch.force, digest, signature)
        except AuthError:
            if self.keys_dir is None:
                raise
            # A force registered after start: reload the registry once.
            self.registry = ForceKeyRegistry.load(self.keys_dir)
            self.registry.verify(batch.force, digest, signature)
        with self._write_lock:
            result = self.store.append_batch(batch, signature=signature)
            if result.applied:
                self.index.add(batch.force, batch.record_refs, batch.filters, result.version)
                self.watches.on_batch(batch, result.version)
        note.set(store_version=result.version)
        note.details["already_applied"] = not result.applied
        return result

    # -- RetractRecords ----------------------------------------------------------------
    def retract(
        self, identity: Identity, retraction_id: str, force: str, refs: list[str]
    ) -> AppendResult:
        """Remove live records of the caller's force from the store and the index at once."""
        note = current_note()
        note.details.update(retraction_id=retraction_id, records=len(refs))
        self._check_own_force(identity, force)
        if len(refs) > self.config.limits.max_refs_per_retraction:
            raise InputError(
                f"record_refs: at most {self.config.limits.max_refs_per_retraction} per call",
                field="record_refs",
            )
        with self._write_lock:
            result = self.store.append_retraction(retraction_id, force, refs)
            if result.applied:
                self.index.retract(force, refs, result.version)
        note.set(store_version=result.version)
        note.details["already_applied"] = not result.applied
        return result

    # -- FindMatches and Watch -------------------------------------------------------
    def _check_query(self, identity: Identity, q: Query) -> str:
        """Refuse a query the service does not serve, charge it; returns its digest."""
        note = current_note()
        note.set(
            purpose=q.purpose or None,
            case_reference=q.case_reference or None,
            key_epoch=q.epoch,
            schema_fingerprint=q.schema_fingerprint,
        )
        if q.purpose not in PURPOSES:
            raise InputError("purpose: a purpose from the fixed list is required", field="purpose")
        ref = q.case_reference.strip()
        if not ref or len(ref) > 128:
            raise InputError(
                "case_reference: 1 to 128 characters are required", field="case_reference"
            )
        n = len(q.subject_ids)
        if n == 0:
            raise InputError("subjects: at least one subject is required", field="subjects")
        self.quotas.check_subjects(n)
        self.check_encoding(q.epoch, q.schema_fingerprint, q.filter_bits)
        if any(len(s) > 64 for s in q.subject_ids):
            raise InputError("subject_id: at most 64 characters", field="subject_id")
        if q.max_results > self.config.limits.max_results_per_subject:
            raise InputError(
                f"max_results: at most {self.config.limits.max_results_per_subject}",
                field="max_results",
            )
        self.quotas.charge(identity.fingerprint, subjects=n)
        digest = query_digest(q.epoch, q.schema_fingerprint, q.filter_bits, q.filters)
        note.set(
            query_digest=digest,
            query_encodings=[
                base64.b64encode(np.ascontiguousarray(f, dtype="<u8").tobytes()).decode()
                for f in q.filters
            ],
        )
        return digest

    def find(self, identity: Identity, q: Query) -> FindOutcome:
        """Search the live records for each subject, excluding the caller's force unless asked."""
        digest = self._check_query(identity, q)
        snap = self.index.snapshot()
        max_results = q.max_results or self.config.limits.default_results_per_subject
        found = search(
            snap,
            q.filters,
            schema=self.schema,
            model=self.model,
            exclude_force=None if q.include_own_force else identity.force,
            max_results=max_results,
            threshold=self.config.candidate_threshold,
        )
        note = current_note()
        note.set(
            store_version=snap.version,
            config_hash=self.model.fingerprint,
            results=result_dicts(found),
        )
        note.details.update(
            subjects=len(q.subject_ids),
            include_own_force=q.include_own_force,
            max_results=max_results,
            candidate_threshold=self.config.candidate_threshold,
        )
        return FindOutcome(found, snap.version, digest)

    def register_watch(self, identity: Identity, q: Query) -> WatchRecord:
        """Persist a new watch; alerts come from batches applied after it."""
        self._check_query(identity, q)
        if (
            self.watches.count_for(identity.principal)
            >= self.config.limits.max_watches_per_identity
        ):
            raise InputError("watches: too many watches for this identity", field="watches")
        with self._write_lock:
            version = self.store_version
            watch = WatchRecord(
                watch_id=secrets.token_hex(16),
                owner=identity.principal,
                force=identity.force,
                purpose=q.purpose,
                case_reference=q.case_reference,
                include_own_force=q.include_own_force,
                epoch=q.epoch,
                schema_fingerprint=q.schema_fingerprint,
                filter_bits=q.filter_bits,
                subject_ids=list(q.subject_ids),
                filters=q.filters,
                blocking_tokens=q.blocking_tokens,
                created_version=version,
                scanned_version=version,
                created_at=datetime.now(UTC).isoformat(),
            )
            self.watches.register(watch)
        note = current_note()
        note.set(store_version=version, config_hash=self.model.fingerprint)
        # What audit replay needs to re-derive the watch's alerts from the store: the
        # encodings and digest (set above), the version it starts after, and these.
        note.details.update(
            watch_id=watch.watch_id,
            subjects=len(q.subject_ids),
            include_own_force=q.include_own_force,
            max_results=self.watches.max_results,
            candidate_threshold=self.watches.threshold,
        )
        return watch

    def resume_watch(self, identity: Identity, token: str) -> tuple[WatchRecord, int]:
        """The watch a resume token names, and the alert sequence to resume after."""
        watch_id, _, seq = token.partition(":")
        if not seq.isdigit() or not watch_id:
            raise InputError("resume_token: malformed", field="resume_token")
        watch = self.watches.get(watch_id)
        if watch.owner != identity.principal:
            raise AuthError("resume_token: the watch belongs to another identity")
        note = current_note()
        note.set(purpose=watch.purpose, case_reference=watch.case_reference)
        note.details.update(watch_id=watch_id, resumed_after=int(seq))
        return watch, int(seq)

    def alerts(
        self, watch: WatchRecord, after_seq: int, active: Callable[[], bool]
    ) -> Iterator[AlertRecord]:
        """Alerts of ``watch`` after ``after_seq``, then live ones until ``active()`` is false."""
        return self.watches.stream(
            watch.watch_id,
            after_seq,
            active=active,
            is_live=self.index.is_live,
        )
