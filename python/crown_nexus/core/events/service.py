"""``EventService``: publish events, register handlers, pick a backend (guide §10, SPEC §6).

Handlers receive ``{"id": str, "name": str, "data": payload, "context": dict, "timestamp": ISO}``.
The payload and context are validated when published: they must be JSON-serializable (orjson;
dataclasses and pydantic models are turned into dicts) and the encoded event at most
``EventConfig.max_event_bytes`` long, otherwise :class:`EventPublishException` is raised. Handlers
get the decoded JSON, so they see the same data on every backend and never share mutable
objects with the publisher.

A handler that raises (or exceeds its timeout) is logged, reported through
``crown_nexus.core.error.report_error``, counted in ``event_handler_errors_total`` and does not
stop the other handlers. Metrics (``crown_nexus.core.metrics``): ``events_published_total``
``{event_type, backend}``, ``event_handler_errors_total{event_type, handler}``,
``event_handler_duration_seconds{event_type, handler}``, and the backlog gauge
``event_handlers_pending`` (in-process handler runs scheduled or running).

Handlers may be registered before :meth:`EventService.initialize` (the guide registers them at
import time); publishing before ``initialize`` uses the memory backend (after ``shutdown``: the
backend last initialized). :func:`configure_events` (called by ``setup_app``) makes the
service follow an app's ``Settings(event_backend=...)`` instead of the loaded settings.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from opentelemetry.trace import StatusCode

from crown_nexus.core.events.backends.base import EventBackend
from crown_nexus.core.events.backends.memory import MemoryEventBackend
from crown_nexus.core.events.exceptions import (
    EventConfigurationException,
    EventException,
    EventHandlerException,
    EventPublishException,
)
from crown_nexus.core.events.outbox import OutboxRelay, write_to_outbox
from crown_nexus.core.tracing import SpanKind, inject_context, resume_span, span, tracing_enabled
from crown_nexus.logging import get_current_request_id, get_logger

__all__ = [
    "EventBackendType",
    "EventConfig",
    "EventHandler",
    "EventService",
    "Subscription",
    "configure_events",
    "get_event_service",
    "handler_id",
]

logger = get_logger("crown_nexus.core.events")

EventHandler = Callable[[dict[str, Any]], Awaitable[Any] | Any]
F = TypeVar("F", bound=Callable[..., Any])

ALL_EVENTS = "*"
MAX_EVENT_NAME_LENGTH = 255


class EventBackendType(enum.StrEnum):
    """Where events are delivered: ``MEMORY`` (this process) or ``CELERY`` (worker processes)."""

    MEMORY = "memory"
    CELERY = "celery"


def _env_float(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().lower() in {"none", "off"}:
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise EventConfigurationException(f"{name} must be a number, not {raw!r}") from exc


@dataclass
class EventConfig:
    """Limits of the event system (``from_env`` reads ``CROWN_NEXUS_EVENT_*``).

    - ``max_event_bytes``: largest encoded event (payload + context) accepted (1 MiB).
    - ``handler_timeout``: default seconds a handler may run (``None``: no limit).
    - ``max_pending``: memory backend bound on scheduled handler runs (backpressure).
    - ``backpressure_timeout``: seconds ``publish`` may wait for room (``None``: as long as needed).
    - ``shutdown_timeout``: seconds ``shutdown`` waits for pending handlers before cancelling them.
    - ``duration_sample_every``: ``event_handler_duration_seconds`` observes the first run of
      each subscription, then one run in this many (1: every run).
    """

    max_event_bytes: int = 1_048_576
    handler_timeout: float | None = 30.0
    max_pending: int = 10_000
    backpressure_timeout: float | None = None
    shutdown_timeout: float | None = 10.0
    duration_sample_every: int = 8

    @classmethod
    def from_env(cls) -> EventConfig:
        """Defaults overridden by ``CROWN_NEXUS_EVENT_MAX_BYTES``, ``..._HANDLER_TIMEOUT``,
        ``..._MAX_PENDING``, ``..._BACKPRESSURE_TIMEOUT`` and ``..._SHUTDOWN_TIMEOUT``."""
        d = cls()
        max_bytes = _env_float("CROWN_NEXUS_EVENT_MAX_BYTES", d.max_event_bytes)
        max_pending = _env_float("CROWN_NEXUS_EVENT_MAX_PENDING", d.max_pending)
        return cls(
            max_event_bytes=int(max_bytes or d.max_event_bytes),
            handler_timeout=_env_float("CROWN_NEXUS_EVENT_HANDLER_TIMEOUT", d.handler_timeout),
            max_pending=int(max_pending or d.max_pending),
            backpressure_timeout=_env_float(
                "CROWN_NEXUS_EVENT_BACKPRESSURE_TIMEOUT", d.backpressure_timeout
            ),
            shutdown_timeout=_env_float("CROWN_NEXUS_EVENT_SHUTDOWN_TIMEOUT", d.shutdown_timeout),
            duration_sample_every=int(
                _env_float("CROWN_NEXUS_EVENT_DURATION_SAMPLE_EVERY", d.duration_sample_every)
                or d.duration_sample_every
            ),
        )


def handler_id(handler: Callable[..., Any]) -> str:
    """A stable name for ``handler``: ``module:qualname`` (the same in every process)."""
    module = getattr(handler, "__module__", None) or type(handler).__module__
    qualname = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}:{qualname}"


@dataclass(eq=False)
class Subscription:
    """One handler subscribed to one event name (``"*"``: every event)."""

    event_name: str
    handler: EventHandler
    filter_func: Callable[[dict[str, Any]], Any] | None = None
    timeout: float | None = None
    id: str = ""
    runs: int = 0

    def __post_init__(self) -> None:
        if not self.id:
            self.id = handler_id(self.handler)


_ts_cache: list[Any] = [-1, ""]


def _utc_iso() -> str:
    """Now as ISO-8601 UTC with millisecond precision (``...T12:00:00.123+00:00``).

    The string is reused within one millisecond (a burst of events formats it once).
    """
    ms = time.time_ns() // 1_000_000
    if ms != _ts_cache[0]:
        _ts_cache[0] = ms
        _ts_cache[1] = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return str(_ts_cache[1])


def _default(obj: Any) -> Any:
    """orjson fallback: pydantic models and sets; anything else is not serializable."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def _current_request_id() -> str | None:
    try:
        rid = get_current_request_id()
    except Exception:
        return None
    return str(rid) if rid else None


