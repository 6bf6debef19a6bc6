"""Which :class:`~crown_nexus.settings.Settings` the module-level security functions use.

Defaults to ``crown_nexus.core.config.settings``; :func:`crown_nexus.core.security.configure_security`
(and so an app's start-up) replaces it, so tokens, CSRF and encryption agree within one app.
"""

from __future__ import annotations

from crown_nexus.settings import Settings

__all__ = ["get_security_settings", "set_security_settings"]

_settings: Settings | None = None


def get_security_settings() -> Settings:
    """Return the settings the security system is configured with."""
    if _settings is None:
        from crown_nexus.core.config import settings

        return settings
    return _settings


def set_security_settings(settings: Settings | None) -> None:
    """Use ``settings`` from now on (``None``: back to ``crown_nexus.core.config.settings``)."""
    global _settings
    _settings = settings
