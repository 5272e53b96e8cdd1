"""The PostgreSQL backend (``postgresql://...``), the production store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from matcher.errors import InputError, StoreError
from matcher.store._base import Cursor, SqlStore

__all__ = ["PostgresStore"]

# Serialises writers across processes: versions are assigned one at a time.
_WRITE_LOCK_KEY = 0x6D61746368  # "match"


class _PgCursor:
    """Adapts a psycopg cursor to ``?`` placeholders."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(self._sql(sql), params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cur.executemany(self._sql(sql), params)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())

    def copy_live(self, rows: list[tuple[str, str, int]]) -> None:
        with self._cur.copy("COPY store_live (force, record_ref, version) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)


class PostgresStore(SqlStore):
    """A store in a PostgreSQL database; commits are durable (``synchronous_commit``)."""

    blob_type = "BYTEA"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - optional dependency
            raise StoreError("PostgreSQL needs psycopg: pip install 'matcher[postgres]'") from None
        self._psycopg = psycopg
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL ({type(exc).__name__})") from None
        super().__init__(url)

    @contextmanager
    def _tx(self, write: bool) -> Iterator[Cursor]:
        psycopg = self._psycopg
        try:
            with self._conn.transaction(), self._conn.cursor() as raw:
                cur = _PgCursor(raw)
                if write:
                    cur.execute("SELECT pg_advisory_xact_lock(?)", (_WRITE_LOCK_KEY,))
                yield cur
        except psycopg.errors.UniqueViolation:
            raise InputError(
                "record_refs: a reference is already a live record of this force",
                field="record_refs",
            ) from None
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL store failed ({type(exc).__name__})") from None

    def _insert_live(self, cur: Cursor, rows: list[tuple[str, str, int]]) -> None:
        assert isinstance(cur, _PgCursor)
        cur.copy_live(rows)

    def _delete_live(self, cur: Cursor, force: str, refs: list[str]) -> int:
        cur.execute("DELETE FROM store_live WHERE force = ? AND record_ref = ANY(?)", (force, refs))
        return cur.rowcount
