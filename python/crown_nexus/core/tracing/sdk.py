"""``configure_tracing(settings)``: an OpenTelemetry SDK tracer provider exporting over OTLP.

Needs the ``otel`` extra (``opentelemetry-sdk``, ``opentelemetry-exporter-otlp-proto-http``).
Everything is read from :class:`~crown_nexus.settings.Settings`, which also accepts the
standard OpenTelemetry variable names. Tracing is on when ``settings.otel_enabled``
(``CROWN_NEXUS_OTEL_ENABLED``) is true or an endpoint is set
(``otel_exporter_otlp_traces_endpoint``: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``;
``otel_exporter_otlp_endpoint``: ``OTEL_EXPORTER_OTLP_ENDPOINT``), and ``otel_sdk_disabled``
(``OTEL_SDK_DISABLED``) is not ``true``. Spans go in batches to the traces endpoint as given,
else to the general endpoint (``/v1/traces`` added when it names no path), else to the
exporter's default ``http://localhost:4318/v1/traces``. The service name is
``settings.otel_service_name`` (``OTEL_SERVICE_NAME``) or ``settings.app_name``; other
``OTEL_RESOURCE_ATTRIBUTES`` are kept.

OpenTelemetry allows one global provider per process: when one is already set (by the
application, a test, or an earlier call) it is kept and returned.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.tracing import provider_configured, tracing_enabled

__all__ = ["configure_tracing", "tracing_requested"]

_lock = threading.Lock()


def tracing_requested(settings: Any) -> bool:
    """Whether ``settings`` ask for tracing (see the module docstring)."""
    if getattr(settings, "otel_sdk_disabled", False):
        return False
    if getattr(settings, "otel_enabled", False):
        return True
    return bool(_traces_endpoint(settings))


def _traces_endpoint(settings: Any) -> str | None:
    """Where spans go: the traces endpoint as given, else the general endpoint (with
    ``/v1/traces`` when it names no path, as OpenTelemetry reads ``OTEL_EXPORTER_OTLP_ENDPOINT``),
    else ``None`` (the exporter's default)."""
    traces = getattr(settings, "otel_exporter_otlp_traces_endpoint", None)
    if traces:
        return str(traces)
    general = getattr(settings, "otel_exporter_otlp_endpoint", None)
    if not general:
        return None
    general = str(general)
    if urlsplit(general).path in ("", "/"):
        return general.rstrip("/") + "/v1/traces"
    return general


def configure_tracing(
    settings: Any = None,
    *,
    exporter: Any = None,
    force: bool = False,
) -> trace.TracerProvider | None:
    """Install an SDK tracer provider for ``settings`` (default: the loaded settings).

    Returns the global provider when tracing is on (the existing one when a provider was
    already configured), ``None`` when tracing is not requested (nothing is installed; the
    tracing layer stays a no-op). ``exporter`` replaces the OTLP exporter (spans then go to it
    through a ``SimpleSpanProcessor``: tests pass an ``InMemorySpanExporter``); ``force``
    installs even when the settings do not ask for tracing. Raises ``ConfigurationException``
    when the ``otel`` extra is missing.
    """
    if settings is None:
        from crown_nexus.core.config import settings as loaded

        settings = loaded
    if not force and not tracing_requested(settings):
        return None
    with _lock:
        if provider_configured():
            return trace.get_tracer_provider()
        try:
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        except ImportError as exc:
            raise ConfigurationException(
                message="tracing needs the OpenTelemetry SDK: pip install 'crown-nexus[otel]'",
                details={"error": repr(exc)},
                config_key="CROWN_NEXUS_OTEL_ENABLED",
            ) from exc
        service_name = getattr(settings, "otel_service_name", None) or getattr(
            settings, "app_name", "crown-nexus"
        )
        ratio = float(getattr(settings, "otel_sample_ratio", 1.0))
        provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: service_name}),
            sampler=ParentBased(TraceIdRatioBased(ratio)),
        )
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError as exc:
                raise ConfigurationException(
                    message="tracing needs the OTLP exporter: pip install 'crown-nexus[otel]'",
                    details={"error": repr(exc)},
                    config_key="CROWN_NEXUS_OTEL_ENABLED",
                ) from exc
            endpoint = _traces_endpoint(settings)
            otlp = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
            provider.add_span_processor(BatchSpanProcessor(otlp))
        trace.set_tracer_provider(provider)
        tracing_enabled()  # fix the state now (log lines start carrying span ids)
        return trace.get_tracer_provider()
