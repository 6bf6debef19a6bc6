"""``security_audit_service``: security events (guide §11) written to the same audit trail.

Owns only the event-shaped call: ``await security_audit_service.log_event("PERMISSION_DENIED",
user_id=..., details=...)`` records an action named after the event type, taking
``resource_type`` / ``resource_id`` from the details when they carry them.
"""

from __future__ import annotations

from typing import Any

from crown_nexus.core.audit.service import AuditService, RecordedAction, audit_service
from crown_nexus.core.dependency_manager import register_service

__all__ = ["SecurityAuditService", "get_security_audit_service", "security_audit_service"]


class SecurityAuditService:
    """Writes security events through an :class:`AuditService` (default: the shared one)."""

    def __init__(self, audit: AuditService | None = None) -> None:
        self.audit = audit

    def log_event(
        self,
        event_type: str,
        user_id: Any = None,
        details: dict[str, Any] | None = None,
        **fields: Any,
    ) -> RecordedAction:
        """Record ``event_type`` (the action) for ``user_id``; ``await`` it for the stored record.

        ``resource_type``, ``resource_id`` and ``target_id`` may be passed; otherwise string
        values under those keys in ``details`` fill them. Other keywords are as in
        :meth:`AuditService.log_action`.
        """
        data = dict(details or {})
        for key in ("resource_type", "resource_id", "target_id"):
            value = data.get(key)
            if key not in fields and isinstance(value, str | int) and not isinstance(value, bool):
                fields[key] = value
        service = self.audit or audit_service
        return service.log_action(user_id=user_id, action=event_type, details=data, **fields)


#: The process-wide security audit service (writes through ``audit_service``).
security_audit_service = SecurityAuditService()


@register_service(name="security_audit_service")
def get_security_audit_service() -> SecurityAuditService:
    """The shared ``security_audit_service``."""
    return security_audit_service
