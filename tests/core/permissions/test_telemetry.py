"""Permission metrics, events and user lookup whichever entry point runs the check (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI

from crown_nexus.core.exceptions import ConfigurationException, PermissionDeniedException
from crown_nexus.core.metrics import MetricsService
from crown_nexus.core.permissions import (
    Permission,
    PermissionChecker,
    get_permission_service,
    has_all_permissions,
    set_user_loader,
    wait_for_events,
)
from crown_nexus.core.security.dependencies import get_current_user_id
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client, override_service
from tests.core.permissions.conftest import EventRecorder

CLIENT = {"id": "c1", "role": "client"}


@pytest.fixture
def metrics() -> Any:
    """A fresh metrics service standing in for the shared one."""
    service = MetricsService()
    with override_service("metrics_service", service):
        yield service


@pytest.fixture(autouse=True)
def no_loader():  # type: ignore[no-untyped-def]
    """Each test starts and ends without a user loader."""
    set_user_loader(None)
    yield
    set_user_loader(None)


async def test_ensure_permission_event_carries_the_resource_it_was_given() -> None:
    """ensure_permission(..., resource_type, resource_id, action) puts them in permission.denied."""
    recorder = EventRecorder()
    with override_service("event_service", recorder):
        with pytest.raises(PermissionDeniedException) as info:
            PermissionChecker.ensure_permission(
                CLIENT, Permission.PRODUCT_ADMIN, resource_type="Product", resource_id="p-8"
            )
        with pytest.raises(PermissionDeniedException):
            await get_permission_service().ensure_permission(
                CLIENT, "order:delete", resource_type="Order", resource_id=42, action="cancel"
            )
        await wait_for_events()
    assert info.value.resource_type == "Product" and info.value.details["resource_id"] == "p-8"
    assert recorder.published == [
        (
            "permission.denied",
            {
                "user_id": "c1",
                "permission": "product:admin",
                "resource_type": "Product",
                "resource_id": "p-8",
                "action": "admin",
            },
        ),
        (
            "permission.denied",
            {
                "user_id": "c1",
                "permission": "order:delete",
                "resource_type": "Order",
                "resource_id": "42",
                "action": "cancel",
            },
        ),
    ]


def test_checker_records_the_guide_metrics(metrics: MetricsService) -> None:
    """PermissionChecker and the utilities record every check's counter and histogram."""
    assert not PermissionChecker.has_permissions(CLIENT, ["order:read", "order:admin"])
    assert PermissionChecker.has_permissions(CLIENT, ["order:admin", "order:read"], require_all=False)
    assert has_all_permissions(CLIENT, ["order:read"])
    assert PermissionChecker.has_permission(CLIENT, "order:read")
    assert not PermissionChecker.check_object_permission(CLIENT, object(), "order:update")
    multi = "multiple_permissions_checks_total"
    assert metrics.get_counter_sum(multi, {"require_all": "True", "granted": "False"}) == 1
    assert metrics.get_counter_sum(multi, {"require_all": "False", "granted": "True"}) == 1
    assert metrics.get_counter_sum(multi, {"require_all": "True", "granted": "True"}) == 1
    assert metrics.get_counter_sum("permission_checks_total", {"permission": "order:read"}) == 1
    assert metrics.get_counter_sum(
        "object_permission_checks_total",
        {"object_type": "object", "permission": "order:update", "granted": "False"},
    ) == 1
    assert metrics.get_histogram_quantile("multiple_permissions_check_duration_seconds", 0.5) >= 0
    for name in ("permission", "object_permission"):
        assert metrics.get_histogram_quantile(f"{name}_check_duration_seconds", 0.5) >= 0


async def test_service_and_ensure_count_each_check_once(metrics: MetricsService) -> None:
    """The service delegates to the checker: one check is one count, not two."""
    service = get_permission_service()
    assert await service.has_permission(CLIENT, "order:read")
    await service.ensure_permission(CLIENT, "order:read")
    with pytest.raises(PermissionDeniedException):
        PermissionChecker.ensure_permissions(CLIENT, ["order:admin"])
    await service.ensure_permissions(CLIENT, ["order:read"])
    assert await service.check_object_permission(
        {"id": "c1", "role": "user"}, {"id": 1, "owner_id": "c1"}, "document:update"
    )
    assert metrics.get_counter_sum("permission_checks_total") == 2
    assert metrics.get_counter_sum("multiple_permissions_checks_total") == 2
    assert metrics.get_counter_sum("object_permission_checks_total") == 1


