"""The Grafana dashboard and Prometheus alerting rules shipped with crown-nexus.

* ``grafana_dashboard.json``: import it in Grafana (Dashboards → New → Import → upload the file)
  and pick the Prometheus data source; panels: request rate, error ratio, latency p50/p95/p99 by
  route, rate-limit rejections, cache hit ratio, Redis fallback state, event backlog and
  failures, token and permission denials.
* ``prometheus_rules.yml``: alerting rules on the same metrics (``rule_files:`` in
  ``prometheus.yml``).

Both query the names the library exports without a namespace (``MetricsConfig.namespace``
empty, the default). ``python -m crown_nexus.dashboards DIR`` copies both files into ``DIR``.
"""

from __future__ import annotations

import json
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARD", "RULES", "dashboard", "export", "rules_text"]

#: file names inside this package
DASHBOARD = "grafana_dashboard.json"
RULES = "prometheus_rules.yml"


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard model (parsed JSON)."""
    loaded: dict[str, Any] = json.loads(files(__name__).joinpath(DASHBOARD).read_text("utf-8"))
    return loaded


def rules_text() -> str:
    """The Prometheus rule file, as YAML text."""
    return files(__name__).joinpath(RULES).read_text("utf-8")


def export(directory: str | Path) -> list[Path]:
    """Copy the dashboard and the rule file into ``directory`` (created when missing)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in (DASHBOARD, RULES):
        with files(__name__).joinpath(name).open("rb") as src, (target / name).open("wb") as dst:
            shutil.copyfileobj(src, dst)
        written.append(target / name)
    return written
