"""Shared fixtures: real PostgreSQL databases, temporary key directories."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

PG_ADMIN_URL = os.environ.get("MATCHER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards.

    Outside CI a missing server skips the test; in CI (``CI=true``) it fails.
    """
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is installed by make venv
        if _in_ci():
            pytest.fail("psycopg is not installed")
        pytest.skip("psycopg is not installed")
    name = "matcher_test_" + secrets.token_hex(6)
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if _in_ci():
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
