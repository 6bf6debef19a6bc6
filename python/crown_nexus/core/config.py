"""The loaded settings object: ``from crown_nexus.core.config import settings``."""

from __future__ import annotations

from crown_nexus.settings import DEFAULT_SECRET_KEY, Environment, Settings

__all__ = ["DEFAULT_SECRET_KEY", "Environment", "Settings", "settings"]

settings: Settings = Settings()
