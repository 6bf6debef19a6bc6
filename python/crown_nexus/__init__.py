"""crown-nexus: the application core FastAPI services are built on.

Importing the package is cheap: it imports no optional dependency (redis, celery, asyncpg) and
no compiled module. ``crown_nexus.accel`` reports which implementation each hot path uses.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
