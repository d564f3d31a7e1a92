"""Bearer tokens: JWTs that carry a role and its scope, signed with HS256 (local key,
the default) or RS256 (keys in a JWKS file). Every check of a token is here."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from services.common.config import Settings
from services.common.errors import FieldViolation, InvalidArgument, Unauthenticated
from services.common.identity import Principal, Role
from services.common.keys import HS256, RS256, JwksFile, KeySet, SigningKey, load_private_key

ALGORITHM = HS256
DEFAULT_TTL_S = 12 * 3600
# Verified tokens remembered per process: a client sends the same token on every call, and
# checking its signature again cost a seventh of the tracker's CPU under load.
VERIFIED_CACHE_SIZE = 4096


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    not_before: float
    expires: float
    generation: object  # of the key set that accepted it


class TokenService:
    def __init__(self, keys: str | KeySet, issuer: str, audience: str, *,
                 leeway_s: float = 0.0) -> None:
        # A plain string is one HS256 key: the local default and the tests' shorthand.
        self._keys = KeySet.hmac(keys) if isinstance(keys, str) else keys
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        self._verified: dict[str, _Verified] = {}

    def issue(
        self,
        role: Role,
        *,
        subject: str | None = None,
        org: str | None = None,
        sites: Iterable[str] = (),
        ttl_s: int = DEFAULT_TTL_S,
    ) -> str:
        sites = sorted(set(sites))
        if role is Role.SPONSOR and not org:
            raise InvalidArgument([FieldViolation("org", "a sponsor token needs an organisation")])
        if role is Role.SITE and not sites:
            raise InvalidArgument([FieldViolation("site", "a site token needs at least one site")])
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject or _default_subject(role, org, sites),
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "role": role.value,
        }
        if org:
            claims["org"] = org
        if sites:
            claims["sites"] = sites
        signing = self._keys.signing
        if signing is None:
            raise InvalidArgument([FieldViolation(
                "key", "no signing key: set SITENET_JWT_PRIVATE_KEY_FILE to mint RS256 tokens")])
        headers = {"kid": signing.kid} if signing.kid else None
        return jwt.encode(claims, signing.key, algorithm=signing.algorithm, headers=headers)

    def verify(self, token: str) -> Principal:
        now = time.time()
        generation = self._keys.generation()
        known = self._verified.get(token)
        if known is not None and known.generation == generation and (
                known.not_before - self._leeway_s <= now < known.expires + self._leeway_s):
            return known.principal
        principal, claims = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = _Verified(principal, float(claims.get("nbf", 0)),
                                          float(claims["exp"]), generation)
        return principal

    def _verify(self, token: str) -> tuple[Principal, dict[str, Any]]:
        claims = self._verified_claims(token)
        try:
            role = Role(claims["role"])
        except ValueError as exc:
            raise Unauthenticated(f"unknown role {claims['role']!r}") from exc
        sites = claims.get("sites") or []
        if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
            raise Unauthenticated("claim 'sites' must be a list of site ids")
        org = claims.get("org")
        if role is Role.SPONSOR and not org:
            raise Unauthenticated("sponsor token without an organisation")
        return (Principal(subject=str(claims["sub"]), role=role, org=org, sites=frozenset(sites)),
                claims)

    def _verified_claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid bearer token: {exc}") from exc
        algorithm, kid = header.get("alg"), header.get("kid")
        # The algorithm is ours to choose, never the token's: "none", or HS256 against
        # an RSA public key, gets no further than this.
        if not isinstance(algorithm, str) or algorithm not in self._keys.algorithms:
            raise Unauthenticated(f"token algorithm {algorithm!r} is not accepted")
        keys = self._keys.keys_for(algorithm, kid if isinstance(kid, str) else None)
        failure: jwt.PyJWTError = jwt.InvalidSignatureError("no key to verify it with")
        for key in keys:
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=self._leeway_s,
                    options={"require": ["exp", "iss", "aud", "sub", "role"]},
                )
            except jwt.InvalidSignatureError as exc:
                failure = exc  # another key of the set may have signed it
            except jwt.PyJWTError as exc:
                raise Unauthenticated(f"invalid bearer token: {exc}") from exc
        raise Unauthenticated(f"invalid bearer token: {failure}")


def token_service(settings: Settings) -> TokenService:
    """The one way a process gets its tokens: services verify with it, the CLI signs."""
    if settings.jwt_jwks_file is not None:
        signing = None
        if settings.jwt_private_key_file is not None:
            signing = SigningKey(RS256, load_private_key(settings.jwt_private_key_file),
                                 settings.jwt_key_id)
        keys = KeySet(signing, jwks=JwksFile(settings.jwt_jwks_file))
    else:
        if settings.jwt_private_key_file is not None:
            # Minting RS256 tokens that nothing here would accept is a mistake, not a choice.
            raise ValueError("SITENET_JWT_PRIVATE_KEY_FILE needs SITENET_JWT_JWKS_FILE")
        previous = [s.strip() for s in settings.jwt_previous_secrets.split(",") if s.strip()]
        keys = KeySet.hmac(settings.signing_secret(), previous)
    return TokenService(keys, settings.jwt_issuer, settings.jwt_audience,
                        leeway_s=settings.jwt_leeway_s)


def _default_subject(role: Role, org: str | None, sites: list[str]) -> str:
    if role is Role.SPONSOR:
        return f"sponsor@{org}"
    if role is Role.SITE:
        return f"site@{','.join(sites)}"
    return role.value
