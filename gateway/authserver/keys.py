"""The gateway's own signing keys: PEM files in `<data_dir>/auth-keys/`, generated on first run.

Every `signing-*.pem` file is a key that verifies; the last one by name signs. Rotation
adds a newer file (`KeyRing.rotate`); tokens signed with older keys keep verifying until
their file is removed. Each key's `kid` is its RFC 7638 thumbprint, so the same key has
the same kid on every instance. Several processes sharing a data_dir converge on one
first key (created with an exclusive link), and a kid a process does not know yet (another
one rotated) makes it read the directory again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.access.tokens import thumbprint

ALGORITHM = "RS384"
_RELOAD_INTERVAL = 5.0


def _write_exclusive(path: Path, data: bytes) -> None:
    """Write `path` atomically and only if it does not exist (a concurrent writer wins silently)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def _new_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class KeyRing:
    """The signing key and every key that still verifies; a `KeySource` for the token verifier."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._public: dict[str, jwt.PyJWK] = {}
        self._jwks: list[dict[str, Any]] = []
        self._signing: tuple[str, Any] | None = None
        self._loaded_at = 0.0

    @classmethod
    def open(cls, data_dir: Path) -> KeyRing:
        ring = cls(data_dir / "auth-keys")
        ring.directory.mkdir(parents=True, exist_ok=True)
        if not any(ring.directory.glob("signing-*.pem")):
            _write_exclusive(ring.directory / "signing-0000000000000000000.pem", _new_pem())
        ring.load()
        return ring

    def load(self) -> None:
        public: dict[str, jwt.PyJWK] = {}
        jwks: list[dict[str, Any]] = []
        signing = None
        for path in sorted(self.directory.glob("signing-*.pem")):
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
            jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
            kid = thumbprint(jwk)
            jwk.update(kid=kid, use="sig", alg=ALGORITHM)
            public[kid] = jwt.PyJWK(jwk)
            jwks.append(jwk)
            signing = (kid, private)
        if signing is None:
            raise RuntimeError(f"no signing key in {self.directory}")
        self._public, self._jwks, self._signing = public, jwks, signing
        self._loaded_at = time.monotonic()

    def rotate(self) -> str:
        """Make a new signing key; older ones keep verifying until their files are deleted."""
        _write_exclusive(self.directory / f"signing-{time.time_ns():019d}.pem", _new_pem())
        self.load()
        return self.kid

    @property
    def kid(self) -> str:
        assert self._signing is not None
        return self._signing[0]

    def sign(self, claims: dict[str, Any]) -> str:
        assert self._signing is not None
        kid, private = self._signing
        return jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"})

    def jwks(self) -> dict[str, Any]:
        return {"keys": list(self._jwks)}

    async def keys(self, kid: str | None) -> list[jwt.PyJWK]:
        if kid is not None and kid not in self._public and time.monotonic() - self._loaded_at > _RELOAD_INTERVAL:
            self.load()
        if kid is None:
            return list(self._public.values())
        return [self._public[kid]] if kid in self._public else []
