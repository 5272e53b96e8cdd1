"""The audit log: append chained entries, sign checkpoints, read everything back.

>>> import tempfile
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> key = Ed25519PrivateKey.generate()
>>> with tempfile.TemporaryDirectory() as d:
...     log = AuditLog.open(f"sqlite:///{d}/store.db", key)
...     entry = log.append(AuditEvent(rpc="GetInfo", category="administration", outcome="ok"))
...     log.close()
...     log = AuditLog.open(f"sqlite:///{d}/store.db", None)
...     kinds = [type(item).__name__ for item in log.read()]
...     log.close()
>>> entry.seq, kinds
(1, ['AuditEntry', 'Checkpoint'])
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from matcher.audit._keys import key_id
from matcher.audit._model import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    Checkpoint,
    checkpoint_digest,
    parse_record,
    utc_now,
)
from matcher.audit._store import AuditStore, open_store
from matcher.errors import AuditError, MatcherError, StoreError

__all__ = ["AuditLog"]

_log = logging.getLogger("matcher.audit")
_PAGE: Final = 1000


def _check_intervals(every: int, seconds: float) -> None:
    if every < 1:
        raise AuditError("checkpoint_every must be at least 1")
    if not seconds > 0:
        raise AuditError("checkpoint_seconds must be positive")


class _Slot:
    """One caller's event waiting for a group commit, and what became of it."""

    __slots__ = ("done", "entry", "error", "event")

    def __init__(self, event: AuditEvent) -> None:
        self.event = event
        self.entry: AuditEntry | None = None
        self.error: BaseException | None = None
        self.done = False

    def result(self) -> AuditEntry:
        if self.entry is not None:
            return self.entry
        exc = self.error
        # Each waiting caller raises its own exception object (tracebacks are per raise).
        if isinstance(exc, StoreError):
            raise StoreError(str(exc)) from exc
        raise AuditError(f"audit append failed: {exc}") from exc


