"""Replay: re-run each recorded search and watch and compare with what was logged.

The generic part lives here: choosing the entries to replay, calling a *replayer* (which
re-runs one entry's search against the store as it was at the entry's store version, with
the recorded configuration) and comparing results. :mod:`matcher.audit._store_replay`
builds the replayer over the real store and matcher.

Watches are replayed when the replayer also is a :class:`WatchReplayer`. The log holds,
per watch, its registration (``Watch`` consultation with the subjects' encodings and the
settings it ran with), its resumptions (``details.resumed_after``) and one ``disclosure``
entry per alert sent (watch id, alert number, the triggering batch's store version,
subject index, force, record reference, score and band). The replayer re-derives every
alert of the watch from the store, numbered as the service numbers them; then

* each disclosed alert must be a re-derived one, with the same number, score and band
  (else a ``watch alert`` difference on that disclosure entry);
* no alert may have been left out: an alert that was never disclosed although a later
  one was, by a stream that must have passed it, is a ``watch`` difference. A stream
  resumed after alert *r* legitimately skips alerts up to *r*, a stream skips alerts of
  records retracted before it reached them (the store's retraction time must precede
  the disclosure of the later alert), and alerts after the last disclosed one were not
  yet sent.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from matcher.audit._model import AuditEntry, Checkpoint
from matcher.errors import MatcherError

__all__ = [
    "KINDS",
    "ReplayDifference",
    "ReplayReport",
    "Replayer",
    "WatchLog",
    "WatchReplay",
    "WatchReplayer",
    "compare_results",
    "is_replayable",
    "replay",
    "watch_entry",
]

KINDS = ("search", "watch alert", "watch")
"""Kinds of difference: a search's results, one disclosed alert, a watch's alerts."""

Replayer = Callable[[AuditEntry], list[dict[str, Any]]]
"""Re-runs one entry's search at its store version; returns results like ``event.results``."""

_Key = tuple[Any, Any, Any]


_WORDS = {
    "search": (
        "recorded result(s) not returned",
        "result(s) not recorded",
        "result(s) with another score or band",
    ),
    "watch alert": (
        "disclosed alert(s) not re-derived from the store at that version",
        "alert(s) not recorded",
        "alert(s) with another score, band or alert number",
    ),
    "watch": (
        "recorded alert(s) not re-derived",
        "alert(s) re-derived from the store but never disclosed, although later ones were",
        "alert(s) with another score or band",
    ),
}


@dataclass(frozen=True)
class ReplayDifference:
    """How one replayed entry's results differ from the recorded ones.

    ``kind`` is ``search`` (a FindMatches entry), ``watch alert`` (one disclosure entry
    of a watch) or ``watch`` (a watch as a whole, e.g. alerts never disclosed; ``seq``
    is then its registration entry, or its first disclosure when the log lacks that).
    """

    seq: int
    missing: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    kind: str = "search"
    watch_id: str | None = None

    def __str__(self) -> str:
        where = f"entry seq {self.seq}"
        if self.watch_id is not None:
            where += f" (watch {self.watch_id})"
        words = _WORDS.get(self.kind, _WORDS["search"])
        parts = [] if self.error is None else [f"replay failed: {self.error}"]
        for found, text in zip((self.missing, self.extra, self.changed), words, strict=True):
            if found:
                parts.append(f"{len(found)} {text}")
        return f"{where}: " + "; ".join(parts)


@dataclass
class ReplayReport:
    """Counts and differences from :func:`replay`; ``ok`` when nothing differed.

    ``replayed`` counts searches, ``watch_alerts`` disclosed alerts, ``watches`` the
    watches whose alerts were re-derived; ``skipped`` the other entries.
    """

    replayed: int = 0
    skipped: int = 0
    differences: list[ReplayDifference] = field(default_factory=list)
    watch_alerts: int = 0
    watches: int = 0

    @property
    def ok(self) -> bool:
        """True when every replayed entry gave the recorded results."""
        return not self.differences

    def differences_by_kind(self) -> dict[str, int]:
        """How many differences of each kind (every kind present, zero or not)."""
        counts = dict.fromkeys(KINDS, 0)
        for d in self.differences:
            counts[d.kind] = counts.get(d.kind, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "replayed": self.replayed,
            "searches": self.replayed,
            "watch_alerts": self.watch_alerts,
            "watches": self.watches,
            "skipped": self.skipped,
            "differences_by_kind": self.differences_by_kind(),
            "differences": [asdict(d) for d in self.differences],
        }


