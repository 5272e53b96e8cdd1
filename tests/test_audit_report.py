"""The auditor's report: filters, denials, out-of-hours use, volumes, and no raw values."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from matcher.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    AuditLog,
    build_report,
    export_from_store,
    read_jsonl,
    render,
)
from matcher.errors import AuditError


def entry(seq: int, time: str, **kw: object) -> AuditEntry:
    base: dict[str, object] = {
        "rpc": "FindMatches",
        "category": "consultation",
        "outcome": "ok",
        "caller_force": "01",
        "caller_role": "assessor",
        "caller_cert_fingerprint": "aa",
        "purpose": "safeguarding_child",
    }
    base.update(kw)
    return AuditEntry.build(seq, time, GENESIS_HASH, AuditEvent(**base))  # type: ignore[arg-type]


def test_out_of_hours_uses_uk_local_time() -> None:
    items = [
        entry(1, "2026-01-05T07:30:00.000000Z"),  # Monday 07:30 GMT: early
        entry(2, "2026-07-06T07:30:00.000000Z"),  # Monday 08:30 BST: in hours
        entry(3, "2026-07-06T17:10:00.000000Z"),  # Monday 18:10 BST: late
        entry(4, "2026-03-07T12:00:00.000000Z"),  # Saturday noon
        entry(5, "2026-01-05T03:00:00.000000Z", caller_role="submitter", rpc="SubmitBatch"),
    ]
    report = build_report(items)
    assert [(f.seq, f.note) for f in report.out_of_hours] == [
        (1, "outside 08:00-18:00"),
        (3, "outside 08:00-18:00"),
        (4, "weekend"),
    ]
    assert report.out_of_hours[1].local_time == "2026-07-06T18:10:00+01:00"


def test_filters_and_counts() -> None:
    items = [
        entry(1, "2026-03-09T10:00:00Z", caller_force="01", purpose="vetting"),
        entry(2, "2026-03-09T10:05:00Z", caller_force="02", purpose="vetting"),
        entry(3, "2026-03-09T10:06:00Z", caller_force="02", purpose="missing_person"),
        entry(
            4,
            "2026-03-09T10:07:00Z",
            caller_force="02",
            caller_role="auditor",
            rpc="ReadAuditLog",
            category="audit",
            purpose=None,
        ),
    ]
    full = build_report(items)
    assert full.entries == 4 and full.by_force == {"01": 1, "02": 3}
    assert full.by_purpose == {"-": 1, "missing_person": 1, "vetting": 2}
    assert [f.seq for f in full.searches] == [1, 2, 3]
    assert [f.seq for f in build_report(items, force="02", purpose="vetting").searches] == [2]
    assert build_report(items, role="auditor").by_rpc == {"ReadAuditLog": 1}
    assert build_report(items, since="2026-03-09", until="2026-03-09").entries == 4
    assert build_report(items, since="2026-03-10").entries == 0
    with pytest.raises(AuditError, match="since: a date"):
        build_report(items, since="9 March")
    # The same certificate as assessor and auditor: a separation-of-duties breach.
    assert full.role_conflicts == [{"fingerprint": "aa", "roles": ["assessor", "auditor"]}]


def test_denied_attempts() -> None:
    items = [
        entry(1, "2026-03-09T10:00:00Z", outcome="denied", status_code="PERMISSION_DENIED"),
        entry(2, "2026-03-09T10:00:01Z", outcome="error", status_code="UNAUTHENTICATED"),
        entry(3, "2026-03-09T10:00:02Z", outcome="invalid", status_code="INVALID_ARGUMENT"),
    ]
    assert [f.seq for f in build_report(items).denied] == [1, 2]


def test_unusual_volume_per_identity() -> None:
    items, seq = [], 0
    for day in ["09", "10", "11", "12"]:
        for who in ["aa", "bb", "cc"]:
            for _ in range(4):
                seq += 1
                items.append(entry(seq, f"2026-03-{day}T10:00:00Z", caller_cert_fingerprint=who))
    for _ in range(30):  # bb searches 30 times on Friday
        seq += 1
        items.append(entry(seq, "2026-03-13T11:00:00Z", caller_cert_fingerprint="bb"))
    report = build_report(items)
    assert [(v.fingerprint, v.day, v.count) for v in report.unusual_volume] == [
        ("bb", "2026-03-13", 30)
    ]
    assert report.unusual_volume[0].baseline_median == 4.0
    assert report.unusual_volume[0].z_score is not None and report.unusual_volume[0].z_score > 3
    assert build_report(items, min_volume=31).unusual_volume == []


@pytest.mark.parametrize("fmt", ["json", "csv", "html"])
def test_formats(fmt: str) -> None:
    items = [
        entry(1, "2026-03-07T10:00:00Z", case_reference="<script>"),
        entry(
            2,
            "2026-03-09T10:00:00Z",
            outcome="denied",
            status_code="PERMISSION_DENIED",
            case_reference='=HYPERLINK("x")',
        ),
    ]
    text = render(build_report(items), fmt)
    if fmt == "json":
        data = json.loads(text)
        assert data["entries"] == 2 and len(data["denied"]) == 1
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [r["kind"] for r in rows] == ["search", "search", "denied", "out_of_hours"]
        assert rows[1]["case_reference"] == '\'=HYPERLINK("x")'  # not a formula
    else:
        assert text.startswith("<!DOCTYPE html>") and "&lt;script&gt;" in text
        assert "<script>" not in text


def test_unknown_format_and_bad_time() -> None:
    with pytest.raises(AuditError, match="format"):
        render(build_report([]), "pdf")
    with pytest.raises(AuditError, match="ISO 8601"):
        build_report([entry(1, "yesterday")])


NAMES = ["Jonathan", "Smithson", "Okonkwo-Baptiste", "1984-02-29", "SW1A 2AA", "Acacia Avenue"]


def test_export_and_reports_hold_no_names(tmp_path: Path) -> None:
    """The service logs references, digests and encodings; so exports and reports hold
    no name, date or address even when the searched subjects had them."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    with AuditLog.open(url, None) as log:
        log.append(
            AuditEvent(
                rpc="FindMatches",
                category="consultation",
                outcome="ok",
                caller_force="01",
                caller_role="assessor",
                purpose="vetting",
                case_reference="VET/2026/0042",
                query_digest="ab" * 32,
                query_encodings=["q83vASNFZ4k="],
                results=[
                    {
                        "subject": 0,
                        "force": "02",
                        "record_ref": "9f" * 16,
                        "score": 0.97,
                        "band": "strong",
                        "agreement": [2, 2, 1, 0],
                    }
                ],
                store_version=7,
                details={"subjects": 1},
            )
        )
        for name in NAMES:
            with pytest.raises(AuditError):
                log.append(
                    AuditEvent(
                        rpc="SubmitBatch",
                        category="collection",
                        outcome="ok",
                        details={"surname": name},
                    )
                )
    out = tmp_path / "audit.jsonl"
    export_from_store(url, out)
    texts = [out.read_text()]
    texts += [render(build_report(read_jsonl(out)), fmt) for fmt in ("json", "csv", "html")]
    for text in texts:
        for name in NAMES:
            assert name.lower() not in text.lower()