class AuditLog:
    """An append-only, hash-chained audit log in the service's store.

    Use :meth:`open`; :meth:`append` is thread-safe and returns once the entry is durable.
    Appends from concurrent threads share one transaction (group commit), so the cost
    of a durable commit is paid once per group rather than once per call. A checkpoint
    signed with ``signing_key`` is written every ``checkpoint_every`` entries, every
    ``checkpoint_seconds`` while entries are not yet covered, and at :meth:`close`.
    Without a key the log can be read and appended to but not checkpointed.
    """

    def __init__(
        self,
        store: AuditStore,
        signing_key: Ed25519PrivateKey | None,
        *,
        checkpoint_every: int,
        checkpoint_seconds: float,
    ) -> None:
        _check_intervals(checkpoint_every, checkpoint_seconds)
        self._store = store
        self._key = signing_key
        self._key_id = key_id(signing_key.public_key()) if signing_key else None
        self._every = checkpoint_every
        self._seconds = checkpoint_seconds
        # _cond guards the queue and the flags; _write is held by whoever writes.
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Slot] = []
        self._leader = False
        self._closing = False
        self._write = threading.Lock()
        self._closed = False
        self._last_checkpoint_at = time.monotonic()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if signing_key is not None:
            self._timer = threading.Thread(
                target=self._checkpoint_timer, name="audit-checkpoint", daemon=True
            )
            self._timer.start()

    @classmethod
    def open(
        cls,
        store_url: str,
        signing_key: Ed25519PrivateKey | None,
        *,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 300.0,
    ) -> AuditLog:
        """Open the log kept in the store at ``store_url``, creating its tables if missing.

        ``store_url`` is the service's own: ``sqlite:///path/store.db`` or
        ``postgresql://user@host/db``.
        """
        _check_intervals(checkpoint_every, checkpoint_seconds)
        return cls(
            open_store(store_url),
            signing_key,
            checkpoint_every=checkpoint_every,
            checkpoint_seconds=checkpoint_seconds,
        )

    @property
    def public_key(self) -> Ed25519PublicKey | None:
        """The public half of the signing key (what auditors verify with), if any."""
        return self._key.public_key() if self._key is not None else None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed or self._closing:
            raise AuditError("the audit log is closed")

    def append(self, event: AuditEvent) -> AuditEntry:
        """Append ``event`` as the next entry; durable (committed) when this returns.

        >>> # log.append(AuditEvent(rpc="FindMatches", category="consultation", outcome="ok"))
        """
        if not isinstance(event, AuditEvent):
            raise AuditError("append takes an AuditEvent")
        slot = _Slot(event)
        with self._cond:
            self._check_open()
            self._pending.append(slot)
            while self._leader and not slot.done:
                self._cond.wait()
            if slot.done:
                return slot.result()
            # No commit is running: this caller commits everything queued so far.
            self._leader = True
            group, self._pending = self._pending, []
        try:
            self._commit(group)
        finally:
            with self._cond:
                self._leader = False
                self._cond.notify_all()
        return slot.result()

    def _commit(self, group: list[_Slot]) -> None:
        try:
            with self._write, self._store.locked():
                seq, head = self._store.head()
                for slot in group:
                    entry = AuditEntry.build(seq + 1, utc_now(), head or GENESIS_HASH, slot.event)
                    self._store.insert_entry(entry.seq, entry.time, entry.hash, entry.to_json())
                    slot.entry, seq, head = entry, entry.seq, entry.hash
                    if self._key is not None and seq % self._every == 0:
                        self._write_checkpoint()
        except BaseException as exc:
            for slot in group:
                slot.entry, slot.error = None, exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for slot in group:
                slot.done = True

    def checkpoint(self) -> Checkpoint:
        """Sign and store a checkpoint over the current head (entry seq and hash, time)."""
        with self._write:
            self._check_open()
            with self._store.locked():
                return self._write_checkpoint()

    def _write_checkpoint(self) -> Checkpoint:
        # Called with both locks held, inside the store transaction.
        if self._key is None or self._key_id is None:
            raise AuditError("no audit signing key: this log cannot write checkpoints")
        seq, head = self._store.head()
        last = self._store.last_checkpoint()
        prev = checkpoint_digest(json.loads(last[1])) if last else GENESIS_HASH
        unsigned = Checkpoint(
            seq=seq,
            head_hash=head or GENESIS_HASH,
            time=utc_now(),
            prev_checkpoint=prev,
            key_id=self._key_id,
            signature="",
        )
        signature = self._key.sign(unsigned.signed_bytes()).hex()
        cp = replace(unsigned, signature=signature)
        self._store.insert_checkpoint(cp.seq, cp.time, cp.to_json())
        self._last_checkpoint_at = time.monotonic()
        return cp

    def _seal(self) -> bool:
        """Checkpoint the entries no checkpoint covers yet, if any (``_write`` held)."""
        with self._store.locked():
            seq, _ = self._store.head()
            last = self._store.last_checkpoint()
            if seq <= (last[0] if last else 0):
                return False
            self._write_checkpoint()
            return True

    def _checkpoint_timer(self) -> None:
        while not self._stop.wait(min(self._seconds, 5.0)):
            if time.monotonic() - self._last_checkpoint_at < self._seconds:
                continue
            try:
                with self._write:
                    if self._closed:
                        return
                    if not self._seal():
                        self._last_checkpoint_at = time.monotonic()
            except (MatcherError, OSError, RuntimeError) as exc:  # keep the service up
                _log.error("audit checkpoint failed: %s", type(exc).__name__)

    def read(self, since_seq: int = 0) -> Iterator[AuditEntry | Checkpoint]:
        """Entries with ``seq > since_seq`` in order, each checkpoint after the entry it covers.

        A checkpoint over an empty log (seq 0) is yielded first when ``since_seq`` is 0.
        """
        for line in self.read_lines(since_seq, seal=False):
            yield parse_record(json.loads(line))

    def read_lines(self, since_seq: int = 0, *, seal: bool = True) -> Iterator[str]:
        """The stored canonical JSON lines, in :meth:`read` order, without newlines.

        This is what an export writes and what ``ReadAuditLog`` sends verbatim. With
        ``seal`` (the default) and a signing key, entries not yet covered by a checkpoint
        get one first, so an export ends signed and a cut-off copy shows as one.
        """
        self._check_open()
        if seal and self._key is not None:
            with self._write:
                self._seal()
        after = since_seq
        lo = since_seq if since_seq == 0 else since_seq + 1
        while True:
            rows = self._store.entries(after, _PAGE)
            if not rows:
                break
            hi = rows[-1][0]
            cps = self._store.checkpoints(lo, hi)
            i = 0
            for seq, body in rows:
                while i < len(cps) and cps[i][0] < seq:
                    yield cps[i][1]
                    i += 1
                yield body
                while i < len(cps) and cps[i][0] == seq:
                    yield cps[i][1]
                    i += 1
            after, lo = hi, hi + 1
        # Checkpoints beyond the last entry (possible only if entries were removed).
        for _, body in self._store.checkpoints(lo, 2**62):
            yield body

    def close(self) -> None:
        """Let queued appends finish, checkpoint entries not yet covered, then close."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            while self._pending or self._leader:
                self._cond.wait()
        self._stop.set()
        try:
            with self._write:
                try:
                    if self._key is not None:
                        self._seal()
                finally:
                    self._closed = True
                    self._store.close()
        finally:
            if self._timer is not None and self._timer is not threading.current_thread():
                self._timer.join(timeout=10)
