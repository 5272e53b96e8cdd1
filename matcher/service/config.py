"""Service configuration: what it accepts, its limits, and the fixed list of purposes.

The accepted key epochs and schema fingerprints live in ``service.json`` in the keyring
folder (written by ``matcher keys init``); the service never reads the linkage secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from matcher.errors import KeyringError
from matcher.schema import LinkageSchema, default_schema

__all__ = [
    "PURPOSES",
    "SERVICE_CONFIG_FILE",
    "Limits",
    "ServiceConfig",
    "load_accepted",
    "write_accepted",
]

# The fixed list of lawful purposes (the proto's Purpose enum without its prefix,
# lower-cased). Every search names one.
PURPOSES = (
    "safeguarding_child",
    "safeguarding_adult",
    "vetting",
    "domestic_abuse",
    "public_protection",
    "criminal_investigation",
    "missing_person",
)
SERVICE_CONFIG_FILE = "service.json"


@dataclass(frozen=True)
class Limits:
    """Per-call caps and per-identity quotas (token buckets refilled per minute)."""

    max_subjects_per_call: int = 100
    max_results_per_subject: int = 50
    default_results_per_subject: int = 10
    subjects_per_minute: int = 600
    calls_per_minute: int = 300
    max_batch_records: int = 2_000_000
    max_message_bytes: int = 16 * 1024 * 1024
    max_refs_per_retraction: int = 100_000
    max_watches_per_identity: int = 100


@dataclass(frozen=True)
class ServiceConfig:
    """Everything :func:`matcher.service.create_server` needs besides keys and store.

    ``epochs`` and ``schemas`` are what the service accepts; ``schemas[0]`` defines the
    filter length and the fields scored.
    """

    epochs: tuple[int, ...] = (1,)
    schemas: tuple[LinkageSchema, ...] = field(default_factory=lambda: (default_schema(),))
    limits: Limits = field(default_factory=Limits)
    candidate_threshold: float = 0.5
    audit: bool = True
    grace_seconds: float = 5.0

    @property
    def schema(self) -> LinkageSchema:
        return self.schemas[0]

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(s.fingerprint for s in self.schemas)


def write_accepted(keys_dir: Path, epochs: list[int], schemas: list[LinkageSchema]) -> Path:
    """Write ``service.json``: the epochs and schemas the service accepts."""
    path = Path(keys_dir) / SERVICE_CONFIG_FILE
    data = {"epochs": sorted(epochs), "schemas": [s.to_dict() for s in schemas]}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def load_accepted(keys_dir: Path) -> tuple[tuple[int, ...], tuple[LinkageSchema, ...]]:
    """Read ``service.json`` from the keyring folder."""
    path = Path(keys_dir) / SERVICE_CONFIG_FILE
    try:
        data = json.loads(path.read_text())
        epochs = tuple(int(e) for e in data["epochs"])
        schemas = tuple(LinkageSchema.from_dict(s) for s in data["schemas"])
    except OSError:
        raise KeyringError(f"{path} is missing (run 'matcher keys init')") from None
    except (ValueError, KeyError, TypeError):
        raise KeyringError(f"{path} is not a valid service configuration") from None
    if not epochs or not schemas:
        raise KeyringError(f"{path} accepts no epoch or no schema")
    return epochs, schemas
