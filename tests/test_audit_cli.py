"""``matcher audit export|verify|report`` and the audit key files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from matcher.audit import (
    AUDIT_PRIVATE_KEY_FILE,
    AUDIT_PUBLIC_KEY_FILE,
    AuditEvent,
    AuditLog,
    create_audit_key,
    key_id,
    load_audit_private_key,
    load_audit_public_key,
)
from matcher.cli import main
from matcher.errors import KeyringError


def test_audit_key_files(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    private = create_audit_key(keys)
    assert stat.S_IMODE((keys / AUDIT_PRIVATE_KEY_FILE).stat().st_mode) == 0o600
    pem = (keys / AUDIT_PUBLIC_KEY_FILE).read_bytes()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert (keys / AUDIT_PRIVATE_KEY_FILE).read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    assert key_id(load_audit_private_key(keys).public_key()) == key_id(private.public_key())
    assert key_id(load_audit_public_key(keys / AUDIT_PUBLIC_KEY_FILE)) == key_id(
        private.public_key()
    )
    with pytest.raises(KeyringError, match="already exists"):
        create_audit_key(keys)
    os.chmod(keys / AUDIT_PRIVATE_KEY_FILE, 0o644)
    with pytest.raises(KeyringError, match="readable by others"):
        load_audit_private_key(keys)


def test_audit_key_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="no audit signing key"):
        load_audit_private_key(tmp_path)
    with pytest.raises(KeyringError, match="no audit public key"):
        load_audit_public_key(tmp_path)
    ec = generate_private_key(SECP256R1())
    (tmp_path / AUDIT_PUBLIC_KEY_FILE).write_bytes(
        ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyringError, match="not an Ed25519 key"):
        load_audit_public_key(tmp_path)
    (tmp_path / AUDIT_PUBLIC_KEY_FILE).write_bytes(b"junk")
    with pytest.raises(KeyringError, match="not a valid PEM"):
        load_audit_public_key(tmp_path)


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, Path, str]:
    keys = tmp_path / "keys"
    key = create_audit_key(keys)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with AuditLog.open(url, key, checkpoint_every=3) as log:
        for i in range(7):
            log.append(
                AuditEvent(
                    rpc="FindMatches",
                    category="consultation",
                    outcome="ok" if i != 4 else "denied",
                    status_code="OK" if i != 4 else "PERMISSION_DENIED",
                    caller_force="01",
                    caller_role="assessor",
                    purpose="vetting",
                    case_reference=f"C/{i}",
                )
            )
    out = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "--store", url, "-o", str(out)]) == 0
    return out, keys, url


def test_export_and_verify(
    exported: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, keys, _ = exported
    assert len(out.read_text().splitlines()) == 10  # 7 entries, checkpoints at 3, 6, 7
    assert main(["audit", "verify", str(out), "--keys", str(keys), "--strict"]) == 0
    assert capsys.readouterr().out.startswith("ok: 7 entries (seq 1..7), 3 checkpoints")
    assert main(["audit", "verify", str(out), "--keys", str(keys), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unsigned_tail"] == 0


def test_verify_names_the_first_bad_entry(
    exported: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, keys, _ = exported
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:1] + lines[2:]))  # entry seq 2 deleted
    assert main(["audit", "verify", str(out), "--keys", str(keys)]) == 1
    err = capsys.readouterr().err
    assert "line 2 (entry seq 3): sequence number is 3, 2 expected" in err


def test_verify_warns_about_an_unsigned_tail(
    exported: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, keys, _ = exported
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]))  # the closing checkpoint cut off
    assert main(["audit", "verify", str(out), "--keys", str(keys)]) == 0
    assert "1 entries after the last checkpoint (seq 6) are not signed" in capsys.readouterr().err
    assert main(["audit", "verify", str(out), "--keys", str(keys), "--strict"]) == 1


def test_export_since_and_partial_verify(exported: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, keys, url = exported
    part = tmp_path / "part.jsonl"
    assert main(["audit", "export", "--store", url, "--since", "3", "-o", str(part)]) == 0
    assert main(["audit", "verify", str(part), "--keys", str(keys)]) == 1
    assert main(["audit", "verify", str(part), "--keys", str(keys), "--partial"]) == 0


@pytest.mark.parametrize("fmt", ["json", "csv", "html"])
def test_report(
    exported: tuple[Path, Path, str],
    tmp_path: Path,
    fmt: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, _, _ = exported
    args = ["audit", "report", str(out), "--format", fmt, "--purpose", "vetting"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "PERMISSION_DENIED" in text
    dest = tmp_path / f"report.{fmt}"
    assert main([*args, "-o", str(dest)]) == 0
    assert dest.read_text() == text


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "none.jsonl")
    assert main(["audit", "verify", missing, "--keys", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["audit", "report", missing]) == 2
    args = ["audit", "export", "--server", "localhost:1", "-o", missing]
    assert main(args) == 2
    assert "--keys is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["audit", "export", "-o", missing])  # neither --server nor --store
