"""Rate limiting (guide §8): rules, an in-memory and a Redis backend, the service and helpers.

``RateLimitRule`` / ``RateLimitStrategy`` describe limits; ``get_rate_limiting_service()``
returns the application's :class:`RateLimitingService` (``"rate_limiting_service"``), which keys
clients by IPv4 address or IPv6 /64 network (:func:`client_network`);
``check_rate_limit`` limits arbitrary operations; ``RateLimitMiddleware`` lives in
``crown_nexus.middleware.rate_limiting``. The Redis backend (``.redis``) is imported only when
Redis is configured, so importing this package never imports redis-py.
"""

from __future__ import annotations

from crown_nexus.core.rate_limiting.base import RateLimitBackend, RateLimitBackendError
from crown_nexus.core.rate_limiting.exceptions import (
    RateLimiterUnavailableException,
    RateLimitExceededException,
    exceeded_from_result,
)
from crown_nexus.core.rate_limiting.memory import MemoryRateLimitBackend
from crown_nexus.core.rate_limiting.models import (
    RateLimitAlgorithm,
    RateLimitResult,
    RateLimitRule,
    RateLimitStrategy,
)
from crown_nexus.core.rate_limiting.service import (
    RateLimitingService,
    TrustedProxies,
    client_network,
    create_rate_limiting_service,
    get_rate_limiting_service,
)
from crown_nexus.core.rate_limiting.utils import check_rate_limit

__all__ = [
    "MemoryRateLimitBackend",
    "RateLimitAlgorithm",
    "RateLimitBackend",
    "RateLimitBackendError",
    "RateLimitExceededException",
    "RateLimitResult",
    "RateLimitRule",
    "RateLimitStrategy",
    "RateLimiterUnavailableException",
    "RateLimitingService",
    "TrustedProxies",
    "check_rate_limit",
    "client_network",
    "create_rate_limiting_service",
    "exceeded_from_result",
    "get_rate_limiting_service",
]
