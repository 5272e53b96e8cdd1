"""A typed client for the matcher service (used by the CLI, the demo and the tests).

>>> # client = MatcherClient.open("127.0.0.1:50051", "keys", force="F01", role="assessor")
>>> # found = client.find(subjects, purpose="vetting", case_reference="case 7")
"""

from __future__ import annotations

import importlib
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from matcher.batch import EncodedBatch, flat_tokens
from matcher.errors import InputError, KeyringError
from matcher.pki import ROLES, TlsFiles, load_client_tls, sign_batch
from matcher.service.config import PURPOSES
from matcher.service.matching import MatchResult

__all__ = [
    "AlertEvent",
    "MatcherClient",
    "RetractResult",
    "SubjectResult",
    "SubmitResult",
    "WatchStarted",
    "WatchStream",
    "connect",
]

pb: Any = importlib.import_module("matcher._proto.matcher_pb2")
_PREFIX = "/matcher.v1.Matcher/"
_BAND_NAMES = {pb.BAND_STRONG: "strong", pb.BAND_PROBABLE: "probable", pb.BAND_POSSIBLE: "possible"}


def _find_client(keys_dir: Path, force: str | None, role: str) -> tuple[str, str]:
    if role not in ROLES:
        raise InputError(f"role: must be one of {', '.join(ROLES)}", field="role")
    if force is not None:
        return force, role
    found = sorted((keys_dir / "clients").glob(f"*-{role}.pem"))
    if len(found) != 1:
        raise KeyringError(
            f"{keys_dir}: {len(found)} {role} certificates found; name the force (--force)"
        )
    return found[0].stem[: -len(role) - 1], role


def connect(
    server: str, keys_dir: Path | str, *, force: str | None = None, role: str = "assessor"
) -> grpc.Channel:
    """A mutual-TLS channel to ``server`` (HOST:PORT) with a client certificate from
    ``keys_dir`` (``clients/<force>-<role>.pem``; ``force`` may be left out when the
    folder holds only one certificate for ``role``)."""
    keys_dir = Path(keys_dir)
    force, role = _find_client(keys_dir, force, role)
    return secure_channel(server, load_client_tls(keys_dir, force, role))


def secure_channel(server: str, tls: TlsFiles) -> grpc.Channel:
    """A mutual-TLS channel from PEM material."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
    )
    return grpc.secure_channel(
        server,
        creds,
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
        ],
    )


@dataclass(frozen=True)
class SubmitResult:
    """What SubmitBatch answered."""

    batch_id: str
    record_count: int
    store_version: int
    already_applied: bool


@dataclass(frozen=True)
class RetractResult:
    """What RetractRecords answered."""

    retracted: int
    store_version: int
    already_applied: bool


@dataclass(frozen=True)
class SubjectResult:
    """The matches of one subject, best first."""

    subject_id: str
    matches: list[MatchResult]


@dataclass(frozen=True)
class WatchStarted:
    """The first event of a watch stream."""

    watch_id: str
    resume_token: str
    store_version: int


@dataclass(frozen=True)
class AlertEvent:
    """An alert of a watch stream."""

    watch_id: str
    sequence: int
    subject_id: str
    match: MatchResult
    store_version: int
    created_unix_ms: int
    resume_token: str


class WatchStream:
    """Iterate the events of a watch; :meth:`cancel` ends it."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> Iterator[WatchStarted | AlertEvent]:
        for ev in self._call:
            if ev.WhichOneof("event") == "started":
                s = ev.started
                yield WatchStarted(s.watch_id, s.resume_token, s.store_version)
            else:
                a = ev.alert
                yield AlertEvent(
                    a.watch_id,
                    a.sequence,
                    a.subject_id,
                    _match(a.match),
                    a.store_version,
                    a.created_unix_ms,
                    a.resume_token,
                )

    def cancel(self) -> None:
        self._call.cancel()


def _match(m: Any) -> MatchResult:
    return MatchResult(
        m.force,
        m.record_ref,
        m.score,
        _BAND_NAMES.get(m.band, ""),
        tuple(a.level for a in m.agreement),
    )


def _purpose(purpose: str, case_reference: str) -> Any:
    if purpose not in PURPOSES:
        raise InputError(f"purpose: must be one of {', '.join(PURPOSES)}", field="purpose")
    return pb.SearchPurpose(
        purpose=pb.Purpose.Value("PURPOSE_" + purpose.upper()), case_reference=case_reference
    )


def _query_fields(
    subjects: EncodedBatch,
    purpose: str,
    case_reference: str,
    subject_ids: Sequence[str] | None,
    include_own_force: bool,
) -> dict[str, Any]:
    """The fields FindMatchesRequest and WatchRequest share."""
    return {
        "purpose": _purpose(purpose, case_reference),
        "encoding": pb.QueryEncoding(
            epoch=subjects.epoch,
            schema_fingerprint=subjects.schema_fingerprint,
            filter_bits=subjects.filter_bits,
        ),
        "subjects": _subjects(subjects, subject_ids),
        "include_own_force": include_own_force,
    }


def _subjects(batch: EncodedBatch, subject_ids: Sequence[str] | None) -> list[Any]:
    ids = list(subject_ids) if subject_ids is not None else [str(i) for i in range(len(batch))]
    if len(ids) != len(batch):
        raise InputError("subject_ids: one per subject is needed", field="subject_ids")
    filt = np.ascontiguousarray(batch.filters, dtype="<u8")
    return [
        pb.Subject(
            subject_id=sid,
            filter=filt[i].tobytes(),
            blocking_tokens=batch.blocking_tokens[i].tolist(),
        )
        for i, sid in enumerate(ids)
    ]


