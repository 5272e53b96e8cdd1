"""Replay: recorded searches re-run at their store version give the recorded results."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from matcher.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    AuditLog,
    StoreReplayer,
    compare_results,
    export_from_store,
    read_jsonl,
    replay,
)
from matcher.batch import EncodedBatch, new_record_refs
from matcher.cli import main
from matcher.errors import AuditError, MatcherError
from matcher.schema import default_schema
from matcher.scoring import default_model
from matcher.service.matching import RecordIndex, search
from matcher.store import BatchEvent, Store, open_store

import service_helpers

store_url = service_helpers.store_url  # the shared per-backend fixture

HIT: dict[str, Any] = {
    "subject": 0,
    "force": "02",
    "record_ref": "r1",
    "score": 0.995,
    "band": "strong",
}


def found(seq: int, results: list[dict[str, Any]], **kw: Any) -> AuditEntry:
    ev = AuditEvent(
        rpc=kw.pop("rpc", "FindMatches"),
        category="consultation",
        outcome=kw.pop("outcome", "ok"),
        query_encodings=kw.pop("query_encodings", ["AA=="]),
        results=results,
        store_version=kw.pop("store_version", 1),
        **kw,
    )
    return AuditEntry.build(seq, "2026-03-09T10:00:00.000000Z", GENESIS_HASH, ev)


def test_generic_replay_compares_results() -> None:
    items = [
        found(1, [HIT]),
        found(2, [HIT, {**HIT, "record_ref": "r2"}]),
        found(3, [], outcome="denied"),  # not replayed
        found(4, [HIT], rpc="Watch"),  # not a search
    ]
    report = replay(items, lambda e: [dict(HIT)])
    assert (report.replayed, report.skipped) == (2, 2)
    assert [d.seq for d in report.differences] == [2]
    assert report.differences[0].missing == [{**HIT, "record_ref": "r2"}]
    assert "1 recorded result(s) not returned" in str(report.differences[0])
    assert not report.ok and report.to_dict()["replayed"] == 2


def test_compare_results_details() -> None:
    assert compare_results(1, [HIT], [{**HIT, "score": HIT["score"] + 1e-12}]) is None
    changed = compare_results(1, [HIT], [{**HIT, "band": "probable"}])
    assert changed is not None and changed.changed[0]["replayed"]["band"] == "probable"
    extra = compare_results(1, [], [HIT])
    assert extra is not None and extra.extra == [HIT]
    twice = compare_results(1, [HIT, HIT], [HIT])
    assert twice is not None and twice.error == "a result appears twice"
    # Agreement is compared when both sides carry it.
    assert compare_results(1, [{**HIT, "agreement": [2, 1]}], [{**HIT, "agreement": [2, 2]}])
    assert compare_results(1, [HIT], [{**HIT, "agreement": [2, 2]}]) is None


def test_replayer_errors_are_differences() -> None:
    def broken(entry: AuditEntry) -> list[dict[str, Any]]:
        raise AuditError("store_version: gone")

    report = replay([found(1, [HIT])], broken)
    assert str(report.differences[0]) == "entry seq 1: replay failed: store_version: gone"


# -- over the real store and the service's search ------------------------------------

SCHEMA = default_schema()
MODEL = default_model(SCHEMA)
WORDS = SCHEMA.total_words


def batch(force: str, rng: np.random.Generator, n: int = 30) -> EncodedBatch:
    return EncodedBatch(
        force=force,
        epoch=1,
        schema_fingerprint=SCHEMA.fingerprint,
        filter_bits=SCHEMA.total_bits,
        record_refs=new_record_refs(n),
        filters=rng.integers(0, 2**64, size=(n, WORDS), dtype=np.uint64),
        blocking_tokens=[np.zeros(0, np.uint64) for _ in range(n)],
    )


class FakeService:
    """What the service does per search (index built from store events, search, log)."""

    def __init__(self, store: Store, log: AuditLog) -> None:
        self.store, self.log = store, log
        self.index = RecordIndex(words=WORDS)
        for ev in store.events():
            self._apply(ev)

    def _apply(self, ev: Any) -> None:
        if isinstance(ev, BatchEvent):
            self.index.add(ev.batch.force, ev.batch.record_refs, ev.batch.filters, ev.version)
        else:
            self.index.retract(ev.force, ev.record_refs, ev.version)

    def submit(self, b: EncodedBatch) -> None:
        v = self.store.append_batch(b).version
        for ev in self.store.events(v - 1, v):
            self._apply(ev)

    def retract(self, force: str, refs: list[str]) -> None:
        v = self.store.append_retraction(new_record_refs(1)[0], force, refs).version
        for ev in self.store.events(v - 1, v):
            self._apply(ev)

    def find(self, force: str, subjects: np.ndarray[Any, Any], own: bool = False) -> int:
        snap = self.index.snapshot()
        out = search(
            snap,
            subjects,
            schema=SCHEMA,
            model=MODEL,
            exclude_force=None if own else force,
            max_results=5,
            threshold=0.5,
        )
        results = [
            {"subject": i, "force": r.force, "record_ref": r.record_ref, "score": r.score,
             "band": r.band, "agreement": list(r.agreement)}
            for i, rs in enumerate(out)
            for r in rs
        ]  # fmt: skip
        encodings = [base64.b64encode(s.astype("<u8").tobytes()).decode() for s in subjects]
        self.log.append(
            AuditEvent(
                rpc="FindMatches",
                category="consultation",
                outcome="ok",
                caller_force=force,
                caller_role="assessor",
                purpose="vetting",
                case_reference="C/1",
                query_encodings=encodings,
                results=results,
                store_version=snap.version,
                config_hash=MODEL.fingerprint,
                details={"include_own_force": own, "max_results": 5, "candidate_threshold": 0.5},
            )
        )
        return len(results)


def near(filters: np.ndarray[Any, Any], rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """Copies of ``filters`` with about one bit in 32 flipped (fuzzy matches)."""
    mask = np.full(filters.shape, np.iinfo(np.uint64).max, np.uint64)
    for _ in range(5):
        mask &= rng.integers(0, 2**64, size=filters.shape, dtype=np.uint64)
    return np.asarray(filters ^ mask)


def scenario(store_url: str) -> tuple[int, int]:
    """Searches interleaved with submissions and retractions, across a restart."""
    rng = np.random.default_rng(7)
    store = open_store(store_url)
    log = AuditLog.open(store_url, None)
    svc = FakeService(store, log)
    a, b = batch("01", rng), batch("02", rng)
    svc.submit(a)
    svc.submit(b)
    hits = svc.find("03", near(np.vstack([a.filters[:3], b.filters[:3]]), rng))
    hits += svc.find("01", near(a.filters[:2], rng))  # own force excluded: nothing
    hits += svc.find("01", near(a.filters[:2], rng), own=True)
    svc.retract("01", a.record_refs[:2])
    c = batch("04", rng)
    svc.submit(c)
    hits += svc.find("03", near(np.vstack([a.filters[:3], c.filters[:2]]), rng))
    log.close()
    store.close()
    # After a restart: a new service rebuilds its index from the store's events.
    store = open_store(store_url)
    log = AuditLog.open(store_url, None)
    svc = FakeService(store, log)
    svc.retract("02", b.record_refs[:1])
    hits += svc.find("03", near(b.filters[:3], rng))
    log.close()
    store.close()
    return 5, hits


def test_replay_matches_after_restarts_submissions_and_retractions(store_url: str) -> None:
    searches, hits = scenario(store_url)
    assert hits >= 10  # the searches did find people
    with AuditLog.open(store_url, None) as log:
        items = list(log.read())
    with StoreReplayer(store_url) as replayer:
        report = replay(items, replayer)
    assert report.ok, [str(d) for d in report.differences]
    assert report.replayed == searches
    # A log that claims other results is caught.
    doctored = []
    for item in items:
        if isinstance(item, AuditEntry) and item.event.results:
            results = [dict(r) for r in item.event.results]
            results[0]["score"] = 0.5
            ev = AuditEvent(**{**item.event.__dict__, "results": results})
            item = AuditEntry.build(item.seq, item.time, item.prev_hash, ev)
        doctored.append(item)
    with StoreReplayer(store_url) as replayer:
        bad = replay(doctored, replayer)
    assert len(bad.differences) == 4 and all(d.changed for d in bad.differences)


def test_store_replayer_refuses_what_it_cannot_replay(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    scenario(url)
    with StoreReplayer(url) as replayer:
        with pytest.raises(AuditError, match="no version 99"):
            replayer(found(1, [], store_version=99))
        with pytest.raises(AuditError, match="not base64"):
            replayer(found(1, [], store_version=1, query_encodings=["@@"]))
        entry = found(1, [], store_version=1, config_hash="f" * 64)
        with pytest.raises(AuditError, match="another scoring model"):
            replayer(entry)
        odd = AuditEntry.build(
            1,
            "2026-03-09T10:00:00Z",
            GENESIS_HASH,
            AuditEvent(rpc="FindMatches", category="consultation", outcome="ok",
                       query_encodings=["AAAAAAAAAAA="], store_version=1),
        )  # fmt: skip
        with pytest.raises(AuditError, match=r"query_encodings\[0\] is not \d+ bytes"):
            replayer(odd)
    with pytest.raises(MatcherError):
        StoreReplayer("mysql://nowhere")


def test_cli_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    searches, _ = scenario(url)
    out = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "--store", url, "-o", str(out)]) == 0
    assert main(["audit", "replay", str(out), "--store", url]) == 0
    assert f"replayed {searches} searches" in capsys.readouterr().out
    model = tmp_path / "model.json"
    model.write_text(json.dumps(MODEL.to_dict()))
    assert main(["audit", "replay", str(out), "--store", url, "--model", str(model)]) == 0
    model.write_text(json.dumps({**MODEL.to_dict(), "prior": 0.2}))
    assert main(["audit", "replay", str(out), "--store", url, "--model", str(model)]) == 1
    assert "another scoring model" in capsys.readouterr().err
    model.write_text("{}")
    assert main(["audit", "replay", str(out), "--store", url, "--model", str(model)]) == 2
    # Replaying against another store (a different history) fails.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    scenario(other)
    assert main(["audit", "replay", str(out), "--store", other, "--json"]) == 1
    assert '"ok": false' in capsys.readouterr().out
    assert [type(i).__name__ for i in read_jsonl(out)].count("AuditEntry") == searches
    assert export_from_store(url, tmp_path / "again.jsonl") == searches
