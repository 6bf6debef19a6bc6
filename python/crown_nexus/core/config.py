"""The loaded settings object: ``from crown_nexus.core.config import settings``.

It is :func:`crown_nexus.settings.get_settings`'s object, loaded from the environment on first
import of either.
"""

from __future__ import annotations

from crown_nexus.settings import DEFAULT_SECRET_KEY, Environment, Settings, get_settings

__all__ = ["DEFAULT_SECRET_KEY", "Environment", "Settings", "get_settings", "settings"]

settings: Settings = get_settings()
