"""Several workers, one set of metrics: prometheus-client's multiprocess mode.

When ``PROMETHEUS_MULTIPROC_DIR`` is set before prometheus-client is imported (several granian
workers), values live in that directory; this module reads them back for every worker
(:meth:`MultiprocessMetrics._source_registry`, used by the exposition and ``get_counter_sum``)
and cleans up after workers that have exited. Counters and histograms are summed exactly over
every worker, dead ones included (a total never goes down when a worker is recycled). Gauges
combine by their ``multiprocess_mode``: in-progress gauges (``track_in_progress``) and backlogs
are ``livesum`` (the sum over live workers), state gauges default to ``mostrecent`` (the last
value any worker set), ``cache_backend_up`` is ``livemin`` (0 while any live worker runs on its
fallback). :meth:`MultiprocessMetrics.cleanup_dead_workers` (run by the library's ``/metrics``
route before each scrape) drops the live gauges of workers that have exited. Rates and
quantiles are per process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from crown_nexus.core.metrics.recording import MetricStore, _label_value

__all__ = ["MultiprocessMetrics"]


class MultiprocessMetrics(MetricStore):
    """Reading and cleaning up every worker's values (module docstring)."""

    def _source_registry(self) -> Any:
        """The recorded metrics under their plain names (every worker in multiprocess mode)."""
        if not self.multiprocess_dir:
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return registry

    def mark_process_dead(self, pid: int | None = None) -> None:
        """In multiprocess mode, drop a finished worker's live gauges (call from the process
        manager when worker ``pid`` exits; default: this process). No-op otherwise."""
        if not self.multiprocess_dir:
            return
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid() if pid is None else pid, self.multiprocess_dir)

    def cleanup_dead_workers(self) -> list[int]:
        """In multiprocess mode, apply :meth:`mark_process_dead` to every worker whose files are
        in the directory but whose process is gone (a crashed or recycled granian worker);
        return their pids (sorted). No-op (``[]``) otherwise.

        Only the dead worker's *live* gauges (``livesum``, ``livemax`` ...) are removed, as
        prometheus-client does: its counters and histograms stay, so totals never go down.
        """
        directory = self.multiprocess_dir
        if not directory:
            return []
        pids: set[int] = set()
        try:
            names = os.listdir(directory)
        except OSError:
            return []
        for filename in names:
            match = _LIVE_FILE.match(filename)
            if match is not None:
                pids.add(int(match.group(1)))
        dead = sorted(pid for pid in pids if not _process_alive(pid))
        for pid in dead:
            self.mark_process_dead(pid)
        return dead

    def _multiprocess_sum(self, name: str, labels: Mapping[Any, Any] | None) -> float:
        metric = self._metrics.get(name)
        if metric is None:
            return 0.0
        full = metric.prom._name
        defaults = self._default_labels()
        want = [(str(k), _label_value(v)) for k, v in (labels or {}).items()]
        total = 0.0
        for family in self._source_registry().collect():
            if family.name != full:
                continue
            for sample in family.samples:
                if sample.name != f"{full}_total":
                    continue
                if all(sample.labels.get(k, defaults.get(k)) == v for k, v in want):
                    total += sample.value
        return total


#: a multiprocess file of a live gauge: ``gauge_livesum_<pid>.db`` (and livemax, livemin ...)
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def _process_alive(pid: int) -> bool:
    """True when process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
