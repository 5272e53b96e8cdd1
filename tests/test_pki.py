"""The development PKI: identities from certificates, batch signatures, the key registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from matcher.batch import EncodedBatch, new_record_refs
from matcher.errors import AuthError, InputError, KeyringError
from matcher.pki import (
    BatchDigest,
    ForceKeyRegistry,
    batch_digest,
    create_ca,
    identity_from_pem,
    issue_client_cert,
    issue_server_cert,
    load_client_tls,
    load_server_tls,
    load_signing_key,
    sign_batch,
)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    create_ca(tmp_path)
    issue_server_cert(tmp_path)
    return tmp_path


def _batch(n: int = 5) -> EncodedBatch:
    rng = np.random.default_rng(0)
    return EncodedBatch(
        force="F01",
        epoch=1,
        schema_fingerprint="a" * 64,
        filter_bits=128,
        record_refs=new_record_refs(n),
        filters=rng.integers(0, 2**63, size=(n, 2), dtype=np.uint64),
        blocking_tokens=[rng.integers(0, 9, size=i, dtype=np.uint64) for i in range(n)],
    )


def test_client_identity_and_files(keys: Path) -> None:
    pem = issue_client_cert(keys, "F01", "assessor", name="Jo")
    ident = identity_from_pem(pem.read_bytes())
    assert (ident.force, ident.role, ident.name) == ("F01", "assessor", "Jo")
    assert len(ident.fingerprint) == 64
    tls = load_client_tls(keys, "F01", "assessor")
    assert tls.cert == pem.read_bytes() and b"PRIVATE KEY" in tls.key
    assert (keys / "clients" / "F01-assessor.key").stat().st_mode & 0o077 == 0
    assert b"CERTIFICATE" in load_server_tls(keys).cert
    assert not (keys / "force-keys" / "F01.pub").exists()  # assessors sign nothing


def test_submitter_gets_registered_signing_key(keys: Path) -> None:
    issue_client_cert(keys, "F01", "submitter")
    registry = ForceKeyRegistry.load(keys)
    assert registry.forces == ["F01"]
    batch = _batch()
    sig = sign_batch(load_signing_key(keys, "F01"), batch)
    registry.verify("F01", batch_digest(batch), sig)
    with pytest.raises(AuthError, match="signature"):
        registry.verify("F01", batch_digest(_batch()), sig)
    with pytest.raises(AuthError, match="registered"):
        registry.verify("F09", batch_digest(batch), sig)


def test_digest_does_not_depend_on_chunking() -> None:
    batch = _batch(7)
    counts = np.array([len(t) for t in batch.blocking_tokens], "<u4")
    flat = np.concatenate(batch.blocking_tokens).astype("<u8")
    offs = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    d = BatchDigest(batch.batch_id, "F01", 1, "a" * 64, 128, 7)
    for a, b in ((0, 3), (3, 4), (4, 7)):
        d.update(
            batch.record_refs[a:b],
            batch.filters[a:b].astype("<u8").tobytes(),
            counts[a:b].tobytes(),
            flat[offs[a] : offs[b]].tobytes(),
        )
    assert d.digest() == batch_digest(batch)


def test_certificate_with_two_roles_is_refused(keys: Path) -> None:
    ca_cert = x509.load_pem_x509_certificate((keys / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((keys / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "F01"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "auditor"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "assessor"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    with pytest.raises(AuthError, match="one role"):
        identity_from_pem(cert.public_bytes(serialization.Encoding.PEM))


def test_bad_arguments(keys: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="role"):
        issue_client_cert(keys, "F01", "superuser")
    with pytest.raises(InputError, match="force"):
        issue_client_cert(keys, "F 01", "assessor")
    with pytest.raises(KeyringError):
        create_ca(keys)
    with pytest.raises(KeyringError, match="missing"):
        load_client_tls(tmp_path / "nowhere", "F01", "assessor")
    with pytest.raises(AuthError):
        identity_from_pem(b"not a certificate")
