"""What one app owns: its settings and its service instances (Litestar's ``app.stores`` model).

An :class:`AppContainer` holds one app's :class:`~crown_nexus.settings.Settings`, its service
registry (the built singletons and test overrides; the *factories* stay registered process-wide
at import) and a ``state`` dict for the per-app objects of the core systems. ``setup_app`` builds
one per app (``app.state.container``) and makes it current for every ASGI scope of that app
(lifespan included) with one ``ContextVar`` set/reset, so ``get_service``, ``get_settings``,
``get_cache_service``, ``get_metrics_service``, the token functions... answer for the app that is
serving. Outside any app (scripts, workers, tests that build no app) the *default* container is
current; it follows the environment's settings.

This module is the bottom layer: it imports nothing from crown-nexus, so every layer above can
reach the current container.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

__all__ = [
    "AppContainer",
    "ContainerScope",
    "current_container",
    "default_container",
    "use_container",
]

_ids = itertools.count(1)


class AppContainer:
    """One app's settings, service registry and per-app state.

    ``settings`` is ``None`` for the default container (then the environment's settings, read once,
    are used). ``registry`` is filled by :mod:`crown_nexus.core.dependency_manager` on first use.
    ``state`` holds other per-app objects keyed by their owner (for example the security
    system's settings override); nothing of one container is shared with another. ``name`` (the
    app's title) is made unique with a number, for logs and ``repr``.
    """

    __slots__ = ("__weakref__", "name", "registry", "settings", "state")

    def __init__(self, settings: Any = None, *, name: str | None = None) -> None:
        self.settings = settings
        self.name = f"{name or 'app'}-{next(_ids)}"  # unique: many apps share a title
        self.registry: Any = None
        self.state: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<AppContainer {self.name}>"


_DEFAULT = AppContainer()
_DEFAULT.name = "default"
_current: ContextVar[AppContainer] = ContextVar("crown_nexus_container", default=_DEFAULT)

#: ``current_container()``: the container of the app serving this task (the default one outside
#: any app). A bound ``ContextVar.get`` so the hot paths pay one C call.
current_container: Callable[[], AppContainer] = _current.get


def default_container() -> AppContainer:
    """The container used outside any app (scripts, Celery workers, tests without an app)."""
    return _DEFAULT


def set_current(container: AppContainer) -> Token[AppContainer]:
    """Make ``container`` current in this context; pass the token to :func:`reset_current`."""
    return _current.set(container)


def reset_current(token: Token[AppContainer]) -> None:
    """Undo :func:`set_current` (ignored when the token belongs to another context)."""
    try:
        _current.reset(token)
    except ValueError:  # reset from another context (an async generator closed elsewhere)
        _current.set(token.old_value if token.old_value is not Token.MISSING else _DEFAULT)


@contextmanager
def use_container(container: AppContainer) -> Iterator[AppContainer]:
    """Within the block, ``container`` is current (scripts and tests that act as one app)."""
    token = _current.set(container)
    try:
        yield container
    finally:
        reset_current(token)


class ContainerScope:
    """Pure-ASGI wrapper: every scope of the wrapped app (HTTP, WebSocket, lifespan) runs with
    ``container`` current. Cost: one ``ContextVar`` set and reset per scope."""

    __slots__ = ("app", "container")

    def __init__(self, app: Any, container: AppContainer) -> None:
        self.app = app
        self.container = container

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        token = _current.set(self.container)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
