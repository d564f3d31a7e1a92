"""Bearer tokens: JWTs signed with HS256 (local key) that carry a role and its scope."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import jwt

from services.common.errors import FieldViolation, InvalidArgument, Unauthenticated
from services.common.identity import Principal, Role

ALGORITHM = "HS256"
DEFAULT_TTL_S = 12 * 3600


class TokenService:
    def __init__(self, secret: str, issuer: str, audience: str) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience

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
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iss", "aud", "sub", "role"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid bearer token: {exc}") from exc
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
        return Principal(subject=str(claims["sub"]), role=role, org=org, sites=frozenset(sites))


def _default_subject(role: Role, org: str | None, sites: list[str]) -> str:
    if role is Role.SPONSOR:
        return f"sponsor@{org}"
    if role is Role.SITE:
        return f"site@{','.join(sites)}"
    return role.value
