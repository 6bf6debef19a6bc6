"""What making an app's container current costs per ASGI scope (issue 12 item 1).

``setup_app`` wraps each app in :class:`crown_nexus.container.ContainerScope`: one ``ContextVar``
set and reset around the app. Group ``container-scope``, one scope through:

* ``bare`` -- the app coroutine itself;
* ``pass-through`` -- a pure-ASGI layer that only awaits the app (what any extra layer costs);
* ``container-scope`` -- the real wrapper; the difference to ``pass-through`` is the
  ``ContextVar`` pair.

Each benchmark first checks what the app sees (its container current inside, the default one
after). Run: ``pytest benches/bench_container.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from crown_nexus.container import AppContainer, ContainerScope, current_container, default_container

CONTAINER = AppContainer(name="bench")


async def _app(scope: Any, receive: Any, send: Any) -> None:
    scope["seen"] = current_container()


class _PassThrough:
    __slots__ = ("app",)

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _drive(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends (no event loop: only the layer's own cost)."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise AssertionError("the app suspended")


LAYERS: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {
    "bare": _app,
    "pass-through": _PassThrough(_app),
    "container-scope": ContainerScope(_app, CONTAINER),
}


@pytest.mark.parametrize("layer", list(LAYERS))
def test_container_scope(benchmark: Any, layer: str) -> None:
    """One scope through ``layer``; the container-scope row sees its container, then the default."""
    app = LAYERS[layer]
    scope: dict[str, Any] = {}
    _drive(app(scope, None, None))
    expected = CONTAINER if layer == "container-scope" else default_container()
    assert scope["seen"] is expected and current_container() is default_container()
    benchmark.group = "container-scope"
    benchmark(lambda: _drive(app(scope, None, None)))