@dataclass
class WatchLog:
    """What the log holds about one watch (gathered by :func:`replay`)."""

    watch_id: str
    registration: AuditEntry | None = None
    resumed_after: list[int] = field(default_factory=list)
    disclosures: list[tuple[AuditEntry, dict[str, Any]]] = field(default_factory=list)

    @property
    def config_hashes(self) -> set[str]:
        """Every scoring-model fingerprint its entries name."""
        entries = [e for e, _ in self.disclosures]
        if self.registration is not None:
            entries.append(self.registration)
        return {e.event.config_hash for e in entries if e.event.config_hash}

    @property
    def last_version(self) -> int:
        """The highest store version an alert of it was disclosed at (0 if none)."""
        return max((e.event.store_version or 0 for e, _ in self.disclosures), default=0)


@dataclass(frozen=True)
class WatchReplay:
    """A watch's alerts as re-derived from the store, up to its ``last_version``.

    ``alerts`` are numbered (``alert_id``) from 1 as the service numbers them, each with
    ``watch_id``, ``store_version`` (of the triggering batch), ``subject`` (index),
    ``force``, ``record_ref``, ``score`` and ``band``. ``retracted`` maps ``(force,
    record_ref)`` to the ``(store version, UTC time)`` of each retraction of it;
    ``owner_force`` is the force the watch belongs to.
    """

    alerts: list[dict[str, Any]]
    retracted: dict[tuple[str, str], list[tuple[int, str]]]
    owner_force: str | None = None


@runtime_checkable
class WatchReplayer(Protocol):
    """A replayer that can also re-derive watches' alerts (see :class:`WatchReplay`)."""

    def replay_watches(self, watches: Sequence[WatchLog]) -> dict[str, WatchReplay | str]:
        """Each watch's replay, or why it could not be replayed."""
        ...


def is_replayable(entry: AuditEntry) -> bool:
    """A successful search that recorded its encodings and store version."""
    ev = entry.event
    return (
        ev.rpc == "FindMatches"
        and ev.outcome == "ok"
        and ev.query_encodings is not None
        and ev.store_version is not None
    )


def watch_entry(entry: AuditEntry) -> tuple[str, str] | None:
    """``(kind, watch_id)`` of a successful Watch entry: ``registration``, ``resume`` or
    ``disclosure``; ``None`` for anything else.

    >>> from matcher.audit import AuditEvent
    >>> hit = {"subject": 0, "force": "02", "record_ref": "r9", "score": 0.9,
    ...        "band": "strong", "watch_id": "w1", "alert_id": 1}
    >>> e = AuditEntry.build(1, "2026-01-05T10:00:00.000000Z", "0" * 64,
    ...     AuditEvent(rpc="Watch", category="disclosure", outcome="ok", results=[hit]))
    >>> watch_entry(e)
    ('disclosure', 'w1')
    """
    ev = entry.event
    if ev.rpc != "Watch" or ev.outcome != "ok":
        return None
    if ev.category == "disclosure":
        ids = {r.get("watch_id") for r in ev.results or []}
        if len(ids) == 1 and isinstance(next(iter(ids)), str):
            return "disclosure", str(next(iter(ids)))
        return None
    wid = ev.details.get("watch_id")
    if ev.category != "consultation" or not isinstance(wid, str):
        return None
    if "resumed_after" in ev.details:
        return "resume", wid
    if ev.query_encodings is not None and ev.store_version is not None:
        return "registration", wid
    return None


def _key(result: dict[str, Any]) -> _Key:
    return (result.get("subject"), result.get("force"), result.get("record_ref"))


