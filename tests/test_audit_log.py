"""The audit log on both stores: chain, checkpoints, durability, append-only, threads."""

from __future__ import annotations

import contextlib
import itertools
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

import matcher.audit
from matcher.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    AuditLog,
    Checkpoint,
    grant_service_role,
    verify,
)
from matcher.audit._model import _FORBIDDEN_DETAIL_KEYS as _FORBIDDEN
from matcher.errors import AuditError, StoreError

import service_helpers

store_url = service_helpers.store_url  # the shared per-backend fixture


def event(i: int = 0, **kw: object) -> AuditEvent:
    base: dict[str, object] = {
        "rpc": "FindMatches",
        "category": "consultation",
        "outcome": "ok",
        "caller_force": "01",
        "caller_role": "assessor",
        "caller_cert_fingerprint": "ab" * 32,
        "purpose": "SAFEGUARDING",
        "case_reference": f"CASE-{i}",
        "query_digest": "cd" * 32,
        "query_encodings": ["AAECAw=="],
        "results": [
            {"subject": 0, "force": "02", "record_ref": f"ref{i}", "score": 0.9, "band": "strong"}
        ],
        "store_version": i,
        "details": {"subjects": 1},
    }
    base.update(kw)
    return AuditEvent(**base)  # type: ignore[arg-type]


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_public_api_is_exactly_the_intended_names() -> None:
    assert set(matcher.audit.__all__) == {
        "AUDIT_PRIVATE_KEY_FILE",
        "AUDIT_PUBLIC_KEY_FILE",
        "CATEGORIES",
        "GENESIS_HASH",
        "REPORT_FORMATS",
        "AuditEntry",
        "AuditEvent",
        "AuditLog",
        "AuditReport",
        "Checkpoint",
        "ReplayDifference",
        "ReplayReport",
        "Replayer",
        "StoreReplayer",
        "VerifyProblem",
        "VerifyReport",
        "build_report",
        "canonical_json",
        "compare_results",
        "create_audit_key",
        "export_from_server",
        "export_from_store",
        "grant_service_role",
        "is_replayable",
        "key_id",
        "load_audit_private_key",
        "load_audit_public_key",
        "parse_record",
        "read_jsonl",
        "render",
        "replay",
        "verify",
        "write_jsonl",
    }
    for name in matcher.audit.__all__:
        assert getattr(matcher.audit, name) is not None, name


def test_append_read_and_verify(store_url: str, key: Ed25519PrivateKey) -> None:
    with AuditLog.open(store_url, key, checkpoint_every=4) as log:
        entries = [log.append(event(i)) for i in range(10)]
        assert [e.seq for e in entries] == list(range(1, 11))
        assert entries[0].prev_hash == GENESIS_HASH
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
        items = list(log.read())
    kinds = ["C" if isinstance(i, Checkpoint) else str(i.seq) for i in items]
    assert kinds == ["1", "2", "3", "4", "C", "5", "6", "7", "8", "C", "9", "10"]
    assert [i for i in items if isinstance(i, AuditEntry)] == entries
    with AuditLog.open(store_url, None) as log:
        after_close = list(log.read())
        assert len(after_close) == 13 and isinstance(after_close[-1], Checkpoint)
        assert [getattr(i, "seq", None) for i in log.read(since_seq=8)] == [9, 10, 10]
        assert list(log.read(since_seq=10)) == []
    report = verify(after_close, key.public_key())
    assert report.ok and report.entries == 10 and report.checkpoints == 3
    assert report.unsigned_tail == 0


def test_reopen_continues_the_chain(store_url: str, key: Ed25519PrivateKey) -> None:
    with AuditLog.open(store_url, key) as log:
        first = log.append(event(1))
    with AuditLog.open(store_url, key) as log:
        second = log.append(event(2))
        items = list(log.read())
    assert second.seq == 2 and second.prev_hash == first.hash
    assert verify(items, key.public_key()).ok


