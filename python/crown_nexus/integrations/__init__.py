"""Framework integrations: ``crown_nexus.integrations.fastapi.setup_app`` wires a FastAPI app."""

from __future__ import annotations

from typing import Any

__all__ = ["setup_app"]


def __getattr__(name: str) -> Any:
    if name == "setup_app":
        from crown_nexus.integrations.fastapi import setup_app

        return setup_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
