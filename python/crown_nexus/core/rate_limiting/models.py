"""Rate limit rules and results (guide §8 "Rate Limit Models").

A :class:`RateLimitRule` says how many requests a client may make per window, how the client is
identified (:class:`RateLimitStrategy`), which paths it covers, and which algorithm counts them
(:class:`RateLimitAlgorithm`). A check returns a :class:`RateLimitResult`, which knows the
response headers to send (``X-RateLimit-*``, ``Retry-After`` and the IETF ``RateLimit-Policy`` /
``RateLimit`` fields).
"""

from __future__ import annotations

import enum
import fnmatch
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "RateLimitAlgorithm",
    "RateLimitResult",
    "RateLimitRule",
    "RateLimitStrategy",
]


class RateLimitStrategy(enum.StrEnum):
    """How a client is identified: by IP address, by user id, or by both."""

    IP = "ip"
    USER = "user"
    COMBINED = "combined"


class RateLimitAlgorithm(enum.StrEnum):
    """How requests are counted.

    * ``SLIDING_WINDOW`` (default): sliding-window counter, the previous fixed window weighted
      by how much of it still overlaps the sliding window; O(1) memory per key.
    * ``SLIDING_LOG``: a timestamp per admitted request; exact, O(limit) memory per key.
    * ``TOKEN_BUCKET`` (alias ``GCRA``): the generic cell rate algorithm; requests refill
      continuously at ``requests_per_window / window_seconds`` and up to ``burst`` may be
      spent at once. Chosen automatically when ``burst_multiplier > 1``.
    """

    SLIDING_WINDOW = "sliding_window"
    SLIDING_LOG = "sliding_log"
    TOKEN_BUCKET = "token_bucket"
    GCRA = "token_bucket"  # an alias: GCRA is how the token bucket is computed


_GLOB_CHARS = frozenset("*?[")


class RateLimitRule(BaseModel):
    """One rate limit: ``requests_per_window`` requests per ``window_seconds`` per client.

    ``path_pattern`` limits the rule to some paths: a prefix (``"/api/v1/"`` also matches
    ``"/api/v1"``), a glob when it contains ``*``, ``?`` or ``[`` (``"/items/*/edit"``), or a
    regular expression when it starts with ``^``. ``exclude_paths`` are exempt: an exact path or
    everything under it. ``burst_multiplier > 1`` selects the token bucket (GCRA) with a burst of
    ``requests_per_window * burst_multiplier``. Invalid values raise ``pydantic.ValidationError``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    requests_per_window: int = Field(gt=0, description="Requests admitted per window.")
    window_seconds: int = Field(gt=0, description="Length of the window in seconds.")
    strategy: RateLimitStrategy = RateLimitStrategy.IP
    path_pattern: str | None = None
    exclude_paths: list[str] | None = None
    burst_multiplier: float = Field(default=1.0, ge=1.0, allow_inf_nan=False)
    algorithm: RateLimitAlgorithm | None = None
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")

    @field_validator("path_pattern")
    @classmethod
    def _check_pattern(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("^"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"path_pattern is not a valid regular expression: {exc}") from None
        if value == "":
            return None
        return value

    @model_validator(mode="after")
    def _pick_algorithm(self) -> RateLimitRule:
        if self.algorithm is None:
            algo = (
                RateLimitAlgorithm.TOKEN_BUCKET
                if self.burst_multiplier > 1.0
                else RateLimitAlgorithm.SLIDING_WINDOW
            )
            object.__setattr__(self, "algorithm", algo)
        return self

    # ------------------------------------------------------------------ derived values
    @property
    def limit(self) -> int:
        """Requests admitted per window (``requests_per_window``)."""
        return self.requests_per_window

    @property
    def burst(self) -> int:
        """Largest number of requests admitted at once (token bucket capacity), ≥ the limit."""
        return max(self.requests_per_window, int(self.requests_per_window * self.burst_multiplier))

    @property
    def effective_algorithm(self) -> RateLimitAlgorithm:
        """The algorithm used for this rule (never ``None``)."""
        assert self.algorithm is not None
        return self.algorithm

    @cached_property
    def signature(self) -> str:
        """A short stable string naming what is counted, used to namespace storage keys.

        Two rules with the same limit, window, algorithm and burst share counters for the same
        client key; rules that differ in any of these never do.
        """
        algo = self.effective_algorithm
        tag = {"sliding_window": "sw", "sliding_log": "sl", "token_bucket": "tb"}[algo.value]
        sig = f"{tag}:{self.requests_per_window}:{self.window_seconds}"
        if algo is RateLimitAlgorithm.TOKEN_BUCKET:
            sig += f":{self.burst}"
        return sig

    @cached_property
    def hot_params(self) -> tuple[RateLimitAlgorithm, int, int, int, str, str, int]:
        """``(algorithm, limit, window_us, capacity, signature, policy_name, window_seconds)``,
        computed once per rule for the backends' hot path."""
        return (
            self.effective_algorithm,
            self.requests_per_window,
            self.window_seconds * 1_000_000,
            self.burst,
            self.signature,
            self.policy_name,
            self.window_seconds,
        )

    @cached_property
    def _matcher(self) -> Any:
        pattern = self.path_pattern
        if pattern is None:
            return None
        if pattern.startswith("^"):
            return re.compile(pattern).match
        if _GLOB_CHARS.intersection(pattern):
            rx = re.compile(fnmatch.translate(pattern))
            return rx.match
        return None

    @cached_property
    def _exclusions(self) -> tuple[frozenset[str], tuple[str, ...]]:
        """``exclude_paths`` precomputed: the exact paths, and the prefixes ``base + "/"``."""
        exact: set[str] = set()
        prefixes: list[str] = []
        for excluded in self.exclude_paths or ():
            base = excluded.rstrip("/")
            exact.update((excluded, base))
            prefixes.append(base + "/")
        return frozenset(exact), tuple(prefixes)

    def matches(self, path: str) -> bool:
        """True when this rule applies to ``path`` (pattern matches and not excluded)."""
        if self.exclude_paths:
            exact, prefixes = self._exclusions
            if path in exact or path.startswith(prefixes):
                return False
        pattern = self.path_pattern
        if pattern is None:
            return True
        matcher = self._matcher
        if matcher is not None:
            return matcher(path) is not None
        if path.startswith(pattern):
            return True
        return pattern.endswith("/") and path == pattern[:-1]

    @property
    def policy_name(self) -> str:
        """The name of this rule in the IETF ``RateLimit-Policy`` / ``RateLimit`` fields."""
        return self.name or "default"


