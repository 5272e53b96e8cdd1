"""Linkage secrets: creation, loading and HKDF key derivation.

The linkage secret is shared by all forces and never held by the matching service. It has
an *epoch*; rotating it creates a new epoch, and encodings made under different epochs are
unrelated. Per-field and per-purpose keys are derived from it with HKDF-SHA256 (RFC 5869),
with the epoch, purpose and field bound into the ``info`` string.

>>> secret = LinkageSecret(epoch=1, secret=bytes(32))
>>> len(secret.derive("field", "surname"))
32
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from matcher.errors import EpochError, KeyringError

__all__ = [
    "LINKAGE_SECRET_PREFIX",
    "LinkageSecret",
    "create_linkage_secret",
    "load_linkage_secret",
    "write_private_file",
]

LINKAGE_SECRET_PREFIX = "linkage-secret"
_HKDF_SALT = b"matcher/v1/hkdf-salt"
# Only these hashes may be used for derivation; an allow-list keeps a schema or config
# from naming a weak one.
_ALLOWED_HASHES = {"sha256": hashes.SHA256, "sha512": hashes.SHA512}


@dataclass(frozen=True, repr=False)
class LinkageSecret:
    """A linkage secret and its epoch. ``repr`` never shows the secret."""

    epoch: int
    secret: bytes

    def __post_init__(self) -> None:
        if self.epoch < 1:
            raise KeyringError("linkage secret epoch must be >= 1")
        if len(self.secret) < 32:
            raise KeyringError("linkage secret must be at least 32 bytes")

    def __repr__(self) -> str:
        return f"LinkageSecret(epoch={self.epoch}, secret=<hidden>)"

    def derive(self, purpose: str, name: str, *, length: int = 32, hash: str = "sha256") -> bytes:
        """Derive a key for ``purpose`` (e.g. ``"field"``, ``"block"``) and ``name``."""
        if hash not in _ALLOWED_HASHES:
            raise KeyringError(f"hash {hash!r} is not allowed for key derivation")
        info = f"matcher/v1/epoch={self.epoch}/{purpose}/{name}".encode()
        return HKDF(
            algorithm=_ALLOWED_HASHES[hash](), length=length, salt=_HKDF_SALT, info=info
        ).derive(self.secret)


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable and writable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _secret_path(keys_dir: Path, epoch: int) -> Path:
    return keys_dir / f"{LINKAGE_SECRET_PREFIX}-{epoch}.json"


def create_linkage_secret(keys_dir: Path, *, epoch: int | None = None) -> LinkageSecret:
    """Create a new linkage secret in ``keys_dir`` (next epoch unless given); mode 0600."""
    keys_dir = Path(keys_dir)
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    if epoch is None:
        epoch = max(_epochs(keys_dir), default=0) + 1
    path = _secret_path(keys_dir, epoch)
    if path.exists():
        raise KeyringError(f"a linkage secret for epoch {epoch} already exists in {keys_dir}")
    ls = LinkageSecret(epoch=epoch, secret=secrets.token_bytes(32))
    write_private_file(path, json.dumps({"epoch": epoch, "secret": ls.secret.hex()}).encode())
    return ls


def _epochs(keys_dir: Path) -> list[int]:
    out = []
    for p in keys_dir.glob(f"{LINKAGE_SECRET_PREFIX}-*.json"):
        tail = p.stem[len(LINKAGE_SECRET_PREFIX) + 1 :]
        if tail.isdigit():
            out.append(int(tail))
    return sorted(out)


def load_linkage_secret(keys_dir: Path, epoch: int | None = None) -> LinkageSecret:
    """Load the linkage secret of ``epoch`` (default: the newest) from ``keys_dir``."""
    keys_dir = Path(keys_dir)
    if not keys_dir.is_dir():
        raise KeyringError(f"keys directory {keys_dir} does not exist (run 'matcher keys init')")
    epochs = _epochs(keys_dir)
    if not epochs:
        raise KeyringError(f"no linkage secret in {keys_dir} (run 'matcher keys init')")
    if epoch is None:
        epoch = epochs[-1]
    elif epoch not in epochs:
        raise EpochError(f"no linkage secret for epoch {epoch} in {keys_dir}")
    path = _secret_path(keys_dir, epoch)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyringError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        data = json.loads(path.read_text())
        return LinkageSecret(epoch=int(data["epoch"]), secret=bytes.fromhex(data["secret"]))
    except (ValueError, KeyError, TypeError):
        raise KeyringError(f"{path} is not a valid linkage secret file") from None
