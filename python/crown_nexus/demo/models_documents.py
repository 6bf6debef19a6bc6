"""Documents owned by users and shared with read/write grants (on :class:`crown_nexus.demo.db.Base`)."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from sqlalchemy import DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crown_nexus.demo.db import Base

__all__ = ["GRANTS", "Document", "DocumentShare"]

#: the grants a share may carry: ``read`` lets the grantee read, ``write`` read and update
GRANTS = ("read", "write")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _iso(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes: they were stored as UTC
        value = value.replace(tzinfo=datetime.UTC)
    return value.isoformat()


class Document(Base):
    """A document; its owner (``owner_id``, a user id) may update, delete and share it."""

    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    owner_id: Mapped[str] = mapped_column(String(36), index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=_now)

    def to_dict(self) -> dict[str, Any]:
        """The document as the API shows it (JSON-ready)."""
        return {
            "id": self.id,
            "owner_id": self.owner_id,
            "title": self.title,
            "body": self.body,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


class DocumentShare(Base):
    """A grant (``read`` | ``write``) on one document for one user (one row per pair)."""

    __tablename__ = "document_shares"

    document_id: Mapped[str] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    grant: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=_now)
