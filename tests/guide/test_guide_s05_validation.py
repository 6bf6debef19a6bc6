"""Guide §5 (Validation System), every example run as written with the user's objects supplied."""
# ruff: noqa: I001, E402, F811, E712, UP006, UP035 - the guide's blocks are copied verbatim

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Dict

import pytest
from fastapi import APIRouter, Depends
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus.core.exceptions import ValidationException
from crown_nexus.testing import app_client
from tests.guide._blocks import guide_block
from tests.guide._support import assert_error_body, data_of, guide_app, sqlite_database

# run from the guide (on valid and on invalid data): 'Pydantic Model Validation'
PYDANTIC_VALIDATION = "user = validate_data(user_data, UserCreate)"

# --- the user's own objects -------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class User(Base):
    """The user's User table."""

    __tablename__ = "guide_s05_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(200))


SESSIONS: dict[str, Any] = {}


async def get_db() -> AsyncIterator[Any]:
    """The user's ``get_db`` dependency: a session on the test database."""
    async with SESSIONS["factory"]() as session:
        yield session


router = APIRouter()

# --- guide §5 "Basic Validations" -------------------------------------------------------------


def test_basic_validations() -> None:
    """§5 Basic Validations: every call returns True for the guide's values."""
    from crown_nexus.core.validation import (
        validate_email,
        validate_phone,
        validate_date,
        validate_length,
        validate_range,
        validate_regex,
        validate_required,
        validate_url,
        validate_uuid,
        validate_credit_card,
        validate_ip_address,
        validate_password_strength,
        validate_enum
    )

    # Simple validation functions return boolean results
    is_valid_email = validate_email("user@example.com")
    is_valid_phone = validate_phone("+12125551234")
    is_valid_url = validate_url("https://example.com")
    is_complex_password = validate_password_strength(
        "SecureP@ss123",
        min_length=10,
        require_lowercase=True,
        require_uppercase=True,
        require_digit=True,
        require_special=True
    )

    # Date validation with range constraints
    from datetime import date
    is_valid_date = validate_date(
        "2023-05-15",
        min_date=date(2023, 1, 1),
        max_date=date(2023, 12, 31),
        format_str="%Y-%m-%d"
    )

    # Enum validation
    from enum import Enum
    class UserRole(Enum):
        ADMIN = "admin"
        USER = "user"
        GUEST = "guest"

    is_valid_role = validate_enum("admin", UserRole)

    assert [is_valid_email, is_valid_phone, is_valid_url, is_complex_password, is_valid_date, is_valid_role] == [True] * 6
    assert validate_enum("root", UserRole) is False
    assert validate_length("abc", min_length=1, max_length=3) and validate_range(5, min_value=1, max_value=9)
    assert validate_regex("ab1", r"[a-z]+\d") and validate_required("x") and validate_uuid("12345678-1234-5678-1234-567812345678")
    assert validate_credit_card("4111111111111111") and validate_ip_address("10.0.0.1")


# --- guide §5 "Pydantic Model Validation" -----------------------------------------------------


def test_pydantic_model_validation(capsys: pytest.CaptureFixture[str]) -> None:
    """§5 Pydantic Model Validation: valid data prints the user; invalid data prints the errors."""
    block = guide_block(5, PYDANTIC_VALIDATION)
    ns = block.run(ValidationException=ValidationException)
    user, validate_model = ns["user"], ns["validate_model"]

    assert capsys.readouterr().out == "Valid user: johndoe, john@example.com\n"
    assert validate_model(user) == user

    # the same block on the user's invalid data
    valid_data = """{
        "username": "johndoe",
        "email": "john@example.com",
        "password": "Secret123",
        "age": 25
    }"""
    invalid_data = '{"username": "jd", "email": "nope", "password": "short", "age": 12}'
    block.adapted(valid_data, invalid_data).run(ValidationException=ValidationException)

    out = capsys.readouterr().out
    assert out.startswith("Validation failed: [") and all(f in out for f in ("'username'", "'email'", "'password'", "'age'"))


