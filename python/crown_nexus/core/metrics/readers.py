"""In-process readers of a ``MetricsService``: a counter's sum and rate, a histogram's quantile.

Every series keeps a short history (:mod:`.recording`), so ``get_counter_rate``,
``get_counter_sum`` and ``get_histogram_quantile`` answer without a Prometheus server. Each
takes the plain metric name and a subset of labels (default labels match as well). In
multiprocess mode ``get_counter_sum`` covers every worker; rates and quantiles are per process.
Each reader first runs the service's flush hooks, so batched counts are included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crown_nexus.core.metrics import recording
from crown_nexus.core.metrics.base import MetricsError
from crown_nexus.core.metrics.multiprocess import MultiprocessMetrics
from crown_nexus.core.metrics.recording import _label_value, _Series

__all__ = ["MetricReaders"]


class MetricReaders(MultiprocessMetrics):
    """Answer from the in-process history (module docstring)."""

    def _matching(self, name: str, labels: Mapping[Any, Any] | None) -> list[_Series]:
        metric = self._metrics.get(name)
        if metric is None:
            return []
        series = list(metric.series.values())
        if not labels:
            return series
        defaults = self._default_labels()
        want = [(str(k), _label_value(v)) for k, v in labels.items()]
        return [s for s in series if all(s.labels.get(k, defaults.get(k)) == v for k, v in want)]

    def get_counter_sum(self, name: str, labels: Mapping[Any, Any] | None = None) -> float:
        """Return the total of counter ``name`` over every label set matching ``labels`` (a
        subset of the labels; ``None`` = all). Unknown metric → ``0.0``. In multiprocess mode
        the total covers every worker."""
        self.flush_pending()
        if self.multiprocess_dir:
            return self._multiprocess_sum(name, labels)
        return float(sum(s.total for s in self._matching(name, labels)))

    def get_counter_rate(
        self, name: str, labels: Mapping[Any, Any] | None = None, window_seconds: float = 300
    ) -> float:
        """Return the per-second rate of counter ``name`` over the last ``window_seconds``
        (increments in the window divided by the window), summed over matching label sets."""
        if window_seconds <= 0:
            raise MetricsError(f"window_seconds must be positive, not {window_seconds!r}")
        self.flush_pending()
        oldest = int(recording._monotonic()) - window_seconds
        total = 0.0
        for s in self._matching(name, labels):
            for sec, amount in list(s.buckets):
                if sec > oldest:
                    total += amount
        return total / window_seconds

    def get_histogram_quantile(
        self,
        name: str,
        q: float,
        labels: Mapping[Any, Any] | None = None,
        window_seconds: float = 300,
    ) -> float:
        """Return quantile ``q`` (0..1) of the values observed in histogram ``name`` during the
        last ``window_seconds`` over matching label sets (linear interpolation between recent
        samples, at most ``window_samples`` per label set). No samples → ``0.0``."""
        if not 0.0 <= q <= 1.0:
            raise MetricsError(f"quantile must be between 0 and 1, not {q!r}")
        if window_seconds <= 0:
            raise MetricsError(f"window_seconds must be positive, not {window_seconds!r}")
        self.flush_pending()
        oldest = recording._monotonic() - window_seconds
        values = sorted(
            v for s in self._matching(name, labels) for t, v in list(s.samples) if t >= oldest
        )
        if not values:
            return 0.0
        pos = q * (len(values) - 1)
        low = int(pos)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (pos - low)
