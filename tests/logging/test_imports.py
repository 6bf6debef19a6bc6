"""Importing logging and metrics pulls in no optional dependency; names match the guide."""

from __future__ import annotations

import subprocess
import sys

import crown_nexus.core.metrics as metrics_pkg
import crown_nexus.logging as logging_pkg


def test_no_optional_dependency_is_imported() -> None:
    """crown_nexus.logging / core.metrics / our middleware import no redis, celery, asyncpg nor
    the OpenTelemetry SDK (the ``otel`` extra; the OpenTelemetry API is a core dependency)."""
    code = (
        "import sys, crown_nexus.logging, crown_nexus.core.metrics, "
        "crown_nexus.middleware.request_context, crown_nexus.middleware.tracing, "
        "crown_nexus.middleware.metrics\n"
        "print(sorted(m for m in ('redis', 'celery', 'asyncpg', 'opentelemetry.sdk') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_guide_names_are_exported() -> None:
    """Every name guide §1 and §6 import is in the package's __all__."""
    for name in (
        "get_logger",
        "request_context",
        "set_user_id",
        "clear_user_id",
        "get_current_request_id",
        "log_execution_time",
        "log_execution_time_async",
    ):
        assert name in logging_pkg.__all__
    for name in (
        "MetricName",
        "MetricTag",
        "MetricType",
        "MetricsConfig",
        "track_db_select",
        "track_db_insert",
    ):
        assert name in metrics_pkg.__all__
