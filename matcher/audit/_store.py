"""Append-only audit tables in the service's store: SQLite (WAL) or PostgreSQL.

Two tables sit beside the service's own: ``audit_entries`` (one canonical JSON line per
entry, keyed by its sequence number) and ``audit_checkpoints``. Both refuse UPDATE and
DELETE through triggers (and TRUNCATE on PostgreSQL). On PostgreSQL the connecting role's
UPDATE, DELETE and TRUNCATE privileges are also revoked, and :func:`grant_service_role`
gives a separate service role SELECT and INSERT only; triggers stop even a superuser.

Appends take a database-wide lock (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped
advisory lock on PostgreSQL), so several processes on one store still build one chain.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol

from matcher.errors import AuditError, StoreError

__all__ = ["AuditStore", "grant_service_role", "open_store", "sqlite_path"]

_ADVISORY_LOCK_KEY: Final = 0x6D617463_61756474  # "matc" "audt"
_APPEND_ONLY_MESSAGE: Final = "audit log is append-only"

_SQLITE_DDL: Final = f"""
CREATE TABLE IF NOT EXISTS audit_entries (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    hash TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_checkpoints_seq ON audit_checkpoints (seq, id);
CREATE TRIGGER IF NOT EXISTS audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END;
CREATE TRIGGER IF NOT EXISTS audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END;
"""

_PG_DDL: Final = [
    """CREATE TABLE IF NOT EXISTS audit_entries (
        seq BIGINT PRIMARY KEY,
        time TEXT NOT NULL,
        hash TEXT NOT NULL,
        body TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS audit_checkpoints (
        id BIGINT PRIMARY KEY,
        seq BIGINT NOT NULL,
        time TEXT NOT NULL,
        body TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_checkpoints_seq ON audit_checkpoints (seq, id)",
    f"""CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}' USING ERRCODE = 'insufficient_privilege';
        END $$""",
    "DROP TRIGGER IF EXISTS audit_entries_append_only ON audit_entries",
    """CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
        FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
    "DROP TRIGGER IF EXISTS audit_entries_no_truncate ON audit_entries",
    """CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
    "DROP TRIGGER IF EXISTS audit_checkpoints_append_only ON audit_checkpoints",
    """CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE
        ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
    "DROP TRIGGER IF EXISTS audit_checkpoints_no_truncate ON audit_checkpoints",
    """CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
    # The owner keeps the right to grant these back, but the connection that made the
    # tables (normally the service) no longer holds them; PUBLIC never did.
    """REVOKE UPDATE, DELETE, TRUNCATE ON audit_entries, audit_checkpoints
        FROM PUBLIC, CURRENT_USER""",
]
_PG_TRIGGERS: Final = (
    "audit_entries_append_only",
    "audit_entries_no_truncate",
    "audit_checkpoints_append_only",
    "audit_checkpoints_no_truncate",
)


class AuditStore(Protocol):
    """What :class:`~matcher.audit.AuditLog` needs from a database."""

    def locked(self) -> Any:
        """A context manager: one write transaction holding the store-wide append lock."""

    def head(self) -> tuple[int, str | None]:
        """The last entry's ``(seq, hash)``, or ``(0, None)`` for an empty log."""

    def last_checkpoint(self) -> tuple[int, str] | None:
        """The newest checkpoint's ``(seq, body)``, or ``None``."""

    def insert_entry(self, seq: int, time: str, hash: str, body: str) -> None:
        """Insert one entry row (inside :meth:`locked`)."""

    def insert_checkpoint(self, seq: int, time: str, body: str) -> None:
        """Insert one checkpoint row (inside :meth:`locked`)."""

    def entries(self, after: int, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` ``(seq, body)`` rows with ``seq > after``, in order."""

    def checkpoints(self, lo: int, hi: int) -> list[tuple[int, str]]:
        """``(seq, body)`` of checkpoints with ``lo <= seq <= hi``, in order."""

    def close(self) -> None:
        """Close the connection."""


@contextmanager
def _db_errors(kind: type[Exception]) -> Iterator[None]:
    """Turn the driver's errors into :class:`StoreError` (the service maps those)."""
    try:
        yield
    except kind as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise StoreError(f"audit store: {type(exc).__name__}: {first}") from exc


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` URL.

    >>> str(sqlite_path("sqlite:////var/lib/matcher/store.db"))
    '/var/lib/matcher/store.db'
    >>> str(sqlite_path("sqlite:///store.db"))
    'store.db'
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StoreError("a SQLite store URL looks like sqlite:///path/to/store.db")
    return Path(url[len(prefix) :])


class _SqlStore:
    """The queries both backends share; ``_P`` is the driver's parameter placeholder."""

    _P: ClassVar[str]
    _conn: Any
    _lock: threading.RLock
    _error: type[Exception]

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock, _db_errors(self._error):
            return list(self._conn.execute(sql, params).fetchall())

    def head(self) -> tuple[int, str | None]:
        rows = self._query("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1")
        return (int(rows[0][0]), str(rows[0][1])) if rows else (0, None)

    def last_checkpoint(self) -> tuple[int, str] | None:
        rows = self._query("SELECT seq, body FROM audit_checkpoints ORDER BY id DESC LIMIT 1")
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def insert_entry(self, seq: int, time: str, hash: str, body: str) -> None:
        p = self._P
        self._conn.execute(
            f"INSERT INTO audit_entries (seq, time, hash, body) VALUES ({p}, {p}, {p}, {p})",
            (seq, time, hash, body),
        )

    def entries(self, after: int, limit: int) -> list[tuple[int, str]]:
        p = self._P
        rows = self._query(
            f"SELECT seq, body FROM audit_entries WHERE seq > {p} ORDER BY seq LIMIT {p}",
            (after, limit),
        )
        return [(int(s), str(b)) for s, b in rows]

    def checkpoints(self, lo: int, hi: int) -> list[tuple[int, str]]:
        p = self._P
        rows = self._query(
            f"SELECT seq, body FROM audit_checkpoints WHERE seq BETWEEN {p} AND {p}"
            " ORDER BY seq, id",
            (lo, hi),
        )
        return [(int(s), str(b)) for s, b in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _SQLiteStore(_SqlStore):
    _P = "?"
    _error = sqlite3.Error

    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # WAL with synchronous=NORMAL may lose the last commits on power loss.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SQLITE_DDL)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the audit tables in {path}: {exc}") from None
        self._lock = threading.RLock()

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock, _db_errors(sqlite3.Error):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def insert_checkpoint(self, seq: int, time: str, body: str) -> None:
        self._conn.execute(
            "INSERT INTO audit_checkpoints (seq, time, body) VALUES (?, ?, ?)", (seq, time, body)
        )


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise StoreError(
            "a postgresql:// store needs psycopg: pip install 'matcher[postgres]'"
        ) from None
    return psycopg


class _PostgresStore(_SqlStore):
    _P = "%s"

    def __init__(self, url: str) -> None:
        psycopg = _psycopg()
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the PostgreSQL store: {exc}") from None
        self._lock = threading.RLock()
        self._error: type[Exception] = psycopg.Error
        self._install(psycopg)

    def _installed(self) -> bool:
        row = self._conn.execute(
            "SELECT to_regclass('audit_entries') IS NOT NULL,"
            " to_regclass('audit_checkpoints') IS NOT NULL,"
            " (SELECT count(*) FROM pg_trigger WHERE tgname = ANY(%s))",
            (list(_PG_TRIGGERS),),
        ).fetchone()
        return bool(row[0]) and bool(row[1]) and int(row[2]) == len(_PG_TRIGGERS)

    def _install(self, psycopg: Any) -> None:
        # A service role without CREATE may use tables an administrator installed.
        if self._installed():
            return
        try:
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
                for statement in _PG_DDL:
                    self._conn.execute(statement)
        except psycopg.Error as exc:
            raise StoreError(f"cannot create the audit tables: {exc}") from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock, _db_errors(self._error), self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
            yield

    def insert_checkpoint(self, seq: int, time: str, body: str) -> None:
        # No sequence object: the service role then needs no USAGE grant on one.
        self._conn.execute(
            "INSERT INTO audit_checkpoints (id, seq, time, body)"
            " SELECT coalesce(max(id), 0) + 1, %s, %s, %s FROM audit_checkpoints",
            (seq, time, body),
        )


_BACKENDS: Final[dict[str, Callable[[str], AuditStore]]] = {
    "sqlite": _SQLiteStore,
    "postgresql": _PostgresStore,
    "postgres": _PostgresStore,
}


def open_store(url: str) -> AuditStore:
    """Open (creating if missing) the audit tables of the store at ``url``."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in _BACKENDS:
        raise StoreError("a store URL starts with sqlite:/// or postgresql://")
    return _BACKENDS[scheme](url)


def grant_service_role(admin_url: str, role: str) -> None:
    """Let PostgreSQL ``role`` read and append to the audit tables, and nothing more.

    Run by an administrator that owns the tables (it creates them if missing). The role
    gets SELECT and INSERT; UPDATE, DELETE and TRUNCATE are revoked, and the triggers
    refuse them anyway.
    """
    if not role.replace("_", "").isalnum():
        raise AuditError("a PostgreSQL role name must be letters, digits and underscores")
    psycopg = _psycopg()
    store = _PostgresStore(admin_url)
    try:
        conn = store._conn
        with conn.transaction():
            for table in ("audit_entries", "audit_checkpoints"):
                conn.execute(f'GRANT SELECT, INSERT ON {table} TO "{role}"')
                conn.execute(f'REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM "{role}"')
    except psycopg.Error as exc:
        raise StoreError(f"cannot grant the audit tables to the service role: {exc}") from None
    finally:
        store.close()
