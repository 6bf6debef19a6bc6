"""``MetricsMiddleware``: count and time every HTTP request by route template.

Pure ASGI. Per request (paths in ``ignore_paths`` or below them are skipped) it tracks
``http_requests_in_progress{method}`` while the request runs and records the request's count,
duration and error (:mod:`crown_nexus.core.metrics.http`): two calls per request on a
``MetricsService`` (``request_started`` / ``request_finished``, the series cached per method,
route and status), ``track_in_progress`` ±1 and ``track_request`` on any other metrics service.
``endpoint`` is the ROUTE TEMPLATE Starlette matched (``/users/{user_id}``, read from
``scope["route"]`` after the app ran), ``"<unmatched>"`` when no route matched, so raw paths
never become label values. The ``method`` label is the request's method when it is one of
HTTP's (:data:`KNOWN_METHODS`), else ``"_OTHER"`` (as OpenTelemetry does), so invented methods
never become label values either. ``error_code`` is the response's ``X-Error-Code`` header, or the
exception type when the app raised (counted as 500, and the exception propagates).
Recording failures are logged and never affect the response.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from starlette.types import Message

from crown_nexus.core.metrics import MetricName
from crown_nexus.logging import get_logger
from crown_nexus.middleware._send import RawHeaders, add_start_hook

__all__ = ["KNOWN_METHODS", "OTHER_METHOD", "UNMATCHED_ROUTE", "MetricsMiddleware"]

#: endpoint label for requests no route matched (404s of random paths)
UNMATCHED_ROUTE = "<unmatched>"
#: the methods counted under their own name; any other is counted as :data:`OTHER_METHOD`
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
#: method label of every method outside :data:`KNOWN_METHODS` (OpenTelemetry's value)
OTHER_METHOD = "_OTHER"

_logger = get_logger("crown_nexus.middleware.metrics")
#: the in-progress gauge's name and its label dicts per method, as plain str (equal to the
#: MetricName / MetricTag members, without hashing an enum member per request)
_IN_PROGRESS = MetricName.HTTP_IN_PROGRESS.value
_PROGRESS_LABELS: dict[str, dict[str, str]] = {}
_perf_counter = time.perf_counter


def route_template(scope: dict[str, Any]) -> str:
    """Return the template of the route that handled ``scope`` or :data:`UNMATCHED_ROUTE`."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED_ROUTE
    root = scope.get("root_path") or ""
    return f"{root}{path}" if root and not path.startswith(root) else path


class MetricsMiddleware:
    """Record request count, duration, errors and in-progress requests (module docstring)."""

    def __init__(
        self,
        app: Any,
        ignore_paths: Iterable[str] | None = None,
        metrics_service: Any = None,
    ) -> None:
        self.app = app
        paths = [p for p in (ignore_paths or ()) if p]
        self._ignore_exact = frozenset(paths)
        self._ignore_prefixes = tuple(p.rstrip("/") + "/" for p in paths if p != "/")
        self._service: Any = None
        self._started: Any = None
        self._finished: Any = None
        if metrics_service is not None:
            self._bind(metrics_service)

    def _bind(self, service: Any) -> None:
        """Use ``service``, its fused calls bound once; a metrics service without them gets the
        same two calls built on ``track_in_progress`` / ``track_request``."""
        started = getattr(service, "request_started", None)
        finished = getattr(service, "request_finished", None)
        if started is None or finished is None:
            started, finished = _generic_calls(service)
        self._started, self._finished = started, finished
        self._service = service

    def _metrics(self) -> Any:
        if self._service is None:
            from crown_nexus.core.dependency_manager import get_service

            self._bind(get_service("metrics_service"))
        return self._service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Measure the request unless its path is ignored."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in self._ignore_exact or path.startswith(self._ignore_prefixes):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        try:
            if self._service is None:
                self._metrics()
            progress = self._started(method)
        except Exception as exc:
            _logger.warning("Metrics unavailable; request not measured", error=repr(exc))
            await self.app(scope, receive, send)
            return

        status_code = 500
        error_code: str | None = None

        def on_start(message: Message, headers: RawHeaders, names: set[bytes]) -> None:
            nonlocal status_code, error_code
            status_code = message.get("status", 200)
            if b"x-error-code" in names:
                for name, value in headers:
                    if len(name) == 12 and name.lower() == b"x-error-code":
                        error_code = value.decode("latin-1")
                        break

        start = _perf_counter()
        try:
            await self.app(scope, receive, add_start_hook(send, on_start))
        except Exception as exc:
            status_code = 500
            error_code = type(exc).__name__
            raise
        finally:
            duration = _perf_counter() - start
            try:
                self._finished(
                    method, route_template(scope), status_code, duration, error_code, progress
                )
            except Exception as exc:
                _logger.warning("Could not record request metrics", error=repr(exc))


def _generic_calls(service: Any) -> tuple[Any, Any]:
    """``request_started`` / ``request_finished`` for a metrics service without the fused calls:
    ``track_in_progress(±1)`` and ``track_request`` with the same labels."""

    def started(method: str) -> dict[str, str]:
        progress = _PROGRESS_LABELS.get(method)
        if progress is None:  # a method of KNOWN_METHODS or OTHER_METHOD: a bounded set
            progress = _PROGRESS_LABELS[method] = {"method": method}
        service.track_in_progress(_IN_PROGRESS, progress, 1)
        return progress

    def finished(
        method: str,
        endpoint: str,
        status_code: int,
        duration: float,
        error_code: str | None,
        progress: dict[str, str],
    ) -> None:
        service.track_in_progress(_IN_PROGRESS, progress, -1)
        service.track_request(
            method=method,
            endpoint=endpoint,
            status_code=status_code,
            duration=duration,
            error_code=error_code,
        )

    return started, finished
