"""Shared helpers for the service tests: keyrings, encoded people, servers, clients."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from matcher.audit import create_audit_key
from matcher.batch import EncodedBatch
from matcher.encoding import encode_frame
from matcher.keys import LinkageSecret
from matcher.pki import create_ca, issue_client_cert, issue_server_cert, load_signing_key
from matcher.schema import default_schema
from matcher.service import MatcherClient, MatcherServer, ServiceConfig, create_server
from matcher.service.config import write_accepted


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL, once per backend (import it into a test module to use it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


FORCES = ("F01", "F02", "F03")
ROLES = ("submitter", "assessor", "auditor", "admin")
SECRET = LinkageSecret(epoch=1, secret=bytes(range(32)))
SCHEMA = default_schema()

_FORENAMES = [
    "Oliver",
    "Amelia",
    "George",
    "Isla",
    "Harry",
    "Ava",
    "Jack",
    "Mia",
    "Noah",
    "Emily",
    "Leo",
    "Grace",
    "Arthur",
    "Freya",
    "Oscar",
    "Lily",
    "Charlie",
    "Ella",
]
_SURNAMES = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
]


def make_keyring(keys_dir: Path) -> Path:
    """A keyring with CA, server cert, audit key, service.json and every force x role."""
    create_ca(keys_dir)
    issue_server_cert(keys_dir)
    create_audit_key(keys_dir)
    write_accepted(keys_dir, [1], [SCHEMA])
    for force in FORCES:
        for role in ROLES:
            issue_client_cert(keys_dir, force, role)
    return keys_dir


def people(n: int, seed: int, prefix: str = "p") -> pd.DataFrame:
    """``n`` distinct synthetic people (no real data)."""
    r = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": f"{prefix}{i}",
                "forename": r.choice(_FORENAMES),
                "surname": r.choice(_SURNAMES) + r.choice(["", "-Hart", "son", "ley", "ford"]),
                "date_of_birth": (
                    f"{r.randint(1950, 2005)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
                ),
                "sex": r.choice(["M", "F"]),
                "postcode": f"{r.choice(['AB', 'LS', 'M', 'B', 'CF'])}{r.randint(1, 20)} "
                f"{r.randint(1, 9)}{r.choice('ABDEFGHJ')}{r.choice('LNPQRSTU')}",
            }
        )
    return pd.DataFrame(rows)


def encode(df: pd.DataFrame, force: str) -> EncodedBatch:
    return encode_frame(df, SCHEMA, SECRET, force).batch


@contextmanager
def running(keys_dir: Path, store_url: str, **kw: object) -> Iterator[tuple[MatcherServer, int]]:
    server, port = create_server(keys_dir, store_url, **kw)  # type: ignore[arg-type]
    try:
        yield server, port
    finally:
        server.stop(0)


def client(keys_dir: Path, port: int, force: str, role: str) -> MatcherClient:
    return MatcherClient.open(f"127.0.0.1:{port}", keys_dir, force=force, role=role)


def submit(keys_dir: Path, port: int, batch: EncodedBatch) -> None:
    with client(keys_dir, port, batch.force, "submitter") as c:
        c.submit(batch, load_signing_key(keys_dir, batch.force))


def config(**limits: int) -> ServiceConfig:
    from matcher.service import Limits

    return ServiceConfig(epochs=(1,), schemas=(SCHEMA,), limits=Limits(**limits))
