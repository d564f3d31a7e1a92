"""RS256 against a JWKS file, as in production: keys picked by `kid`, two keys in the set
for a rotation, the file re-read when it changes, and no HS256 way around it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from services.cli.main import app
from services.common.config import Settings
from services.common.identity import Role
from services.common.tokens import token_service
from tests.support.pki import rsa_key, write_jwks, write_private_key
from tests.support.system import RunningSystem, running_system
from tests.support.tokens import call, claims, hs256


@dataclass
class Deployment:
    system: RunningSystem
    jwks: Path
    private_key: Path
    old: rsa.RSAPrivateKey
    new: rsa.RSAPrivateKey


@pytest.fixture(scope="module")
async def rs256(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[Deployment]:
    directory = tmp_path_factory.mktemp("jwks")
    old, new = rsa_key(), rsa_key()
    jwks = write_jwks(directory / "jwks.json", {"old": old, "new": new})
    private_key = write_private_key(new, directory / "signing.pem")
    async with running_system("sqlite", kafka_bootstrap, directory, jwt_jwks_file=jwks,
                              jwt_private_key_file=private_key, jwt_key_id="new") as system:
        yield Deployment(system, jwks, private_key, old, new)


def rs(body: dict[str, Any], key: rsa.RSAPrivateKey, kid: str | None) -> str:
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid} if kid else None)


async def test_tokens_from_either_key_of_the_set_are_accepted(rs256: Deployment) -> None:
    system = rs256.system
    # What `sitenet token` mints when the private key is configured: RS256, kid "new".
    minted = token_service(system.settings).issue(Role.ADMIN, subject="cli")
    assert jwt.get_unverified_header(minted) == {"alg": "RS256", "kid": "new", "typ": "JWT"}
    assert await call(system, minted) == grpc.StatusCode.OK
    assert await call(system, rs(claims(), rs256.old, "old")) == grpc.StatusCode.OK
    # An issuer that sets no kid: every key of the set is tried.
    assert await call(system, rs(claims(), rs256.old, None)) == grpc.StatusCode.OK


async def test_cli_token_command_mints_rs256(rs256: Deployment) -> None:
    settings = rs256.system.settings
    env = {"SITENET_DATA_DIR": str(settings.data_dir),
           "SITENET_JWT_JWKS_FILE": str(rs256.jwks),
           "SITENET_JWT_PRIVATE_KEY_FILE": str(rs256.private_key),
           "SITENET_JWT_KEY_ID": "new"}
    result = await asyncio.to_thread(CliRunner().invoke, app,
                                     ["token", "--role", "sponsor", "--org", "acme"], env=env)
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert await call(rs256.system, token) == grpc.StatusCode.OK


def hs256_with_public_key(body: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    """The algorithm-confusion attack: HMAC keyed with the (public) RSA key, built by hand
    because PyJWT refuses to make it."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = (f"{b64(json.dumps({'alg': 'HS256', 'kid': 'new'}).encode())}."
                     f"{b64(json.dumps(body).encode())}")
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.mark.parametrize("token", [
    pytest.param(lambda d: rs(claims(), rsa_key(), "new"), id="key-outside-the-set"),
    pytest.param(lambda d: rs(claims(), rsa_key(), None), id="key-outside-the-set-no-kid"),
    pytest.param(lambda d: rs(claims(), d.old, "new"), id="kid-of-another-key"),
    pytest.param(lambda d: rs(claims(exp=int(time.time()) - 120), d.new, "new"), id="expired"),
    pytest.param(lambda d: rs(claims(aud="elsewhere"), d.new, "new"), id="wrong-audience"),
    pytest.param(lambda d: d.system.token("admin"), id="hs256-with-the-local-key"),
    pytest.param(lambda d: hs256(claims()), id="hs256-by-hand"),
    pytest.param(lambda d: hs256_with_public_key(claims(), d.new), id="alg-confusion"),
])
async def test_anything_but_a_good_rs256_token_is_refused(rs256: Deployment,
                                                          token: Any) -> None:
    assert await call(rs256.system, token(rs256)) == grpc.StatusCode.UNAUTHENTICATED


async def test_a_signing_key_without_a_key_set_is_refused_at_start_up(tmp_path: Path) -> None:
    key = write_private_key(rsa_key(), tmp_path / "signing.pem")
    with pytest.raises(ValueError, match="JWKS"):
        token_service(Settings(data_dir=tmp_path, jwt_private_key_file=key))


async def test_retiring_a_key_in_the_jwks_file_takes_effect_without_a_restart(
        rs256: Deployment) -> None:
    # Last in the module: it changes the shared deployment's key set.
    system = rs256.system
    from_old = rs(claims(), rs256.old, "old")
    from_new = rs(claims(), rs256.new, "new")
    assert await call(system, from_old) == grpc.StatusCode.OK
    write_jwks(rs256.jwks, {"new": rs256.new})
    later = time.time() + 5  # a different mtime even on a coarse-grained filesystem
    os.utime(rs256.jwks, (later, later))
    assert await call(system, from_old) == grpc.StatusCode.UNAUTHENTICATED
    assert await call(system, from_new) == grpc.StatusCode.OK
    # A broken file (say, half written) keeps the last good keys rather than locking out.
    rs256.jwks.write_text("{not json")
    os.utime(rs256.jwks, (later + 5, later + 5))
    assert await call(system, from_new) == grpc.StatusCode.OK
