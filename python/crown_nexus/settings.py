"""Application settings, read with pydantic-settings from the environment and ``.env``.

Every name is prefixed ``CROWN_NEXUS_`` except the guide's own names, which are accepted as
written there: ``ENVIRONMENT``, ``CACHE_DEFAULT_BACKEND``, ``CACHE_DEFAULT_TTL``, ``REDIS_HOST``,
``REDIS_PORT``, ``REDIS_DB``, ``REDIS_PASSWORD``, ``REDIS_URI`` (SPEC §7).

The secret key: production refuses to start without one of at least 32 characters. Elsewhere
(development, test), a missing secret — or the published :data:`DEFAULT_SECRET_KEY`, which is
never used to sign anything — is replaced by a random key generated once per process, with a
warning: tokens, CSRF tokens and cursors then do not survive a restart and are not shared between
worker processes (set ``CROWN_NEXUS_SECRET_KEY`` for that).

``crown_nexus.core.config.settings`` is the loaded object; tests build their own ``Settings(...)``.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import secrets
import threading
from functools import cache, cached_property
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from crown_nexus.container import current_container

__all__ = ["DEFAULT_SECRET_KEY", "Environment", "Settings", "get_settings"]

#: A well-known placeholder that is never used as a key: a setting equal to it counts as missing.
DEFAULT_SECRET_KEY = "crown-nexus-development-secret-key-change-me"
MIN_PRODUCTION_SECRET_LENGTH = 32

_logger = logging.getLogger("crown_nexus.settings")
_process_secret: str | None = None
_process_secret_lock = threading.Lock()


def _generated_secret() -> str:
    """The random secret of this process (made, and warned about, on first use)."""
    global _process_secret
    with _process_secret_lock:
        if _process_secret is None:
            _process_secret = secrets.token_urlsafe(48)
            _logger.warning(
                "CROWN_NEXUS_SECRET_KEY is not set: using a random secret key generated for this "
                "process; tokens will not survive a restart nor be shared between workers"
            )
        return _process_secret


class Environment(enum.StrEnum):
    """Where the application runs; picks console (development) or JSON (production) logs."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"
    TEST = "test"


def _env(name: str) -> Any:
    """A field read as ``CROWN_NEXUS_<NAME>`` (the prefix is explicit so aliases can mix)."""
    return AliasChoices(f"CROWN_NEXUS_{name}", name.lower())


