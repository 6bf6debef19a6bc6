"""The event limits come from Settings (CROWN_NEXUS_EVENT_*), read through the settings object."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from crown_nexus.core.events import EventConfig, EventConfigurationException, EventService
from crown_nexus.core.events.config import EventBackendType, backend_type_of
from crown_nexus.settings import Settings

_VARS = {
    "CROWN_NEXUS_EVENT_MAX_BYTES": "2048",
    "CROWN_NEXUS_EVENT_HANDLER_TIMEOUT": "off",
    "CROWN_NEXUS_EVENT_MAX_PENDING": "1e3",
    "CROWN_NEXUS_EVENT_BACKPRESSURE_TIMEOUT": "0.5",
    "CROWN_NEXUS_EVENT_SHUTDOWN_TIMEOUT": "none",
    "CROWN_NEXUS_EVENT_DURATION_SAMPLE_EVERY": "1",
}


def test_defaults_are_the_settings_defaults() -> None:
    """EventConfig() and EventConfig.from_settings(Settings()) agree field for field."""
    assert EventConfig() == EventConfig.from_settings(Settings())
    assert EventConfig().max_event_bytes == 1_048_576
    assert EventConfig().handler_timeout == 30.0


def test_environment_variables_reach_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every CROWN_NEXUS_EVENT_* limit is a Settings field; none/off mean no limit."""
    for name, value in _VARS.items():
        monkeypatch.setenv(name, value)
    config = EventConfig.from_settings(Settings())
    assert dataclasses.asdict(config) == {
        "max_event_bytes": 2048,
        "handler_timeout": None,
        "max_pending": 1000,
        "backpressure_timeout": 0.5,
        "shutdown_timeout": None,
        "duration_sample_every": 1,
    }
    assert EventService(config).config.max_event_bytes == 2048


@pytest.mark.parametrize("value", ["", "0", "none", "off"])
def test_empty_or_zero_counts_keep_the_default(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """As before the fold into Settings: an empty, zero, none or off count keeps its default."""
    monkeypatch.setenv("CROWN_NEXUS_EVENT_MAX_PENDING", value)
    monkeypatch.setenv("CROWN_NEXUS_EVENT_HANDLER_TIMEOUT", "")
    settings = Settings()
    assert settings.event_max_pending == 10_000
    assert settings.event_handler_timeout == 30.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CROWN_NEXUS_EVENT_MAX_BYTES", "lots"),
        ("CROWN_NEXUS_EVENT_MAX_PENDING", "-5"),
        ("CROWN_NEXUS_EVENT_HANDLER_TIMEOUT", "soon"),
    ],
)
def test_bad_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A value that is not a valid number is refused when the settings are read, naming it."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name):
        Settings()


def test_backend_type_names() -> None:
    """Backend names and enums map to EventBackendType; an unknown one is a typed error."""
    assert backend_type_of("celery") is EventBackendType.CELERY
    assert backend_type_of(EventBackendType.MEMORY) is EventBackendType.MEMORY
    with pytest.raises(EventConfigurationException, match="unknown event backend"):
        backend_type_of("kafka")
