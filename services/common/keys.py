"""The keys tokens are signed and verified with: HS256 secrets (the local default, several
during a rotation) or RS256 public keys from a JWKS file (production), chosen by `kid`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

log = structlog.get_logger(__name__)

HS256 = "HS256"
RS256 = "RS256"


@dataclass(frozen=True)
class SigningKey:
    algorithm: str
    key: Any  # the HS256 secret (str) or an RSAPrivateKey
    kid: str | None


def hmac_kid(secret: str) -> str:
    """A fingerprint of the secret, not the secret: lets a verifier holding several
    secrets during a rotation pick the one a token was signed with."""
    return "hs-" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def load_private_key(path: Path) -> RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"{path}: an RSA private key is needed for RS256")
    return key


class JwksFile:
    """RS256 public keys from a JSON Web Key Set on disk, read again when the file changes
    so a key can be added or retired without a restart."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp = self._stat()
        self._keys = self._load()  # at start-up a bad file is an error, not a warning

    def _stat(self) -> tuple[int, int]:
        stat = self._path.stat()
        return stat.st_mtime_ns, stat.st_size

    def _load(self) -> list[tuple[str | None, Any]]:
        data = json.loads(self._path.read_text())
        keys: list[tuple[str | None, Any]] = []
        for entry in data.get("keys", []) if isinstance(data, dict) else []:
            # Only RSA signing keys: an "oct" entry would let the file smuggle in an HMAC
            # secret, and an encryption key is not for verifying tokens.
            if not isinstance(entry, dict) or entry.get("kty") != "RSA":
                continue
            if entry.get("use", "sig") != "sig" or entry.get("alg", RS256) != RS256:
                continue
            jwk = jwt.PyJWK.from_dict(entry, algorithm=RS256)
            keys.append((jwk.key_id, jwk.key))
        if not keys:
            raise ValueError(f"{self._path}: no RSA signing keys in the JWKS")
        return keys

    def _refresh(self) -> None:
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return
            keys = self._load()
        except (OSError, ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
            # Mid-write or broken: keep serving with the keys we have.
            log.warning("JWKS not reloaded; keeping the previous keys", path=str(self._path),
                        error=str(exc))
            return
        self._stamp, self._keys = stamp, keys
        log.info("JWKS reloaded", path=str(self._path), keys=len(keys))

    def generation(self) -> tuple[int, int]:
        """Changes whenever the keys do (read again first if the file has changed)."""
        self._refresh()
        return self._stamp

    def keys_for(self, kid: str | None) -> list[Any]:
        self._refresh()
        chosen = [key for key_id, key in self._keys if kid is not None and key_id == kid]
        return chosen or [key for _, key in self._keys]


class KeySet:
    """What one process signs with and what it accepts. With a JWKS only RS256 is
    accepted: in production a key lying in a data directory must not be a way in."""

    def __init__(self, signing: SigningKey | None, *, hmac_secrets: Sequence[str] = (),
                 jwks: JwksFile | None = None) -> None:
        self.signing = signing
        self._hmac = {hmac_kid(s): s for s in hmac_secrets if s}
        self._jwks = jwks
        self.algorithms = [RS256] if jwks is not None else [HS256]

    @classmethod
    def hmac(cls, secret: str, previous: Sequence[str] = ()) -> KeySet:
        """Sign with `secret`; accept it and the `previous` ones (a rotation in progress)."""
        return cls(SigningKey(HS256, secret, hmac_kid(secret)), hmac_secrets=[secret, *previous])

    def generation(self) -> object:
        """Equal while the accepted keys are the same: HMAC secrets are fixed for the
        life of the process, a JWKS file may change under it."""
        return self._jwks.generation() if self._jwks is not None else None

    def keys_for(self, algorithm: str, kid: str | None) -> list[Any]:
        """The keys to try for a token: the one its `kid` names, else every candidate
        (tokens minted before key ids, or by an issuer that sets none)."""
        if algorithm not in self.algorithms:
            return []
        if algorithm == RS256 and self._jwks is not None:
            return self._jwks.keys_for(kid)
        if kid is not None and kid in self._hmac:
            return [self._hmac[kid]]
        return list(self._hmac.values())