class Settings(BaseSettings):
    """All configuration of a crown-nexus application.

    Construct with keyword arguments (field names) in tests: ``Settings(secret_key="...")``.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
    )

    # --- general -------------------------------------------------------------------------
    ENVIRONMENT: Environment = Field(
        default=Environment.DEVELOPMENT,
        validation_alias=AliasChoices("ENVIRONMENT", "CROWN_NEXUS_ENVIRONMENT", "environment"),
    )
    app_name: str = Field(default="crown-nexus", validation_alias=_env("APP_NAME"))
    debug: bool = Field(default=False, validation_alias=_env("DEBUG"))
    log_level: str = Field(default="INFO", validation_alias=_env("LOG_LEVEL"))
    log_buffered: bool = Field(default=False, validation_alias=_env("LOG_BUFFERED"))
    #: plain console logs, without colours (the no-color.org convention: ``NO_COLOR`` set to any
    #: non-empty value)
    no_color: bool = Field(
        default=False,
        validation_alias=AliasChoices("NO_COLOR", "CROWN_NEXUS_NO_COLOR", "no_color"),
    )
    impl: Literal["auto", "pure"] = Field(default="auto", validation_alias=_env("IMPL"))

    # --- security ------------------------------------------------------------------------
    secret_key: SecretStr = Field(default=SecretStr(""), validation_alias=_env("SECRET_KEY"))
    _secret_key_generated: bool = PrivateAttr(default=False)
    jwt_algorithm: str = Field(default="HS256", validation_alias=_env("JWT_ALGORITHM"))
    access_token_expire_minutes: int = Field(
        default=30, ge=1, validation_alias=_env("ACCESS_TOKEN_EXPIRE_MINUTES")
    )
    refresh_token_expire_days: int = Field(
        default=7, ge=1, validation_alias=_env("REFRESH_TOKEN_EXPIRE_DAYS")
    )
    jwt_issuer: str | None = Field(default=None, validation_alias=_env("JWT_ISSUER"))
    jwt_audience: str | None = Field(default=None, validation_alias=_env("JWT_AUDIENCE"))
    jwt_leeway_seconds: float = Field(default=0.0, ge=0, validation_alias=_env("JWT_LEEWAY_SECONDS"))
    #: PEM private keys (file paths or PEM text) for EdDSA/ES256; the first signs, all verify
    jwt_private_keys: list[str] = Field(default_factory=list, validation_alias=_env("JWT_PRIVATE_KEYS"))
    encryption_keys: list[str] = Field(
        default_factory=list, validation_alias=_env("ENCRYPTION_KEYS")
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, validation_alias=_env("TRUSTED_PROXIES")
    )
    cors_origins: list[str] = Field(default_factory=list, validation_alias=_env("CORS_ORIGINS"))
    #: SecureRequestMiddleware caps (bytes): URL (path + query) → 414, one header (name +
    #: value) or all headers → 431; checked before any pattern runs on the request
    max_url_length: int = Field(default=8 * 1024, ge=1, validation_alias=_env("MAX_URL_LENGTH"))
    max_header_bytes: int = Field(
        default=8 * 1024, ge=1, validation_alias=_env("MAX_HEADER_BYTES")
    )
    max_total_header_bytes: int = Field(
        default=32 * 1024, ge=1, validation_alias=_env("MAX_TOTAL_HEADER_BYTES")
    )
    #: the fuzzy content heuristics on URLs: "report" (log + count, let through), "enforce"
    #: (400) or "off"; unambiguous attacks are refused either way
    suspicious_content_mode: Literal["off", "report", "enforce"] = Field(
        default="report", validation_alias=_env("SUSPICIOUS_CONTENT_MODE")
    )
    #: request body cap (bytes, 413); ``max_body_sizes`` overrides it per path prefix (a JSON
    #: object ``{"/documents": 52428800}``; the longest matching prefix wins)
    max_body_size: int = Field(
        default=10 * 1024 * 1024, ge=1, validation_alias=_env("MAX_BODY_SIZE")
    )
    max_body_sizes: dict[str, int] = Field(
        default_factory=dict, validation_alias=_env("MAX_BODY_SIZES")
    )
    #: the longest a request body may take to arrive, from the application's first read to its
    #: last byte (seconds); slower bodies answer 408 ``REQUEST_TIMEOUT`` (``None``: no limit)
    body_read_timeout_seconds: float | None = Field(
        default=30.0, gt=0, validation_alias=_env("BODY_READ_TIMEOUT_SECONDS")
    )
    #: a request whose response has not started after this many seconds answers 504
    request_timeout_seconds: float = Field(
        default=30.0, gt=0, validation_alias=_env("REQUEST_TIMEOUT_SECONDS")
    )
    #: the Content-Security-Policy header (an empty value sends none; default: the library's
    #: strict policy, ``crown_nexus.core.security.headers.DEFAULT_CONTENT_SECURITY_POLICY``)
    content_security_policy: str | None = Field(
        default=None, validation_alias=_env("CONTENT_SECURITY_POLICY")
    )
    #: CORS beyond the origins: credentials, methods, headers and the preflight cache (seconds)
    cors_allow_credentials: bool = Field(
        default=True, validation_alias=_env("CORS_ALLOW_CREDENTIALS")
    )
    cors_allow_methods: list[str] = Field(
        default_factory=lambda: ["*"], validation_alias=_env("CORS_ALLOW_METHODS")
    )
    cors_allow_headers: list[str] = Field(
        default_factory=lambda: ["*"], validation_alias=_env("CORS_ALLOW_HEADERS")
    )
    cors_max_age: int = Field(default=600, ge=0, validation_alias=_env("CORS_MAX_AGE"))
    #: gzip: bodies of at least this many bytes are compressed, at this zlib level (1-9)
    compression_minimum_size: int = Field(
        default=1000, ge=0, validation_alias=_env("COMPRESSION_MINIMUM_SIZE")
    )
    compression_level: int = Field(
        default=3, ge=1, le=9, validation_alias=_env("COMPRESSION_LEVEL")
    )

    # --- database ------------------------------------------------------------------------
    database_url: str = Field(
        default="sqlite+aiosqlite:///./crown_nexus.db", validation_alias=_env("DATABASE_URL")
    )
    #: the audit trail's database (default: ``database_url``)
    audit_database_url: str | None = Field(default=None, validation_alias=_env("AUDIT_DATABASE_URL"))
    #: audit records older than this many days are deleted by ``apply_retention()`` (None: keep)
    audit_retention_days: int | None = Field(
        default=None, ge=1, validation_alias=_env("AUDIT_RETENTION_DAYS")
    )

    # --- cache and redis (the guide's names, as written) ---------------------------------
    CACHE_DEFAULT_BACKEND: Literal["memory", "redis", "null"] = Field(
        default="memory",
        validation_alias=AliasChoices(
            "CACHE_DEFAULT_BACKEND", "CROWN_NEXUS_CACHE_DEFAULT_BACKEND", "cache_default_backend"
        ),
    )
    CACHE_DEFAULT_TTL: int = Field(
        default=300,
        ge=0,
        validation_alias=AliasChoices(
            "CACHE_DEFAULT_TTL", "CROWN_NEXUS_CACHE_DEFAULT_TTL", "cache_default_ttl"
        ),
    )
    REDIS_HOST: str = Field(
        default="localhost", validation_alias=AliasChoices("REDIS_HOST", "redis_host")
    )
    REDIS_PORT: int = Field(default=6379, validation_alias=AliasChoices("REDIS_PORT", "redis_port"))
    REDIS_DB: int = Field(default=0, validation_alias=AliasChoices("REDIS_DB", "redis_db"))
    REDIS_PASSWORD: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_PASSWORD", "redis_password")
    )
    REDIS_URI: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URI", "CROWN_NEXUS_REDIS_URI", "redis_uri"),
    )
    #: the longest a request waits on one Redis call of token revocation (milliseconds; SPEC
    #: §8); slower or failed calls are answered from the revocation replica
    redis_timeout_ms: int = Field(
        default=100, ge=1, le=60_000, validation_alias=_env("REDIS_TIMEOUT_MS")
    )

    # --- rate limiting / events / metrics ------------------------------------------------
    rate_limit_fail_open: bool = Field(default=True, validation_alias=_env("RATE_LIMIT_FAIL_OPEN"))
    #: the catch-all rule as ``"<requests>/<seconds>"`` (``"600/60"``): every path per client IP
    #: except health checks, metrics and the docs (default: the library's 1000/60)
    rate_limit_default: str | None = Field(
        default=None, pattern=r"^\s*[1-9][0-9]*\s*/\s*[1-9][0-9]*\s*$",
        validation_alias=_env("RATE_LIMIT_DEFAULT"),
    )
    #: every middleware rule, as a JSON list of ``RateLimitRule`` fields (``[{"requests_per_window":
    #: 20, "window_seconds": 60, "path_pattern": "/auth/"}]``); replaces the defaults when set
    rate_limit_rules: list[dict[str, Any]] | None = Field(
        default=None, validation_alias=_env("RATE_LIMIT_RULES")
    )
    #: IPv6 clients are counted by their /N network (one host usually holds a whole /64)
    rate_limit_ipv6_prefix: int = Field(
        default=64, ge=1, le=128, validation_alias=_env("RATE_LIMIT_IPV6_PREFIX")
    )
    #: failed-login backoff (crown_nexus.core.security.login_throttle): failures per account and
    #: client network before the delay starts, the much higher per-account threshold (any
    #: network), the first delay and its cap (seconds), and how long a failure is remembered
    login_throttle_threshold: int = Field(
        default=5, ge=1, validation_alias=_env("LOGIN_THROTTLE_THRESHOLD")
    )
    login_throttle_account_threshold: int = Field(
        default=50, ge=1, validation_alias=_env("LOGIN_THROTTLE_ACCOUNT_THRESHOLD")
    )
    login_throttle_base_delay: float = Field(
        default=1.0, gt=0, validation_alias=_env("LOGIN_THROTTLE_BASE_DELAY")
    )
    login_throttle_max_delay: float = Field(
        default=300.0, gt=0, validation_alias=_env("LOGIN_THROTTLE_MAX_DELAY")
    )
    login_throttle_window: float = Field(
        default=900.0, gt=0, validation_alias=_env("LOGIN_THROTTLE_WINDOW")
    )
    event_backend: Literal["memory", "celery"] = Field(
        default="memory", validation_alias=_env("EVENT_BACKEND")
    )
    #: the largest encoded event (payload + context, bytes) ``publish`` accepts
    event_max_bytes: int = Field(default=1_048_576, ge=1, validation_alias=_env("EVENT_MAX_BYTES"))
    #: default seconds an event handler may run (``none``: no limit)
    event_handler_timeout: float | None = Field(
        default=30.0, validation_alias=_env("EVENT_HANDLER_TIMEOUT")
    )
    #: memory event backend: handler runs scheduled or running before ``publish`` waits
    event_max_pending: int = Field(default=10_000, ge=1, validation_alias=_env("EVENT_MAX_PENDING"))
    #: seconds ``publish`` waits for room under backpressure before failing (``none``: no limit)
    event_backpressure_timeout: float | None = Field(
        default=None, validation_alias=_env("EVENT_BACKPRESSURE_TIMEOUT")
    )
    #: seconds the event system's shutdown waits for pending handler runs before cancelling them
    event_shutdown_timeout: float | None = Field(
        default=10.0, validation_alias=_env("EVENT_SHUTDOWN_TIMEOUT")
    )
    #: ``event_handler_duration_seconds`` observes a subscription's first run, then one in this many
    event_duration_sample_every: int = Field(
        default=8, ge=1, validation_alias=_env("EVENT_DURATION_SAMPLE_EVERY")
    )
    celery_broker_url: str | None = Field(default=None, validation_alias=_env("CELERY_BROKER_URL"))
    #: the Celery queue events are sent to and event workers consume
    celery_queue: str = Field(
        default="crown-nexus-events", min_length=1, validation_alias=_env("CELERY_QUEUE")
    )
    #: seconds a message taken by a Celery worker stays hidden from the others before it is
    #: delivered again (Redis broker: make it longer than the slowest handler)
    celery_visibility_timeout: float = Field(
        default=3600.0, gt=0, validation_alias=_env("CELERY_VISIBILITY_TIMEOUT")
    )
    #: how often (seconds) a Celery worker looks for messages of dead workers to deliver again
    #: (0: kombu's own schedule)
    celery_restore_interval: float = Field(
        default=0.0, ge=0, validation_alias=_env("CELERY_RESTORE_INTERVAL")
    )
    #: modules a Celery event worker imports at start to register its handlers (comma-separated;
    #: one that cannot be imported stops the worker)
    event_handler_modules: str = Field(default="", validation_alias=_env("EVENT_HANDLER_MODULES"))
    #: how many times a Celery worker retries an event whose handler failed
    event_max_retries: int = Field(default=5, ge=0, validation_alias=_env("EVENT_MAX_RETRIES"))
    #: the first Celery retry delay (seconds; doubled per retry up to ``event_retry_backoff_max``,
    #: plus up to 10 % jitter)
    event_retry_backoff: float = Field(
        default=1.0, ge=0, validation_alias=_env("EVENT_RETRY_BACKOFF")
    )
    #: the longest Celery retry delay (seconds)
    event_retry_backoff_max: float = Field(
        default=600.0, ge=0, validation_alias=_env("EVENT_RETRY_BACKOFF_MAX")
    )
    metrics_enabled: bool = Field(default=True, validation_alias=_env("METRICS_ENABLED"))
    #: bearer token a scraper sends to read ``/metrics`` in production (admins may read it too)
    metrics_token: SecretStr | None = Field(default=None, validation_alias=_env("METRICS_TOKEN"))
    #: addresses or CIDR networks (``10.0.0.0/8``) whose direct connections may read ``/metrics``
    #: without the token (a JSON list in the environment, like every list setting)
    metrics_allowed_ips: list[str] = Field(
        default_factory=list, validation_alias=_env("METRICS_ALLOWED_IPS")
    )
    #: OpenTelemetry tracing (``otel`` extra): on when this is true or the standard
    #: ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` is set (``OTEL_SDK_DISABLED=true`` turns it off)
    otel_enabled: bool = Field(default=False, validation_alias=_env("OTEL_ENABLED"))
    #: the ``service.name`` of the spans (default ``OTEL_SERVICE_NAME``, else ``app_name``)
    otel_service_name: str | None = Field(default=None, validation_alias=_env("OTEL_SERVICE_NAME"))
    #: OTLP/HTTP endpoint (also read as the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``):
    #: ``/v1/traces`` is added when it names no path; setting it turns tracing on
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    #: OTLP/HTTP traces endpoint, used as is (also read as the standard
    #: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); it wins over ``otel_exporter_otlp_endpoint`` and,
    #: like it, turns tracing on
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    #: ``true`` keeps tracing off whatever else asks for it (also read as the standard
    #: ``OTEL_SDK_DISABLED``; as there, any other value leaves tracing to the other settings)
    otel_sdk_disabled: bool = Field(default=False, validation_alias=_env("OTEL_SDK_DISABLED"))
    #: fraction of new traces sampled (parent-based: a sampled incoming trace stays sampled)
    otel_sample_ratio: float = Field(
        default=1.0, ge=0.0, le=1.0, validation_alias=_env("OTEL_SAMPLE_RATIO")
    )

    #: Idempotency-Key on POST/PATCH (IdempotencyMiddleware): on/off, how long responses are
    #: kept (seconds), and where: ``auto`` is Redis when configured (shared by workers), else memory
    idempotency_enabled: bool = Field(default=True, validation_alias=_env("IDEMPOTENCY_ENABLED"))
    idempotency_ttl_seconds: int = Field(
        default=24 * 60 * 60, ge=1, validation_alias=_env("IDEMPOTENCY_TTL_SECONDS")
    )
    idempotency_store: Literal["auto", "memory", "redis"] = Field(
        default="auto", validation_alias=_env("IDEMPOTENCY_STORE")
    )

    # --- what the service exposes ------------------------------------------------------------
    #: ``/docs``, ``/redoc`` and ``/openapi.json``; ``None``: on except in production
    docs_enabled: bool | None = Field(default=None, validation_alias=_env("DOCS_ENABLED"))

    @property
    def docs_are_enabled(self) -> bool:
        """Whether the interactive docs and the OpenAPI document are served."""
        return (not self.is_production) if self.docs_enabled is None else self.docs_enabled

    # --- feature flags -------------------------------------------------------------------
    #: ``auto``: Redis when Redis is configured, else memory; ``sql`` uses ``database_url``
    feature_store: Literal["auto", "memory", "sql", "redis"] = Field(
        default="auto", validation_alias=_env("FEATURE_STORE")
    )
    #: how often a shared flag store (SQL, Redis) is polled; default: the store's own
    feature_poll_interval: float | None = Field(
        default=None, gt=0, validation_alias=_env("FEATURE_POLL_INTERVAL")
    )

    @field_validator(
        "event_max_bytes", "event_max_pending", "event_duration_sample_every", mode="before"
    )
    @classmethod
    def _event_count(cls, value: Any, info: ValidationInfo) -> Any:
        """Empty, ``none``, ``off`` or 0 keep the default; ``1e6`` is read as 1000000."""
        if isinstance(value, str):
            text = value.strip().lower()
            if text in {"", "none", "off"}:
                return cls.model_fields[info.field_name or ""].default
            try:
                value = float(text)
            except ValueError:
                return value  # pydantic names the field and the bad value
        if isinstance(value, float) and value == int(value):
            value = int(value)
        if value == 0 or value is None:
            return cls.model_fields[info.field_name or ""].default
        return value

    @field_validator(
        "event_handler_timeout", "event_backpressure_timeout", "event_shutdown_timeout",
        mode="before",
    )
    @classmethod
    def _event_timeout(cls, value: Any, info: ValidationInfo) -> Any:
        """Empty keeps the default; ``none`` or ``off`` mean no limit."""
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "":
                return cls.model_fields[info.field_name or ""].default
            if text in {"none", "off"}:
                return None
        return value

    @field_validator("no_color", mode="before")
    @classmethod
    def _no_color_convention(cls, value: Any) -> Any:
        """no-color.org: any non-empty ``NO_COLOR`` turns colours off, whatever its value."""
        if isinstance(value, str):
            return bool(value.strip())
        return value

    @field_validator("otel_sdk_disabled", mode="before")
    @classmethod
    def _otel_true_only(cls, value: Any) -> Any:
        """OpenTelemetry's rule for ``OTEL_SDK_DISABLED``: only ``true`` (any case) disables."""
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return value

    @field_validator("max_body_sizes")
    @classmethod
    def _valid_body_sizes(cls, value: dict[str, int]) -> dict[str, int]:
        for prefix, size in value.items():
            if not prefix.startswith("/") or size < 1:
                raise ValueError(
                    f"max_body_sizes maps path prefixes ('/...') to positive byte counts, "
                    f"got {prefix!r}: {size!r}"
                )
        return value

    @field_validator("metrics_allowed_ips")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP address or CIDR network: {entry!r}") from exc
        return [entry.strip() for entry in value]

    @model_validator(mode="after")
    def _cache_follows_redis(self) -> Settings:
        """SPEC §8: with ``REDIS_URI`` set the cache uses Redis unless a backend was chosen."""
        if self.REDIS_URI and "CACHE_DEFAULT_BACKEND" not in self.model_fields_set:
            self.CACHE_DEFAULT_BACKEND = "redis"
        return self

    @model_validator(mode="after")
    def _secure_secret_key(self) -> Settings:
        key = self.secret_key.get_secret_value()
        missing = not key or key == DEFAULT_SECRET_KEY
        if self.ENVIRONMENT is Environment.PRODUCTION:
            if missing or len(key) < MIN_PRODUCTION_SECRET_LENGTH:
                raise ValueError(
                    "production refuses to start without a secret key of at least "
                    f"{MIN_PRODUCTION_SECRET_LENGTH} characters: set CROWN_NEXUS_SECRET_KEY"
                )
        elif missing:
            self.secret_key = SecretStr(_generated_secret())
            self._secret_key_generated = True
        return self

    @property
    def secret_key_is_generated(self) -> bool:
        """True when no secret key was configured and this process's random one is used."""
        return self._secret_key_generated

    @property
    def is_production(self) -> bool:
        """True when ``ENVIRONMENT`` is ``production``."""
        return self.ENVIRONMENT is Environment.PRODUCTION

    @cached_property
    def redis_url(self) -> str | None:
        """The Redis URL to use, or ``None`` when Redis is not configured.

        ``REDIS_URI`` wins; otherwise Redis counts as configured only when the cache backend
        is ``redis`` (then built from ``REDIS_HOST``/``PORT``/``DB``/``PASSWORD``).
        """
        if self.REDIS_URI:
            return self.REDIS_URI
        if self.CACHE_DEFAULT_BACKEND != "redis":
            return None
        auth = ""
        if self.REDIS_PASSWORD is not None:
            auth = f":{self.REDIS_PASSWORD.get_secret_value()}@"
        return f"redis://{auth}{self.REDIS_HOST}:{self.REDIS_PORT}/{self.REDIS_DB}"


@cache
def _environment_settings() -> Settings:
    """The settings read from the environment (once per process): the default container's."""
    return Settings()


def get_settings() -> Settings:
    """Return the current app's settings (``setup_app``'s), else those read from the environment.

    Inside a request or the lifespan of an app built with ``setup_app`` this is that app's
    ``Settings``; in scripts, workers and tests without an app it is the object read from the
    environment on first use (``crown_nexus.core.config.settings`` answers the same).
    """
    found = current_container().settings
    return found if found is not None else _environment_settings()
