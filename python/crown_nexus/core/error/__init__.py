"""Error reporting and exception shortcuts (guide §3).

``report_error`` sends an exception with an :class:`ErrorContext` to every registered reporter
(logging by default; add your own with ``register_reporter``); ``handle_exception`` does it from
synchronous code with context taken from the calling function. ``error_service`` (registered as
``"error_service"``) offers the same as methods. ``audit_service`` / ``security_audit_service``
are the audit trail's (implemented in :mod:`crown_nexus.core.audit`).
"""

from __future__ import annotations

from crown_nexus.core._redact import REDACTED, redact
from crown_nexus.core.audit import (
    SecurityAuditService,
    audit_service,
    security_audit_service,
)
from crown_nexus.core.error._api import (
    business_logic_error,
    ensure_not_none,
    handle_exception,
    permission_denied,
    report_error,
    report_unreported,
    resource_already_exists,
    resource_not_found,
    validation_error,
    wait_for_reports,
    was_reported,
)
from crown_nexus.core.error.base import ErrorContext, ErrorReporter, SyncErrorReporter
from crown_nexus.core.error.reporters import (
    InMemoryReporter,
    LoggingErrorReporter,
    LoggingReporter,
    MemoryErrorReporter,
    ReportedError,
    clear_reporters,
    get_reporters,
    register_reporter,
    unregister_reporter,
)
from crown_nexus.core.error.service import (
    AuditService,
    ErrorService,
    get_audit_service,
    get_error_service,
)
from crown_nexus.core.exceptions import set_error_report_hook

__all__ = [
    "REDACTED",
    "AuditService",
    "ErrorContext",
    "ErrorReporter",
    "ErrorService",
    "InMemoryReporter",
    "LoggingErrorReporter",
    "LoggingReporter",
    "MemoryErrorReporter",
    "ReportedError",
    "SecurityAuditService",
    "SyncErrorReporter",
    "audit_service",
    "business_logic_error",
    "clear_reporters",
    "ensure_not_none",
    "get_audit_service",
    "get_error_service",
    "get_reporters",
    "handle_exception",
    "permission_denied",
    "redact",
    "register_reporter",
    "report_error",
    "report_unreported",
    "resource_already_exists",
    "resource_not_found",
    "security_audit_service",
    "unregister_reporter",
    "validation_error",
    "wait_for_reports",
    "was_reported",
]

# The exception handlers (crown_nexus.core.exceptions, a layer below) report 5xx errors here.
set_error_report_hook(report_unreported)
