"""Two apps in one process, each with its own services (issue 12 item 1).

App A: memory cache, 2 requests per minute, secret A. App B: the real Redis cache, 100 requests per
minute, secret B. Over HTTP — httpx ``ASGITransport`` with the two apps' requests interleaved, and
one real granian process serving a Starlette app that mounts both — each app answers with its own
settings, rate rule, cache backend, token secret and ``/metrics``. Services started in one app's
lifespan are not the other's, and code run outside any app uses the default container.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crown_nexus.container import current_container, default_container, use_container
from crown_nexus.core.dependency_manager import get_registry, get_service, override_service
from crown_nexus.settings import get_settings
from crown_nexus.testing import app_client
from tests._servers import free_port

TOKEN_A = "metrics-token-a-0123456789abcdef"
TOKEN_B = "metrics-token-b-0123456789abcdef"
SECRET_A = "app-a-secret-" + "a" * 40
SECRET_B = "app-b-secret-" + "b" * 40

#: the two apps, built from settings; used in process and (as text) by the granian server
APPS = textwrap.dedent(
    """
    from typing import Any

    from fastapi import Depends, FastAPI

    from crown_nexus.container import current_container
    from crown_nexus.core.cache import get_cache_service
    from crown_nexus.core.dependency_manager import get_service
    from crown_nexus.core.events import get_event_service
    from crown_nexus.core.metrics import get_metrics_service
    from crown_nexus.core.security import create_token
    from crown_nexus.core.security.dependencies import get_current_user_with_permissions
    from crown_nexus.integrations.fastapi import metrics_router, setup_app
    from crown_nexus.settings import Settings, get_settings


    def build(name: str, settings: Settings) -> FastAPI:
        app = FastAPI(title=name)

        @app.get("/whoami")
        async def whoami() -> dict[str, Any]:
            from crown_nexus.core.config import settings as current

            return {
                "app": get_settings().app_name,
                "config": current.app_name,
                "container": current_container().name,
                "cache": get_cache_service().default_backend_name,
                "metrics_is_registered": get_metrics_service() is get_service("metrics_service"),
                "event_bus": id(get_event_service()),
            }

        @app.get("/ping")
        async def ping() -> dict[str, str]:
            return {"pong": name}

        @app.post("/token/{user}")
        async def token(user: str) -> dict[str, str]:
            return {"token": create_token(user)}

        @app.get("/me")
        async def me(user: dict[str, Any] = Depends(get_current_user_with_permissions)) -> dict[str, Any]:
            return {"id": user["id"]}

        @app.put("/cache/{key}/{value}")
        async def put(key: str, value: str) -> dict[str, bool]:
            await get_cache_service().set(key, value, ttl=60)
            return {"stored": True}

        @app.get("/cache/{key}")
        async def get(key: str) -> dict[str, Any]:
            return {"value": await get_cache_service().get(key)}

        app.include_router(metrics_router())
        setup_app(app, settings)
        return app


    def settings_a() -> Settings:
        return Settings(
            app_name="app-a", secret_key="%(secret_a)s", CACHE_DEFAULT_BACKEND="memory",
            metrics_token="%(token_a)s",
            rate_limit_rules=[
                {"requests_per_window": 2, "window_seconds": 60, "path_pattern": "^(/a)?/ping$"}
            ],
        )


    def settings_b(redis_url: str) -> Settings:
        return Settings(
            app_name="app-b", secret_key="%(secret_b)s", REDIS_URI=redis_url,
            metrics_token="%(token_b)s",
            rate_limit_rules=[
                {"requests_per_window": 100, "window_seconds": 60, "path_pattern": "^(/b)?/ping$"}
            ],
        )
    """
) % {"secret_a": SECRET_A, "secret_b": SECRET_B, "token_a": TOKEN_A, "token_b": TOKEN_B}

#: the granian entry point: one Starlette app mounting both, running both lifespans
SERVER = textwrap.dedent(
    """
    import os
    from contextlib import AsyncExitStack, asynccontextmanager

    from starlette.applications import Starlette
    from starlette.routing import Mount

    from two_apps import build, settings_a, settings_b

    app_a = build("a", settings_a())
    app_b = build("b", settings_b(os.environ["TWO_APPS_REDIS_URL"]))


    @asynccontextmanager
    async def lifespan(_app):
        async with AsyncExitStack() as stack:
            for mounted in (app_a, app_b):
                await stack.enter_async_context(mounted.router.lifespan_context(mounted))
            yield


    app = Starlette(routes=[Mount("/a", app_a), Mount("/b", app_b)], lifespan=lifespan)
    """
)


@pytest.fixture(scope="module")
def two_apps(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The ``two_apps`` module above, importable (the granian server imports it too)."""
    folder = tmp_path_factory.mktemp("two_apps")
    (folder / "two_apps.py").write_text(APPS)
    (folder / "two_apps_server.py").write_text(SERVER)
    sys.path.insert(0, str(folder))
    try:
        import two_apps

        yield two_apps
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("two_apps", None)


