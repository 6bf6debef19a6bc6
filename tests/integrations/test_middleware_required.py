"""setup_app refuses to build a stack without one of its own middleware (issue 12)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
from fastapi import FastAPI

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.integrations import fastapi as integration
from crown_nexus.integrations.fastapi import MIDDLEWARE_ORDER, middleware_stack, setup_app
from crown_nexus.settings import Settings


def _break_import(monkeypatch: pytest.MonkeyPatch, broken: str) -> None:
    """Make ``importlib.import_module(broken)`` raise as a broken module would."""
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> ModuleType:
        if name == broken:
            raise ImportError(f"simulated failure importing {name}")
        return real(name, package)

    monkeypatch.setattr(integration.importlib, "import_module", fake)


@pytest.mark.parametrize(
    ("name", "module"), [pair for pair in MIDDLEWARE_ORDER if pair[0] != "CORSMiddleware"]
)
def test_broken_import_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, name: str, module: str
) -> None:
    """A middleware whose module cannot be imported raises, naming it and the import error."""
    _break_import(monkeypatch, module)
    with pytest.raises(ConfigurationException) as info:
        setup_app(FastAPI(), Settings())
    assert name in info.value.message
    assert "simulated failure" in info.value.message
    assert info.value.details["middleware"] == name


def test_broken_rate_limit_never_yields_a_stack_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure happens in middleware_stack too, not only in setup_app."""
    _break_import(monkeypatch, "crown_nexus.middleware.rate_limiting")
    with pytest.raises(ConfigurationException, match="RateLimitMiddleware"):
        middleware_stack(Settings())


def test_missing_class_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that imports but lacks the class (AttributeError) is refused as well."""
    module = importlib.import_module("crown_nexus.middleware.security_headers")
    monkeypatch.delattr(module, "SecurityHeadersMiddleware")
    with pytest.raises(ConfigurationException, match="SecurityHeadersMiddleware"):
        middleware_stack(Settings())


def test_excluded_middleware_is_not_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Excluding a middleware explicitly is still allowed, even if its import would fail."""
    _break_import(monkeypatch, "crown_nexus.middleware.compression")
    names = [cls.__name__ for cls, _ in middleware_stack(Settings(), exclude=["CompressionMiddleware"])]
    assert "CompressionMiddleware" not in names
    assert "RateLimitMiddleware" in names


def test_cors_import_failure_is_loud_when_cors_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CORS configured but its module broken raises instead of serving without CORS."""
    _break_import(monkeypatch, dict(MIDDLEWARE_ORDER)["CORSMiddleware"])
    with pytest.raises(ConfigurationException, match="CORSMiddleware"):
        middleware_stack(Settings(cors_origins=["https://a.example"]))
