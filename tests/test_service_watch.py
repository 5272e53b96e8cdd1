"""Watches: alerts for later batches, kept across disconnects and restarts."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest

from matcher.service import AlertEvent, WatchStarted

from service_helpers import client, encode, make_keyring, people, running, submit


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keyring(tmp_path_factory.mktemp("keys"))


def _collect(stream: object, n: int, out: list[object], done: threading.Event) -> None:
    try:
        for ev in stream:  # type: ignore[attr-defined]
            out.append(ev)
            if len(out) >= n:
                break
    except grpc.RpcError:
        pass
    finally:
        done.set()


def test_watch_alert_resume_and_restart(keys: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    df = people(30, seed=21)
    watched = df.iloc[[3, 4]]
    with running(keys, url) as (_, port):
        submit(keys, port, encode(df.iloc[:3], "F02"))  # before the watch: no alert
        with client(keys, port, "F01", "assessor") as c:
            stream = c.watch(
                encode(watched, "F01"),
                purpose="safeguarding_adult",
                case_reference="op x",
                subject_ids=["w3", "w4"],
            )
            events: list[object] = []
            done = threading.Event()
            t = threading.Thread(target=_collect, args=(stream, 2, events, done))
            t.start()
            submit(keys, port, encode(df.iloc[[3, 10]], "F02"))  # matches w3
            assert done.wait(30)
            t.join()
            started, alert = events
            assert isinstance(started, WatchStarted) and isinstance(alert, AlertEvent)
            assert (alert.subject_id, alert.match.force, alert.sequence) == ("w3", "F02", 1)
            assert alert.match.band == "strong"
            token = alert.resume_token
            stream.cancel()
        # While nobody listens: the watcher's own force does not alert, another does.
        submit(keys, port, encode(df.iloc[[4]], "F01"))
        submit(keys, port, encode(df.iloc[[4]], "F03"))
    # After a restart the watcher resumes and gets what it missed, and only that.
    with running(keys, url) as (_, port), client(keys, port, "F01", "assessor") as c:
        stream = c.watch(resume_token=token)
        events = []
        done = threading.Event()
        t = threading.Thread(target=_collect, args=(stream, 2, events, done))
        t.start()
        assert done.wait(30)
        stream.cancel()
        t.join()
        started, missed = events
        assert isinstance(started, WatchStarted) and isinstance(missed, AlertEvent)
        assert (missed.subject_id, missed.match.force, missed.sequence) == ("w4", "F03", 2)
        # Another identity cannot resume the watch.
        with client(keys, port, "F02", "assessor") as other:
            with pytest.raises(grpc.RpcError) as exc:
                list(other.watch(resume_token=token))
            assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_retracted_records_are_not_replayed(keys: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    df = people(5, seed=22)
    with running(keys, url) as (server, port):
        with client(keys, port, "F01", "assessor") as c:
            stream = c.watch(encode(df.iloc[[0]], "F01"), purpose="vetting", case_reference="c")
            it = iter(stream)
            started = next(it)
            assert isinstance(started, WatchStarted)
            batch = encode(df.iloc[[0]], "F02")
            submit(keys, port, batch)
            alert = next(it)
            assert isinstance(alert, AlertEvent)
            stream.cancel()
        with client(keys, port, "F02", "submitter") as s:
            s.retract("F02", batch.record_refs)
        with client(keys, port, "F01", "assessor") as c:
            stream = c.watch(resume_token=started.resume_token)
            it = iter(stream)
            assert isinstance(next(it), WatchStarted)
            # Nothing else is pending: a new match from F03 is the next event.
            submit(keys, port, encode(df.iloc[[0]], "F03"))
            nxt = next(it)
            assert isinstance(nxt, AlertEvent) and nxt.match.force == "F03"
            stream.cancel()
        assert len(server.core.store.alerts(started.watch_id)) == 2


def test_catch_up_scans_each_watch_from_its_own_version(tmp_path: Path) -> None:
    from matcher.scoring import default_model
    from matcher.service.watches import WatchHub
    from matcher.store import WatchRecord, open_store

    from service_helpers import SCHEMA

    df = people(5, seed=23)
    subject = encode(df.iloc[[0]], "F01")

    def watch(watch_id: str, scanned: int) -> WatchRecord:
        return WatchRecord(
            watch_id=watch_id,
            owner="assessor of F01",
            force="F01",
            purpose="vetting",
            case_reference="c",
            include_own_force=False,
            epoch=subject.epoch,
            schema_fingerprint=subject.schema_fingerprint,
            filter_bits=subject.filter_bits,
            subject_ids=["s0"],
            filters=subject.filters,
            blocking_tokens=list(subject.blocking_tokens),
            created_version=0,
            scanned_version=scanned,
            created_at="2024-01-01T00:00:00+00:00",
        )

    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        # Batches applied while no hub ran (as before a crash): one watch saw the first.
        store.append_batch(encode(df.iloc[[0, 1]], "F02"))
        store.append_batch(encode(df.iloc[[0, 2]], "F03"))
        store.add_watch(watch("a" * 32, 0))
        store.add_watch(watch("b" * 32, 1))
        hub = WatchHub(store, SCHEMA, default_model(SCHEMA), threshold=0.5, max_results=10)
        assert hub.catch_up() == 3
        assert hub.catch_up() == 0
        got = {w: [(a.seq, a.force) for a in store.alerts(w * 32)] for w in "ab"}
        assert got == {"a": [(1, "F02"), (2, "F03")], "b": [(1, "F03")]}
        # The scanned versions were kept: a new hub has nothing left to scan.
        fresh = WatchHub(store, SCHEMA, default_model(SCHEMA), threshold=0.5, max_results=10)
        assert fresh.catch_up() == 0
    finally:
        store.close()
