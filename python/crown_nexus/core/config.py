"""The current settings object: ``from crown_nexus.core.config import settings``.

``settings`` is looked up when it is imported: inside an app built with ``setup_app`` (a request,
its lifespan) it is that app's ``Settings``, elsewhere the one read from the environment — the
object :func:`crown_nexus.settings.get_settings` returns. Import it where it is used (in the
function); a module-level import binds the object current at import time.
"""

from __future__ import annotations

from crown_nexus.settings import DEFAULT_SECRET_KEY, Environment, Settings, get_settings

__all__ = ["DEFAULT_SECRET_KEY", "Environment", "Settings", "get_settings", "settings"]

#: declared for readers and type checkers only; never bound, so :func:`__getattr__` answers
settings: Settings


def __getattr__(name: str) -> Settings:
    """``settings``: the current app's settings (see the module docstring)."""
    if name == "settings":
        return get_settings()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
