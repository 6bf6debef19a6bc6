"""Bare FastAPI: the two benchmark routes and nothing else (``granian app_bare:app``)."""

from __future__ import annotations

from _routes import add_routes
from fastapi import FastAPI

app = add_routes(FastAPI(openapi_url=None, docs_url=None, redoc_url=None))
