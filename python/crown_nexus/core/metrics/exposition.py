"""The Prometheus text exposition of a ``MetricsService``: names, default labels, rendering.

The config's ``namespace``/``subsystem`` prefix and ``default_labels`` are applied when metrics
are exported (``render_latest``, the HTTP exporter started by ``initialize``), from the
service's current config, so they cover every metric alike — those created before
``initialize(config)`` too (a label a metric sets itself wins over a default label of the same
name). In multiprocess mode the exposition covers every worker (:mod:`.multiprocess`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from crown_nexus.core.metrics.multiprocess import MultiprocessMetrics

__all__ = ["MetricsExposition"]


class MetricsExposition(MultiprocessMetrics):
    """Render the service's metrics (module docstring)."""

    def _exposition_registry(self) -> Any:
        """A registry exporting every metric named and labelled by the current config."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_ConfiguredExport(self))
        return registry

    def _exported(self) -> Iterable[Any]:
        """The metric families of :meth:`_source_registry` with the config's naming applied."""
        cfg = self.config
        prefix = "_".join(p for p in (cfg.namespace, cfg.subsystem) if p)
        prefix = f"{prefix}_" if prefix else ""
        defaults = self._default_labels()
        for family in self._source_registry().collect():
            if not prefix and not defaults:
                yield family
                continue
            out = Metric(prefix + family.name, family.documentation, family.type, family.unit)
            out.samples = [
                sample._replace(
                    name=prefix + sample.name,
                    labels={**defaults, **sample.labels} if defaults else sample.labels,
                )
                for sample in family.samples
            ]
            yield out

    def render_latest(self) -> tuple[bytes, str]:
        """Return ``(body, content_type)`` of the Prometheus text exposition of every metric
        (every worker in multiprocess mode)."""
        self.flush_pending()
        return generate_latest(self._exposition_registry()), CONTENT_TYPE_LATEST


class _ConfiguredExport:
    """A collector exporting a service's metrics with its current namespace and default labels."""

    def __init__(self, service: MetricsExposition) -> None:
        self.service = service

    def collect(self) -> Iterable[Any]:
        """Every metric family, renamed and labelled by the service's config at this moment."""
        return self.service._exported()
