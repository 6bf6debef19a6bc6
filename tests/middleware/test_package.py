"""crown_nexus.middleware: every guide §13 name resolves lazily; unknown names fail clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest

import crown_nexus.middleware as middleware

GUIDE_NAMES = [
    "RequestContextMiddleware",
    "TracingMiddleware",
    "MetricsMiddleware",
    "SecurityHeadersMiddleware",
    "SecureRequestMiddleware",
    "RateLimitMiddleware",
    "TimeoutMiddleware",
    "CacheControlMiddleware",
    "ResponseFormatterMiddleware",
    "CompressionMiddleware",
    "ErrorHandlerMiddleware",
    "CsrfMiddleware",  # guide §14: CSRF from the security middleware
    "IdempotencyMiddleware",
]


def test_all_lists_guide_names() -> None:
    """__all__ names every middleware of guide §13."""
    assert set(GUIDE_NAMES) <= set(middleware.__all__)


@pytest.mark.parametrize("name", GUIDE_NAMES)
def test_each_name_is_a_pure_asgi_class(name: str) -> None:
    """Each guide name imports from crown_nexus.middleware and is an ASGI class taking app."""
    cls = getattr(middleware, name)
    assert isinstance(cls, type) and cls.__name__ == name
    assert callable(getattr(cls, "__call__", None))


def test_unknown_name_raises_attribute_error() -> None:
    """An unknown attribute is an AttributeError naming it."""
    with pytest.raises(AttributeError, match="NoSuchMiddleware"):
        middleware.NoSuchMiddleware  # noqa: B018


def test_import_is_lazy() -> None:
    """Importing the package imports none of the middleware modules."""
    code = (
        "import sys, crown_nexus.middleware; "
        "print(any(m.startswith('crown_nexus.middleware.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
