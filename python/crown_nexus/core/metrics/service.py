"""``MetricsService``: prometheus-client metrics with in-process readers (guide §6 and §9).

This module puts the service together and owns its lifecycle (``initialize`` with a config,
the optional HTTP exporter, ``shutdown``, ``reset``) and the process's shared instance
(:func:`get_metrics_service`). Each concern lives in its own module:

* :mod:`.recording` -- creating metrics, label sets and the cardinality cap, recording values
  and the in-process history of each series;
* :mod:`.http` -- HTTP request metrics on the request path (``track_request`` and the fused
  ``request_started`` / ``request_finished`` the middleware calls);
* :mod:`.trackers` -- the guide's database, service-call and cache trackers;
* :mod:`.timing` -- ``timed_function`` / ``async_timed_function``;
* :mod:`.readers` -- ``get_counter_sum``, ``get_counter_rate``, ``get_histogram_quantile``;
* :mod:`.exposition` -- namespace, default labels and the Prometheus text (``render_latest``);
* :mod:`.multiprocess` -- several workers' values (``PROMETHEUS_MULTIPROC_DIR``), dead workers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.core.metrics.base import MetricsConfig
from crown_nexus.core.metrics.exposition import MetricsExposition
from crown_nexus.core.metrics.http import HttpMetrics
from crown_nexus.core.metrics.readers import MetricReaders
from crown_nexus.core.metrics.recording import OVERFLOW_LABEL
from crown_nexus.core.metrics.timing import MetricTiming
from crown_nexus.core.metrics.trackers import MetricTrackers
from crown_nexus.logging import get_logger

__all__ = ["OVERFLOW_LABEL", "MetricsService", "get_metrics_service"]

_logger = get_logger("crown_nexus.core.metrics")


class MetricsService(HttpMetrics, MetricTrackers, MetricTiming, MetricReaders, MetricsExposition):
    """Create, record and read metrics (see the module docstring and its modules).

    Recording methods accept ``labels`` as a dict whose keys are label names (``str`` or
    :class:`~crown_nexus.core.metrics.base.MetricTag`); values are turned into strings (``None``
    → ``""``). They raise :class:`~crown_nexus.core.metrics.base.MetricsError` only for misuse
    (wrong metric type, invalid name, negative counter increment, non-numeric value).
    """

    def __init__(
        self,
        config: MetricsConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        multiprocess_dir: str | None = None,
    ) -> None:
        super().__init__(config, registry=registry, multiprocess_dir=multiprocess_dir)
        self._clear_hot()

    # ------------------------------------------------------------------ lifecycle
    async def initialize(self, config: MetricsConfig | None = None) -> None:
        """Apply ``config`` and start the HTTP exporter when ``enable_prometheus`` and
        ``endpoint_port`` are set. Calling it again is harmless.

        The namespace, subsystem, default labels and label-set cap apply to every metric,
        including those created before this call; histogram buckets and the reader windows
        apply to metrics (and label sets) created afterwards.
        """
        if config is not None:
            self.config = config
            with self._lock:
                for metric in self._metrics.values():
                    metric.max_series = config.max_label_sets
        if self.config.enable_prometheus and self.config.endpoint_port and self._exporter is None:
            from prometheus_client import start_http_server

            try:
                self._exporter = start_http_server(
                    self.config.endpoint_port, registry=self._exposition_registry()
                )
            except OSError as exc:
                _logger.warning(
                    "Metrics exporter could not start",
                    port=self.config.endpoint_port,
                    error=str(exc),
                )
        self.initialized = True

    async def shutdown(self) -> None:
        """Stop the HTTP exporter if one was started."""
        exporter, self._exporter = self._exporter, None
        if exporter is not None:
            server, thread = exporter
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        self.initialized = False

    def reset(self) -> None:
        """Forget every metric and start a fresh registry (tests; the exporter, if running,
        keeps serving the old registry until restarted)."""
        with self._lock:
            self._metrics = {}
            self.registry = CollectorRegistry(auto_describe=True)
            self._clear_hot()


def get_metrics_service() -> MetricsService:
    """Return the current app's :class:`MetricsService` (registered as ``"metrics_service"``).

    Each app container builds its own (with its own prometheus ``CollectorRegistry``); outside
    an app, the default container's. Test overrides of ``"metrics_service"`` are not returned
    here (``get_service("metrics_service")`` returns them).
    """
    service: MetricsService = get_registry().singleton("metrics_service")
    return service