# --- guide §5 "Database Validations" ----------------------------------------------------------

from crown_nexus.core.validation import validate_unique
from sqlalchemy.ext.asyncio import AsyncSession

# Check if a value is unique in the database
async def create_user(db: AsyncSession, username: str, email: str):
    # Check username uniqueness
    is_username_unique = await validate_unique(
        field="username",
        value=username,
        model=User,
        db=db
    )

    if not is_username_unique:
        raise ValidationException(
            "Validation failed",
            errors=[{
                "loc": ["username"],
                "msg": f"Username '{username}' is already taken",
                "type": "unique_error"
            }]
        )

    # Check email uniqueness
    is_email_unique = await validate_unique(
        field="email",
        value=email,
        model=User,
        db=db
    )

    if not is_email_unique:
        raise ValidationException(
            "Validation failed",
            errors=[{
                "loc": ["email"],
                "msg": f"Email '{email}' is already registered",
                "type": "unique_error"
            }]
        )

    # Proceed with creation
    # ...


create_user_with_checks = create_user


@pytest.fixture
async def db(tmp_path) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A SQLite database with the user's table holding alice."""
    alice = User(id=1, username="alice", email="alice@example.com")
    async with sqlite_database(Base, alice, path=tmp_path / "s05.db") as sessions:
        SESSIONS["factory"] = sessions
        async with sessions() as session:
            yield session


async def test_database_validations(db: Any) -> None:
    """§5 Database Validations: a taken username or email raises the guide's ValidationException."""
    assert await create_user_with_checks(db, "bob", "bob@example.com") is None
    with pytest.raises(ValidationException) as taken:
        await create_user_with_checks(db, "alice", "new@example.com")
    assert taken.value.errors == [{"loc": ["username"], "msg": "Username 'alice' is already taken", "type": "unique_error"}]
    with pytest.raises(ValidationException) as registered:
        await create_user_with_checks(db, "carol", "alice@example.com")
    assert registered.value.errors[0]["loc"] == ["email"]


# --- guide §5 "Composite Validation" ----------------------------------------------------------


def test_composite_validation(capsys: pytest.CaptureFixture[str]) -> None:
    """§5 Composite Validation: the guide's data is valid; broken data prints one line per error."""
    from crown_nexus.core.validation import validate_composite

    # Define validation rules for multiple fields
    validation_rules = {
        "username": {
            "required": True,
            "length": {"min_length": 3, "max_length": 50}
        },
        "email": {
            "required": True,
            "email": True
        },
        "password": {
            "required": True,
            "password": {
                "min_length": 8,
                "require_uppercase": True,
                "require_digit": True
            }
        },
        "age": {
            "required": True,
            "range": {"min_value": 18}
        }
    }

    # Validate data against the rules
    user_data = {
        "username": "johndoe",
        "email": "john@example.com",
        "password": "Secret123",
        "age": 25
    }

    is_valid, errors = validate_composite(user_data, validation_rules)

    if not is_valid:
        for error in errors:
            print(f"Field: {error['loc'][0]}, Error: {error['msg']}")

    # the guide's rule lists min_length, uppercase and digit only: "Secret123" meets all three
    assert (is_valid, errors) == (True, [])
    assert capsys.readouterr().out == ""

    # what the rule does list is still checked
    for weak in ("secret123", "SecretPwd", "Sec123"):
        user_data["password"] = weak
        assert validate_composite(user_data, validation_rules)[1] == [
            {"loc": ["password"], "msg": "Password does not meet the strength requirements", "type": "value_error.password"}
        ]
    is_valid, errors = validate_composite({"username": "jd", "age": 12}, validation_rules)
    assert not is_valid and [e["loc"][0] for e in errors] == ["username", "email", "password", "age"]


# --- guide §5 "Using the Validation Service" --------------------------------------------------

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.validation import get_validation_service