def _whole_seconds(seconds: float) -> int:
    """Round a positive duration up to whole seconds (a header never says 0 while blocked)."""
    return max(0, math.ceil(seconds - 1e-9))


@dataclass(slots=True)
class RateLimitResult:
    """The outcome of one rate-limit check.

    ``count`` is how many requests the window holds after this check (the denied request is
    not counted); ``remaining`` how many more would be admitted now; ``reset_after`` seconds
    until the window is empty again; ``retry_after`` seconds until a denied request would be
    admitted (``0.0`` when allowed).
    """

    allowed: bool
    limit: int
    count: int
    remaining: int
    reset_after: float
    retry_after: float
    window: int = 0
    policy_name: str = "default"

    @property
    def is_limited(self) -> bool:
        """True when the request was refused."""
        return not self.allowed

    @property
    def retry_after_seconds(self) -> int:
        """``Retry-After`` in whole seconds, at least 1 (SPEC §10)."""
        return max(1, _whole_seconds(self.retry_after))

    @property
    def reset_seconds(self) -> int:
        """Whole seconds until the window resets (``X-RateLimit-Reset``)."""
        if not self.allowed:
            return max(self.retry_after_seconds, _whole_seconds(self.reset_after))
        return _whole_seconds(self.reset_after)

    def headers(self) -> dict[str, str]:
        """Response headers describing this result; ``Retry-After`` only when refused.

        ``RateLimit-Policy`` / ``RateLimit`` follow draft-ietf-httpapi-ratelimit-headers
        (``"default";q=100;w=60`` and ``"default";r=42;t=17``).
        """
        reset = self.reset_seconds
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(reset),
            "RateLimit": f'"{self.policy_name}";r={self.remaining};t={reset}',
        }
        if self.window:
            out["RateLimit-Policy"] = f'"{self.policy_name}";q={self.limit};w={self.window}'
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_seconds)
        return out
