"""Per-identity quotas: token buckets for calls and subjects, refilled per minute."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from matcher.errors import QuotaError
from matcher.service.config import Limits

__all__ = ["Quotas"]


class Quotas:
    """Charge calls and subjects to an identity; :class:`QuotaError` when it runs out.

    >>> q = Quotas(Limits(subjects_per_minute=2), clock=lambda: 0.0)
    >>> q.charge("id", subjects=2)
    >>> q.charge("id", subjects=1)
    Traceback (most recent call last):
    matcher.errors.QuotaError: quota: subjects per minute exhausted for this identity
    """

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        # identity -> (calls left, subjects left, time of last refill)
        self._buckets: dict[str, tuple[float, float, float]] = {}

    def check_subjects(self, n: int) -> None:
        """Refuse a call carrying more subjects than the per-call cap, or none."""
        cap = self.limits.max_subjects_per_call
        if n > cap:
            raise QuotaError(f"subjects: at most {cap} subjects per call")

    def charge(self, identity: str, *, subjects: int = 0) -> None:
        """Take one call and ``subjects`` subjects from ``identity``'s buckets."""
        lim = self.limits
        with self._lock:
            now = self._clock()
            calls, subs, last = self._buckets.get(
                identity, (lim.calls_per_minute, lim.subjects_per_minute, now)
            )
            rate = (now - last) / 60.0
            calls = min(lim.calls_per_minute, calls + rate * lim.calls_per_minute)
            subs = min(lim.subjects_per_minute, subs + rate * lim.subjects_per_minute)
            if calls < 1:
                raise QuotaError("quota: calls per minute exhausted for this identity")
            if subs < subjects:
                raise QuotaError("quota: subjects per minute exhausted for this identity")
            self._buckets[identity] = (calls - 1, subs - subjects, now)
