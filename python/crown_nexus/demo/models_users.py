"""The reference service's users and API keys (tables on :class:`crown_nexus.demo.db.Base`)."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from sqlalchemy import JSON, Boolean, Connection, DateTime, ForeignKey, String, inspect, text
from sqlalchemy.orm import Mapped, mapped_column

from crown_nexus.demo.db import Base

__all__ = ["ApiKey", "User", "upgrade_users_table"]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class User(Base):
    """A user who logs in with email and password; ``permissions`` are the user's grants."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    hashed_password: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(50), default="user")
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    #: the phone number given at registration, encrypted at rest (``encrypt_data``, guide §12);
    #: only its owner reads it back (``GET /users/me``)
    phone_encrypted: Mapped[str | None] = mapped_column(String(1024), nullable=True, default=None)

    def to_response(self) -> dict[str, Any]:
        """The public view of the user (never the password hash)."""
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "permissions": list(self.permissions or []),
            "is_active": self.is_active,
        }


class ApiKey(Base):
    """An API key: its id and the SHA-256 of its secret; the key itself is never stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    hashed_secret: Mapped[str] = mapped_column(String(128))
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


def upgrade_users_table(conn: Connection) -> None:
    """Bring a ``users`` table created by an earlier version up to date (idempotent).

    ``create_all`` creates missing tables only; a table from before ``phone_encrypted`` existed
    gets the (nullable) column here, so existing databases keep working. Run it after
    ``create_all`` in the start-up transaction (start-ups are serialized per database).
    """
    columns = {c["name"] for c in inspect(conn).get_columns(User.__tablename__)}
    if "phone_encrypted" not in columns:
        conn.execute(text("ALTER TABLE users ADD COLUMN phone_encrypted VARCHAR(1024)"))
