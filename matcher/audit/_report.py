"""Auditor's report over an exported log: who searched, why, and what looks unusual.

Sections: counts by force, role, purpose, rpc and outcome; the searches matching the
filters; denied attempts; out-of-hours use (outside 08:00-18:00 UK local time, or at a
weekend); unusual daily volumes per identity (more than ``volume_factor`` times the
baseline median, or a z-score of ``z_threshold`` or more); identities that acted both as
auditor and in another role. Rows carry references, scores and codes only: the log holds
no record value, so neither does its report.

>>> from matcher.audit import AuditEntry, AuditEvent, GENESIS_HASH
>>> e = AuditEntry.build(1, "2026-03-07T23:10:00.000000Z", GENESIS_HASH,
...     AuditEvent(rpc="FindMatches", category="consultation", outcome="ok",
...                caller_force="01", caller_role="assessor", purpose="SAFEGUARDING"))
>>> report = build_report([e])
>>> report.by_purpose, len(report.out_of_hours)
({'SAFEGUARDING': 1}, 1)
"""

from __future__ import annotations

import csv
import html
import io
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from matcher.audit._model import AuditEntry, Checkpoint
from matcher.errors import AuditError

__all__ = ["REPORT_FORMATS", "AuditReport", "Finding", "VolumeFinding", "build_report", "render"]

REPORT_FORMATS: Final = ("json", "csv", "html")
_UK: Final = ZoneInfo("Europe/London")
_DENIED_STATUSES: Final = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED"})


@dataclass(frozen=True)
class Finding:
    """One entry worth an auditor's look (no record values: references and codes)."""

    kind: str
    seq: int
    time: str
    local_time: str
    force: str | None
    role: str | None
    fingerprint: str | None
    rpc: str
    category: str
    purpose: str | None
    case_reference: str | None
    outcome: str
    status_code: str
    results: int
    note: str = ""


@dataclass(frozen=True)
class VolumeFinding:
    """An identity's unusually busy day (UK local date)."""

    force: str | None
    role: str | None
    fingerprint: str | None
    day: str
    count: int
    baseline_median: float
    z_score: float | None


@dataclass
class AuditReport:
    """What :func:`build_report` found; :func:`render` prints it as JSON, CSV or HTML."""

    filters: dict[str, str | None]
    entries: int = 0
    first_time: str | None = None
    last_time: str | None = None
    by_force: dict[str, int] = field(default_factory=dict)
    by_role: dict[str, int] = field(default_factory=dict)
    by_purpose: dict[str, int] = field(default_factory=dict)
    by_rpc: dict[str, int] = field(default_factory=dict)
    by_outcome: dict[str, int] = field(default_factory=dict)
    searches: list[Finding] = field(default_factory=list)
    denied: list[Finding] = field(default_factory=list)
    out_of_hours: list[Finding] = field(default_factory=list)
    unusual_volume: list[VolumeFinding] = field(default_factory=list)
    role_conflicts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _local(time: str) -> datetime:
    try:
        return datetime.fromisoformat(time).astimezone(_UK)
    except ValueError:
        raise AuditError(f"audit entry time {time!r} is not an ISO 8601 UTC time") from None


def _is_date(text: str) -> bool:
    try:
        return date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def _finding(kind: str, entry: AuditEntry, local: datetime, note: str = "") -> Finding:
    ev = entry.event
    return Finding(
        kind=kind,
        seq=entry.seq,
        time=entry.time,
        local_time=local.isoformat(timespec="seconds"),
        force=ev.caller_force,
        role=ev.caller_role,
        fingerprint=ev.caller_cert_fingerprint,
        rpc=ev.rpc,
        category=ev.category,
        purpose=ev.purpose,
        case_reference=ev.case_reference,
        outcome=ev.outcome,
        status_code=ev.status_code,
        results=len(ev.results or []),
        note=note,
    )


