"""The full crown-nexus stack: ``setup_app`` with every layer it installs (``granian app_full:app``).

Production settings (``ENVIRONMENT=production``: JSON log lines, production error bodies), CORS
for the benchmark's Origin, and one rate rule high enough never to refuse -- the limiter still
counts every request. Every other layer runs with ``setup_app``'s defaults.
"""

from __future__ import annotations

import os

from _routes import ORIGIN, add_routes
from fastapi import FastAPI

from crown_nexus.core.rate_limiting import RateLimitRule
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.settings import Settings

# production everywhere, also for services that read the process-wide settings
os.environ.setdefault("ENVIRONMENT", "production")
os.environ.setdefault("CROWN_NEXUS_SECRET_KEY", "bench-only-" + "k" * 53)
settings = Settings(ENVIRONMENT="production", cors_origins=[ORIGIN])
app = add_routes(FastAPI(openapi_url=None, docs_url=None, redoc_url=None))
setup_app(
    app,
    settings,
    middleware_options={
        "RateLimitMiddleware": {
            "rules": [RateLimitRule(requests_per_window=1_000_000_000, window_seconds=60)],
            "use_redis": False,
        },
    },
)
