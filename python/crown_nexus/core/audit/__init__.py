"""The durable, tamper-evident audit trail (guide §4, §11, §14).

``audit_service.log_action(user_id=..., action=..., resource_type=..., resource_id=...,
target_id=..., details=...)`` appends a record to an SQL table (SQLite or PostgreSQL) shared by
every worker; each record carries a SHA-256 hash over its canonical encoding and the previous
record's hash, so ``await audit_service.verify_chain()`` finds a changed, deleted or reordered
row. ``security_audit_service.log_event(...)`` writes security events to the same trail.

Modules: :mod:`.chain` (encoding, hashes, verification), :mod:`.models` (tables), :mod:`.store`
(SQL and locking), :mod:`.runner` (the I/O thread), :mod:`.service` (``AuditService``),
:mod:`.security`, :mod:`.export` (JSON lines), :mod:`.retention`, :mod:`.context` (client IP),
:mod:`.checkpoint` (signed heads kept outside the database).
"""

from __future__ import annotations

from crown_nexus.core.audit.chain import (
    GENESIS_HASH,
    ChainBreak,
    ChainVerification,
    canonical_encoding,
    record_hash,
)
from crown_nexus.core.audit.checkpoint import Checkpoint, CheckpointVerification
from crown_nexus.core.audit.context import (
    AuditContextMiddleware,
    client_ip_context,
    get_client_ip,
)
from crown_nexus.core.audit.models import AuditChainState, AuditRecord, audit_metadata
from crown_nexus.core.audit.retention import retention_cutoff
from crown_nexus.core.audit.runner import get_runner
from crown_nexus.core.audit.security import (
    SecurityAuditService,
    get_security_audit_service,
    security_audit_service,
)
from crown_nexus.core.audit.service import (
    AuditService,
    RecordedAction,
    audit_service,
    configure_audit,
    get_audit_service,
)
from crown_nexus.core.audit.store import PurgeResult

__all__ = [
    "GENESIS_HASH",
    "AuditChainState",
    "AuditContextMiddleware",
    "AuditRecord",
    "AuditService",
    "ChainBreak",
    "ChainVerification",
    "Checkpoint",
    "CheckpointVerification",
    "PurgeResult",
    "RecordedAction",
    "SecurityAuditService",
    "audit_metadata",
    "audit_service",
    "canonical_encoding",
    "client_ip_context",
    "close_audit",
    "configure_audit",
    "get_audit_service",
    "get_client_ip",
    "get_security_audit_service",
    "record_hash",
    "retention_cutoff",
    "security_audit_service",
]


def close_audit(timeout: float = 10.0) -> None:
    """Write pending records, close every audit database connection and stop the I/O thread.

    Runs at interpreter exit anyway; call it to release connections earlier (tests, shutdown).
    The next audit call starts the thread again.
    """
    get_runner().close(timeout)
