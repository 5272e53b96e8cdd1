"""The service's Ed25519 audit signing key, kept in the keyring folder.

``audit-signing-key.pem`` holds the private key (PKCS#8, unencrypted, mode 0600) that the
service signs checkpoints with; ``audit-signing-key.pub.pem`` the public key
(SubjectPublicKeyInfo) that auditors verify with.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     private = create_audit_key(Path(d))
...     key_id(load_audit_public_key(Path(d))) == key_id(private.public_key())
True
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from matcher.errors import KeyringError
from matcher.keys import write_private_file

__all__ = [
    "AUDIT_PRIVATE_KEY_FILE",
    "AUDIT_PUBLIC_KEY_FILE",
    "create_audit_key",
    "key_id",
    "load_audit_private_key",
    "load_audit_public_key",
]

AUDIT_PRIVATE_KEY_FILE: Final = "audit-signing-key.pem"
AUDIT_PUBLIC_KEY_FILE: Final = "audit-signing-key.pub.pem"


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw 32-byte public key: names the key in each checkpoint."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def create_audit_key(keys_dir: Path) -> Ed25519PrivateKey:
    """Create the audit signing key pair in ``keys_dir``; refuses to overwrite one."""
    keys_dir = Path(keys_dir)
    keys_dir.mkdir(parents=True, exist_ok=True)
    private_path = keys_dir / AUDIT_PRIVATE_KEY_FILE
    public_path = keys_dir / AUDIT_PUBLIC_KEY_FILE
    if private_path.exists() or public_path.exists():
        raise KeyringError(f"an audit signing key already exists in {keys_dir}")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_file(private_path, pem)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tmp = public_path.with_name(public_path.name + ".tmp")
    tmp.write_bytes(public_pem)
    os.replace(tmp, public_path)
    return private


def load_audit_private_key(keys_dir: Path) -> Ed25519PrivateKey:
    """Load the audit signing key; it must exist and be readable by its owner only."""
    path = Path(keys_dir) / AUDIT_PRIVATE_KEY_FILE
    if not path.is_file():
        raise KeyringError(f"no audit signing key {path} (run 'matcher keys init')")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyringError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise KeyringError(f"{path} is not a valid PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"{path} is not an Ed25519 key")
    return key


def load_audit_public_key(keys_dir: Path) -> Ed25519PublicKey:
    """Load the audit public key that checkpoints are verified with.

    ``keys_dir`` may also be the path of the ``.pub.pem`` file itself.
    """
    path = Path(keys_dir)
    if path.is_dir():
        path = path / AUDIT_PUBLIC_KEY_FILE
    if not path.is_file():
        raise KeyringError(f"no audit public key {path}")
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError):
        raise KeyringError(f"{path} is not a valid PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyringError(f"{path} is not an Ed25519 key")
    return key
