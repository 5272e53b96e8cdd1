from __future__ import annotations

import os
from pathlib import Path

import pytest

from matcher.errors import EpochError, KeyringError
from matcher.keys import LinkageSecret, create_linkage_secret, load_linkage_secret


def test_create_and_load_owner_only(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    s1 = create_linkage_secret(keys)
    assert s1.epoch == 1
    path = keys / "linkage-secret-1.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert keys.stat().st_mode & 0o777 == 0o700
    assert load_linkage_secret(keys).secret == s1.secret


def test_next_epoch_and_selection(tmp_path: Path) -> None:
    s1 = create_linkage_secret(tmp_path)
    s2 = create_linkage_secret(tmp_path)
    assert s2.epoch == 2 and s2.secret != s1.secret
    assert load_linkage_secret(tmp_path).epoch == 2
    assert load_linkage_secret(tmp_path, 1).secret == s1.secret
    with pytest.raises(EpochError):
        load_linkage_secret(tmp_path, 7)


def test_refuses_a_secret_others_can_read(tmp_path: Path) -> None:
    create_linkage_secret(tmp_path)
    os.chmod(tmp_path / "linkage-secret-1.json", 0o644)
    with pytest.raises(KeyringError, match="readable by others"):
        load_linkage_secret(tmp_path)


def test_missing_keyring_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="keys init"):
        load_linkage_secret(tmp_path / "nope")


def test_derivation_separates_purpose_name_and_epoch() -> None:
    a = LinkageSecret(1, b"x" * 32)
    b = LinkageSecret(2, b"x" * 32)
    assert a.derive("field", "surname") != a.derive("field", "forename")
    assert a.derive("field", "surname") != a.derive("block", "surname")
    assert a.derive("field", "surname") != b.derive("field", "surname")
    assert a.derive("field", "surname") == LinkageSecret(1, b"x" * 32).derive("field", "surname")
    with pytest.raises(KeyringError):
        a.derive("field", "x", hash="md5")


def test_repr_never_shows_the_secret() -> None:
    s = LinkageSecret(1, bytes(range(32)))
    assert bytes(range(32)).hex() not in repr(s)
    assert "hidden" in repr(s)
