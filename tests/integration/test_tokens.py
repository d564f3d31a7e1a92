"""Hostile and stale bearer tokens, over gRPC against the running services: every one is
UNAUTHENTICATED, a good one passes, and an HS256 key can be rotated without downtime."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import jwt
import pytest

from services.common.keys import hmac_kid
from tests.support.system import TEST_SECRET, RunningSystem, running_system
from tests.support.tokens import call, claims, hs256, unsigned

OLD_SECRET = "the-key-before-the-rotation-0123456789-abcdefgh"
LEEWAY_S = 30


@pytest.fixture(scope="module")
async def plain(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[RunningSystem]:
    """Signs and accepts TEST_SECRET only: the state after a rotation has finished."""
    async with running_system("sqlite", kafka_bootstrap, tmp_path_factory.mktemp("tokens"),
                              jwt_leeway_s=LEEWAY_S) as system:
        yield system


async def test_a_good_token_is_accepted(plain: RunningSystem) -> None:
    # The control: without it every refusal below could be a broken system.
    assert await call(plain, hs256(claims())) == grpc.StatusCode.OK
    assert await call(plain, plain.token("sponsor", org="acme")) == grpc.StatusCode.OK


@pytest.mark.parametrize("token", [
    pytest.param(lambda: hs256(claims(exp=int(time.time()) - LEEWAY_S - 60)), id="expired"),
    pytest.param(lambda: hs256(claims(nbf=int(time.time()) + LEEWAY_S + 120)),
                 id="not-yet-valid"),
    pytest.param(lambda: hs256(claims(iat=int(time.time()) + LEEWAY_S + 120)),
                 id="issued-in-the-future"),
    pytest.param(lambda: hs256(claims(exp=None)), id="no-expiry"),
    pytest.param(lambda: hs256(claims(aud="another-system")), id="wrong-audience"),
    pytest.param(lambda: hs256(claims(aud=None)), id="no-audience"),
    pytest.param(lambda: hs256(claims(iss="someone-else")), id="wrong-issuer"),
    pytest.param(lambda: hs256(claims(role=None)), id="no-role"),
    pytest.param(lambda: hs256(claims(role="superuser")), id="unknown-role"),
    pytest.param(lambda: hs256(claims(role=["admin"])), id="role-not-a-string"),
    pytest.param(lambda: hs256(claims(role="sponsor")), id="sponsor-without-org"),
    pytest.param(lambda: hs256(claims(role="site", sites="snuh")), id="sites-not-a-list"),
    pytest.param(lambda: unsigned(claims()), id="alg-none"),
    pytest.param(lambda: hs256(claims(), secret="an-attacker-key-0123456789-0123456789"),
                 id="another-key"),
    pytest.param(lambda: hs256(claims(), secret=OLD_SECRET), id="retired-key"),
    pytest.param(lambda: hs256(claims(), secret=OLD_SECRET, kid=hmac_kid(TEST_SECRET)),
                 id="another-key-claiming-our-kid"),
    pytest.param(lambda: hs256(claims())[:-4] + "AAAA", id="tampered-signature"),
    pytest.param(lambda: "not-a-jwt", id="garbage"),
])
async def test_hostile_or_stale_token_is_unauthenticated(plain: RunningSystem,
                                                         token: Any) -> None:
    assert await call(plain, token()) == grpc.StatusCode.UNAUTHENTICATED


async def test_clock_skew_within_the_leeway_is_tolerated(plain: RunningSystem) -> None:
    now = int(time.time())
    just_expired = hs256(claims(exp=now - LEEWAY_S // 3))
    almost_valid = hs256(claims(nbf=now + LEEWAY_S // 3, iat=now + LEEWAY_S // 3))
    assert await call(plain, just_expired) == grpc.StatusCode.OK
    assert await call(plain, almost_valid) == grpc.StatusCode.OK


async def test_hs256_rotation_accepts_old_and_new_keys_until_the_old_one_is_removed(
        plain: RunningSystem, kafka_bootstrap: str,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from_old_key = hs256(claims(), secret=OLD_SECRET, kid=hmac_kid(OLD_SECRET))
    legacy_without_kid = hs256(claims(), secret=OLD_SECRET)
    # During the rotation: signing with the new key, the old one still accepted.
    async with running_system("sqlite", kafka_bootstrap, tmp_path_factory.mktemp("rotation"),
                              jwt_previous_secrets=f" {OLD_SECRET} ,") as rotating:
        from_new_key = rotating.token("admin")
        assert jwt.get_unverified_header(from_new_key)["kid"] == hmac_kid(TEST_SECRET)
        assert await call(rotating, from_new_key) == grpc.StatusCode.OK
        assert await call(rotating, from_old_key) == grpc.StatusCode.OK
        assert await call(rotating, legacy_without_kid) == grpc.StatusCode.OK
        # A key nobody configured is still refused mid-rotation.
        stranger = hs256(claims(), secret="an-attacker-key-0123456789-0123456789")
        assert await call(rotating, stranger) == grpc.StatusCode.UNAUTHENTICATED
    # After it: the old key is gone from the settings, its tokens with it.
    assert await call(plain, from_new_key) == grpc.StatusCode.OK
    assert await call(plain, from_old_key) == grpc.StatusCode.UNAUTHENTICATED
    assert await call(plain, legacy_without_kid) == grpc.StatusCode.UNAUTHENTICATED
