"""Fixtures of the security tests: every jwt implementation, cheap Argon2, a reset service."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
from argon2 import PasswordHasher

from crown_nexus import accel
from crown_nexus.core.security import configure_security
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.settings import Settings
from tests.conftest import implementations_of

SECRET = "test-secret-key-for-the-security-suite-0123456789"


@pytest.fixture(params=implementations_of("jwt"))
def jwt_impl(request: pytest.FixtureRequest) -> ModuleType:
    """Each available implementation of the jwt hot path (pure, native)."""
    return accel.available("jwt")[request.param]


@pytest.fixture(autouse=True)
def cheap_argon2() -> Iterator[PasswordHasher]:
    """Argon2id with tiny costs so the suite stays fast (the parameters are not under test)."""
    hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    previous = set_password_hasher(hasher)
    try:
        yield hasher
    finally:
        set_password_hasher(previous)


def make_settings(**overrides: object) -> Settings:
    """Settings for tests: a fixed secret key unless overridden."""
    values: dict[str, object] = {"secret_key": SECRET}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings() -> Settings:
    """Test settings with issuer and audience configured."""
    return make_settings(jwt_issuer="crown-nexus-tests", jwt_audience="crown-nexus-api")


@pytest.fixture
def configured(settings: Settings, jwt_impl: ModuleType) -> Iterator[Settings]:
    """The shared security service configured for ``settings`` and ``jwt_impl``; reset after."""
    configure_security(settings, jwt_impl=jwt_impl)
    try:
        yield settings
    finally:
        configure_security(None)
