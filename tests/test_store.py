"""The event-sourced store: the same tests on SQLite and on PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from matcher.batch import EncodedBatch, new_record_refs
from matcher.errors import InputError, NotFoundError
from matcher.store import AlertRecord, BatchEvent, RetractEvent, Store, WatchRecord, open_store

import service_helpers

store_url = service_helpers.store_url  # the shared per-backend fixture


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as s:
        yield s


def make_batch(force: str = "AA", n: int = 5, seed: int = 0, **kw: object) -> EncodedBatch:
    rng = np.random.default_rng(seed)
    return EncodedBatch(
        force=force,
        epoch=1,
        schema_fingerprint="f" * 64,
        filter_bits=128,
        record_refs=new_record_refs(n),
        filters=rng.integers(0, 2**63, size=(n, 2), dtype=np.uint64),
        blocking_tokens=[rng.integers(0, 2**63, size=i % 3, dtype=np.uint64) for i in range(n)],
        **kw,  # type: ignore[arg-type]
    )


def test_batch_round_trip_and_versions(store: Store) -> None:
    b1, b2 = make_batch("AA", 5, 1), make_batch("BB", 3, 2)
    r1 = store.append_batch(b1, signature=b"sig")
    r2 = store.append_batch(b2)
    assert (r1.version, r1.applied, r2.version) == (1, True, 2)
    assert store.version() == 2 and store.record_count() == 8
    events = list(store.events())
    assert [e.version for e in events] == [1, 2]
    first = events[0]
    assert isinstance(first, BatchEvent)
    assert first.signature == b"sig"
    assert first.batch.record_refs == b1.record_refs
    assert np.array_equal(first.batch.filters, b1.filters)
    assert all(
        np.array_equal(x, y)
        for x, y in zip(first.batch.blocking_tokens, b1.blocking_tokens, strict=True)
    )


def test_same_batch_id_is_idempotent(store: Store) -> None:
    b = make_batch()
    assert store.append_batch(b).applied
    again = store.append_batch(b)
    assert (again.version, again.applied, again.count) == (1, False, 5)
    assert store.version() == 1 and store.record_count() == 5


def test_reused_batch_id_with_other_content_is_refused(store: Store) -> None:
    b = make_batch()
    store.append_batch(b)
    other = make_batch(seed=9, batch_id=b.batch_id)
    with pytest.raises(InputError, match="batch_id"):
        store.append_batch(other)
    assert store.version() == 1


def test_rejected_batch_changes_nothing(store: Store) -> None:
    b = make_batch()
    store.append_batch(b)
    dup = make_batch(seed=3)
    dup.record_refs[2] = b.record_refs[0]  # already live for this force
    with pytest.raises(InputError, match="record_refs"):
        store.append_batch(dup)
    bad = make_batch(seed=4)
    bad.record_refs[0] = "not-hex"
    with pytest.raises(InputError, match="record_refs") as exc:
        store.append_batch(bad)
    assert "not-hex" not in str(exc.value)
    assert store.version() == 1 and store.record_count() == 5
    assert len(list(store.events())) == 1


def test_retraction_all_or_nothing_and_own_force(store: Store) -> None:
    a, b = make_batch("AA", 4, 1), make_batch("BB", 4, 2)
    store.append_batch(a)
    store.append_batch(b)
    rid = secrets.token_hex(16)
    # Another force's reference cannot be retracted, and nothing else is removed either.
    with pytest.raises(NotFoundError, match="record_refs"):
        store.append_retraction(rid, "AA", [a.record_refs[0], b.record_refs[0]])
    assert store.record_count() == 8 and store.version() == 2
    res = store.append_retraction(rid, "AA", a.record_refs[:2])
    assert (res.version, res.applied, res.count) == (3, True, 2)
    assert store.append_retraction(rid, "AA", a.record_refs[:2]).applied is False
    assert store.record_count() == 6
    ev = list(store.events(since=2))
    assert isinstance(ev[0], RetractEvent) and ev[0].record_refs == a.record_refs[:2]


def test_state_at_folds_events(store: Store) -> None:
    a, b = make_batch("AA", 4, 1), make_batch("BB", 3, 2)
    store.append_batch(a)
    store.append_retraction(secrets.token_hex(16), "AA", [a.record_refs[1]])
    store.append_batch(b)
    s1 = store.state_at(1)
    assert s1.record_refs == a.record_refs and s1.forces == ["AA"] * 4
    s2 = store.state_at(2)
    assert s2.record_refs == [a.record_refs[i] for i in (0, 2, 3)]
    assert np.array_equal(s2.filters, a.filters[[0, 2, 3]])
    now = store.state_at()
    assert now.version == 3 and len(now) == 6
    assert now.forces == ["AA"] * 3 + ["BB"] * 3
    assert now.record_versions == [1, 1, 1, 3, 3, 3]


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x' / 'store.db'}"
    with open_store(url) as s:
        s.append_batch(make_batch())
    with open_store(url) as s:
        assert s.version() == 1 and s.record_count() == 5


def test_watches_and_alerts(store: Store) -> None:
    w = WatchRecord(
        watch_id="w" * 8,
        owner="AA/assessor/x",
        force="AA",
        purpose="vetting",
        case_reference="case 1",
        include_own_force=False,
        epoch=1,
        schema_fingerprint="f" * 64,
        filter_bits=128,
        subject_ids=["s0", "s1"],
        filters=np.arange(4, dtype=np.uint64).reshape(2, 2),
        blocking_tokens=[np.array([1, 2], np.uint64), np.array([], np.uint64)],
        created_version=0,
        scanned_version=0,
        created_at="2026-01-01T00:00:00Z",
    )
    store.add_watch(w)
    got = store.get_watch(w.watch_id)
    assert got.subject_ids == ["s0", "s1"] and np.array_equal(got.filters, w.filters)
    assert [len(t) for t in got.blocking_tokens] == [2, 0]
    alert = AlertRecord(w.watch_id, 0, "s0", "BB", "a" * 32, 0.9, "strong", (2, 1, -1), 5, 0)
    saved = store.append_alerts(w.watch_id, [alert, alert], scanned_version=5)
    assert [a.seq for a in saved] == [1, 2]
    assert store.append_alerts(w.watch_id, [alert], scanned_version=6)[0].seq == 3
    assert [a.seq for a in store.alerts(w.watch_id, after_seq=1)] == [2, 3]
    assert store.alerts(w.watch_id)[0].agreement == (2, 1, -1)
    assert store.watches()[0].scanned_version == 6
    with pytest.raises(NotFoundError):
        store.get_watch("nope")


def test_bad_url() -> None:
    with pytest.raises(InputError, match="store"):
        open_store("mysql://x")
