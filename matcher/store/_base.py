"""The store interface and its SQL implementation shared by SQLite and PostgreSQL.

Batches and retractions are immutable events in ``store_events`` with an increasing
``version``; the current state is their fold. ``store_live`` is a projection of the live
``(force, record_ref)`` pairs kept in the same transaction as each event, so that
duplicate references and retractions of records a force does not hold are refused
without a fold. Watches and their alerts live beside the events.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from matcher.batch import EncodedBatch
from matcher.errors import InputError, NotFoundError, StoreError
from matcher.store._model import (
    AlertRecord,
    AppendResult,
    BatchEvent,
    PackedColumns,
    RetractEvent,
    StoreEvent,
    StoreState,
    WatchRecord,
    check_id,
    check_refs,
    pack_columns,
    pack_tokens,
    unpack_refs,
    unpack_tokens,
)

__all__ = ["Cursor", "SqlStore", "Store"]


class Cursor(Protocol):
    """The slice of a DB-API cursor the store uses (``?`` placeholders)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Store(ABC):
    """An event-sourced store of encodings (see :func:`matcher.store.open_store`).

    >>> from matcher.store import open_store
    >>> store = open_store("sqlite:///:memory:")
    >>> store.version()
    0
    """

    url: str

    @abstractmethod
    def append_batch(self, batch: EncodedBatch, *, signature: bytes = b"") -> AppendResult:
        """Apply ``batch`` atomically and durably; the same batch id again is a no-op."""

    @abstractmethod
    def append_retraction(self, retraction_id: str, force: str, refs: list[str]) -> AppendResult:
        """Remove live records of ``force``; all or none. The same id again is a no-op."""

    @abstractmethod
    def version(self) -> int:
        """The version of the latest event (0 when empty)."""

    @abstractmethod
    def record_count(self) -> int:
        """Number of live records."""

    @abstractmethod
    def events(self, since: int = 0, until: int | None = None) -> Iterator[StoreEvent]:
        """Events with ``since < version <= until``, in order."""

    def state_at(self, version: int | None = None) -> StoreState:
        """The fold of the events up to ``version`` (default: now): the live records then."""
        until = self.version() if version is None else version
        live: dict[tuple[str, str], tuple[int, int]] = {}
        batches: list[BatchEvent] = []
        for ev in self.events(0, until):
            if isinstance(ev, BatchEvent):
                bi = len(batches)
                batches.append(ev)
                for k, ref in enumerate(ev.batch.record_refs):
                    live[(ev.batch.force, ref)] = (bi, k)
            else:
                for ref in ev.record_refs:
                    live.pop((ev.force, ref), None)
        bits = batches[0].batch.filter_bits if batches else 0
        state = StoreState(version=until, filter_bits=bits)
        order = sorted(live.values())
        rows = []
        for bi, k in order:
            b = batches[bi].batch
            state.forces.append(b.force)
            state.record_refs.append(b.record_refs[k])
            state.blocking_tokens.append(b.blocking_tokens[k])
            state.record_versions.append(batches[bi].version)
            rows.append(b.filters[k])
        words = bits // 64
        state.filters = (
            np.vstack(rows).astype(np.uint64) if rows else np.zeros((0, words), np.uint64)
        )
        return state

    @abstractmethod
    def add_watch(self, watch: WatchRecord) -> None:
        """Persist a new watch."""

    @abstractmethod
    def watches(self) -> list[WatchRecord]:
        """Every registered watch."""

    @abstractmethod
    def get_watch(self, watch_id: str) -> WatchRecord:
        """One watch, or :class:`NotFoundError`."""

    @abstractmethod
    def append_alerts(
        self, watch_id: str, alerts: list[AlertRecord], scanned_version: int
    ) -> list[AlertRecord]:
        """Persist alerts (numbered on from the watch's last) and mark the watch scanned."""

    @abstractmethod
    def alerts(self, watch_id: str, after_seq: int = 0) -> list[AlertRecord]:
        """A watch's alerts with ``seq > after_seq``, in order."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def batch_digest_of(packed: PackedColumns) -> str:
    """Content digest used to tell a true resubmission from a reused batch id."""
    h = hashlib.sha256()
    for part in (packed.refs, packed.filters, packed.token_counts, packed.tokens):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class SqlStore(Store):
    """SQL implementation; subclasses supply the connection, DDL and a few statements."""

    blob_type = "BLOB"
    clustered = ""  # table option for a table stored in its primary-key order
    _conn: Any  # the driver's connection, opened by the subclass

    def __init__(self, url: str) -> None:
        self.url = url
        # One connection, serialised: writes are serial anyway and reads are rare
        # (the service answers queries from its in-memory index).
        self._lock = threading.RLock()
        self._create_tables()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _tx(self, write: bool) -> AbstractContextManager[Cursor]:
        """A transaction; ``write`` transactions are serialised across processes."""

    @abstractmethod
    def _insert_live(self, cur: Cursor, rows: list[tuple[str, str, int]]) -> None:
        """Insert live rows; raise :class:`InputError` on a duplicate."""

    def _ddl(self) -> list[str]:
        b = self.blob_type
        return [
            f"""CREATE TABLE IF NOT EXISTS store_events (
                version BIGINT PRIMARY KEY, kind TEXT NOT NULL, event_id TEXT NOT NULL,
                force TEXT NOT NULL, epoch INTEGER NOT NULL, schema_fingerprint TEXT NOT NULL,
                filter_bits INTEGER NOT NULL, record_count BIGINT NOT NULL,
                created_at TEXT NOT NULL, digest TEXT NOT NULL, signature {b} NOT NULL,
                refs {b} NOT NULL, filters {b} NOT NULL, token_counts {b} NOT NULL,
                tokens {b} NOT NULL, UNIQUE (kind, event_id))""",
            f"""CREATE TABLE IF NOT EXISTS store_live (
                force TEXT NOT NULL, record_ref TEXT NOT NULL, version BIGINT NOT NULL,
                PRIMARY KEY (force, record_ref)){self.clustered}""",
            f"""CREATE TABLE IF NOT EXISTS store_watches (
                watch_id TEXT PRIMARY KEY, owner TEXT NOT NULL, force TEXT NOT NULL,
                purpose TEXT NOT NULL, case_reference TEXT NOT NULL,
                include_own INTEGER NOT NULL, epoch INTEGER NOT NULL,
                schema_fingerprint TEXT NOT NULL, filter_bits INTEGER NOT NULL,
                subject_ids TEXT NOT NULL, filters {b} NOT NULL, token_counts {b} NOT NULL,
                tokens {b} NOT NULL, created_version BIGINT NOT NULL,
                scanned_version BIGINT NOT NULL, last_seq BIGINT NOT NULL,
                created_at TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS store_alerts (
                watch_id TEXT NOT NULL, seq BIGINT NOT NULL, subject_id TEXT NOT NULL,
                force TEXT NOT NULL, record_ref TEXT NOT NULL, score DOUBLE PRECISION NOT NULL,
                band TEXT NOT NULL, agreement TEXT NOT NULL, store_version BIGINT NOT NULL,
                created_ms BIGINT NOT NULL, PRIMARY KEY (watch_id, seq))""",
        ]

    def _create_tables(self) -> None:
        with self._lock, self._tx(True) as cur:
            for stmt in self._ddl():
                cur.execute(stmt)

    # -- events --------------------------------------------------------------------------
    def _find_event(self, cur: Cursor, kind: str, event_id: str) -> tuple[int, str, int] | None:
        cur.execute(
            "SELECT version, digest, record_count FROM store_events "
            "WHERE kind = ? AND event_id = ?",
            (kind, event_id),
        )
        row = cur.fetchone()
        return None if row is None else (int(row[0]), str(row[1]), int(row[2]))

    @staticmethod
    def _next_version(cur: Cursor) -> int:
        cur.execute("SELECT COALESCE(MAX(version), 0) FROM store_events")
        return int(cur.fetchone()[0]) + 1

    def append_batch(self, batch: EncodedBatch, *, signature: bytes = b"") -> AppendResult:
        check_id(batch.batch_id, "batch_id")
        packed = pack_columns(batch)
        digest = batch_digest_of(packed)
        with self._lock, self._tx(True) as cur:
            found = self._find_event(cur, "batch", batch.batch_id)
            if found is not None:
                if found[1] != digest:
                    raise InputError(
                        "batch_id: already used for a different batch", field="batch_id"
                    )
                return AppendResult(found[0], False, found[2])
            version = self._next_version(cur)
            cur.execute(
                "INSERT INTO store_events (version, kind, event_id, force, epoch, "
                "schema_fingerprint, filter_bits, record_count, created_at, digest, signature, "
                "refs, filters, token_counts, tokens) "
                "VALUES (?, 'batch', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    version,
                    batch.batch_id,
                    batch.force,
                    batch.epoch,
                    batch.schema_fingerprint,
                    batch.filter_bits,
                    len(batch),
                    _now(),
                    digest,
                    signature,
                    packed.refs,
                    packed.filters,
                    packed.token_counts,
                    packed.tokens,
                ),
            )
            # In key order, so that the primary-key B-tree is walked once, not at random.
            refs = sorted(batch.record_refs)
            self._insert_live(cur, [(batch.force, r, version) for r in refs])
        return AppendResult(version, True, len(batch))

    def append_retraction(self, retraction_id: str, force: str, refs: list[str]) -> AppendResult:
        check_id(retraction_id, "retraction_id")
        if not refs:
            raise InputError("record_refs: at least one reference is needed", field="record_refs")
        packed = check_refs(refs)
        digest = hashlib.sha256(force.encode() + b"\0" + packed).hexdigest()
        with self._lock, self._tx(True) as cur:
            found = self._find_event(cur, "retract", retraction_id)
            if found is not None:
                if found[1] != digest:
                    raise InputError(
                        "retraction_id: already used for another retraction", field="retraction_id"
                    )
                return AppendResult(found[0], False, found[2])
            removed = self._delete_live(cur, force, refs)
            if removed != len(refs):
                raise NotFoundError(
                    f"record_refs: {len(refs) - removed} of {len(refs)} references are not "
                    "live records of the caller's force"
                )
            version = self._next_version(cur)
            cur.execute(
                "INSERT INTO store_events (version, kind, event_id, force, epoch, "
                "schema_fingerprint, filter_bits, record_count, created_at, digest, signature, "
                "refs, filters, token_counts, tokens) "
                "VALUES (?, 'retract', ?, ?, 0, '', 0, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    version,
                    retraction_id,
                    force,
                    len(refs),
                    _now(),
                    digest,
                    b"",
                    packed,
                    b"",
                    b"",
                    b"",
                ),
            )
        return AppendResult(version, True, len(refs))

    def _delete_live(self, cur: Cursor, force: str, refs: list[str]) -> int:
        cur.executemany(
            "DELETE FROM store_live WHERE force = ? AND record_ref = ?", [(force, r) for r in refs]
        )
        return int(cur.rowcount)

    def version(self) -> int:
        with self._lock, self._tx(False) as cur:
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM store_events")
            return int(cur.fetchone()[0])

    def record_count(self) -> int:
        with self._lock, self._tx(False) as cur:
            cur.execute("SELECT COUNT(*) FROM store_live")
            return int(cur.fetchone()[0])

    def events(self, since: int = 0, until: int | None = None) -> Iterator[StoreEvent]:
        hi = until if until is not None else 2**62
        last = since
        while True:
            # Page through the events so a large store is never held in memory at once.
            with self._lock, self._tx(False) as cur:
                cur.execute(
                    "SELECT version, kind, event_id, force, epoch, schema_fingerprint, "
                    "filter_bits, created_at, signature, refs, filters, token_counts, tokens "
                    "FROM store_events WHERE version > ? AND version <= ? "
                    "ORDER BY version LIMIT 16",
                    (last, hi),
                )
                rows = cur.fetchall()
            if not rows:
                return
            for row in rows:
                last = int(row[0])
                yield _event_from_row(row)

    # -- watches and alerts ------------------------------------------------------------
    def add_watch(self, watch: WatchRecord) -> None:
        counts, tokens = pack_tokens(watch.blocking_tokens)
        with self._lock, self._tx(True) as cur:
            cur.execute(
                "INSERT INTO store_watches (watch_id, owner, force, purpose, case_reference, "
                "include_own, epoch, schema_fingerprint, filter_bits, subject_ids, filters, "
                "token_counts, tokens, created_version, scanned_version, last_seq, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                (
                    watch.watch_id,
                    watch.owner,
                    watch.force,
                    watch.purpose,
                    watch.case_reference,
                    int(watch.include_own_force),
                    watch.epoch,
                    watch.schema_fingerprint,
                    watch.filter_bits,
                    json.dumps(watch.subject_ids),
                    np.ascontiguousarray(watch.filters, dtype="<u8").tobytes(),
                    counts,
                    tokens,
                    watch.created_version,
                    watch.scanned_version,
                    watch.created_at,
                ),
            )

    _WATCH_COLS = (
        "watch_id, owner, force, purpose, case_reference, include_own, epoch, "
        "schema_fingerprint, filter_bits, subject_ids, filters, token_counts, tokens, "
        "created_version, scanned_version, created_at"
    )

    def watches(self) -> list[WatchRecord]:
        with self._lock, self._tx(False) as cur:
            cur.execute(f"SELECT {self._WATCH_COLS} FROM store_watches ORDER BY created_at")
            return [_watch_from_row(r) for r in cur.fetchall()]

    def get_watch(self, watch_id: str) -> WatchRecord:
        with self._lock, self._tx(False) as cur:
            cur.execute(
                f"SELECT {self._WATCH_COLS} FROM store_watches WHERE watch_id = ?", (watch_id,)
            )
            row = cur.fetchone()
        if row is None:
            raise NotFoundError("resume_token: no such watch")
        return _watch_from_row(row)

    def append_alerts(
        self, watch_id: str, alerts: list[AlertRecord], scanned_version: int
    ) -> list[AlertRecord]:
        now_ms = int(time.time() * 1000)
        with self._lock, self._tx(True) as cur:
            cur.execute("SELECT last_seq FROM store_watches WHERE watch_id = ?", (watch_id,))
            row = cur.fetchone()
            if row is None:
                raise NotFoundError("watch_id: no such watch")
            seq = int(row[0])
            out = []
            for a in alerts:
                seq += 1
                out.append(
                    AlertRecord(
                        watch_id,
                        seq,
                        a.subject_id,
                        a.force,
                        a.record_ref,
                        a.score,
                        a.band,
                        a.agreement,
                        a.store_version,
                        now_ms,
                    )
                )
            cur.executemany(
                "INSERT INTO store_alerts (watch_id, seq, subject_id, force, record_ref, score, "
                "band, agreement, store_version, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        a.watch_id,
                        a.seq,
                        a.subject_id,
                        a.force,
                        a.record_ref,
                        a.score,
                        a.band,
                        json.dumps(list(a.agreement)),
                        a.store_version,
                        a.created_ms,
                    )
                    for a in out
                ],
            )
            cur.execute(
                "UPDATE store_watches SET last_seq = ?, scanned_version = ? WHERE watch_id = ?",
                (seq, scanned_version, watch_id),
            )
        return out

    def alerts(self, watch_id: str, after_seq: int = 0) -> list[AlertRecord]:
        with self._lock, self._tx(False) as cur:
            cur.execute(
                "SELECT watch_id, seq, subject_id, force, record_ref, score, band, agreement, "
                "store_version, created_ms FROM store_alerts WHERE watch_id = ? AND seq > ? "
                "ORDER BY seq",
                (watch_id, after_seq),
            )
            rows = cur.fetchall()
        return [
            AlertRecord(
                str(r[0]),
                int(r[1]),
                str(r[2]),
                str(r[3]),
                str(r[4]),
                float(r[5]),
                str(r[6]),
                tuple(json.loads(r[7])),
                int(r[8]),
                int(r[9]),
            )
            for r in rows
        ]


def _event_from_row(row: Any) -> StoreEvent:
    version, kind, event_id, force = int(row[0]), str(row[1]), str(row[2]), str(row[3])
    if kind == "retract":
        return RetractEvent(version, str(row[7]), event_id, force, unpack_refs(bytes(row[9])))
    if kind != "batch":
        raise StoreError(f"store_events: unknown event kind at version {version}")
    bits = int(row[6])
    refs = unpack_refs(bytes(row[9]))
    filters = np.frombuffer(bytes(row[10]), dtype="<u8").astype(np.uint64)
    batch = EncodedBatch(
        force=force,
        epoch=int(row[4]),
        schema_fingerprint=str(row[5]),
        filter_bits=bits,
        record_refs=refs,
        filters=filters.reshape(len(refs), bits // 64),
        blocking_tokens=unpack_tokens(bytes(row[11]), bytes(row[12])),
        batch_id=event_id,
    )
    return BatchEvent(version, str(row[7]), batch, bytes(row[8]))


def _watch_from_row(r: Any) -> WatchRecord:
    ids = [str(s) for s in json.loads(r[9])]
    bits = int(r[8])
    filters = np.frombuffer(bytes(r[10]), dtype="<u8").astype(np.uint64)
    return WatchRecord(
        watch_id=str(r[0]),
        owner=str(r[1]),
        force=str(r[2]),
        purpose=str(r[3]),
        case_reference=str(r[4]),
        include_own_force=bool(r[5]),
        epoch=int(r[6]),
        schema_fingerprint=str(r[7]),
        filter_bits=bits,
        subject_ids=ids,
        filters=filters.reshape(len(ids), bits // 64),
        blocking_tokens=unpack_tokens(bytes(r[11]), bytes(r[12])),
        created_version=int(r[13]),
        scanned_version=int(r[14]),
        created_at=str(r[15]),
    )