def _data(resp: httpx.Response) -> Any:
    body = resp.json()
    return body["data"] if isinstance(body, dict) and "data" in body else body


def _requests_total(text: str, app_path: str) -> float:
    """``http_requests_total`` of the endpoints ending in ``app_path`` in one exposition."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels.get("endpoint", "").endswith(
                app_path
            ):
                total += sample.value
    return total


async def _check_two_apps(
    a: httpx.AsyncClient, b: httpx.AsyncClient, redis_url: str, key: str
) -> None:
    """The assertions shared by the in-process and the granian runs."""
    who_a, who_b = _data(await a.get("/whoami")), _data(await b.get("/whoami"))
    # settings: each app reads its own, through get_settings() and core.config.settings
    assert (who_a["app"], who_a["config"], who_a["cache"]) == ("app-a", "app-a", "memory")
    assert (who_b["app"], who_b["config"], who_b["cache"]) == ("app-b", "app-b", "redis")
    assert who_a["container"] != who_b["container"]
    assert who_a["event_bus"] != who_b["event_bus"]
    assert who_a["metrics_is_registered"] and who_b["metrics_is_registered"]

    # cache: A's memory and B's Redis, interleaved; neither sees the other's value
    assert _data(await a.put(f"/cache/{key}/from-a"))["stored"] is True
    assert _data(await b.put(f"/cache/{key}/from-b"))["stored"] is True
    assert _data(await a.get(f"/cache/{key}"))["value"] == "from-a"
    assert _data(await b.get(f"/cache/{key}"))["value"] == "from-b"
    import redis.asyncio as redis_asyncio

    raw = redis_asyncio.Redis.from_url(redis_url)
    try:
        stored = [k async for k in raw.scan_iter(match=f"*{key}*")]
        assert stored, "app B's value is in the real Redis"
        assert b"from-a" not in [await raw.get(k) for k in stored]
    finally:
        await raw.aclose()

    # JWT: a token of A opens A only, a token of B opens B only
    token_a = _data(await a.post("/token/alice"))["token"]
    token_b = _data(await b.post("/token/bob"))["token"]
    assert _data(await a.get("/me", headers={"Authorization": f"Bearer {token_a}"})) == {
        "id": "alice"
    }
    assert _data(await b.get("/me", headers={"Authorization": f"Bearer {token_b}"})) == {
        "id": "bob"
    }
    assert (await b.get("/me", headers={"Authorization": f"Bearer {token_a}"})).status_code == 401
    assert (await a.get("/me", headers={"Authorization": f"Bearer {token_b}"})).status_code == 401

    # metrics: requests to A do not move B's counters
    scrape_a = lambda: a.get("/metrics", headers={"Authorization": f"Bearer {TOKEN_A}"})  # noqa: E731
    scrape_b = lambda: b.get("/metrics", headers={"Authorization": f"Bearer {TOKEN_B}"})  # noqa: E731
    before_a = _requests_total((await scrape_a()).text, "/ping")
    before_b = _requests_total((await scrape_b()).text, "/ping")
    assert (await a.get("/ping")).status_code == 200
    after_a = _requests_total((await scrape_a()).text, "/ping")
    after_b = _requests_total((await scrape_b()).text, "/ping")
    assert after_a == before_a + 1
    assert after_b == before_b
    assert (
        await a.get("/metrics", headers={"Authorization": f"Bearer {TOKEN_B}"})
    ).status_code == 401

    # rate limits (per /ping): A refused its 2nd request after the one above, B (100 a minute)
    # answers every one, interleaved
    statuses_a = []
    for _ in range(2):
        statuses_a.append((await a.get("/ping")).status_code)
        assert (await b.get("/ping")).status_code == 200
    assert statuses_a == [200, 429]
    assert all([(await b.get("/ping")).status_code == 200 for _ in range(10)])


async def test_two_apps_interleaved_over_asgi(two_apps: Any, redis_url: str) -> None:
    """Two apps in one process over ASGITransport: own settings, rate rule, cache, secret, metrics."""
    app_a = two_apps.build("a", two_apps.settings_a())
    app_b = two_apps.build("b", two_apps.settings_b(redis_url))
    async with app_client(app_a) as a, app_client(app_b) as b:
        await _check_two_apps(a, b, redis_url, f"containers-{uuid.uuid4().hex}")


async def test_lifespan_services_belong_to_their_app(two_apps: Any, redis_url: str) -> None:
    """What app A's start-up builds and starts is A's: B started its own, the default none."""
    app_a = two_apps.build("a", two_apps.settings_a())
    app_b = two_apps.build("b", two_apps.settings_b(redis_url))
    async with app_client(app_a), app_client(app_b):
        reg_a = app_a.state.container.registry.instances()
        reg_b = app_b.state.container.registry.instances()
        for name in ("cache_service", "event_service", "security_service", "metrics_service"):
            assert reg_a[name] is not reg_b[name], name
        assert "cache_service" in app_a.state.services_started
        assert "cache_service" in app_b.state.services_started
        assert reg_a["cache_service"].initialized and reg_b["cache_service"].initialized
        assert reg_a["cache_service"].default_backend_name == "memory"
        assert reg_b["cache_service"].default_backend_name == "redis"
        assert reg_a["event_service"].initialized and reg_b["event_service"].initialized
        assert app_a.state.security_service is reg_a["security_service"]
        default = default_container().registry
        assert default is None or all(
            default.instances().get(name) not in (reg_a.get(name), reg_b.get(name))
            for name in ("cache_service", "event_service", "security_service")
        )
    assert not reg_a["cache_service"].initialized  # A's shutdown stopped A's services


async def test_override_reaches_apps_and_stays_in_its_container(two_apps: Any) -> None:
    """An override made outside any app reaches every app; one made in an app stays in it."""

    class Fake:
        default_backend_name = "fake"

        async def get(self, key: str) -> str:
            return "fake"

    app_a = two_apps.build("a", two_apps.settings_a())
    app_b = two_apps.build("b", two_apps.settings_a())
    async with app_client(app_a) as a, app_client(app_b) as b:
        with override_service("cache_service", Fake()):  # the test body runs in B's container
            assert _data(await b.get("/cache/k"))["value"] == "fake"
            assert _data(await a.get("/cache/k"))["value"] is None
        with use_container(default_container()), override_service("cache_service", Fake()):
            assert _data(await a.get("/cache/k"))["value"] == "fake"
            assert _data(await b.get("/cache/k"))["value"] == "fake"
        assert _data(await a.get("/cache/k"))["value"] is None


def test_code_outside_any_app_uses_the_default_container() -> None:
    """A script (no app): the default container, the environment's settings, its own services."""
    script = textwrap.dedent(
        """
        from crown_nexus.container import current_container, default_container
        from crown_nexus.core.cache import get_cache_service
        from crown_nexus.core.dependency_manager import get_registry, get_service
        from crown_nexus.core.metrics import get_metrics_service
        from crown_nexus.settings import get_settings

        assert current_container() is default_container()
        assert get_registry() is default_container().registry
        assert get_settings().app_name == "from-the-environment"
        assert get_cache_service() is get_service("cache_service")
        assert get_metrics_service() is get_registry().instances()["metrics_service"]
        print("ok")
        """
    )
    env = {**os.environ, "CROWN_NEXUS_APP_NAME": "from-the-environment"}
    env.pop("REDIS_URI", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    # and in this process, outside any app
    assert current_container() is default_container()
    assert get_registry() is default_container().registry
    assert get_settings() is get_settings()
    assert get_service("metrics_service") is get_registry().instances()["metrics_service"]


def _granian() -> str | None:
    local = Path(sys.executable).with_name("granian")
    return str(local) if local.exists() else shutil.which("granian")


def _start_granian(port: int, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """One granian worker on loopback serving ``two_apps_server:app``, in its own process group."""
    return subprocess.Popen(
        [
            str(_granian()),
            "--interface",
            "asgi",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "two_apps_server:app",
        ],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@pytest.mark.skipif(_granian() is None, reason="granian is not installed")
async def test_two_apps_mounted_in_one_granian_process(two_apps: Any, redis_url: str) -> None:
    """One granian process serving a Starlette app that mounts both: the same separation."""
    folder = Path(two_apps.__file__).parent
    port = free_port()
    env = {
        **os.environ,
        "TWO_APPS_REDIS_URL": redis_url,
        "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("REDIS_URI", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = _start_granian(port, env, folder)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30.0
        async with httpx.AsyncClient(base_url=base, timeout=10) as probe:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"granian exited: {proc.stderr.read() if proc.stderr else ''}"
                    )
                try:
                    if (await probe.get("/b/whoami")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("granian did not answer in time")
                await asyncio.sleep(0.2)
        async with (
            httpx.AsyncClient(base_url=f"{base}/a", timeout=10) as a,
            httpx.AsyncClient(base_url=f"{base}/b", timeout=10) as b,
        ):
            await _check_two_apps(a, b, redis_url, f"granian-{uuid.uuid4().hex}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_registry_instances_are_per_container_and_factories_shared() -> None:
    """One factory registration serves every container; each builds its own instance, and a
    re-registration drops the instance everywhere; the hot-path getter follows the container."""
    from crown_nexus.container import AppContainer
    from crown_nexus.core.dependency_manager import register_service, unregister_service

    name = f"probe_{uuid.uuid4().hex}"

    class Probe:
        pass

    register_service(Probe, name=name)
    getter = get_registry().getter(name)
    first, second = AppContainer(name="first"), AppContainer(name="second")
    try:
        with use_container(first):
            in_first = get_service(name)
            assert getter() is in_first
        with use_container(second):
            in_second = get_service(name)
            assert getter() is in_second
        assert in_first is not in_second and get_service(name) not in (in_first, in_second)
        with use_container(first):
            assert get_service(name) is in_first  # a singleton within its container

        class Replacement:
            pass

        register_service(Replacement, name=name)
        for container in (first, second):
            with use_container(container):
                assert isinstance(get_service(name), Replacement)
    finally:
        unregister_service(name)


def test_provide_sets_one_containers_instance_only() -> None:
    """``provide`` makes an object one container's instance of a service, not an override."""
    from crown_nexus.container import AppContainer
    from crown_nexus.core.dependency_manager import (
        ServiceNotFoundException,
        register_service,
        unregister_service,
    )

    name = f"provided_{uuid.uuid4().hex}"
    register_service(dict, name=name)
    mine = {"mine": True}
    app = AppContainer(name="provider")
    try:
        with use_container(app):
            get_registry().provide(name, mine)
            assert get_service(name) is mine
        assert get_service(name) is not mine
        with pytest.raises(ServiceNotFoundException):
            get_registry().provide(f"missing_{name}", mine)
    finally:
        unregister_service(name)
