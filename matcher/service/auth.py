"""Authentication, the role matrix, error mapping and per-call audit notes.

:class:`GuardInterceptor` wraps every handler of the service. For each call it reads the
caller's :class:`~matcher.pki.Identity` from the verified mTLS client certificate, checks
the role matrix, maps :class:`~matcher.errors.MatcherError` to a gRPC status (the
message names the field at fault, never a value), and appends one audit entry for the
call, allowed or denied. Servicer code adds the call's details to :func:`current_note`.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from matcher.errors import (
    AuthError,
    EncodingError,
    EpochError,
    FingerprintError,
    InputError,
    MatcherError,
    NotFoundError,
    QuotaError,
    SchemaError,
    StoreError,
)
from matcher.pki import Identity, identity_from_pem

__all__ = [
    "CATEGORIES",
    "ROLE_MATRIX",
    "SERVICE_NAME",
    "AuditNote",
    "GuardInterceptor",
    "NoteSink",
    "current_note",
    "identity_of",
    "status_for",
]

_log = logging.getLogger("matcher.service")

SERVICE_NAME = "matcher.v1.Matcher"

# Which roles may call which rpc. Anything not listed is denied.
ROLE_MATRIX: dict[str, frozenset[str]] = {
    "SubmitBatch": frozenset({"submitter"}),
    "RetractRecords": frozenset({"submitter"}),
    "FindMatches": frozenset({"assessor"}),
    "Watch": frozenset({"assessor"}),
    "ReadAuditLog": frozenset({"auditor"}),
    "GetInfo": frozenset({"submitter", "assessor", "auditor", "admin"}),
}

# DPA 2018 s.62 category of each rpc's audit entry.
CATEGORIES: dict[str, str] = {
    "SubmitBatch": "collection",
    "RetractRecords": "erasure",
    "FindMatches": "consultation",
    "Watch": "consultation",
    "ReadAuditLog": "audit",
    "GetInfo": "administration",
}

_STATUS: tuple[tuple[type[MatcherError], grpc.StatusCode], ...] = (
    (InputError, grpc.StatusCode.INVALID_ARGUMENT),
    (EncodingError, grpc.StatusCode.INVALID_ARGUMENT),
    (SchemaError, grpc.StatusCode.INVALID_ARGUMENT),
    (EpochError, grpc.StatusCode.FAILED_PRECONDITION),
    (FingerprintError, grpc.StatusCode.FAILED_PRECONDITION),
    (AuthError, grpc.StatusCode.PERMISSION_DENIED),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (QuotaError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
)


def status_for(exc: MatcherError) -> grpc.StatusCode:
    """The gRPC status code for an error of the exception tree."""
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def identity_of(context: grpc.ServicerContext) -> Identity:
    """The caller's identity from its verified client certificate."""
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        raise AuthError("client certificate: none presented")
    return identity_from_pem(bytes(pems[0]))


@dataclass
class AuditNote:
    """What one call did, gathered while it runs and appended to the audit log once."""

    rpc: str
    identity: Identity | None
    category: str
    outcome: str = "ok"
    status_code: str = "OK"
    fields: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    emitted: bool = False
    sink: NoteSink | None = None

    def set(self, **fields: Any) -> None:
        """Record event fields (purpose, results, store_version ...)."""
        self.fields.update(fields)

    def emit_now(self) -> None:
        """Append the entry now (long streams) instead of when the call ends."""
        if self.sink is not None and not self.emitted:
            self.emitted = True
            self.sink.append_note(self)


class NoteSink:
    """Where notes go; :class:`matcher.service.auditing.ServiceAudit` is the real one."""

    def append_note(self, note: AuditNote) -> None:
        """Append ``note`` to the audit log (no-op here)."""


_NOTE: contextvars.ContextVar[AuditNote | None] = contextvars.ContextVar("note", default=None)


def current_note() -> AuditNote:
    """The audit note of the call being served (a detached one outside calls)."""
    note = _NOTE.get()
    return note if note is not None else AuditNote("?", None, "administration")


class GuardInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Identity, role matrix, status mapping and audit around every handler."""

    def __init__(self, sink: NoteSink) -> None:
        self._sink = sink

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, _, rpc = str(handler_call_details.method).lstrip("/").rpartition("/")
        if service != SERVICE_NAME:
            # Health checking and reflection: any authenticated caller, not audited.
            return _wrap(handler, self._plain, self._plain_stream)
        return _wrap(
            handler,
            lambda ctx, run: self._guarded(rpc, ctx, run),
            lambda ctx, run: self._guarded_stream(rpc, ctx, run),
        )

    def _plain(self, context: grpc.ServicerContext, run: Callable[[], Any]) -> Any:
        try:
            identity_of(context)
        except MatcherError as exc:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        return run()

    def _plain_stream(
        self, context: grpc.ServicerContext, run: Callable[[], Iterator[Any]]
    ) -> Iterator[Any]:
        yield from self._plain(context, run)

    @staticmethod
    def _begin(note: AuditNote, context: grpc.ServicerContext) -> None:
        note.identity = identity_of(context)
        if note.identity.role not in ROLE_MATRIX.get(note.rpc, frozenset()):
            note.outcome = "denied"
            raise AuthError(f"role: {note.identity.role} may not call {note.rpc}")

    def _fail(self, note: AuditNote, exc: Exception, context: grpc.ServicerContext) -> None:
        if isinstance(exc, MatcherError):
            code = status_for(exc) if note.identity is not None else grpc.StatusCode.UNAUTHENTICATED
            message = str(exc)
        elif _is_abort(exc):
            # Cancelled by the client, or aborted already: log the call all the same.
            if note.outcome == "ok":
                note.outcome, note.status_code = "error", "CANCELLED"
            note.emit_now()
            return
        else:
            # Never log the exception text: it could hold a value from the request.
            _log.error("%s failed: %s", note.rpc, type(exc).__name__)
            code, message = grpc.StatusCode.INTERNAL, "internal error"
        if note.outcome == "ok":
            note.outcome = "denied" if code == grpc.StatusCode.PERMISSION_DENIED else "error"
        note.status_code = code.name
        note.emit_now()
        context.abort(code, message)

    def _guarded(self, rpc: str, context: grpc.ServicerContext, run: Callable[[], Any]) -> Any:
        note = AuditNote(rpc, None, CATEGORIES.get(rpc, "administration"), sink=self._sink)
        token = _NOTE.set(note)
        try:
            self._begin(note, context)
            result = run()
            note.emit_now()  # before the result leaves: no audit entry, no disclosure
            return result
        except Exception as exc:
            self._fail(note, exc, context)
            raise
        finally:
            _NOTE.reset(token)

    def _guarded_stream(
        self, rpc: str, context: grpc.ServicerContext, run: Callable[[], Iterator[Any]]
    ) -> Iterator[Any]:
        note = AuditNote(rpc, None, CATEGORIES.get(rpc, "administration"), sink=self._sink)
        try:
            self._begin(note, context)
            # A stream runs on one server thread from start to end, so the note stays
            # visible to the servicer's generator across its yields.
            _NOTE.set(note)
            yield from run()
            note.emit_now()
        except GeneratorExit:
            note.details["cancelled"] = True
            note.emit_now()
            raise
        except Exception as exc:
            self._fail(note, exc, context)
            raise
        finally:
            _NOTE.set(None)


def _is_abort(exc: BaseException) -> bool:
    return isinstance(exc, grpc.RpcError) or (type(exc) is Exception and not exc.args)


Guard = Callable[[grpc.ServicerContext, Callable[[], Any]], Any]


def _wrap(handler: Any, guard: Guard, stream_guard: Guard) -> Any:
    """A copy of ``handler`` whose behaviour runs inside ``guard`` / ``stream_guard``."""
    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        uu = handler.unary_unary
        return grpc.unary_unary_rpc_method_handler(
            lambda req, ctx: guard(ctx, lambda: uu(req, ctx)), **kw
        )
    if handler.stream_unary:
        su = handler.stream_unary
        return grpc.stream_unary_rpc_method_handler(
            lambda it, ctx: guard(ctx, lambda: su(it, ctx)), **kw
        )
    if handler.unary_stream:
        us = handler.unary_stream
        return grpc.unary_stream_rpc_method_handler(
            lambda req, ctx: stream_guard(ctx, lambda: us(req, ctx)), **kw
        )
    ss = handler.stream_stream
    return grpc.stream_stream_rpc_method_handler(
        lambda it, ctx: stream_guard(ctx, lambda: ss(it, ctx)), **kw
    )
