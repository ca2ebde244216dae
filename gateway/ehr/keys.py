"""The proxy's secrets: one master secret, a derived key per use.

Every gateway instance must derive the same keys (a page token minted by one instance is
followed on another; a gateway id must stay the same across restarts). The instances
already share the EHR client's private key, so the master secret is derived from it;
without one (an open test upstream) a random secret is kept in the data directory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["InvalidToken", "Keys"]


def _master(private_key: Path | None, data_dir: Path) -> bytes:
    if private_key is not None:
        return private_key.read_bytes()
    path = data_dir / "ehr-proxy.secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
    return path.read_bytes()


class Keys:
    def __init__(self, master: bytes) -> None:
        self._master = master
        self._derived: dict[str, bytes] = {}

    @classmethod
    def load(cls, private_key: Path | None, data_dir: Path) -> Keys:
        return cls(_master(private_key, data_dir))

    def derive(self, purpose: str) -> bytes:
        if purpose not in self._derived:
            hkdf = HKDF(hashes.SHA256(), 32, salt=None, info=f"biobank-gateway/ehr/{purpose}".encode())
            self._derived[purpose] = hkdf.derive(self._master)
        return self._derived[purpose]

    def fernet(self, purpose: str) -> Fernet:
        """Encrypt-then-MAC tokens: opaque to clients and refused when altered."""
        return Fernet(base64.urlsafe_b64encode(self.derive(purpose)))

    def digest(self, purpose: str, text: str) -> str:
        """A keyed digest: stable, not reversible, and meaningless without the key (cache keys, gateway ids)."""
        mac = hmac.new(self.derive(purpose), text.encode(), hashlib.sha256).digest()
        return base64.b32encode(mac).decode().rstrip("=").lower()
