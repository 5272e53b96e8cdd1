"""Development PKI: a CA, TLS certificates that carry force and role, and Ed25519 keys.

Every caller of the service authenticates with an mTLS client certificate whose subject
names exactly one force (``O``) and exactly one role (``OU``); the service reads its
identity from that certificate and nothing else. Submitting forces also hold an Ed25519
batch-signing key; its public half is registered in ``force-keys/<FORCE>.pub`` so that
the service can check each batch's signature. The service's own Ed25519 key signs audit
checkpoints (see :mod:`matcher.audit`).

Layout of a keyring folder (private files are mode 0600)::

    ca.pem  ca.key                      development certificate authority
    server.pem  server.key              the service's TLS certificate
    audit-signing-key.pem  .pub.pem      the service's audit key (matcher.audit)
    force-keys/<FORCE>.pub              registry of forces' batch-signing public keys
    clients/<FORCE>-<role>.pem  .key    client certificates
    clients/<FORCE>-signing.key         a force's batch-signing private key

>>> ROLES
('submitter', 'assessor', 'auditor', 'admin')
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from matcher.batch import EncodedBatch
from matcher.errors import AuthError, InputError, KeyringError
from matcher.keys import write_private_file
from matcher.store._model import pack_record_columns

__all__ = [
    "ROLES",
    "BatchDigest",
    "ForceKeyRegistry",
    "Identity",
    "TlsFiles",
    "batch_digest",
    "check_force_code",
    "create_ca",
    "identity_from_pem",
    "issue_client_cert",
    "issue_server_cert",
    "load_client_tls",
    "load_server_tls",
    "load_signing_key",
    "sign_batch",
]

ROLES = ("submitter", "assessor", "auditor", "admin")
_FORCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z")
_DAYS = 825


def check_force_code(force: str, field: str = "force") -> str:
    """Return ``force`` if it is a valid force code (1-32 of A-Z a-z 0-9 _ -)."""
    if not isinstance(force, str) or not _FORCE_RE.match(force):
        raise InputError(f"{field}: must be 1-32 letters, digits, '_' or '-'", field=field)
    return force


@dataclass(frozen=True)
class Identity:
    """Who a caller is, read from its client certificate.

    ``fingerprint`` is the SHA-256 (hex) of the certificate's DER form.
    """

    force: str
    role: str
    name: str
    fingerprint: str

    @property
    def principal(self) -> str:
        """A stable string naming the identity (force/role/name)."""
        return f"{self.force}/{self.role}/{self.name}"


@dataclass(frozen=True)
class TlsFiles:
    """PEM bytes for one TLS endpoint: trusted CA, own certificate chain and private key."""

    ca: bytes
    cert: bytes
    key: bytes


# -- certificates -------------------------------------------------------------------------
def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> None:
    write_private_file(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise KeyringError(f"{path} is missing (run 'matcher keys init' / 'keys issue')") from None


def _load_ca(keys_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(_read(keys_dir / "ca.pem"))
    key = serialization.load_pem_private_key(_read(keys_dir / "ca.key"), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyringError(f"{keys_dir / 'ca.key'} is not an EC private key")
    return cert, key


def _builder(
    subject: x509.Name, issuer: x509.Name, pub: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def create_ca(keys_dir: Path, *, name: str = "matcher development CA") -> None:
    """Create a development CA (``ca.pem``, ``ca.key``) in ``keys_dir``."""
    keys_dir = Path(keys_dir)
    if (keys_dir / "ca.key").exists():
        raise KeyringError(f"a CA already exists in {keys_dir}")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key.public_key(), 3650)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(keys_dir / "ca.key", key)
    (keys_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def issue_server_cert(
    keys_dir: Path, hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1")
) -> None:
    """Issue the service's TLS certificate (``server.pem``, ``server.key``) for ``hosts``."""
    keys_dir = Path(keys_dir)
    ca_cert, ca_key = _load_ca(keys_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "matcher service")])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), _DAYS)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(keys_dir / "server.key", key)
    (keys_dir / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _client_paths(keys_dir: Path, force: str, role: str) -> tuple[Path, Path]:
    base = Path(keys_dir) / "clients" / f"{force}-{role}"
    return base.with_suffix(".pem"), base.with_suffix(".key")


def issue_client_cert(keys_dir: Path, force: str, role: str, *, name: str = "") -> Path:
    """Issue a client certificate for one force and one role; return the ``.pem`` path.

    For a submitter, also create the force's batch-signing key (if it has none) and
    register its public key in ``force-keys/``.
    """
    keys_dir = Path(keys_dir)
    check_force_code(force)
    if role not in ROLES:
        raise InputError(f"role: must be one of {', '.join(ROLES)}", field="role")
    ca_cert, ca_key = _load_ca(keys_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, force),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, name or f"{force} {role}"),
        ]
    )
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), _DAYS)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem_path, key_path = _client_paths(keys_dir, force, role)
    _write_key(key_path, key)
    pem_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if role == "submitter" and not (keys_dir / "clients" / f"{force}-signing.key").exists():
        _create_signing_key(keys_dir, force)
    return pem_path