def _count(values: Iterable[str | None]) -> dict[str, int]:
    return dict(sorted(Counter(v if v is not None else "-" for v in values).items()))


def build_report(
    items: Iterable[AuditEntry | Checkpoint],
    *,
    force: str | None = None,
    role: str | None = None,
    purpose: str | None = None,
    since: str | None = None,
    until: str | None = None,
    hours: tuple[int, int] = (8, 18),
    quiet_roles: Iterable[str] = ("submitter",),
    volume_categories: Iterable[str] = ("consultation",),
    volume_factor: float = 3.0,
    z_threshold: float = 3.0,
    min_volume: int = 5,
) -> AuditReport:
    """Summarise entries (checkpoints are skipped), keeping those matching the filters.

    ``since`` and ``until`` are UK local dates (``YYYY-MM-DD``, both included).

    ``quiet_roles`` are automated identities (force systems) whose night-time batches are
    not flagged as out-of-hours use. A day's volume is unusual when it is at least
    ``min_volume`` and either exceeds ``volume_factor`` times the identity's own median
    day (the median of all identities' days when it has fewer than three others) or
    has a z-score of at least ``z_threshold`` among all identity-days.
    """
    report = AuditReport(
        filters={"force": force, "role": role, "purpose": purpose, "since": since, "until": until}
    )
    for name, day in (("since", since), ("until", until)):
        if day is not None and not _is_date(day):
            raise AuditError(f"{name}: a date is written YYYY-MM-DD")
    quiet, vol_cats = set(quiet_roles), set(volume_categories)
    start, end = hours
    kept: list[AuditEntry] = []
    days: dict[tuple[str | None, str | None, str | None], Counter[str]] = defaultdict(Counter)
    roles_of: dict[str, set[str]] = defaultdict(set)
    for item in items:
        if not isinstance(item, AuditEntry):
            continue
        ev = item.event
        if ev.caller_cert_fingerprint and ev.caller_role:
            roles_of[ev.caller_cert_fingerprint].add(ev.caller_role)
        if (force and ev.caller_force != force) or (role and ev.caller_role != role):
            continue
        if purpose and ev.purpose != purpose:
            continue
        local = _local(item.time)
        today = local.date().isoformat()
        if (since and today < since) or (until and today > until):
            continue
        kept.append(item)
        if ev.category == "consultation":
            report.searches.append(_finding("search", item, local))
        if ev.outcome == "denied" or ev.status_code in _DENIED_STATUSES:
            report.denied.append(_finding("denied", item, local))
        weekend = local.weekday() >= 5
        if (weekend or not start <= local.hour < end) and ev.caller_role not in quiet:
            note = "weekend" if weekend else f"outside {start:02d}:00-{end:02d}:00"
            report.out_of_hours.append(_finding("out_of_hours", item, local, note))
        if ev.category in vol_cats:
            identity = (ev.caller_force, ev.caller_role, ev.caller_cert_fingerprint)
            days[identity][today] += 1
    report.entries = len(kept)
    if kept:
        report.first_time, report.last_time = kept[0].time, kept[-1].time
    report.by_force = _count(e.event.caller_force for e in kept)
    report.by_role = _count(e.event.caller_role for e in kept)
    report.by_purpose = _count(e.event.purpose for e in kept)
    report.by_rpc = _count(e.event.rpc for e in kept)
    report.by_outcome = _count(e.event.outcome for e in kept)
    report.unusual_volume = _unusual(days, volume_factor, z_threshold, min_volume)
    report.role_conflicts = [
        {"fingerprint": fp, "roles": sorted(rs)}
        for fp, rs in sorted(roles_of.items())
        if "auditor" in rs and len(rs) > 1
    ]
    return report


