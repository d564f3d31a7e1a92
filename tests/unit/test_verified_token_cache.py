"""A verified token is remembered, but never past its expiry nor past its key."""

from __future__ import annotations

import time

import pytest

from services.common.errors import Unauthenticated
from services.common.identity import Role
from services.common.keys import KeySet
from services.common.tokens import TokenService

SECRET = "a-secret-for-the-token-cache-test-0123456789"


def test_a_remembered_token_still_expires() -> None:
    service = TokenService(SECRET, "sitenet", "sitenet")
    token = service.issue(Role.OPS, ttl_s=1)
    assert service.verify(token).role is Role.OPS
    assert service.verify(token).role is Role.OPS  # from the cache
    time.sleep(1.1)
    with pytest.raises(Unauthenticated, match="expired"):
        service.verify(token)


def test_a_token_of_a_key_no_longer_accepted_is_refused() -> None:
    class RotatingKeys(KeySet):
        def __init__(self) -> None:
            super().__init__(None, hmac_secrets=[SECRET])
            self.version = 1

        def generation(self) -> object:
            return self.version

    keys = RotatingKeys()
    service = TokenService(keys, "sitenet", "sitenet")
    token = TokenService(SECRET, "sitenet", "sitenet").issue(Role.OPS)
    assert service.verify(token).role is Role.OPS
    keys._hmac.clear()  # the key retired...
    assert service.verify(token).role is Role.OPS  # ...unseen while the generation stands
    keys.version = 2
    with pytest.raises(Unauthenticated):
        service.verify(token)
