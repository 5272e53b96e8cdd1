"""Replay of watches: every alert the log records as disclosed is re-derived from the store
(the watch's subjects against exactly the records the triggering batch added), none is
left out and none is made up; a log rewritten and re-signed by whoever holds the audit
key verifies, but replay catches it."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from matcher.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    Checkpoint,
    ReplayReport,
    StoreReplayer,
    load_audit_private_key,
    read_jsonl,
    replay,
    write_jsonl,
)
from matcher.audit._keys import key_id
from matcher.audit._model import utc_now
from matcher.audit._replay import WatchLog, watch_entry
from matcher.cli import main
from matcher.service import AlertEvent, WatchStarted
from matcher.service.core import query_digest
from matcher.store import open_store

import service_helpers
from service_helpers import client, encode, make_keyring, people, running, submit

store_url = service_helpers.store_url  # the shared per-backend fixture

Items = list[AuditEntry | Checkpoint]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keyring(tmp_path_factory.mktemp("keys"))


def _stream(
    keys: Path, port: int, n: int, then: Callable[[], None] | None = None, **kw: Any
) -> list[object]:
    """The first ``n`` events of a watch stream of F01 (registered or resumed); ``then``
    runs once the stream has started."""
    events: list[object] = []
    done = threading.Event()
    with client(keys, port, "F01", "assessor") as c:
        stream = c.watch(**kw)

        def collect() -> None:
            try:
                for ev in stream:
                    events.append(ev)
                    if len(events) >= n:
                        break
            finally:
                done.set()

        t = threading.Thread(target=collect)
        t.start()
        while not events and not done.is_set():
            done.wait(0.01)
        if then is not None:
            then()
        assert done.wait(30)
        stream.cancel()
        t.join()
    return events


def _export(keys: Path, port: int, out: Path) -> Items:
    args = ["audit", "export", "--keys", str(keys), "--server", f"127.0.0.1:{port}"]
    assert main([*args, "--force", "F01", "-o", str(out)]) == 0
    return list(read_jsonl(out))


def scenario(keys: Path, url: str, tmp_path: Path) -> tuple[Items, Items, str]:
    """A watch, batches that trigger it, a resumption after a restart, a retraction while
    nobody listened, then later submissions and retractions. Returns the export taken
    before the later changes, the one after, and the watch id."""
    df = people(30, seed=21)
    watched = df.iloc[[3, 4, 6]]
    late = encode(df.iloc[[6]], "F02")
    with running(keys, url) as (_, port):  # stopping the server ends the stream
        submit(keys, port, encode(df.iloc[:3], "F02"))  # before the watch: no alert

        def trigger() -> None:
            submit(keys, port, encode(df.iloc[[3, 10]], "F02"))  # alert 1: w3
            submit(keys, port, encode(df.iloc[[4, 6, 11]], "F03"))  # alerts 2, 3: w4, w6

        first = _stream(
            keys,
            port,
            4,
            trigger,
            subjects=encode(watched, "F01"),
            purpose="safeguarding_adult",
            case_reference="op watch",
            subject_ids=["watched-3", "watched-4", "watched-6"],
        )
    started, *alerts = first
    assert isinstance(started, WatchStarted)
    assert [a.sequence for a in alerts if isinstance(a, AlertEvent)] == [1, 2, 3]
    with running(keys, url) as (_, port):  # nobody listens
        submit(keys, port, encode(df.iloc[[4]], "F01"))  # the watcher's own force: none
        submit(keys, port, late)  # alert 4: w6 again ...
        with client(keys, port, "F02", "submitter") as s:
            s.retract("F02", late.record_refs)  # ... retracted before anyone saw it
        submit(keys, port, encode(df.iloc[[3]], "F03"))  # alert 5: w3
    with running(keys, url) as (_, port):
        resumed = _stream(keys, port, 2, resume_token=f"{started.watch_id}:3")
        assert [a.sequence for a in resumed if isinstance(a, AlertEvent)] == [5]
    with running(keys, url) as (_, port):
        before = _export(keys, port, tmp_path / "before.jsonl")
        # Later: a search, another alert nobody streams, a disclosed record retracted.
        with client(keys, port, "F03", "assessor") as c:
            c.find(encode(df.iloc[:6], "F03"), purpose="vetting", case_reference="later")
        submit(keys, port, encode(df.iloc[[4]], "F02"))  # alert 6
        first_f02 = alerts[0]
        assert isinstance(first_f02, AlertEvent)
        with client(keys, port, "F02", "submitter") as s:
            s.retract("F02", [first_f02.match.record_ref])
        after = _export(keys, port, tmp_path / "after.jsonl")
    with open_store(url) as store:
        assert len(store.alerts(started.watch_id)) == 6
    return before, after, started.watch_id


def disclosures(items: Items) -> list[AuditEntry]:
    return [
        i
        for i in items
        if isinstance(i, AuditEntry) and (watch_entry(i) or ("",))[0] == "disclosure"
    ]


def rewrite(items: Items, keys: Path, seq: int, change: Callable[[AuditEvent], Any]) -> Items:
    """The log as a service holding the audit key could rewrite it: entry ``seq``'s event
    changed (or dropped when ``change`` returns ``None``), renumbered, re-chained and
    signed again, so that it verifies."""
    out: Items = []
    prev = GENESIS_HASH
    for item in items:
        if not isinstance(item, AuditEntry):
            continue
        event = change(item.event) if item.seq == seq else item.event
        if event is None:
            continue
        entry = AuditEntry.build(len(out) + 1, item.time, prev, event)
        out.append(entry)
        prev = entry.hash
    key = load_audit_private_key(keys)
    cp = Checkpoint(len(out), prev, utc_now(), GENESIS_HASH, key_id(key.public_key()), "")
    out.append(replace(cp, signature=key.sign(cp.signed_bytes()).hex()))
    return out


def with_result(**changes: Any) -> Callable[[AuditEvent], AuditEvent]:
    def change(ev: AuditEvent) -> AuditEvent:
        results = [{**(ev.results or [])[0], **changes}]
        return AuditEvent(**{**ev.__dict__, "results": results})

    return change


def test_watch_alerts_replay_identically(
    keys: Path, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after, watch_id = scenario(keys, store_url, tmp_path)
    # Alerts 1, 2, 3 and 5 were disclosed; 4 was skipped (its record retracted before
    # the resumed stream reached it) and 6 was never streamed.
    shown = disclosures(after)
    assert [(d.event.results or [{}])[0]["alert_id"] for d in shown] == [1, 2, 3, 5]
    registration = next(
        i
        for i in after
        if isinstance(i, AuditEntry) and watch_entry(i) == ("registration", watch_id)
    )
    details = registration.event.details
    assert details["include_own_force"] is False and details["max_results"] == 10
    assert registration.event.query_encodings and registration.event.query_digest
    # The log holds encodings, references and scores: no subject id, no raw value.
    df = people(30, seed=21)
    raw = {str(v) for c in ("forename", "surname", "date_of_birth", "postcode") for v in df[c]}
    raw |= {f"watched-{i}" for i in (3, 4, 6)}
    texts = []
    for line in (tmp_path / "after.jsonl").read_text().splitlines():
        record = json.loads(line)
        record.pop("query_encodings", None)  # base64 letters may spell anything
        texts.append(json.dumps(record))
    blob = "\n".join(texts)
    assert sorted(v for v in raw if v in blob) == []

    for items in (before, after):  # identical after later submissions and retractions
        with StoreReplayer(store_url, keys_dir=keys) as replayer:
            report = replay(items, replayer)
        assert report.ok, [str(d) for d in report.differences]
        assert (report.watch_alerts, report.watches) == (4, 1)
    assert report.replayed == 1  # the later search
    assert report.to_dict()["differences_by_kind"] == {"search": 0, "watch alert": 0, "watch": 0}

    out = tmp_path / "after.jsonl"
    assert main(["audit", "verify", str(out), "--keys", str(keys), "--strict"]) == 0
    capsys.readouterr()
    assert main(["audit", "replay", str(out), "--store", store_url, "--keys", str(keys)]) == 0
    text = capsys.readouterr().out
    assert "replayed 1 searches and 4 watch alerts of 1 watches" in text
    assert "0 differ" in text

    # Rewritten and re-signed logs verify, but replay catches each lie.
    def check(items: Items, kinds: list[str], *texts: str) -> None:
        path = tmp_path / "doctored.jsonl"
        write_jsonl(items, path)
        assert main(["audit", "verify", str(path), "--keys", str(keys), "--strict"]) == 0
        capsys.readouterr()
        assert main(["audit", "replay", str(path), "--store", store_url]) == 1
        captured = capsys.readouterr()
        with StoreReplayer(store_url) as replayer:
            report = replay(items, replayer)
        assert sorted(d.kind for d in report.differences) == sorted(kinds)
        assert all(d.watch_id == watch_id for d in report.differences)
        for t in texts:
            assert t in captured.err

    alert1, alert2, alert3, alert5 = shown
    # Another score: that disclosure differs.
    check(rewrite(after, keys, alert2.seq, with_result(score=0.61)), ["watch alert"], "score")
    # Another record: not re-derived, and the real alert 1 was never disclosed although
    # alerts 2 and 3 were.
    check(
        rewrite(after, keys, alert1.seq, with_result(record_ref="f" * 32)),
        ["watch alert", "watch"],
        "not re-derived",
        "never disclosed",
    )
    # Another alert number, and an alert claimed from a batch that did not trigger it.
    check(rewrite(after, keys, alert3.seq, with_result(alert_id=4)), ["watch alert"], "number")
    moved = rewrite(
        after,
        keys,
        alert5.seq,
        lambda ev: AuditEvent(**{**ev.__dict__, "store_version": (ev.store_version or 0) - 1}),
    )
    check(moved, ["watch alert"])
    # A disclosure left out of the log (alert 2 was sent, 3 after it).
    check(rewrite(after, keys, alert2.seq, lambda ev: None), ["watch"], "never disclosed")
    # The registration claiming other subjects' encodings (and their digest).
    others = encode(people(3, seed=99), "F01")

    def other_subjects(ev: AuditEvent) -> AuditEvent:
        digest = query_digest(
            others.epoch, others.schema_fingerprint, others.filter_bits, others.filters
        )
        enc = [base64.b64encode(f.astype("<u8").tobytes()).decode() for f in others.filters]
        return AuditEvent(**{**ev.__dict__, "query_encodings": enc, "query_digest": digest})

    check(
        rewrite(after, keys, registration.seq, other_subjects),
        ["watch"],
        "differs from its registration",
    )


def test_generic_watch_rules() -> None:
    """The left-out rule without a store: resumptions and retractions excuse an alert."""
    wid = "w" * 32

    def alert(n: int, version: int, ref: str) -> dict[str, Any]:
        return {"watch_id": wid, "alert_id": n, "store_version": version, "subject": 0,
                "force": "F02", "record_ref": ref, "score": 0.99, "band": "strong"}  # fmt: skip

    alerts = [alert(1, 2, "a"), alert(2, 3, "b"), alert(3, 4, "c"), alert(4, 5, "d")]

    def entry(seq: int, **kw: Any) -> AuditEntry:
        kw.setdefault("category", "disclosure")
        ev = AuditEvent(rpc="Watch", outcome="ok", caller_force="F01", **kw)
        return AuditEntry.build(seq, "2026-03-09T10:00:00.000000Z", GENESIS_HASH, ev)

    def shown(seq: int, a: dict[str, Any]) -> AuditEntry:
        result = {k: v for k, v in a.items() if k != "store_version"}
        return entry(seq, results=[result], store_version=a["store_version"])

    reg = entry(1, category="consultation", query_encodings=["AA=="], store_version=1,
                details={"watch_id": wid})  # fmt: skip

    class Fake:
        def __init__(self, retracted: dict[tuple[str, str], list[tuple[int, str]]]) -> None:
            self.retracted = retracted

        def __call__(self, entry: AuditEntry) -> list[dict[str, Any]]:
            return []

        def replay_watches(self, watches: list[WatchLog]) -> dict[str, Any]:
            from matcher.audit._replay import WatchReplay

            return {w.watch_id: WatchReplay(alerts, self.retracted, "F01") for w in watches}

    def run(
        items: list[AuditEntry],
        retracted: dict[tuple[str, str], list[tuple[int, str]]] | None = None,
    ) -> ReplayReport:
        return replay(items, Fake(retracted or {}))

    # 1, 2 and 4 disclosed, 3 not: left out ...
    report = run([reg, shown(2, alerts[0]), shown(3, alerts[1]), shown(4, alerts[3])])
    assert report.watch_alerts == 3 and [d.kind for d in report.differences] == ["watch"]
    assert [a["alert_id"] for a in report.differences[0].extra] == [3]
    # ... unless its record was retracted after it was raised, or a stream resumed after it.
    assert run(
        [reg, shown(2, alerts[0]), shown(3, alerts[1]), shown(4, alerts[3])],
        {("F02", "c"): [(5, "2026-03-09T09:59:59.000000Z")]},
    ).ok
    assert not run(
        [reg, shown(2, alerts[0]), shown(3, alerts[1]), shown(4, alerts[3])],
        {("F02", "c"): [(9, "2026-03-09T10:00:01.000000Z")]},
    ).ok  # retracted only after the stream disclosed alert 4
    assert not run(
        [reg, shown(2, alerts[0]), shown(3, alerts[1]), shown(4, alerts[3])],
        {("F02", "c"): [(4, "2026-03-09T09:59:59.000000Z")]},
    ).ok  # a retraction at or before the alert's own version excuses nothing
    resume = entry(5, category="consultation", details={"watch_id": wid, "resumed_after": 3})
    assert run([reg, shown(2, alerts[0]), shown(3, alerts[1]), resume, shown(6, alerts[3])]).ok
    # Alerts after the last disclosed one were not sent yet: not left out.
    assert run([reg, shown(2, alerts[0])]).ok
    # Disclosed to another force than the watch's.
    other = AuditEntry.build(
        2, "2026-03-09T10:00:00.000000Z", GENESIS_HASH,
        replace(shown(2, alerts[0]).event, caller_force="F03"),
    )  # fmt: skip
    bad = run([reg, other])
    assert bad.differences[0].error is not None and "belongs to F01" in bad.differences[0].error
    # A replayer without watch support skips the watch entries.
    plain = replay([reg, shown(2, alerts[0])], lambda e: [])
    assert (plain.skipped, plain.watches, plain.ok) == (2, 0, True)
