"""Variables that used to be read from os.environ by the modules themselves now come from Settings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from crown_nexus.core.tracing.sdk import _traces_endpoint, tracing_requested
from crown_nexus.settings import Settings

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "crown_nexus"

#: the reads that stay on os.environ, each with the reason in a comment where it is read
ALLOWED = {
    "accel.py": "CROWN_NEXUS_IMPL",  # before settings exist, below their layer
    "core/tracing/__init__.py": "OTEL_PYTHON_TRACER_PROVIDER",  # the OpenTelemetry API's own
    "core/metrics/recording.py": "PROMETHEUS_MULTIPROC_DIR",  # prometheus_client's own
    "logging/config.py": "ENVIRONMENT",  # the fallback when the settings failed to load
    "integrations/malloc.py": "MALLOC_MMAP_THRESHOLD_",  # glibc's own: the operator's choice stands
}


def test_celery_and_event_worker_settings_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    """CROWN_NEXUS_CELERY_* and the worker's CROWN_NEXUS_EVENT_* are typed Settings fields."""
    monkeypatch.setenv("CROWN_NEXUS_CELERY_QUEUE", "q1")
    monkeypatch.setenv("CROWN_NEXUS_CELERY_VISIBILITY_TIMEOUT", "12.5")
    monkeypatch.setenv("CROWN_NEXUS_CELERY_RESTORE_INTERVAL", "1")
    monkeypatch.setenv("CROWN_NEXUS_EVENT_HANDLER_MODULES", "a.b, c.d")
    monkeypatch.setenv("CROWN_NEXUS_EVENT_MAX_RETRIES", "7")
    monkeypatch.setenv("CROWN_NEXUS_EVENT_RETRY_BACKOFF", "0.2")
    monkeypatch.setenv("CROWN_NEXUS_EVENT_RETRY_BACKOFF_MAX", "9")
    s = Settings(ENVIRONMENT="test")
    assert (s.celery_queue, s.celery_visibility_timeout, s.celery_restore_interval) == (
        "q1",
        12.5,
        1.0,
    )
    assert s.event_handler_modules == "a.b, c.d"
    assert (s.event_max_retries, s.event_retry_backoff, s.event_retry_backoff_max) == (7, 0.2, 9.0)
    monkeypatch.setenv("CROWN_NEXUS_CELERY_VISIBILITY_TIMEOUT", "soon")
    with pytest.raises(ValidationError, match="CELERY_VISIBILITY_TIMEOUT"):
        Settings(ENVIRONMENT="test")
    monkeypatch.setenv("CROWN_NEXUS_CELERY_VISIBILITY_TIMEOUT", "0")
    with pytest.raises(ValidationError, match="CELERY_VISIBILITY_TIMEOUT"):
        Settings(ENVIRONMENT="test")


def test_celery_app_is_built_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Celery app takes its queue and transport options from the settings in force."""
    from crown_nexus.core.events.backends import _celery_conf

    settings = Settings(
        ENVIRONMENT="test",
        celery_queue="q2",
        celery_visibility_timeout=5,
        celery_restore_interval=2,
        celery_broker_url="redis://127.0.0.1:1/3",
    )
    monkeypatch.setattr(_celery_conf, "get_settings", lambda: settings)
    app = _celery_conf.configured_celery_app()
    assert app.conf.task_default_queue == "q2"
    assert app.conf.broker_url == "redis://127.0.0.1:1/3"
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] == 5
    assert options["unacked_restore_interval"] == 2


def test_celery_settings_fall_back_to_defaults_when_settings_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settings that do not load give the worker the defaults (it still names a queue)."""
    from crown_nexus.core.events.backends import _celery_conf

    def broken() -> Settings:
        raise ValueError("no secret")

    monkeypatch.setattr(_celery_conf, "get_settings", broken)
    s = _celery_conf.celery_settings()
    assert s.celery_queue == "crown-nexus-events" and s.event_max_retries == 5


