"""The event-sourced store: batches and retractions as immutable, versioned events.

One interface (:class:`Store`), two backends chosen by URL: ``sqlite:///path`` (embedded,
WAL, the default) and ``postgresql://...`` (production). Every append is atomic and
durable before it returns; a rejected append changes nothing; the same batch or
retraction id again is acknowledged without being applied twice. :meth:`Store.state_at`
folds the events up to any version, which is what audit replay needs.

>>> store = open_store("sqlite:///:memory:")
>>> store.version(), store.record_count()
(0, 0)
>>> store.close()
"""

from __future__ import annotations

from matcher.errors import InputError
from matcher.store._base import SqlStore, Store
from matcher.store._model import (
    AlertRecord,
    AppendResult,
    BatchEvent,
    RetractEvent,
    StoreEvent,
    StoreState,
    WatchRecord,
    check_id,
)

__all__ = [
    "AlertRecord",
    "AppendResult",
    "BatchEvent",
    "RetractEvent",
    "SqlStore",
    "Store",
    "StoreEvent",
    "StoreState",
    "WatchRecord",
    "check_id",
    "open_store",
]


def open_store(url: str) -> Store:
    """Open (creating if needed) the store at ``url``.

    ``sqlite:///relative/or/absolute/path`` (``sqlite:////abs`` also works) or
    ``postgresql://user@host:port/db``.
    """
    if url.startswith("sqlite:///"):
        from matcher.store._sqlite import SqliteStore

        return SqliteStore(url, url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        from matcher.store._postgres import PostgresStore

        return PostgresStore(url)
    raise InputError("store: URL must start with sqlite:/// or postgresql://", field="store")
