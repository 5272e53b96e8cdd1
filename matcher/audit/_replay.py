"""Replay: re-run each recorded search and compare what it returns with what was logged.

The generic part lives here: choosing the entries to replay, calling a *replayer* (which
re-runs one entry's search against the store as it was at the entry's store version, with
the recorded configuration) and comparing results. :mod:`matcher.audit._store_replay`
builds the replayer over the real store and matcher.

>>> from matcher.audit import AuditEntry, AuditEvent, GENESIS_HASH
>>> hit = {"subject": 0, "force": "02", "record_ref": "r9", "score": 0.91, "band": "strong"}
>>> e = AuditEntry.build(1, "2026-01-05T10:00:00.000000Z", GENESIS_HASH,
...     AuditEvent(rpc="FindMatches", category="consultation", outcome="ok",
...                query_encodings=["AAAA"], results=[hit], store_version=3))
>>> replay([e], lambda entry: [dict(hit)]).ok
True
>>> replay([e], lambda entry: []).differences[0].missing == [hit]
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from matcher.audit._model import AuditEntry, Checkpoint
from matcher.errors import MatcherError

__all__ = [
    "ReplayDifference",
    "ReplayReport",
    "Replayer",
    "compare_results",
    "is_replayable",
    "replay",
]

Replayer = Callable[[AuditEntry], list[dict[str, Any]]]
"""Re-runs one entry's search at its store version; returns results like ``event.results``."""

_Key = tuple[Any, Any, Any]


@dataclass(frozen=True)
class ReplayDifference:
    """How one replayed entry's results differ from the recorded ones."""

    seq: int
    missing: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def __str__(self) -> str:
        if self.error is not None:
            return f"entry seq {self.seq}: replay failed: {self.error}"
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} recorded result(s) not returned")
        if self.extra:
            parts.append(f"{len(self.extra)} result(s) not recorded")
        if self.changed:
            parts.append(f"{len(self.changed)} result(s) with another score or band")
        return f"entry seq {self.seq}: " + "; ".join(parts)


@dataclass
class ReplayReport:
    """Counts and differences from :func:`replay`; ``ok`` when nothing differed."""

    replayed: int = 0
    skipped: int = 0
    differences: list[ReplayDifference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every replayed entry gave the recorded results."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "replayed": self.replayed,
            "skipped": self.skipped,
            "differences": [asdict(d) for d in self.differences],
        }


def is_replayable(entry: AuditEntry) -> bool:
    """A successful search that recorded its encodings and store version."""
    ev = entry.event
    return (
        ev.rpc == "FindMatches"
        and ev.outcome == "ok"
        and ev.query_encodings is not None
        and ev.store_version is not None
    )


def _key(result: dict[str, Any]) -> _Key:
    return (result.get("subject"), result.get("force"), result.get("record_ref"))


def _same(a: dict[str, Any], b: dict[str, Any], tolerance: float) -> bool:
    sa, sb = a.get("score"), b.get("score")
    if isinstance(sa, int | float) and isinstance(sb, int | float):
        if not math.isclose(float(sa), float(sb), rel_tol=0.0, abs_tol=tolerance):
            return False
    elif sa != sb:
        return False
    return all(a.get(k) == b.get(k) for k in ("band", "agreement") if k in a and k in b)


def compare_results(
    seq: int,
    recorded: list[dict[str, Any]],
    replayed: list[dict[str, Any]],
    *,
    tolerance: float = 1e-9,
) -> ReplayDifference | None:
    """Compare two result lists as sets keyed by (subject, force, record_ref).

    Scores may differ by ``tolerance``; band (and agreement, when both sides have it)
    must be equal. Order does not matter. Returns ``None`` when they agree.

    >>> r = {"subject": 0, "force": "02", "record_ref": "r9", "score": 0.9, "band": "strong"}
    >>> compare_results(1, [r], [{**r, "score": 0.5}]).changed[0]["replayed"]["score"]
    0.5
    """
    rec = {_key(r): r for r in recorded}
    rep = {_key(r): r for r in replayed}
    missing = [rec[k] for k in rec if k not in rep]
    extra = [rep[k] for k in rep if k not in rec]
    changed = [
        {"recorded": rec[k], "replayed": rep[k]}
        for k in rec
        if k in rep and not _same(rec[k], rep[k], tolerance)
    ]
    duplicated = len(rec) != len(recorded) or len(rep) != len(replayed)
    if not (missing or extra or changed or duplicated):
        return None
    error = "a result appears twice" if duplicated and not (missing or extra or changed) else None
    return ReplayDifference(seq=seq, missing=missing, extra=extra, changed=changed, error=error)


def replay(
    items: Iterable[AuditEntry | Checkpoint],
    replayer: Replayer,
    *,
    select: Callable[[AuditEntry], bool] = is_replayable,
    tolerance: float = 1e-9,
) -> ReplayReport:
    """Replay every selected entry with ``replayer`` and compare with the recorded results.

    A :class:`~matcher.errors.MatcherError` from the replayer counts as a difference for
    that entry (the search could not be re-run); other exceptions propagate.
    """
    report = ReplayReport()
    for item in items:
        if not isinstance(item, AuditEntry):
            continue
        if not select(item):
            report.skipped += 1
            continue
        report.replayed += 1
        try:
            results = replayer(item)
        except MatcherError as exc:
            report.differences.append(ReplayDifference(seq=item.seq, error=str(exc)))
            continue
        diff = compare_results(item.seq, item.event.results or [], results, tolerance=tolerance)
        if diff is not None:
            report.differences.append(diff)
    return report