# In FastAPI endpoints
@router.post("/users")
async def create_user(
    user_data: Dict[str, Any],
    db: AsyncSession = Depends(get_db)
):
    # Get validation service with database session
    validation_service = get_validation_service(db)

    # Validate email
    if not validation_service.validate_email(user_data.get("email", "")):
        raise ValidationException(
            "Validation failed",
            errors=[{
                "loc": ["email"],
                "msg": "Invalid email format",
                "type": "value_error.email"
            }]
        )

    # Check uniqueness
    is_email_unique = await validation_service.validate_unique(
        "email", user_data["email"], User
    )

    if not is_email_unique:
        raise ValidationException(
            "Validation failed",
            errors=[{
                "loc": ["email"],
                "msg": "Email already registered",
                "type": "unique_error"
            }]
        )

    # Create user
    # ...


async def test_validation_service_endpoint(db: Any) -> None:
    """§5 Using the Validation Service: bad and taken emails answer 422 SPEC §3 bodies; a new one passes."""
    app = guide_app(router)
    async with app_client(app) as client:
        ok = await client.post("/users", json={"email": "new@example.com"})
        bad = await client.post("/users", json={"email": "not-an-email"})
        taken = await client.post("/users", json={"email": "alice@example.com"})
    assert ok.status_code == 200 and data_of(ok.json()) is None
    assert bad.status_code == 422
    assert_error_body(bad.json(), "VALIDATION_ERROR", "Validation failed")
    assert bad.json()["details"] == [{"loc": ["email"], "msg": "Invalid email format", "type": "value_error.email"}]
    assert taken.status_code == 422 and taken.json()["details"][0]["type"] == "unique_error"

    # Or through dependency manager
    validation_service = get_service("validation_service", db=db)
    assert validation_service.db is db
    assert await validation_service.validate_unique("email", "alice@example.com", User) is False


# --- guide §14 "Validation in Services" -------------------------------------------------------

from pydantic import BaseModel
from crown_nexus.logging import get_logger


class UserCreateSchema(BaseModel):
    """The user's creation schema."""

    username: str
    email: str


class UserService:
    def __init__(self, db):
        self.db = db
        self.validation_service = get_service("validation_service", db=db)
        self.logger = get_logger("app.domains.users.service")

    async def create_user(self, user_data):
        self.logger.info("Creating new user", email=user_data.get("email"))

        # Validate data against schema
        try:
            validated_data = self.validation_service.validate_data(user_data, UserCreateSchema)
        except ValidationException as e:
            self.logger.warning("User data validation failed", errors=e.errors)
            raise

        # Check for unique email
        is_unique = await self.validation_service.validate_unique(
            "email", validated_data.email, User
        )

        if not is_unique:
            self.logger.warning("Email already exists", email=validated_data.email)
            raise ValidationException(
                "Validation failed",
                errors=[{
                    "loc": ["email"],
                    "msg": "Email already registered",
                    "type": "unique_error"
                }]
            )

        # Create user
        user = User(**validated_data.model_dump())
        self.db.add(user)
        await self.db.commit()
        await self.db.refresh(user)

        self.logger.info("User created successfully", user_id=user.id)
        return user


async def test_validation_in_services(db: Any) -> None:
    """§14 Validation in Services: creates a user; a schema failure and a taken email raise ValidationException."""
    from crown_nexus.testing import capture_logs

    service = UserService(db)
    with capture_logs() as logs:
        user = await service.create_user({"username": "bob", "email": "bob@example.com"})
        with pytest.raises(ValidationException) as invalid:
            await service.create_user({"username": "nomail"})
        with pytest.raises(ValidationException) as taken:
            await service.create_user({"username": "alice2", "email": "alice@example.com"})
    assert user.id == 2 and user.username == "bob"
    assert invalid.value.errors[0]["loc"] == ["email"] and invalid.value.status_code == 422
    assert taken.value.errors == [{"loc": ["email"], "msg": "Email already registered", "type": "unique_error"}]
    events = [entry["event"] for entry in logs]
    assert "User data validation failed" in events and "Email already exists" in events
    assert "User created successfully" in events
