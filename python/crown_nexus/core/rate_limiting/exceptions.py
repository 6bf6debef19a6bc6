"""Rate-limiting exceptions (guide §8 "Exception Handling").

``RateLimitExceededException(message, details=None, headers=None, reset_seconds=None)`` is a
:class:`~crown_nexus.core.exceptions.RateLimitException` (429, ``RATE_LIMIT_EXCEEDED``): its
headers are kept both as ``.headers`` and in ``.details["headers"]`` and always carry
``Retry-After`` in whole seconds, at least 1 (SPEC §10). It is the very class
``crown_nexus.core.exceptions`` exports, so handlers for either name catch it.
"""

from __future__ import annotations

from crown_nexus.core.exceptions import (
    NetworkException,
    RateLimitExceededException,
    RateLimitException,
)
from crown_nexus.core.rate_limiting.models import RateLimitResult

__all__ = [
    "RateLimitExceededException",
    "RateLimitException",
    "RateLimiterUnavailableException",
    "exceeded_from_result",
]


class RateLimiterUnavailableException(NetworkException):
    """The rate limit store is down and the policy is to fail closed (503, ``NETWORK_ERROR``)."""

    default_message = "Rate limiting is temporarily unavailable"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


def exceeded_from_result(
    result: RateLimitResult, message: str = "Rate limit exceeded", details: dict | None = None
) -> RateLimitExceededException:
    """A :class:`RateLimitExceededException` carrying ``result``'s headers and retry time."""
    return RateLimitExceededException(
        message=message,
        details=details,
        headers=result.headers(),
        reset_seconds=result.retry_after_seconds,
    )
