"""Security review, finding 5: the published default secret signed valid tokens.

With ``ENVIRONMENT`` unset (what ``nox -s serve`` runs), a token signed with the default secret
from the source was accepted as an admin. Without a configured secret the process now uses a
random key of its own (and warns); production refuses to start.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import jwt as pyjwt
import pytest
from pydantic import ValidationError

from crown_nexus.core.security import configure_security
from crown_nexus.demo.app import create_app
from crown_nexus.settings import DEFAULT_SECRET_KEY, Settings
from crown_nexus.testing import app_client


@pytest.fixture(autouse=True)
def _no_configured_secret(monkeypatch: pytest.MonkeyPatch) -> Any:
    """No secret and no environment in the process environment, as a fresh checkout has."""
    for name in ("CROWN_NEXUS_SECRET_KEY", "ENVIRONMENT", "CROWN_NEXUS_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    yield
    configure_security(None)


def _forged(secret: str) -> str:
    now = int(time.time())
    claims = {"sub": "attacker", "type": "access", "iat": now, "nbf": now, "exp": now + 600,
              "jti": uuid.uuid4().hex, "role": "admin", "permissions": ["system:admin"],
              "iss": "crown-nexus", "aud": "crown-nexus"}
    return pyjwt.encode(claims, secret, algorithm="HS256")


@pytest.mark.parametrize("secret", [None, DEFAULT_SECRET_KEY])
async def test_default_secret_signs_nothing(tmp_path: Any, secret: str | None) -> None:
    """A token signed with the published default is refused by a development app."""
    extra = {} if secret is None else {"secret_key": secret}
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db", **extra)
    assert settings.secret_key_is_generated
    assert settings.secret_key.get_secret_value() != DEFAULT_SECRET_KEY
    async with app_client(create_app(settings)) as client:
        for path in ("/users/me", "/permissions/roles"):
            resp = await client.get(path, headers={"Authorization": f"Bearer {_forged(DEFAULT_SECRET_KEY)}"})
            assert resp.status_code == 401, (path, resp.text)


def test_generated_secret_is_random_per_process_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    """The generated key is long and random, the same within one process, and never the default."""
    with caplog.at_level(logging.WARNING, logger="crown_nexus.settings"):
        a, b = Settings(), Settings()
    key = a.secret_key.get_secret_value()
    assert len(key) >= 48 and key == b.secret_key.get_secret_value()
    assert Settings(secret_key="s" * 40).secret_key.get_secret_value() == "s" * 40
    assert not Settings(secret_key="s" * 40).secret_key_is_generated


@pytest.mark.parametrize("secret", [None, DEFAULT_SECRET_KEY, "short"])
def test_production_refuses_without_a_real_secret(secret: str | None) -> None:
    """Production never starts on a missing, published or short secret."""
    extra = {} if secret is None else {"secret_key": secret}
    with pytest.raises(ValidationError, match="CROWN_NEXUS_SECRET_KEY"):
        Settings(ENVIRONMENT="production", **extra)


def test_redis_uri_puts_the_cache_on_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §8: REDIS_URI alone moves the cache to Redis; an explicit backend still wins."""
    monkeypatch.delenv("CACHE_DEFAULT_BACKEND", raising=False)
    assert Settings(REDIS_URI="redis://127.0.0.1:6379/0").CACHE_DEFAULT_BACKEND == "redis"
    assert Settings().CACHE_DEFAULT_BACKEND == "memory"
    explicit = Settings(REDIS_URI="redis://127.0.0.1:6379/0", CACHE_DEFAULT_BACKEND="memory")
    assert explicit.CACHE_DEFAULT_BACKEND == "memory"
    monkeypatch.setenv("REDIS_URI", "redis://127.0.0.1:6379/0")
    assert Settings().CACHE_DEFAULT_BACKEND == "redis"
