"""The gRPC servicer: converts messages to domain objects, calls the core, converts back.

No matching logic lives here (see :mod:`matcher.service.core`); protobuf types stop here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from matcher.batch import EncodedBatch, TokenLists
from matcher.errors import EncodingError, InputError
from matcher.service.auditing import ServiceAudit
from matcher.service.auth import AuditNote, current_note, identity_of
from matcher.service.config import PURPOSES
from matcher.service.core import MatcherCore, Query
from matcher.service.matching import MatchResult
from matcher.store import AlertRecord, WatchRecord

__all__ = ["BANDS", "MatcherServicer", "pb", "purpose_code", "rpc_handler"]

# The generated stubs are untyped (no types-protobuf), so they are imported as Any.
pb: Any = importlib.import_module("matcher._proto.matcher_pb2")

BANDS = {"strong": pb.BAND_STRONG, "probable": pb.BAND_PROBABLE, "possible": pb.BAND_POSSIBLE}


def purpose_code(value: int) -> str:
    """The domain purpose code of a ``Purpose`` enum value ('' when unknown or unset)."""
    try:
        name = pb.Purpose.Name(value)
    except ValueError:
        return ""
    code = name.removeprefix("PURPOSE_").lower()
    return code if code in PURPOSES else ""


def _filters(blobs: list[bytes], bits: int, field: str) -> NDArray[np.uint64]:
    if bits <= 0 or bits % 64:
        raise EncodingError("filter_bits: must be a positive multiple of 64", field="filter_bits")
    nbytes = bits // 8
    if any(len(b) != nbytes for b in blobs):
        raise EncodingError(f"{field}: each filter must be filter_bits / 8 bytes", field=field)
    raw = np.frombuffer(b"".join(blobs), dtype="<u8")
    return raw.reshape(len(blobs), bits // 64).astype(np.uint64)


def _query(req: Any) -> Query:
    enc, purpose = req.encoding, req.purpose
    subjects = list(req.subjects)
    return Query(
        purpose=purpose_code(purpose.purpose),
        case_reference=purpose.case_reference,
        epoch=enc.epoch,
        schema_fingerprint=enc.schema_fingerprint,
        filter_bits=enc.filter_bits,
        subject_ids=[s.subject_id for s in subjects],
        filters=_filters([s.filter for s in subjects], enc.filter_bits, "subjects.filter"),
        blocking_tokens=[np.array(s.blocking_tokens, dtype=np.uint64) for s in subjects],
        include_own_force=req.include_own_force,
        max_results=getattr(req, "max_results", 0),
    )


def _match(r: MatchResult, field_names: tuple[str, ...]) -> Any:
    return pb.Match(
        force=r.force,
        record_ref=r.record_ref,
        score=r.score,
        band=BANDS[r.band],
        agreement=[
            pb.FieldAgreement(field=f, level=lv)
            for f, lv in zip(field_names, r.agreement, strict=False)
        ],
    )


class MatcherServicer:
    """One method per rpc of ``matcher.v1.Matcher``."""

    def __init__(self, core: MatcherCore, audit: ServiceAudit) -> None:
        self.core = core
        self.audit = audit
        self.field_names = tuple(core.model.field_names)

    def SubmitBatch(self, request_iterator: Iterable[Any], context: grpc.ServicerContext) -> Any:
        identity = identity_of(context)
        it = iter(request_iterator)
        first = next(it, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InputError("header: the first message must be a header", field="header")
        h = first.header
        current_note().details.update(batch_id=h.batch_id, declared_records=h.record_count)
        # Refuse early, before reading the records, what the header already rules out.
        self.core.check_header(
            identity, h.force, h.epoch, h.schema_fingerprint, h.filter_bits, h.record_count
        )
        batch = _read_batch(h, it)
        res = self.core.submit(identity, batch, h.signature)
        return pb.SubmitBatchResponse(
            batch_id=batch.batch_id,
            record_count=res.count,
            store_version=res.version,
            already_applied=not res.applied,
        )

    def RetractRecords(self, request: Any, context: grpc.ServicerContext) -> Any:
        res = self.core.retract(
            identity_of(context), request.retraction_id, request.force, list(request.record_refs)
        )
        return pb.RetractRecordsResponse(
            retracted=res.count, store_version=res.version, already_applied=not res.applied
        )

    def FindMatches(self, request: Any, context: grpc.ServicerContext) -> Any:
        q = _query(request)
        out = self.core.find(identity_of(context), q)
        return pb.FindMatchesResponse(
            results=[
                pb.SubjectMatches(subject_id=sid, matches=[_match(r, self.field_names) for r in rs])
                for sid, rs in zip(q.subject_ids, out.results, strict=True)
            ],
            store_version=out.store_version,
            query_digest=out.query_digest,
        )

    def Watch(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        identity = identity_of(context)
        note = current_note()
        if request.resume_token:
            watch, after = self.core.resume_watch(identity, request.resume_token)
        else:
            watch, after = self.core.register_watch(identity, _query(request)), 0
        note.emit_now()  # audit the registration now, not when the stream ends
        yield pb.WatchEvent(
            started=pb.WatchStarted(
                watch_id=watch.watch_id,
                resume_token=f"{watch.watch_id}:{after}",
                store_version=self.core.store_version,
            )
        )
        for alert in self.core.alerts(watch, after, context.is_active):
            self._disclose(note, watch, alert)
            yield pb.WatchEvent(alert=self._alert(alert))

    def _alert(self, a: AlertRecord) -> Any:
        r = MatchResult(a.force, a.record_ref, a.score, a.band, a.agreement)
        return pb.Alert(
            watch_id=a.watch_id,
            sequence=a.seq,
            subject_id=a.subject_id,
            match=_match(r, self.field_names),
            store_version=a.store_version,
            created_unix_ms=a.created_ms,
            resume_token=f"{a.watch_id}:{a.seq}",
        )

    def _disclose(self, note: AuditNote, watch: WatchRecord, a: AlertRecord) -> None:
        # Each alert sent is a disclosure to this identity: its own audit entry.
        AuditNote(
            "Watch",
            note.identity,
            "disclosure",
            fields={
                "purpose": watch.purpose,
                "case_reference": watch.case_reference,
                "store_version": a.store_version,
                "config_hash": self.core.model.fingerprint,
                "results": [
                    {
                        "subject": watch.subject_ids.index(a.subject_id),
                        "force": a.force,
                        "record_ref": a.record_ref,
                        "score": a.score,
                        "band": a.band,
                        "watch_id": a.watch_id,
                        "alert_id": a.seq,
                    }
                ],
            },
            sink=note.sink,
        ).emit_now()

    def ReadAuditLog(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        note = current_note()
        note.details["since_seq"] = request.since_seq
        note.emit_now()  # reading is itself audited, before anything is read
        for seq, kind, line in self.audit.read_lines(request.since_seq):
            yield pb.AuditRecord(seq=seq, kind=kind, json=line)

    def GetInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        identity = identity_of(context)
        core = self.core
        return pb.GetInfoResponse(
            epochs=list(core.config.epochs),
            schema_fingerprints=list(core.config.fingerprints),
            filter_bits=core.schema.total_bits,
            store_version=core.store_version,
            record_count=len(core.index),
            max_subjects_per_call=core.config.limits.max_subjects_per_call,
            field_names=list(self.field_names),
            config_fingerprint=core.model.fingerprint,
            caller_force=identity.force,
            caller_role=identity.role,
            purposes=[p.upper() for p in PURPOSES],
            audit_public_key=self.audit.public_key,
        )


def _read_batch(h: Any, it: Iterator[Any]) -> EncodedBatch:
    """Assemble the record chunks that follow ``h`` into a batch, checking their sizes."""
    refs: list[str] = []
    filters: list[bytes] = []
    counts: list[NDArray[np.uint32]] = []
    tokens: list[NDArray[np.uint64]] = []
    nbytes = h.filter_bits // 8
    for msg in it:
        if msg.WhichOneof("part") != "chunk":
            raise InputError("header: only the first message may be a header", field="header")
        c = msg.chunk
        n = len(c.record_refs)
        if len(c.filters) != n * nbytes:
            raise EncodingError(
                "chunk.filters: must hold filter_bits / 8 bytes per record", field="filters"
            )
        if len(c.token_counts) != n:
            raise EncodingError("chunk.token_counts: one per record", field="token_counts")
        refs.extend(c.record_refs)
        if len(refs) > h.record_count:
            raise EncodingError("record_count: more records than declared", field="record_count")
        filters.append(c.filters)
        counts.append(np.array(c.token_counts, dtype=np.uint32))
        tokens.append(np.array(c.blocking_tokens, dtype=np.uint64))
    if len(refs) != h.record_count:
        raise EncodingError("record_count: fewer records than declared", field="record_count")
    offsets = np.zeros(len(refs) + 1, dtype=np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=offsets[1:])
    flat = np.concatenate(tokens) if tokens else np.zeros(0, np.uint64)
    if offsets[-1] != len(flat):
        raise EncodingError("chunk.token_counts: do not add up", field="token_counts")
    raw = np.frombuffer(b"".join(filters), dtype="<u8").astype(np.uint64)
    return EncodedBatch(
        force=h.force,
        epoch=h.epoch,
        schema_fingerprint=h.schema_fingerprint,
        filter_bits=h.filter_bits,
        record_refs=refs,
        filters=raw.reshape(len(refs), h.filter_bits // 64),
        # End to end as they came, not split per record: signing and storing read one array.
        blocking_tokens=TokenLists(flat, offsets),
        batch_id=h.batch_id,
    )


_RPCS: dict[str, tuple[str, Any, Any]] = {
    "SubmitBatch": ("stream_unary", pb.SubmitBatchRequest, pb.SubmitBatchResponse),
    "RetractRecords": ("unary_unary", pb.RetractRecordsRequest, pb.RetractRecordsResponse),
    "FindMatches": ("unary_unary", pb.FindMatchesRequest, pb.FindMatchesResponse),
    "Watch": ("unary_stream", pb.WatchRequest, pb.WatchEvent),
    "ReadAuditLog": ("unary_stream", pb.ReadAuditLogRequest, pb.AuditRecord),
    "GetInfo": ("unary_unary", pb.GetInfoRequest, pb.GetInfoResponse),
}


def rpc_handler(servicer: MatcherServicer) -> grpc.GenericRpcHandler:
    """The generic handler serving ``servicer`` as ``matcher.v1.Matcher``."""
    makers = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
    }
    handlers = {
        name: makers[kind](
            getattr(servicer, name),
            request_deserializer=req.FromString,
            response_serializer=resp.SerializeToString,
        )
        for name, (kind, req, resp) in _RPCS.items()
    }
    return grpc.method_handlers_generic_handler("matcher.v1.Matcher", handlers)
