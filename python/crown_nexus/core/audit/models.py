"""The audit trail's tables: one row per record and one chain-state row (head and anchor).

Owns the SQLAlchemy 2 declarative mapping only. The tables use their own metadata
(:data:`audit_metadata`) so creating them never touches an application's other tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from crown_nexus.core.audit.chain import format_timestamp

__all__ = [
    "AuditBase",
    "AuditChainState",
    "AuditRecord",
    "UTCDateTime",
    "audit_metadata",
]

#: Big integer on PostgreSQL, INTEGER on SQLite (its 64-bit rowid type).
_SEQ = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every dialect (SQLite stores naive UTC, read back as aware)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AuditBase(DeclarativeBase):
    """Declarative base of the audit tables (separate metadata)."""


audit_metadata = AuditBase.metadata


class AuditRecord(AuditBase):
    """One audit record: who (``actor_id``) did what (``action``) to what, when, and its hash."""

    __tablename__ = "crown_nexus_audit_records"

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    actor_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    action: Mapped[str] = mapped_column(String(255), nullable=False)
    resource_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (
        Index("ix_crown_nexus_audit_actor", "actor_id", "seq"),
        Index("ix_crown_nexus_audit_resource", "resource_type", "resource_id", "seq"),
        Index("ix_crown_nexus_audit_action", "action", "seq"),
        Index("ix_crown_nexus_audit_created_at", "created_at"),
    )

    def chain_fields(self) -> dict[str, Any]:
        """The fields the hash covers plus ``hash`` (for :class:`ChainVerifier`)."""
        return {
            "seq": self.seq,
            "created_at": self.created_at,
            "actor_id": self.actor_id,
            "action": self.action,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "target_id": self.target_id,
            "details": self.details,
            "request_id": self.request_id,
            "client_ip": self.client_ip,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON data (``timestamp`` in ISO UTC with microseconds)."""
        out = self.chain_fields()
        out["timestamp"] = format_timestamp(out.pop("created_at"))
        out["user_id"] = out["actor_id"]  # the name log_action takes
        return out


class AuditChainState(AuditBase):
    """The single row (``id = 1``) that fixes the chain's ends.

    ``head_seq``/``head_hash`` are the last appended record (so a deleted tail is noticed);
    ``anchor_seq``/``anchor_hash`` the last record retention deleted (``0`` and the genesis hash
    when none was), which the first remaining record must link to.
    """

    __tablename__ = "crown_nexus_audit_chain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    head_seq: Mapped[int] = mapped_column(_SEQ, nullable=False, default=0)
    head_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    anchor_seq: Mapped[int] = mapped_column(_SEQ, nullable=False, default=0)
    anchor_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    anchored_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
