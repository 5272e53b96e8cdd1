"""The gRPC matching service: forces submit, assessors ask, auditors read the log.

Build a server with :func:`create_server` (tests bind port 0) or run one with
:func:`serve`; talk to it with :class:`MatcherClient`. The servicer is a thin adapter
over :class:`MatcherCore`; :class:`GuardInterceptor` enforces :data:`ROLE_MATRIX` on
every rpc and audits each call.

>>> sorted(ROLE_MATRIX["FindMatches"])
['assessor']
"""

from __future__ import annotations

from matcher.service.auth import ROLE_MATRIX, GuardInterceptor, status_for
from matcher.service.client import (
    AlertEvent,
    MatcherClient,
    RetractResult,
    SubjectResult,
    SubmitResult,
    WatchStarted,
    WatchStream,
    connect,
)
from matcher.service.config import PURPOSES, Limits, ServiceConfig, load_accepted, write_accepted
from matcher.service.core import MatcherCore, Query
from matcher.service.matching import MatchResult, RecordIndex, search
from matcher.service.server import MatcherServer, create_server, serve

__all__ = [
    "PURPOSES",
    "ROLE_MATRIX",
    "AlertEvent",
    "GuardInterceptor",
    "Limits",
    "MatchResult",
    "MatcherClient",
    "MatcherCore",
    "MatcherServer",
    "Query",
    "RecordIndex",
    "RetractResult",
    "ServiceConfig",
    "SubjectResult",
    "SubmitResult",
    "WatchStarted",
    "WatchStream",
    "connect",
    "create_server",
    "load_accepted",
    "search",
    "serve",
    "status_for",
    "write_accepted",
]
