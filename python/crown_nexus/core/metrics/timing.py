"""Timing functions into metrics: ``MetricsService.timed_function`` and ``async_timed_function``.

A decorated function (sync or async) records its duration in seconds in a histogram (or a
counter, gauge or summary) named after it unless a name is given, labelled by ``labels_func``,
optionally with an in-progress gauge. Recording never changes the function's outcome.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from crown_nexus.core.metrics.base import MetricType
from crown_nexus.core.metrics.recording import MetricStore
from crown_nexus.logging import get_logger

__all__ = ["MetricTiming"]

F = TypeVar("F", bound=Callable[..., Any])

_logger = get_logger("crown_nexus.core.metrics")


class MetricTiming(MetricStore):
    """The timing decorators (module docstring)."""

    def _labels_from(
        self, labels_func: Callable[..., Any] | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        if labels_func is None:
            return None
        try:
            labels = labels_func(*args, **kwargs)
        except Exception as exc:
            _logger.warning("labels_func failed; recording without labels", error=repr(exc))
            return None
        return dict(labels) if labels else None

    def _record_timing(
        self, name: str, metric_type: MetricType, duration: float, labels: dict[str, Any] | None
    ) -> None:
        try:
            if metric_type is MetricType.COUNTER:
                self.increment_counter(name, 1, labels)
            elif metric_type is MetricType.GAUGE:
                self.set_gauge(name, duration, labels)
            elif metric_type is MetricType.SUMMARY:
                self.observe_summary(name, duration, labels)
            else:
                self.observe_histogram(name, duration, labels)
        except Exception as exc:  # timing must never change the function's outcome
            _logger.warning("Could not record function timing", metric=name, error=repr(exc))

    def timed_function(
        self,
        name: str | None = None,
        metric_type: MetricType | str = MetricType.HISTOGRAM,
        labels_func: Callable[..., Mapping[str, Any]] | None = None,
        track_in_progress_flag: bool = False,
        in_progress_metric: str | None = None,
    ) -> Callable[[F], F]:
        """Decorate a function (sync or async) to record its duration in seconds in metric
        ``name`` (default ``<module>_<function>_duration_seconds``) of ``metric_type``
        (histogram by default; counter counts calls, gauge keeps the last duration).

        ``labels_func(*args, **kwargs)`` gives the labels of each call. With
        ``track_in_progress_flag`` the gauge ``in_progress_metric`` (default
        ``<name>_in_progress``) counts running calls. Exceptions propagate; the call is still
        measured.
        """
        kind = MetricType(metric_type)

        def decorator(func: F) -> F:
            metric_name = name or _default_metric_name(func)
            progress = in_progress_metric or f"{metric_name}_in_progress"

            if inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    labels = self._labels_from(labels_func, args, kwargs)
                    if track_in_progress_flag:
                        self.track_in_progress(progress, labels, 1)
                    start = time.perf_counter()
                    try:
                        return await func(*args, **kwargs)
                    finally:
                        self._record_timing(metric_name, kind, time.perf_counter() - start, labels)
                        if track_in_progress_flag:
                            self.track_in_progress(progress, labels, -1)

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                labels = self._labels_from(labels_func, args, kwargs)
                if track_in_progress_flag:
                    self.track_in_progress(progress, labels, 1)
                start = time.perf_counter()
                try:
                    return func(*args, **kwargs)
                finally:
                    self._record_timing(metric_name, kind, time.perf_counter() - start, labels)
                    if track_in_progress_flag:
                        self.track_in_progress(progress, labels, -1)

            return wrapper  # type: ignore[return-value]

        return decorator

    def async_timed_function(
        self,
        name: str | None = None,
        metric_type: MetricType | str = MetricType.HISTOGRAM,
        labels_func: Callable[..., Mapping[str, Any]] | None = None,
        track_in_progress_flag: bool = False,
        in_progress_metric: str | None = None,
    ) -> Callable[[F], F]:
        """:meth:`timed_function` for ``async def`` functions (raises ``TypeError`` otherwise)."""
        inner = self.timed_function(
            name, metric_type, labels_func, track_in_progress_flag, in_progress_metric
        )

        def decorator(func: F) -> F:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(
                    f"async_timed_function decorates async functions; {func!r} is not one"
                )
            return inner(func)

        return decorator


def _default_metric_name(func: Callable[..., Any]) -> str:
    raw = f"{getattr(func, '__module__', '')}_{getattr(func, '__qualname__', 'function')}"
    cleaned = re.sub(r"[^a-zA-Z0-9_]", "_", raw).strip("_") or "function"
    if cleaned[0].isdigit():
        cleaned = f"f_{cleaned}"
    return f"{cleaned}_duration_seconds"