def _same(a: dict[str, Any], b: dict[str, Any], tolerance: float) -> bool:
    sa, sb = a.get("score"), b.get("score")
    if isinstance(sa, int | float) and isinstance(sb, int | float):
        if not math.isclose(float(sa), float(sb), rel_tol=0.0, abs_tol=tolerance):
            return False
    elif sa != sb:
        return False
    keys = ("band", "agreement", "watch_id", "alert_id")
    return all(a.get(k) == b.get(k) for k in keys if k in a and k in b)


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

    When ``replayer`` is also a :class:`WatchReplayer`, Watch registrations, resumptions
    and disclosures are replayed too (see the module docstring); otherwise they count as
    skipped. A :class:`~matcher.errors.MatcherError` from the replayer counts as a
    difference for that entry or watch (it could not be re-run); other exceptions
    propagate.
    """
    report = ReplayReport()
    watch_mode = isinstance(replayer, WatchReplayer)
    logs: dict[str, WatchLog] = {}
    for item in items:
        if not isinstance(item, AuditEntry):
            continue
        if select(item):
            report.replayed += 1
            try:
                results = replayer(item)
            except MatcherError as exc:
                report.differences.append(ReplayDifference(seq=item.seq, error=str(exc)))
                continue
            recorded = item.event.results or []
            diff = compare_results(item.seq, recorded, results, tolerance=tolerance)
            if diff is not None:
                report.differences.append(diff)
            continue
        found = watch_entry(item) if watch_mode else None
        if found is None:
            report.skipped += 1
            continue
        kind, wid = found
        log = logs.setdefault(wid, WatchLog(wid))
        if kind == "registration":
            log.registration = item
        elif kind == "resume":
            after = item.event.details.get("resumed_after")
            log.resumed_after.append(after if isinstance(after, int) else 0)
        else:
            log.disclosures.extend((item, r) for r in item.event.results or [])
    if logs and isinstance(replayer, WatchReplayer):
        _replay_watches(list(logs.values()), replayer, report, tolerance)
        report.differences.sort(key=lambda d: d.seq)
    return report


def _replay_watches(
    logs: list[WatchLog],
    replayer: WatchReplayer,
    report: ReplayReport,
    tolerance: float,
) -> None:
    report.watches += len(logs)
    try:
        replays = replayer.replay_watches(logs)
    except MatcherError as exc:
        replays = {log.watch_id: str(exc) for log in logs}
    for log in logs:
        report.watch_alerts += len(log.disclosures)
        first = log.registration or (log.disclosures[0][0] if log.disclosures else None)
        seq = first.seq if first is not None else 0
        result = replays.get(log.watch_id, "the replayer did not replay it")
        if isinstance(result, str):
            report.differences.append(
                ReplayDifference(seq=seq, error=result, kind="watch", watch_id=log.watch_id)
            )
            continue
        report.differences.extend(_compare_watch(log, result, seq, tolerance))


def _instant(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _compare_watch(
    log: WatchLog, rep: WatchReplay, seq: int, tolerance: float
) -> list[ReplayDifference]:
    out: list[ReplayDifference] = []
    by_key: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for a in rep.alerts:
        by_key.setdefault((a.get("store_version"), *_key(a)), []).append(a)
    disclosed: set[int] = set()  # replayed alerts some disclosure matched
    reached: dict[int, str] = {}  # alert numbers disclosures claim: the first one's time
    for entry, result in log.disclosures:
        ev = entry.event
        cands = by_key.get((ev.store_version, *_key(result)), [])
        match = next((a for a in cands if a.get("alert_id") == result.get("alert_id")), None)
        match = match if match is not None else (cands[0] if cands else None)
        claimed = result.get("alert_id")
        number = int(match["alert_id"]) if match is not None else claimed
        if match is not None:
            disclosed.add(int(match["alert_id"]))
        if isinstance(number, int):  # a stream got that far (even if the alert differs)
            reached[number] = min(reached.get(number, entry.time), entry.time)
        diff = compare_results(
            entry.seq, [result], [] if match is None else [match], tolerance=tolerance
        )
        error = None
        if rep.owner_force is not None and ev.caller_force != rep.owner_force:
            error = f"disclosed to force {ev.caller_force}; the watch belongs to {rep.owner_force}"
        if diff is not None or error is not None:
            base = diff if diff is not None else ReplayDifference(seq=entry.seq)
            out.append(
                replace(base, error=error or base.error, kind="watch alert", watch_id=log.watch_id)
            )
    # Alerts left out: never disclosed, although a stream that must have passed them
    # (it started before them and disclosed a later one) did disclose a later alert.
    starts = sorted(set(log.resumed_after))
    if log.registration is not None:
        starts.insert(0, 0)
    elif reached:
        starts.insert(0, min(reached) - 1)  # the log starts after the watch did
    starts.sort()
    left_out = []
    for a in rep.alerts:
        n = int(a["alert_id"])
        if n in disclosed:
            continue
        nxt = next((r for r in starts if r >= n), math.inf)
        proving = [_instant(t) for d, t in reached.items() if n < d <= nxt]
        if not proving:
            continue
        # Each stream that disclosed a later alert passed this one first; only a record
        # retracted before the earliest such disclosure could rightly be skipped.
        passed = None if None in proving else min(p for p in proving if p is not None)
        gone = rep.retracted.get((a["force"], a["record_ref"]), [])
        if passed is not None and any(
            v > a["store_version"] and (at := _instant(t)) is not None and at <= passed
            for v, t in gone
        ):
            continue
        left_out.append(a)
    if left_out:
        out.append(ReplayDifference(seq=seq, extra=left_out, kind="watch", watch_id=log.watch_id))
    return out
