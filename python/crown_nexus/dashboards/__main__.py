"""``python -m crown_nexus.dashboards [DIR]``: copy the dashboard and the alert rules into DIR."""

from __future__ import annotations

import sys

from crown_nexus.dashboards import export

for path in export(sys.argv[1] if len(sys.argv) > 1 else "."):
    print(path)
