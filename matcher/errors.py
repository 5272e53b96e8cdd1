"""The one exception tree of matcher.

::

    MatcherError
    ├── SchemaError          invalid linkage schema (all problems listed at once)
    ├── InputError           bad input file or column (names the column / row, never a value)
    ├── KeyringError         missing, unreadable or badly protected key material
    ├── EpochError           an encoding's key epoch is not one that is held
    ├── FingerprintError     an encoding's schema fingerprint is not one that is accepted
    ├── EncodingError        malformed encoded batch (wrong filter length, missing column ...)
    ├── AuthError            caller lacks the role or identity for an action
    ├── NotFoundError        a referenced record, batch or watch does not exist
    ├── QuotaError           per-identity quota or per-call cap exceeded
    ├── StoreError           the store failed or holds inconsistent data
    └── AuditError           the audit log failed verification or replay

Messages name the field, column, row or setting at fault and never echo a record value.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "AuthError",
    "EncodingError",
    "EpochError",
    "FingerprintError",
    "InputError",
    "KeyringError",
    "MatcherError",
    "NotFoundError",
    "QuotaError",
    "SchemaError",
    "StoreError",
]


class MatcherError(Exception):
    """Root of every error that matcher raises on purpose."""


class SchemaError(MatcherError):
    """The linkage schema is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid linkage schema: " + "; ".join(self.problems))


class InputError(MatcherError):
    """An input file, column or argument is unusable."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class KeyringError(MatcherError):
    """Key material is missing, unreadable or too widely readable."""


class EpochError(MatcherError):
    """An encoding carries a key epoch that is not held or not accepted."""


class FingerprintError(MatcherError):
    """An encoding carries a schema fingerprint that is not accepted."""


class EncodingError(MatcherError):
    """An encoded batch is malformed."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class AuthError(MatcherError):
    """The caller's identity or role does not permit the action."""


class NotFoundError(MatcherError):
    """A referenced object does not exist."""


class QuotaError(MatcherError):
    """A quota or per-call limit was exceeded."""


class StoreError(MatcherError):
    """The store failed or is inconsistent."""


class AuditError(MatcherError):
    """The audit log failed verification or replay."""
