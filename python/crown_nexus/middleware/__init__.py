"""Pure ASGI middleware of guide §13 (one class per module), re-exported lazily.

``from crown_nexus.middleware import X`` imports only X's module, so a middleware whose optional
dependency is missing never breaks the others. Add a middleware by appending one line to
``_MODULES`` and its name to ``__all__``. ``setup_app`` (``crown_nexus.integrations.fastapi``)
installs them in the guide's order.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.middleware.cors import CORSMiddleware

    from crown_nexus.middleware.cache_control import CacheControlMiddleware
    from crown_nexus.middleware.compression import CompressionMiddleware
    from crown_nexus.middleware.csrf import CsrfMiddleware
    from crown_nexus.middleware.error_handler import ErrorHandlerMiddleware
    from crown_nexus.middleware.idempotency import IdempotencyMiddleware
    from crown_nexus.middleware.metrics import MetricsMiddleware
    from crown_nexus.middleware.rate_limiting import RateLimitMiddleware
    from crown_nexus.middleware.request_context import RequestContextMiddleware
    from crown_nexus.middleware.response_formatter import ResponseFormatterMiddleware
    from crown_nexus.middleware.secure_request import SecureRequestMiddleware
    from crown_nexus.middleware.security_headers import SecurityHeadersMiddleware
    from crown_nexus.middleware.timeout import TimeoutMiddleware
    from crown_nexus.middleware.tracing import TracingMiddleware

__all__ = [
    "CORSMiddleware",
    "CacheControlMiddleware",
    "CompressionMiddleware",
    "CsrfMiddleware",
    "ErrorHandlerMiddleware",
    "IdempotencyMiddleware",
    "MetricsMiddleware",
    "RateLimitMiddleware",
    "RequestContextMiddleware",
    "ResponseFormatterMiddleware",
    "SecureRequestMiddleware",
    "SecurityHeadersMiddleware",
    "TimeoutMiddleware",
    "TracingMiddleware",
]

#: public name -> module that defines it
_MODULES: dict[str, str] = {
    "RequestContextMiddleware": "crown_nexus.middleware.request_context",
    "TracingMiddleware": "crown_nexus.middleware.tracing",
    "MetricsMiddleware": "crown_nexus.middleware.metrics",
    "SecureRequestMiddleware": "crown_nexus.middleware.secure_request",
    "RateLimitMiddleware": "crown_nexus.middleware.rate_limiting",
    "TimeoutMiddleware": "crown_nexus.middleware.timeout",
    "CORSMiddleware": "starlette.middleware.cors",
    "SecurityHeadersMiddleware": "crown_nexus.middleware.security_headers",
    "CacheControlMiddleware": "crown_nexus.middleware.cache_control",
    "ResponseFormatterMiddleware": "crown_nexus.middleware.response_formatter",
    "CompressionMiddleware": "crown_nexus.middleware.compression",
    "ErrorHandlerMiddleware": "crown_nexus.middleware.error_handler",
    "CsrfMiddleware": "crown_nexus.middleware.csrf",
    "IdempotencyMiddleware": "crown_nexus.middleware.idempotency",
}


def __getattr__(name: str) -> Any:
    module_name = _MODULES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