@lru_cache(maxsize=1024)
def identity_from_pem(pem: bytes) -> Identity:
    """The identity a client certificate carries; :class:`AuthError` if it has none."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise AuthError("client certificate: unreadable") from None
    forces = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    roles = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    # One force and one role per identity: a certificate naming two roles is refused.
    if len(forces) != 1 or len(roles) != 1:
        raise AuthError("client certificate: must name exactly one force (O) and one role (OU)")
    force, role = str(forces[0].value), str(roles[0].value)
    if role not in ROLES or not _FORCE_RE.match(force):
        raise AuthError("client certificate: unknown role or malformed force code")
    fp = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return Identity(force, role, str(names[0].value) if names else "", fp)


def load_server_tls(keys_dir: Path) -> TlsFiles:
    """The service's TLS material: the CA its clients must chain to, its cert and key."""
    keys_dir = Path(keys_dir)
    return TlsFiles(
        _read(keys_dir / "ca.pem"), _read(keys_dir / "server.pem"), _read(keys_dir / "server.key")
    )


def load_client_tls(keys_dir: Path, force: str, role: str) -> TlsFiles:
    """A client's TLS material as issued by :func:`issue_client_cert`."""
    pem, key = _client_paths(Path(keys_dir), force, role)
    return TlsFiles(_read(Path(keys_dir) / "ca.pem"), _read(pem), _read(key))


# -- Ed25519 keys ---------------------------------------------------------------------------
def _load_ed25519_private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(_read(path), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"{path} is not an Ed25519 private key")
    return key


def _public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _create_signing_key(keys_dir: Path, force: str) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    _write_key(keys_dir / "clients" / f"{force}-signing.key", key)
    (keys_dir / "force-keys").mkdir(parents=True, exist_ok=True)
    (keys_dir / "force-keys" / f"{force}.pub").write_bytes(_public_pem(key))
    return key


def load_signing_key(keys_dir: Path, force: str) -> Ed25519PrivateKey:
    """A force's batch-signing private key."""
    return _load_ed25519_private(Path(keys_dir) / "clients" / f"{force}-signing.key")


class ForceKeyRegistry:
    """The forces' registered batch-signing public keys (``force-keys/<FORCE>.pub``)."""

    def __init__(self, keys: dict[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    @classmethod
    def load(cls, keys_dir: Path) -> ForceKeyRegistry:
        keys: dict[str, Ed25519PublicKey] = {}
        for p in sorted((Path(keys_dir) / "force-keys").glob("*.pub")):
            key = serialization.load_pem_public_key(p.read_bytes())
            if isinstance(key, Ed25519PublicKey):
                keys[p.stem] = key
        return cls(keys)

    @property
    def forces(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, force: str, digest: bytes, signature: bytes) -> None:
        """Raise :class:`AuthError` unless ``signature`` is ``force``'s over ``digest``."""
        key = self._keys.get(force)
        if key is None:
            raise AuthError("signature: no batch-signing key is registered for the force")
        try:
            key.verify(signature, digest)
        except InvalidSignature:
            raise AuthError("signature: does not verify with the force's registered key") from None


# -- batch digests ------------------------------------------------------------------------
class BatchDigest:
    """SHA-256 digest of a batch, computed incrementally over its record chunks.

    The header fields are bound first; then each record column is hashed on its own, so
    the digest does not depend on how the records are split into chunks.
    """

    def __init__(
        self,
        batch_id: str,
        force: str,
        epoch: int,
        schema_fingerprint: str,
        filter_bits: int,
        record_count: int,
    ) -> None:
        header = {
            "batch_id": batch_id,
            "epoch": epoch,
            "filter_bits": filter_bits,
            "force": force,
            "record_count": record_count,
            "schema_fingerprint": schema_fingerprint,
        }
        self._header = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        self._cols = [hashlib.sha256() for _ in range(4)]

    def update(
        self, refs: Sequence[str], filters: bytes, token_counts: bytes, tokens: bytes
    ) -> None:
        """Add records: refs, filter bytes, ``<u4`` token counts and ``<u8`` tokens."""
        for h, part in zip(
            self._cols, ("".join(refs).encode(), filters, token_counts, tokens), strict=True
        ):
            h.update(part)

    def digest(self) -> bytes:
        out = hashlib.sha256(b"matcher/v1/batch-digest\n" + self._header + b"\n")
        for h in self._cols:
            out.update(h.digest())
        return out.digest()


def batch_digest(batch: EncodedBatch) -> bytes:
    """The digest a force signs for ``batch`` (see :class:`BatchDigest`)."""
    d = BatchDigest(
        batch.batch_id,
        batch.force,
        batch.epoch,
        batch.schema_fingerprint,
        batch.filter_bits,
        len(batch),
    )
    d.update(batch.record_refs, *pack_record_columns(batch))
    return d.digest()


def sign_batch(key: Ed25519PrivateKey, batch: EncodedBatch) -> bytes:
    """The force's Ed25519 signature over :func:`batch_digest`."""
    return key.sign(batch_digest(batch))