def test_close_checkpoints_only_uncovered_entries(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    AuditLog.open(url, key).close()  # nothing to cover
    with AuditLog.open(url, key) as log:
        assert list(log.read()) == []
        log.append(event())
    AuditLog.open(url, key).close()
    with AuditLog.open(url, None) as log:
        items = list(log.read())
    assert [type(i).__name__ for i in items] == ["AuditEntry", "Checkpoint"]


def test_reading_lines_seals_the_tail(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    with AuditLog.open(f"sqlite:///{tmp_path / 's.db'}", key) as log:
        log.append(event())
        assert [type(i).__name__ for i in log.read()] == ["AuditEntry"]
        lines = list(log.read_lines())
        assert verify(lines, key.public_key(), strict=True).ok
        assert list(log.read_lines()) == lines  # nothing new: no second checkpoint


def test_checkpoint_on_empty_log_and_without_key(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with AuditLog.open(url, key) as log:
        cp = log.checkpoint()
        assert cp.seq == 0 and cp.head_hash == GENESIS_HASH
        assert verify(list(log.read()), key.public_key()).ok
    with AuditLog.open(url, None) as log, pytest.raises(AuditError, match="no audit signing key"):
        log.checkpoint()


def test_time_based_checkpoint(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with AuditLog.open(url, key, checkpoint_seconds=0.2) as log:
        log.append(event())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(isinstance(i, Checkpoint) for i in log.read()):
                break
            time.sleep(0.05)
        items = list(log.read())
    assert isinstance(items[1], Checkpoint) and items[1].seq == 1


def test_closed_log_refuses(tmp_path: Path) -> None:
    log = AuditLog.open(f"sqlite:///{tmp_path / 's.db'}", None)
    log.close()
    log.close()  # idempotent
    with pytest.raises(AuditError, match="closed"):
        log.append(event())


def test_threads_keep_the_chain_valid(store_url: str, key: Ed25519PrivateKey) -> None:
    with AuditLog.open(store_url, key, checkpoint_every=7) as log:

        def work(t: int) -> None:
            for i in range(15):
                log.append(event(t * 100 + i))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    with AuditLog.open(store_url, None) as log:
        items = list(log.read())
    report = verify(items, key.public_key())
    assert report.ok, report.problem
    assert report.entries == 90 and report.last_seq == 90 and report.unsigned_tail == 0


def test_two_logs_on_one_store_share_one_chain(store_url: str, key: Ed25519PrivateKey) -> None:
    """Two service processes on one store (separate connections) still build one chain."""
    url = store_url
    a, b = AuditLog.open(url, key), AuditLog.open(url, key)
    try:
        threads = [
            threading.Thread(target=lambda lg=lg: [lg.append(event(i)) for i in range(20)])
            for lg in (a, b)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        a.close()
        b.close()
    with AuditLog.open(url, None) as log:
        report = verify(list(log.read()), key.public_key())
    assert report.ok and report.entries == 40


def test_sqlite_store_is_append_only(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "s.db"
    with AuditLog.open(f"sqlite:///{path}", key) as log:
        log.append(event())
    conn = sqlite3.connect(path)
    try:
        for sql in [
            "UPDATE audit_entries SET body = 'x'",
            "DELETE FROM audit_entries",
            "DELETE FROM audit_entries WHERE seq = 1",
            "UPDATE audit_checkpoints SET body = 'x'",
            "DELETE FROM audit_checkpoints",
        ]:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM audit_entries").fetchone() == (1,)
    finally:
        conn.close()


def test_postgres_triggers_stop_even_a_superuser(pg_url: str, key: Ed25519PrivateKey) -> None:
    import psycopg

    with AuditLog.open(pg_url, key) as log:
        log.append(event())
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for sql in [
            "UPDATE audit_entries SET body = 'x'",
            "DELETE FROM audit_entries",
            "TRUNCATE audit_entries",
            "UPDATE audit_checkpoints SET body = 'x'",
            "DELETE FROM audit_checkpoints",
            "TRUNCATE audit_checkpoints",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM audit_entries").fetchone() == (1,)


@pytest.fixture
def pg_role(pg_url: str) -> Iterator[str]:
    """A fresh login role without privileges (trust auth), dropped afterwards."""
    import psycopg

    role = "matcher_svc_" + secrets.token_hex(4)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        yield role
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def _as_role(url: str, role: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


def test_postgres_service_role_may_only_read_and_append(
    pg_url: str, pg_role: str, key: Ed25519PrivateKey
) -> None:
    import psycopg

    grant_service_role(pg_url, pg_role)  # an administrator installs and grants
    service_url = _as_role(pg_url, pg_role)
    with AuditLog.open(service_url, key, checkpoint_every=2) as log:
        for i in range(3):
            log.append(event(i))
        assert verify(list(log.read()), key.public_key()).entries == 3
    with psycopg.connect(service_url, autocommit=True) as conn:
        for sql in [
            "UPDATE audit_entries SET body = 'x'",
            "DELETE FROM audit_entries",
            "TRUNCATE audit_entries",
            "DELETE FROM audit_checkpoints",
            "ALTER TABLE audit_entries DISABLE TRIGGER ALL",
            "DROP TABLE audit_entries",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


def test_postgres_owner_loses_update_and_delete(pg_url: str, pg_role: str) -> None:
    """A non-superuser that creates the tables itself cannot rewrite them either."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'GRANT CREATE ON SCHEMA public TO "{pg_role}"')
    owner_url = _as_role(pg_url, pg_role)
    with AuditLog.open(owner_url, None) as log:
        log.append(event())
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for sql in ["UPDATE audit_entries SET body = 'x'", "DELETE FROM audit_entries"]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


def test_events_refuse_raw_values_and_bad_fields() -> None:
    with pytest.raises(AuditError, match="category"):
        event(category="gossip")
    with pytest.raises(AuditError, match="'surname'"):
        event(details={"surname": "x"})
    with pytest.raises(AuditError, match="'address'"):
        event(details={"batch": {"address": "x"}})
    with pytest.raises(AuditError, match="outside the allowed set: forename"):
        event(results=[{"subject": 0, "forename": "x"}])
    with pytest.raises(AuditError, match="longer than 512"):
        event(details={"note": "x" * 600})
    with pytest.raises(AuditError, match="non-finite"):
        event(details={"score": float("nan")})
    with pytest.raises(AuditError, match="store_version"):
        event(store_version="3")
    with pytest.raises(AuditError, match="not JSON data"):
        event(details={"blob": b"raw"})


def test_entry_line_is_canonical_and_round_trips(tmp_path: Path) -> None:
    with AuditLog.open(f"sqlite:///{tmp_path / 's.db'}", None) as log:
        entry = log.append(event(3, details={"batch_id": "b1", "records": 2, "ratio": 0.5}))
        (line,) = list(log.read_lines())
    assert line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"))
    assert json.loads(line)["type"] == "entry"
    assert AuditEntry.from_record(json.loads(line)) == entry


def test_bad_store_urls() -> None:
    with pytest.raises(StoreError, match="sqlite:///"):
        AuditLog.open("mysql://x", None)
    with pytest.raises(StoreError, match="sqlite:///path"):
        AuditLog.open("sqlite:///", None)
    with pytest.raises(AuditError, match="checkpoint_every"):
        AuditLog.open("sqlite:///unused.db", None, checkpoint_every=0)


def test_public_key_property(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    from matcher.audit import key_id

    with AuditLog.open(f"sqlite:///{tmp_path / 's.db'}", key) as log:
        assert log.public_key is not None
        assert key_id(log.public_key) == key_id(key.public_key())
    with AuditLog.open(f"sqlite:///{tmp_path / 's.db'}", None) as log:
        assert log.public_key is None


def test_lost_database_connection_is_a_store_error(pg_url: str) -> None:
    import psycopg

    log = AuditLog.open(pg_url, None)
    try:
        log.append(event())
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(StoreError, match="audit store"):
            log.append(event())
    finally:
        with contextlib.suppress(StoreError):
            log.close()


_json_scalars: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.text(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False),
)
_details = st.dictionaries(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(
        lambda k: k not in _FORBIDDEN
    ),
    st.recursive(_json_scalars, lambda c: st.lists(c, max_size=3), max_leaves=6),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(details=_details, case=st.text(max_size=40), seq=st.integers(1, 2**40))
def test_any_event_round_trips_and_hashes_stably(
    details: dict[str, object], case: str, seq: int
) -> None:
    ev = event(seq, details=details, case_reference=case)
    entry = AuditEntry.build(seq, "2026-01-01T00:00:00.000000Z", GENESIS_HASH, ev)
    line = entry.to_json()
    back = AuditEntry.from_record(json.loads(line))
    assert back == entry and back.to_json() == line
    assert verify([line], [], partial=True).ok
