"""validate_unique on SQLite and PostgreSQL, and ValidationService / its registration."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Integer, String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.validation import ValidationService, get_validation_service, validate_unique


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = f"val_accounts_{uuid.uuid4().hex[:8]}"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    username: Mapped[str] = mapped_column(String(50))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session on SQLite or PostgreSQL holding two accounts (table dropped afterwards)."""
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            session.add_all([Account(id=1, email="a@example.com", username="alice"), Account(id=2, email="b@example.com", username="bob")])
            await session.commit()
            yield session
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()


async def test_validate_unique(db: AsyncSession) -> None:
    """Taken values are not unique; free values are; exclude_id ignores the row itself."""
    assert await validate_unique(field="email", value="a@example.com", model=Account, db=db) is False
    assert await validate_unique(field="email", value="c@example.com", model=Account, db=db) is True
    assert await validate_unique("email", "a@example.com", Account, db, exclude_id=1) is True
    assert await validate_unique("email", "a@example.com", Account, db, exclude_id=2) is False
    assert await validate_unique("username", "x' OR '1'='1", Account, db) is True


async def test_validate_unique_rejects_unknown_columns(db: AsyncSession) -> None:
    """An unknown column or a non-model is a configuration error, not a silent True."""
    with pytest.raises(ConfigurationException):
        await validate_unique("password", "x", Account, db)
    with pytest.raises(ConfigurationException):
        await validate_unique("email", "x", dict, db)


async def test_service_validate_unique_uses_its_session(db: AsyncSession) -> None:
    """The service bound to a session checks uniqueness there; the registry builds one per session."""
    service = get_validation_service(db)
    assert await service.validate_unique("email", "b@example.com", Account) is False
    from_registry = get_service("validation_service", db=db)
    assert isinstance(from_registry, ValidationService) and from_registry.db is db
    assert await from_registry.validate_unique("email", "z@example.com", Account) is True


async def test_service_without_session_is_configuration_error() -> None:
    """validate_unique with no session anywhere raises ConfigurationException."""
    with pytest.raises(ConfigurationException):
        await ValidationService().validate_unique("email", "x", Account)


def test_service_exposes_every_validator() -> None:
    """The service answers like the module functions."""
    service: Any = get_service("validation_service")
    assert service.validate_email("user@example.com") and not service.validate_email("nope")
    assert service.validate_phone("+12125551234")
    assert service.validate_url("https://example.com")
    assert service.validate_password_strength("SecureP@ss123", min_length=10)
    assert service.validate_composite({"a": ""}, {"a": {"required": True}})[0] is False
    assert service.validate_range(5, 1, 10) and service.validate_length("ab", 1, 2)
    assert service.validate_uuid(str(uuid.uuid4())) and service.validate_credit_card("4111111111111111")
    assert service.validate_ip_address("10.0.0.1") and service.validate_required("x")
    assert service.validate_regex("ab", "a.") and service.validate_date("2023-01-01")
