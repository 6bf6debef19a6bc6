"""Which :class:`~crown_nexus.settings.Settings` the module-level security functions use.

The current app's settings (``setup_app``'s; the environment's outside an app), unless
:func:`crown_nexus.core.security.configure_security` gave the current container others: tokens,
CSRF and encryption agree within one app and differ between apps.
"""

from __future__ import annotations

from crown_nexus.container import current_container
from crown_nexus.settings import Settings, get_settings

__all__ = ["get_security_settings", "set_security_settings"]

_KEY = "security.settings"


def get_security_settings() -> Settings:
    """Return the settings the current app's security system is configured with."""
    found: Settings | None = current_container().state.get(_KEY)
    return found if found is not None else get_settings()


def set_security_settings(settings: Settings | None) -> None:
    """Use ``settings`` in the current container from now on (``None``: its app's settings)."""
    state = current_container().state
    if settings is None:
        state.pop(_KEY, None)
    else:
        state[_KEY] = settings