def test_metrics_failure_never_changes_a_decision() -> None:
    """A broken metrics service is ignored."""

    class Broken:
        def increment_counter(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("down")

    with override_service("metrics_service", Broken()):
        assert PermissionChecker.has_permissions(CLIENT, ["order:read"])
        assert not PermissionChecker.has_permission(CLIENT, "order:admin")


_FRESH_PROCESS = """
import asyncio, sys
import crown_nexus.core.permissions as perms

assert "crown_nexus.core.metrics" not in sys.modules
assert "crown_nexus.core.events" not in sys.modules
user = {"id": "u1", "role": "client"}

async def main():
    assert perms.PermissionChecker.has_permissions(user, ["order:read"])
    assert not perms.PermissionChecker.has_permission(user, "user:delete")
    await perms.wait_for_events()
    from crown_nexus.core.dependency_manager import get_service
    events = get_service("event_service")
    await events.wait_for_pending(timeout=5)
    metrics = get_service("metrics_service")
    print(metrics.get_counter_sum("multiple_permissions_checks_total", {"granted": "True"}))
    print(metrics.get_counter_sum("permission_checks_total", {"granted": "False"}))
    print(metrics.get_counter_sum("events_published_total", {"event_type": "permission.denied"}))

asyncio.run(main())
"""


def test_importing_the_permission_system_is_enough() -> None:
    """Outside setup_app, with metrics and events never imported, checks still record and publish."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FRESH_PROCESS)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-3:] == ["1.0", "1.0", "1.0"], out.stdout


# --- get_user_permissions(user_id) without set_user_loader ------------------------------------


async def test_no_loader_error_says_what_to_configure() -> None:
    """Without a loader (and not the request's own user) the error names set_user_loader."""
    service = get_permission_service()
    await service.invalidate_permissions_cache("u-404")
    with pytest.raises(ConfigurationException) as info:
        await service.get_user_permissions("u-404")
    message = info.value.message
    assert "set_user_loader(loader)" in message and "app=app" in message
    assert "loader(user_id: str, db) -> user | None" in message and "'u-404'" in message


def _app(loader_users: dict[str, Any] | None = None) -> FastAPI:
    router = APIRouter()

    @router.get("/perms/{uid}")
    async def perms(uid: str, me: str = Depends(get_current_user_id)) -> list[str]:
        service = get_permission_service()
        await service.invalidate_permissions_cache(uid)
        return [p.value for p in await service.get_user_permissions(uid)]

    app = FastAPI()
    app.include_router(router)
    setup_app(app, Settings())
    if loader_users is not None:
        set_user_loader(lambda user_id, db: loader_users.get(user_id), app=app)
    return app


def _bearer(app: FastAPI, uid: str, role: str) -> dict[str, str]:
    token = app.state.security_service.create_token(uid, role=role)
    return {"Authorization": f"Bearer {token}"}


async def test_request_user_and_app_loader_resolve_ids() -> None:
    """The caller's own id resolves from the request; an app's loader serves only that app."""
    plain = _app()
    scoped = _app({"u2": {"id": "u2", "role": "guest"}})
    async with app_client(plain) as client:
        own = await client.get("/perms/u1", headers=_bearer(plain, "u1", "read_only"))
        other = await client.get("/perms/u2", headers=_bearer(plain, "u1", "read_only"))
    async with app_client(scoped) as client:
        loaded = await client.get("/perms/u2", headers=_bearer(scoped, "u1", "read_only"))
    assert own.status_code == 200 and "order:read" in own.json()["data"]
    assert other.status_code == 500 and other.json()["code"] == "CONFIGURATION_ERROR"
    assert loaded.status_code == 200 and loaded.json()["data"] == ["product:read"]
    await get_permission_service().invalidate_permissions_cache("u2")
    with pytest.raises(ConfigurationException):  # outside that app's requests it does not apply
        await get_permission_service().get_user_permissions("u2")