def _unusual(
    days: dict[tuple[str | None, str | None, str | None], Counter[str]],
    factor: float,
    z_threshold: float,
    min_volume: int,
) -> list[VolumeFinding]:
    everyone = [n for per_day in days.values() for n in per_day.values()]
    if not everyone:
        return []
    population_median = statistics.median(everyone)
    mean = statistics.fmean(everyone)
    stdev = statistics.pstdev(everyone) if len(everyone) > 1 else 0.0
    out = []
    for (force, role, fp), per_day in sorted(days.items(), key=lambda kv: str(kv[0])):
        for day, n in sorted(per_day.items()):
            others = [m for d, m in per_day.items() if d != day]
            baseline = statistics.median(others) if len(others) >= 3 else population_median
            z = (n - mean) / stdev if stdev > 0 else None
            if n >= min_volume and (n > factor * baseline or (z is not None and z >= z_threshold)):
                out.append(
                    VolumeFinding(
                        force=force,
                        role=role,
                        fingerprint=fp,
                        day=day,
                        count=n,
                        baseline_median=float(baseline),
                        z_score=None if z is None else round(z, 3),
                    )
                )
    return out


_CSV_COLUMNS: Final = [
    "kind",
    "seq",
    "time",
    "local_time",
    "force",
    "role",
    "fingerprint",
    "rpc",
    "category",
    "purpose",
    "case_reference",
    "outcome",
    "status_code",
    "results",
    "note",
]


def _rows(report: AuditReport) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for finding in [*report.searches, *report.denied, *report.out_of_hours]:
        rows.append(asdict(finding))
    for v in report.unusual_volume:
        rows.append(
            {
                "kind": "unusual_volume",
                "time": v.day,
                "force": v.force,
                "role": v.role,
                "fingerprint": v.fingerprint,
                "results": v.count,
                "note": f"{v.count} on {v.day}; baseline median {v.baseline_median:g}"
                + ("" if v.z_score is None else f"; z={v.z_score:g}"),
            }
        )
    for c in report.role_conflicts:
        rows.append(
            {
                "kind": "role_conflict",
                "fingerprint": c["fingerprint"],
                "note": "auditor and " + ", ".join(r for r in c["roles"] if r != "auditor"),
            }
        )
    return rows


def _cell(value: Any) -> Any:
    # A spreadsheet runs a cell that starts like a formula; case references are free text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _html_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if r.get(c) is None else str(r[c]))}</td>" for c in columns)
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(report: AuditReport) -> str:
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Audit report</title>",
        "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}"
        "</style></head><body><h1>Audit report</h1>",
        f"<p>{report.entries} entries from {html.escape(str(report.first_time))} to "
        f"{html.escape(str(report.last_time))}; filters: "
        f"{html.escape(json.dumps(report.filters, sort_keys=True))}</p>",
    ]
    for title, counts in [
        ("By force", report.by_force),
        ("By role", report.by_role),
        ("By purpose", report.by_purpose),
        ("By rpc", report.by_rpc),
        ("By outcome", report.by_outcome),
    ]:
        rows = [{"value": k, "entries": v} for k, v in counts.items()]
        parts.append(f"<h2>{title}</h2>" + _html_table(rows, ["value", "entries"]))
    rows = _rows(report)
    for kind, title in [
        ("denied", "Denied attempts"),
        ("out_of_hours", "Out-of-hours use"),
        ("unusual_volume", "Unusual volumes"),
        ("role_conflict", "Auditors acting in another role"),
        ("search", "Searches"),
    ]:
        section = [r for r in rows if r["kind"] == kind]
        parts.append(f"<h2>{title} ({len(section)})</h2>" + _html_table(section, _CSV_COLUMNS))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render(report: AuditReport, fmt: str = "json") -> str:
    """The report as ``json`` (everything), ``csv`` (one row per finding) or ``html``."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=_CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in _rows(report):
            writer.writerow({c: _cell(row.get(c)) for c in _CSV_COLUMNS})
        return buf.getvalue()
    if fmt == "html":
        return _html(report)
    raise AuditError(f"report format must be one of {', '.join(REPORT_FORMATS)}")