@pytest.mark.parametrize(
    ("env", "requested"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"CROWN_NEXUS_OTEL_ENABLED": "true"}, True),
        ({"CROWN_NEXUS_OTEL_ENABLED": "true", "OTEL_SDK_DISABLED": "true"}, False),
        ({"CROWN_NEXUS_OTEL_ENABLED": "true", "OTEL_SDK_DISABLED": "TRUE"}, False),
        # OpenTelemetry's rule: only "true" disables
        ({"CROWN_NEXUS_OTEL_ENABLED": "true", "OTEL_SDK_DISABLED": "1"}, True),
        ({"CROWN_NEXUS_OTEL_ENABLED": "true", "OTEL_SDK_DISABLED": "nope"}, True),
    ],
)
def test_tracing_requested_reads_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], requested: bool
) -> None:
    """The standard OTEL_* variables reach tracing through Settings, with OpenTelemetry's rules."""
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "CROWN_NEXUS_OTEL_ENABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing_requested(Settings(ENVIRONMENT="test")) is requested


@pytest.mark.parametrize(
    ("fields", "endpoint"),
    [
        ({}, None),
        ({"otel_exporter_otlp_endpoint": "http://c:4318"}, "http://c:4318/v1/traces"),
        ({"otel_exporter_otlp_endpoint": "http://c:4318/"}, "http://c:4318/v1/traces"),
        ({"otel_exporter_otlp_endpoint": "http://c:4318/custom"}, "http://c:4318/custom"),
        (
            {
                "otel_exporter_otlp_endpoint": "http://c:4318",
                "otel_exporter_otlp_traces_endpoint": "http://t:1/x",
            },
            "http://t:1/x",
        ),
    ],
)
def test_exporter_endpoint(fields: dict[str, str], endpoint: str | None) -> None:
    """The traces endpoint wins as given; a bare general endpoint gets /v1/traces (as OTel does)."""
    assert _traces_endpoint(Settings(ENVIRONMENT="test", **fields)) == endpoint


def test_no_other_module_reads_os_environ() -> None:
    """Only the documented exceptions read the environment directly."""
    unexpected: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        reads = [
            line.strip()
            for line in path.read_text(encoding="utf-8").splitlines()
            if re.search(r"os\.environ|getenv\(", line)
            and not line.lstrip().startswith("#")
            and "``os.environ``" not in line
        ]
        allowed = ALLOWED.get(rel)
        reads = [r for r in reads if not (allowed and (allowed in r or "_ENV_PROVIDER" in r))]
        if reads:
            unexpected[rel] = reads
    assert not unexpected, unexpected


@pytest.mark.parametrize(("value", "colors"), [(None, True), ("1", False), ("anything", False)])
def test_no_color_reaches_the_console_renderer(
    monkeypatch: pytest.MonkeyPatch, value: str | None, colors: bool
) -> None:
    """NO_COLOR (any non-empty value, no-color.org) is a Settings field the console chain obeys."""
    from crown_nexus.logging.config import build_processors

    monkeypatch.delenv("NO_COLOR", raising=False)
    if value is not None:
        monkeypatch.setenv("NO_COLOR", value)
    settings = Settings(ENVIRONMENT="test")
    assert settings.no_color is (not colors)
    renderer = build_processors("console", colors=not settings.no_color)[-1]
    assert renderer.colors is colors


def test_configure_logging_passes_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure_logging builds its console chain without colours when settings.no_color."""
    import structlog

    from crown_nexus.logging import configure_logging

    try:
        configure_logging(
            Settings(ENVIRONMENT="development", no_color=True), log_format="console", stdlib=False
        )
        renderer = structlog.get_config()["processors"][-1]
        assert renderer.colors is False
    finally:
        configure_logging(Settings(ENVIRONMENT="test"))


def test_impl_read_before_settings_matches_the_field() -> None:
    """CROWN_NEXUS_IMPL read by accel agrees with the Settings field documenting it."""
    code = (
        "from crown_nexus import accel; from crown_nexus.settings import Settings; "
        "print(accel.requested_mode(), Settings(ENVIRONMENT='test').impl)"
    )
    env = {"CROWN_NEXUS_IMPL": "pure", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["pure", "pure"]