class MatcherClient:
    """Calls of the matcher service over one channel (see :func:`connect`)."""

    def __init__(self, channel: grpc.Channel, *, timeout: float = 120.0) -> None:
        self.channel = channel
        self.timeout = timeout

    @classmethod
    def open(
        cls, server: str, keys_dir: Path | str, *, force: str | None = None, role: str
    ) -> MatcherClient:
        return cls(connect(server, keys_dir, force=force, role=role))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> MatcherClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _uu(self, name: str, req: Any, resp: Any) -> Any:
        return self.channel.unary_unary(
            _PREFIX + name,
            request_serializer=type(req).SerializeToString,
            response_deserializer=resp.FromString,
        )(req, timeout=self.timeout)

    def info(self) -> Any:
        """The GetInfoResponse message."""
        return self._uu("GetInfo", pb.GetInfoRequest(), pb.GetInfoResponse)

    def submit(
        self, batch: EncodedBatch, signing_key: Ed25519PrivateKey, *, chunk_records: int = 8192
    ) -> SubmitResult:
        """Sign and stream ``batch``; returns once the service has applied it durably."""
        signature = sign_batch(signing_key, batch)
        header = pb.BatchHeader(
            batch_id=batch.batch_id,
            force=batch.force,
            epoch=batch.epoch,
            schema_fingerprint=batch.schema_fingerprint,
            filter_bits=batch.filter_bits,
            record_count=len(batch),
            signature=signature,
        )
        call = self.channel.stream_unary(
            _PREFIX + "SubmitBatch",
            request_serializer=pb.SubmitBatchRequest.SerializeToString,
            response_deserializer=pb.SubmitBatchResponse.FromString,
        )
        r = call(_chunks(header, batch, chunk_records), timeout=self.timeout)
        return SubmitResult(r.batch_id, r.record_count, r.store_version, r.already_applied)

    def retract(
        self, force: str, refs: Sequence[str], *, retraction_id: str | None = None
    ) -> RetractResult:
        """Retract records of ``force`` (the caller's own)."""
        req = pb.RetractRecordsRequest(
            retraction_id=retraction_id or secrets.token_hex(16),
            force=force,
            record_refs=list(refs),
        )
        r = self._uu("RetractRecords", req, pb.RetractRecordsResponse)
        return RetractResult(r.retracted, r.store_version, r.already_applied)

    def find(
        self,
        subjects: EncodedBatch,
        *,
        purpose: str,
        case_reference: str,
        subject_ids: Sequence[str] | None = None,
        include_own_force: bool = False,
        max_results: int = 0,
    ) -> tuple[list[SubjectResult], int]:
        """Search for each subject; returns results in subject order and the store version."""
        req = pb.FindMatchesRequest(
            **_query_fields(subjects, purpose, case_reference, subject_ids, include_own_force),
            max_results=max_results,
        )
        r = self._uu("FindMatches", req, pb.FindMatchesResponse)
        out = [SubjectResult(s.subject_id, [_match(m) for m in s.matches]) for s in r.results]
        return out, int(r.store_version)

    def watch(
        self,
        subjects: EncodedBatch | None = None,
        *,
        purpose: str = "",
        case_reference: str = "",
        subject_ids: Sequence[str] | None = None,
        include_own_force: bool = False,
        resume_token: str = "",
        timeout: float | None = None,
    ) -> WatchStream:
        """Register a watch on ``subjects`` (or resume one with ``resume_token``)."""
        if resume_token:
            req = pb.WatchRequest(resume_token=resume_token)
        elif subjects is None:
            raise InputError("subjects: needed for a new watch", field="subjects")
        else:
            req = pb.WatchRequest(
                **_query_fields(subjects, purpose, case_reference, subject_ids, include_own_force)
            )
        call = self.channel.unary_stream(
            _PREFIX + "Watch",
            request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchEvent.FromString,
        )(req, timeout=timeout)
        return WatchStream(call)

    def read_audit(self, since_seq: int = 0) -> Iterator[tuple[int, str, str]]:
        """``(seq, kind, json)`` of each audit record after ``since_seq`` (auditor role)."""
        call = self.channel.unary_stream(
            _PREFIX + "ReadAuditLog",
            request_serializer=pb.ReadAuditLogRequest.SerializeToString,
            response_deserializer=pb.AuditRecord.FromString,
        )(pb.ReadAuditLogRequest(since_seq=since_seq), timeout=self.timeout)
        for rec in call:
            yield int(rec.seq), str(rec.kind), str(rec.json)


def _chunks(header: Any, batch: EncodedBatch, size: int) -> Iterator[Any]:
    yield pb.SubmitBatchRequest(header=header)
    filt = np.ascontiguousarray(batch.filters, dtype="<u8")
    flat, offsets = flat_tokens(batch.blocking_tokens)
    counts = np.diff(offsets)
    for a in range(0, len(batch), size):
        b = min(a + size, len(batch))
        yield pb.SubmitBatchRequest(
            chunk=pb.RecordChunk(
                record_refs=batch.record_refs[a:b],
                filters=filt[a:b].tobytes(),
                token_counts=counts[a:b].tolist(),
                blocking_tokens=flat[offsets[a] : offsets[b]].tolist(),
            )
        )