class _Metrics:
    """The event metrics, looked up lazily; recording never raises.

    Published counts are added up locally and handed to the metrics service at most every
    :attr:`FLUSH_INTERVAL` seconds (and on :meth:`flush`); handler durations are observed for
    the first run of each subscription and then one run in ``sample_every``; errors are
    counted at once. The backlog gauge ``event_handlers_pending`` (handler runs scheduled or
    running in this process; ``livesum`` over workers) is set on every flush, and a flush is
    scheduled after each handler run, so it follows the backlog within :attr:`FLUSH_INTERVAL`.
    """

    FLUSH_INTERVAL = 0.05

    _DEFS: tuple[tuple[str, str, str, list[str]], ...] = (
        ("events_published_total", "counter", "Events published", ["event_type", "backend"]),
        ("event_handler_errors_total", "counter", "Event handler failures",
         ["event_type", "handler"]),
        ("event_handler_duration_seconds", "histogram", "Event handler run time",
         ["event_type", "handler"]),
        ("event_handlers_pending", "gauge", "Event handler runs scheduled or running", []),
    )

    def __init__(
        self, sample_every: int = 1, pending: Callable[[], int] | None = None
    ) -> None:
        self._pending_source = pending
        self._service: Any = None
        self._retry_at = 0.0
        self.sample_every = max(1, int(sample_every))
        self._published: dict[tuple[str, str], int] = {}
        self._flush_at = 0.0
        self._flush_handle: asyncio.TimerHandle | None = None

    def _get(self) -> Any:
        service = self._service
        if service is not None:
            return service
        now = time.monotonic()
        if now < self._retry_at:
            return None
        try:
            from crown_nexus.core.dependency_manager import get_service

            service = get_service("metrics_service")
            for name, kind, doc, labels in self._DEFS:
                if kind == "counter":
                    service.create_counter(name, doc, labels)
                elif kind == "gauge":
                    service.create_gauge(name, doc, labels, multiprocess_mode="livesum")
                else:
                    service.create_histogram(
                        name, doc, labels,
                        buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
                    )
        except Exception as exc:
            logger.debug("event metrics unavailable", error=repr(exc))
            self._retry_at = now + 30.0
            return None
        self._service = service
        return service

    def reset(self) -> None:
        self._service = None
        self._retry_at = 0.0

    def published(self, name: str, backend: str) -> None:
        key = (name, backend)
        pending = self._published
        pending[key] = pending.get(key, 0) + 1
        now = time.monotonic()
        if now >= self._flush_at:
            self.flush()
            self._flush_at = now + self.FLUSH_INTERVAL
        elif self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._flush_handle = loop.call_later(self.FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        """Hand the locally added-up published counts to the metrics service."""
        handle, self._flush_handle = self._flush_handle, None
        if handle is not None:
            handle.cancel()
        self._set_backlog()
        if not self._published:
            return
        pending, self._published = self._published, {}
        service = self._get()
        if service is None:
            return
        for (name, backend), amount in pending.items():
            try:
                service.increment_counter(
                    "events_published_total", amount, {"event_type": name, "backend": backend}
                )
            except Exception as exc:
                logger.debug("event metric failed", error=repr(exc))

    def _set_backlog(self) -> None:
        source = self._pending_source
        if source is None:
            return
        service = self._get()
        if service is None:
            return
        try:
            service.set_gauge("event_handlers_pending", source())
        except Exception as exc:
            logger.debug("event metric failed", error=repr(exc))

    def backlog_now(self) -> None:
        """Set ``event_handlers_pending`` now (start-up: the gauge exists before any event)."""
        self._set_backlog()

    def _flush_soon(self) -> None:
        if self._flush_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._flush_handle = loop.call_later(self.FLUSH_INTERVAL, self.flush)

    def subscribed(self, name: str, handler: str) -> None:
        """Start ``event_handler_errors_total`` of a new subscription at 0, so failure rates
        and alerts have a series before the first failure (not for wildcard names)."""
        if "*" in name or "?" in name or "[" in name:
            return
        retry_at = self._retry_at
        service = self._get()
        if service is None:
            self._retry_at = retry_at  # a failed lookup here does not delay the publishers'
        else:
            try:
                service.increment_counter(
                    "event_handler_errors_total", 0, {"event_type": name, "handler": handler}
                )
            except Exception as exc:
                logger.debug("event metric failed", error=repr(exc))

    def handler_error(self, name: str, handler: str) -> None:
        service = self._get()
        if service is not None:
            try:
                service.increment_counter(
                    "event_handler_errors_total", labels={"event_type": name, "handler": handler}
                )
            except Exception as exc:
                logger.debug("event metric failed", error=repr(exc))

    def duration(self, sub: Subscription, name: str, seconds: float) -> None:
        n = sub.runs
        sub.runs = n + 1
        if self._flush_handle is None:
            self._flush_soon()  # the backlog gauge follows the finished run
        if n % self.sample_every:
            return
        service = self._get()
        if service is not None:
            try:
                service.observe_histogram(
                    "event_handler_duration_seconds",
                    seconds,
                    {"event_type": name, "handler": sub.id},
                )
            except Exception as exc:
                logger.debug("event metric failed", error=repr(exc))


@dataclass
class HandlerStats:
    """Counts of handler runs in this process (for tests and health checks)."""

    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    filtered_out: int = 0


class EventService:
    """Publishes events to a backend and runs the handlers registered here.

    Registered as ``"event_service"``; :func:`get_event_service` returns the same instance.
    """

    def __init__(self, config: EventConfig | None = None) -> None:
        self.config = config or EventConfig.from_env()
        self._subs: dict[str, list[Subscription]] = {}
        self._default_context: dict[str, Any] = {}
        self._backend: EventBackend | None = None
        self._backend_type: EventBackendType | None = None
        self._last: tuple[EventBackendType, dict[str, Any]] = (EventBackendType.MEMORY, {})
        #: the backend an app's settings chose (:meth:`configure`); ``None``: the loaded settings
        self._configured: EventBackendType | None = None
        self._metrics = _Metrics(self.config.duration_sample_every, self.pending_count)
        self._relays: list[Any] = []
        self.stats = HandlerStats()

    # ------------------------------------------------------------------ lifecycle
    @property
    def backend(self) -> EventBackend | None:
        """The active backend (``None`` before the first ``initialize`` or publish)."""
        return self._backend

    @property
    def backend_type(self) -> EventBackendType | None:
        """The active backend's type."""
        return self._backend_type

    @property
    def initialized(self) -> bool:
        """True once a backend is active."""
        return self._backend is not None

    async def initialize(
        self, backend_type: EventBackendType | str | None = None, **options: Any
    ) -> None:
        """Start delivering events through ``backend_type`` (default: the ``event_backend`` of
        the settings given to :meth:`configure`, else of ``crown_nexus.core.config.settings``).

        Without ``backend_type`` an initialized service keeps its backend (the app's start-up
        calls ``initialize()`` on every service) unless :meth:`configure` chose another one: then
        it switches to that one. Calling it again with the same type and no
        options keeps the backend; another type (or new options) drains and closes the old one. Options go to the backend (memory:
        ``max_pending``, ``backpressure_timeout``; Celery: ``app``, ``task_options``).
        Raises :class:`EventConfigurationException` for an unknown type or a missing extra.
        """
        if backend_type is None:
            configured = self._configured
            if (
                self._backend is not None
                and not options
                and (configured is None or configured is self._backend_type)
            ):
                return
            if configured is not None:
                backend_type = configured
            else:
                from crown_nexus.core.config import settings

                backend_type = getattr(settings, "event_backend", "memory")
        try:
            kind = EventBackendType(
                backend_type.value if isinstance(backend_type, enum.Enum) else backend_type
            )
        except ValueError:
            raise EventConfigurationException(
                f"unknown event backend {backend_type!r}; use 'memory' or 'celery'"
            ) from None
        if self._backend is not None and self._backend_type is kind and not options:
            if getattr(self._backend, "_closed", False):
                self._backend._closed = False  # type: ignore[attr-defined]
            return
        old = self._backend
        self._last = (kind, dict(options))
        self._backend = self._build_backend(kind, options)
        self._backend_type = kind
        if old is not None:
            await old.close(self.config.shutdown_timeout)
        self._metrics.backlog_now()  # the backlog gauge exists (at 0) from start-up
        logger.info("event system initialized", backend=kind.value)

    def configure(self, settings: Any) -> bool:
        """Follow ``settings.event_backend`` (an app's ``Settings``) from now on; returns whether
        the backend to use changed.

        Takes effect at the next :meth:`initialize` without a type (the app's start-up): an
        active backend of another type is drained and closed there, on the app's loop. Before
        any ``initialize``, a publish uses the configured type. Raises
        :class:`EventConfigurationException` for an unknown backend name.
        """
        raw = getattr(settings, "event_backend", "memory")
        try:
            kind = EventBackendType(raw.value if isinstance(raw, enum.Enum) else raw)
        except ValueError:
            raise EventConfigurationException(
                f"unknown event backend {raw!r}; use 'memory' or 'celery'"
            ) from None
        current = self._backend_type if self._backend is not None else self._last[0]
        self._configured = kind
        if self._backend is None and self._last[0] is not kind:
            self._last = (kind, {})
        if current is kind:
            return False
        logger.info("event service configured", backend=kind.value)
        return True

    def _build_backend(self, kind: EventBackendType, options: dict[str, Any]) -> EventBackend:
        if kind is EventBackendType.MEMORY:
            unknown = sorted(set(options) - {"max_pending", "backpressure_timeout"})
            if unknown:
                raise EventConfigurationException(
                    f"unknown memory backend options {unknown}", details={"options": unknown}
                )
            try:
                return MemoryEventBackend(
                    self,
                    max_pending=options.get("max_pending", self.config.max_pending),
                    backpressure_timeout=options.get(
                        "backpressure_timeout", self.config.backpressure_timeout
                    ),
                )
            except (TypeError, ValueError) as exc:
                raise EventConfigurationException(f"bad memory backend options: {exc}") from exc
        try:
            from crown_nexus.core.events.backends.celery import CeleryEventBackend
        except ImportError as exc:
            raise EventConfigurationException(
                "the Celery event backend needs the celery extra: pip install 'crown-nexus[celery]'"
            ) from exc
        unknown = sorted(set(options) - {"app", "task_options"})
        if unknown:
            raise EventConfigurationException(
                f"unknown Celery backend options {unknown}", details={"options": unknown}
            )
        return CeleryEventBackend(**options)

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop outbox relays, wait for pending handler runs (then cancel), close the backend.

        Handlers stay registered; the next ``initialize`` starts again, and so does a publish
        (with the backend last initialized, memory if none was).
        """
        for relay in list(self._relays):
            await relay.stop()
        backend = self._backend
        if backend is not None:
            await backend.close(self.config.shutdown_timeout if timeout is None else timeout)
        self._backend = None
        self._backend_type = None
        self._metrics.flush()

    close = shutdown

    async def wait_for_pending(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until in-process handler runs of published events (and the events they publish)
        have finished. Returns False when ``timeout`` seconds passed first."""
        backend = self._backend
        if backend is None:
            self._metrics.flush()
            return True
        done = await backend.wait_for_pending(timeout)
        self._metrics.flush()
        return done

    def flush_metrics(self) -> None:
        """Hand locally batched metric counts to the metrics service now."""
        self._metrics.flush()

    def pending_count(self) -> int:
        """Handler runs scheduled or running in this process."""
        return 0 if self._backend is None else self._backend.pending_count()

    # ------------------------------------------------------------------ handlers
    def subscribe(
        self,
        event_name: str,
        handler: EventHandler,
        filter_func: Callable[[dict[str, Any]], Any] | None = None,
        *,
        timeout: float | None = None,
        name: str | None = None,
    ) -> Subscription:
        """Run ``handler(event)`` for every event named ``event_name`` (``"*"``: all events)
        for which ``filter_func(event)`` is true. ``timeout`` overrides the default handler
        timeout; ``name`` overrides the handler's id (``module:qualname``). Returns the
        subscription (pass it, or the handler, to :meth:`unsubscribe`)."""
        if not isinstance(event_name, str) or not event_name:
            raise EventConfigurationException("event_name must be a non-empty string")
        if not callable(handler):
            raise EventConfigurationException(f"handler for {event_name!r} is not callable")
        if filter_func is not None and not callable(filter_func):
            raise EventConfigurationException(f"filter_func for {event_name!r} is not callable")
        sub = Subscription(event_name, handler, filter_func, timeout, name or "")
        # copy-on-write: publishers iterate the old list safely
        self._subs[event_name] = [*self._subs.get(event_name, ()), sub]
        self._metrics.subscribed(event_name, sub.id)
        return sub

    def unsubscribe(
        self, event_name: str, handler: EventHandler | Subscription | None = None
    ) -> int:
        """Remove ``handler`` (or a subscription) from ``event_name``; without one, every handler
        of that name. Returns how many subscriptions were removed."""
        subs = self._subs.get(event_name, [])
        if handler is None:
            keep: list[Subscription] = []
        elif isinstance(handler, Subscription):
            keep = [s for s in subs if s is not handler]
        else:
            keep = [s for s in subs if s.handler is not handler]
        removed = len(subs) - len(keep)
        if keep:
            self._subs[event_name] = keep
        else:
            self._subs.pop(event_name, None)
        return removed

    def event_handler(
        self,
        event_name: str,
        filter_func: Callable[[dict[str, Any]], Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Decorator: subscribe the function to ``event_name`` (see :meth:`subscribe`); the
        function is returned unchanged. Works before :meth:`initialize`."""

        def decorator(func: F) -> F:
            self.subscribe(event_name, func, filter_func, timeout=timeout)
            return func

        return decorator

    def handlers_for(self, event_name: str) -> list[Subscription]:
        """The subscriptions an event named ``event_name`` runs, in subscription order."""
        exact = self._subs.get(event_name)
        wildcard = self._subs.get(ALL_EVENTS)
        if wildcard is None:
            return exact or []
        if exact is None or event_name == ALL_EVENTS:
            return wildcard
        return [*exact, *wildcard]

    def subscriptions(self) -> dict[str, list[Subscription]]:
        """Every subscription, by event name."""
        return {k: list(v) for k, v in self._subs.items()}

    def set_default_context(self, context: Mapping[str, Any]) -> None:
        """Context merged under every published event's own context (theirs wins)."""
        if not isinstance(context, Mapping):
            raise EventConfigurationException("default context must be a mapping")
        try:
            orjson.dumps(dict(context), default=_default)
        except TypeError as exc:
            raise EventConfigurationException(
                f"default context is not JSON-serializable: {exc}"
            ) from exc
        self._default_context = dict(context)

    @property
    def default_context(self) -> dict[str, Any]:
        """A copy of the default context."""
        return dict(self._default_context)

    # ------------------------------------------------------------------ publishing
    def build_event(
        self, event_name: str, payload: Any, context: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """Validate and encode an event; return ``(event dict, its JSON)``.

        The dict is decoded from the JSON, so it holds exactly what a handler will receive.
        Raises :class:`EventPublishException` for a bad name, a payload or context that is not
        JSON-serializable, or an event larger than ``config.max_event_bytes``.
        """
        if not isinstance(event_name, str) or not event_name or event_name == ALL_EVENTS:
            raise EventPublishException(
                "event_name must be a non-empty string (and not '*')",
                details={"event_name_type": type(event_name).__name__},
            )
        if len(event_name) > MAX_EVENT_NAME_LENGTH:
            raise EventPublishException(
                f"event_name longer than {MAX_EVENT_NAME_LENGTH} characters",
                event_name=event_name[:MAX_EVENT_NAME_LENGTH],
            )
        if context is not None and not isinstance(context, Mapping):
            raise EventPublishException(
                f"context must be a mapping, not {type(context).__name__}", event_name=event_name
            )
        if self._default_context:
            ctx = {**self._default_context, **(context or {})}
        else:
            ctx = dict(context) if context else {}
        if "request_id" not in ctx:
            rid = _current_request_id()
            if rid is not None:
                ctx["request_id"] = rid
        if "traceparent" not in ctx and tracing_enabled():
            inject_context(ctx)  # W3C trace context: handlers and workers resume the trace
        event = {
            "id": os.urandom(16).hex(),
            "name": event_name,
            "data": payload,
            "context": ctx,
            "timestamp": _utc_iso(),
        }
        try:
            encoded = orjson.dumps(event, default=_default)
        except TypeError as exc:
            raise EventPublishException(
                f"event payload or context is not JSON-serializable: {exc}",
                event_name=event_name,
                original_exception=exc,
            ) from None
        limit = self.config.max_event_bytes
        if len(encoded) > limit:
            raise EventPublishException(
                f"event is {len(encoded)} bytes, larger than the {limit} bytes allowed",
                event_name=event_name,
                details={"size": len(encoded), "max_bytes": limit},
            )
        return orjson.loads(encoded), encoded

    async def _active_backend(self) -> EventBackend:
        backend = self._backend
        if backend is None:
            kind, options = self._last
            await self.initialize(kind, **options)
            backend = self._backend
            assert backend is not None
        return backend

    async def publish(
        self,
        event_name: str,
        payload: Any,
        context: Mapping[str, Any] | None = None,
        *,
        session: Any = None,
    ) -> str:
        """Publish ``payload`` as event ``event_name``; return the event's id.

        Without ``session`` the event goes to the backend now (memory: handler tasks are
        scheduled, this waits only when ``max_pending`` runs are pending; Celery: sent to the
        broker). With an SQLAlchemy ``AsyncSession`` the event is written to the outbox table in
        the session's transaction and delivered by an :class:`~crown_nexus.core.events.outbox.OutboxRelay`
        after commit; a rollback publishes nothing (``events_published_total`` counts the event
        when the relay delivers it). Raises :class:`EventPublishException`.

        With tracing on, the publish is a ``PRODUCER`` span ``event.publish <name>`` and the
        event's context carries its ``traceparent``, so every handler (here, in a Celery
        worker or after the outbox relay) continues the publisher's trace.
        """
        if tracing_enabled():
            with span(
                f"event.publish {event_name}",
                tracer="crown_nexus.events",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "crown_nexus",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": str(event_name),
                    "crown_nexus.event.outbox": session is not None,
                },
            ) as current:
                event_id = await self._publish(event_name, payload, context, session)
                if current is not None:
                    current.set_attribute("messaging.message.id", event_id)
                return event_id
        return await self._publish(event_name, payload, context, session)

    async def _publish(
        self, event_name: str, payload: Any, context: Mapping[str, Any] | None, session: Any
    ) -> str:
        event, encoded = self.build_event(event_name, payload, context)
        if session is not None:
            await write_to_outbox(session, event, encoded, relays=self._relays)
            return str(event["id"])
        await self.deliver(event, encoded)
        return str(event["id"])

    async def deliver(self, event: dict[str, Any], encoded: bytes | None = None) -> None:
        """Hand an already built event (from :meth:`build_event` or the outbox) to the backend.

        Raises :class:`EventPublishException` when the backend fails.
        """
        backend = self._backend or await self._active_backend()
        if encoded is None:
            encoded = orjson.dumps(event)
        try:
            await backend.publish(event, encoded)
        except EventException:
            raise
        except Exception as exc:
            raise EventPublishException(
                f"event backend {backend.name!r} failed: {type(exc).__name__}",
                event_name=event.get("name"),
                original_exception=exc,
            ) from exc
        self._metrics.published(event["name"], backend.name)

    # ------------------------------------------------------------------ running handlers
    def timeout_of(self, sub: Subscription) -> float | None:
        """The timeout that applies to ``sub`` (its own, else the configured default)."""
        return sub.timeout if sub.timeout is not None else self.config.handler_timeout

    async def run_handler(
        self, sub: Subscription, event: dict[str, Any], *, enforce_timeout: bool = True
    ) -> bool:
        """Run one subscription for ``event``: filter, timeout, metrics, error reporting.

        Returns True when the handler succeeded or the filter skipped it, False when it failed
        (it is then logged, reported and counted). Never raises (except cancellation). With
        ``enforce_timeout=False`` the caller enforces the timeout (the memory backend's
        watchdog) and reports it through :meth:`handler_timed_out`.

        With tracing on, the run is a ``CONSUMER`` span ``event.handle <name>`` continuing the
        trace of the event's context (``traceparent``); a failed run marks it as an error.
        """
        if tracing_enabled():
            with resume_span(
                f"event.handle {event['name']}",
                event.get("context"),
                tracer="crown_nexus.events",
                attributes={
                    "messaging.system": "crown_nexus",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": str(event["name"]),
                    "messaging.message.id": str(event.get("id")),
                    "crown_nexus.event.handler": sub.id,
                },
            ) as current:
                ok = await self._run_handler(sub, event, enforce_timeout)
                if not ok and current is not None:
                    current.set_status(StatusCode.ERROR, "event handler failed")
                return ok
        return await self._run_handler(sub, event, enforce_timeout)

    async def _run_handler(
        self, sub: Subscription, event: dict[str, Any], enforce_timeout: bool
    ) -> bool:
        name = event["name"]
        if sub.filter_func is not None:
            try:
                wanted = sub.filter_func(event)
            except Exception as exc:
                await self._failed(sub, event, exc, "filter")
                return False
            if not wanted:
                self.stats.filtered_out += 1
                return True
        timeout = self.timeout_of(sub) if enforce_timeout else None
        start = time.perf_counter()
        deadline: asyncio.Timeout | None = None
        try:
            result = sub.handler(event)
            if inspect.isawaitable(result):
                if timeout is None:
                    await result
                else:
                    deadline = asyncio.timeout(timeout)
                    async with deadline:
                        await result
        except TimeoutError as exc:
            if deadline is None or not deadline.expired():
                self._metrics.duration(sub, name, time.perf_counter() - start)
                await self._failed(sub, event, exc, "error")
                return False
            await self.handler_timed_out(sub, event, time.perf_counter() - start)
            return False
        except Exception as exc:
            self._metrics.duration(sub, name, time.perf_counter() - start)
            await self._failed(sub, event, exc, "error")
            return False
        self._metrics.duration(sub, name, time.perf_counter() - start)
        self.stats.succeeded += 1
        return True

    async def handler_timed_out(
        self, sub: Subscription, event: dict[str, Any], elapsed: float
    ) -> None:
        """Record that ``sub`` was stopped after exceeding its timeout (logged, reported, counted)."""
        self._metrics.duration(sub, event["name"], elapsed)
        self.stats.timed_out += 1
        timeout = self.timeout_of(sub)
        err = EventHandlerException(
            f"event handler {sub.id} exceeded its {timeout}s timeout",
            event_name=event["name"],
            handler=sub.id,
        )
        await self._failed(sub, event, err, "timeout")

    async def _failed(
        self, sub: Subscription, event: dict[str, Any], exc: BaseException, stage: str
    ) -> None:
        self.stats.failed += 1
        self._metrics.handler_error(event["name"], sub.id)
        ctx = event.get("context") or {}
        logger.error(
            "Event handler failed",
            event_name=event["name"],
            event_id=event.get("id"),
            handler=sub.id,
            stage=stage,
            error_type=type(exc).__name__,
            error=str(exc)[:500],
        )
        try:
            from crown_nexus.core.error import report_error

            await report_error(
                exc,
                {
                    "function": sub.id,
                    "user_id": ctx.get("user_id") if isinstance(ctx, Mapping) else None,
                    "request_id": ctx.get("request_id") if isinstance(ctx, Mapping) else None,
                    "event_name": event["name"],
                    "event_id": event.get("id"),
                    "handler": sub.id,
                    "stage": stage,
                },
            )
        except Exception as report_exc:  # reporting must never break event processing
            logger.warning("could not report event handler error", error=repr(report_exc))

    async def dispatch(
        self, event: dict[str, Any], handler_ids: list[str] | None = None
    ) -> list[str]:
        """Run the handlers of ``event`` here, concurrently, and wait for them (a worker's job).

        ``handler_ids`` restricts the run to those handlers (a retry of the ones that failed).
        Returns the ids of the handlers that failed.
        """
        subs = self.handlers_for(event["name"])
        if handler_ids is not None:
            wanted = set(handler_ids)
            subs = [s for s in subs if s.id in wanted]
        if not subs:
            return []
        results = await asyncio.gather(*(self.run_handler(s, event) for s in subs))
        return [s.id for s, ok in zip(subs, results, strict=True) if not ok]

    # ------------------------------------------------------------------ outbox
    def start_outbox_relay(self, engine: Any, **options: Any) -> Any:
        """Create and start an :class:`~crown_nexus.core.events.outbox.OutboxRelay` delivering
        ``engine``'s outbox through this service (``options`` go to the relay); ``shutdown``
        stops it. Call from a running event loop (e.g. the app's start-up)."""
        relay = OutboxRelay(engine, self, **options)
        relay.start()
        return relay

    def attach_relay(self, relay: Any) -> None:
        """Let ``publish(session=...)`` wake ``relay`` after commit; ``shutdown`` stops it."""
        if relay not in self._relays:
            self._relays.append(relay)

    def detach_relay(self, relay: Any) -> None:
        """Forget ``relay`` (it is not stopped)."""
        if relay in self._relays:
            self._relays.remove(relay)


_service: EventService | None = None


def configure_events(settings: Any) -> EventService:
    """Point the process-wide event service at ``settings.event_backend`` (an app's settings)
    and return it; ``setup_app`` calls it (see :meth:`EventService.configure`)."""
    service = get_event_service()
    service.configure(settings)
    return service


def get_event_service() -> EventService:
    """The process-wide event service (the one registered as ``"event_service"``)."""
    global _service
    if _service is None:
        _service = EventService()
    return _service

