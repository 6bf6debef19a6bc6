"""FeatureService rules, validation, admin API, events, metrics and registration (memory store)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crown_nexus.core.dependency_manager import BUILTIN_PROVIDERS, get_service
from crown_nexus.core.exceptions import ValidationException
from crown_nexus.core.features import (
    FeatureService,
    FeatureTarget,
    Flag,
    FlagRule,
    MemoryFeatureStore,
    UnknownFlagException,
    register_flag,
)
from crown_nexus.core.features import models as feature_models
from crown_nexus.core.metrics import MetricsService
from crown_nexus.testing import capture_logs, override_service

USER = FeatureTarget.USER
GROUP = FeatureTarget.GROUP
GLOBAL = FeatureTarget.GLOBAL


def test_both_service_names_give_the_same_service() -> None:
    """get_service("feature_service") and ("feature_flag_service") are one FeatureService."""
    assert BUILTIN_PROVIDERS["feature_service"] == "crown_nexus.core.features"
    assert BUILTIN_PROVIDERS["feature_flag_service"] == "crown_nexus.core.features"
    a = get_service("feature_service")
    assert isinstance(a, FeatureService)
    assert get_service("feature_flag_service") is a


def test_flag_enum_and_targets_as_the_guide_uses_them() -> None:
    """Flag members are strings; FeatureTarget has USER, GROUP, TENANT and GLOBAL."""
    assert Flag.PUSH_NOTIFICATIONS == "push_notifications"
    assert {Flag.NEW_NOTIFICATION_PIPELINE, Flag.SMS_NOTIFICATIONS} <= set(Flag)
    assert [t.name for t in FeatureTarget] == ["USER", "GROUP", "TENANT", "GLOBAL"]


async def test_defaults_unknown_flags_and_application_flags(memory_service: FeatureService) -> None:
    """Shipped flags default off; unknown names raise 404; registered app flags use their default."""
    assert await memory_service.is_enabled(Flag.PUSH_NOTIFICATIONS, target=USER, target_id="u1") is False
    assert await memory_service.is_enabled(Flag.NEW_NOTIFICATION_PIPELINE, target=GLOBAL) is False
    with pytest.raises(UnknownFlagException) as info:
        await memory_service.is_enabled("beta_checkout", target=GLOBAL)
    assert info.value.status_code == 404
    register_flag("beta_checkout", description="new checkout", default=True)
    assert await memory_service.is_enabled("beta_checkout", target=GLOBAL) is True
    assert await memory_service.is_enabled("beta_checkout", target=USER, target_id="u1") is True
    rule = await memory_service.get_flag("beta_checkout")
    assert (rule.enabled, rule.description) == (True, "new checkout")
    register_flag("beta_checkout", default=False)  # registering again changes the default
    assert await memory_service.is_enabled("beta_checkout", target=GLOBAL) is False
    with pytest.raises(ValueError):
        register_flag("bad name!")


async def test_global_switch(memory_service: FeatureService) -> None:
    """enabled turns a flag on for everyone; GLOBAL needs no id."""
    await memory_service.set_flag(Flag.NEW_NOTIFICATION_PIPELINE, enabled=True)
    assert await memory_service.is_enabled(Flag.NEW_NOTIFICATION_PIPELINE, target=GLOBAL)
    assert await memory_service.is_enabled(Flag.NEW_NOTIFICATION_PIPELINE, target=USER, target_id=7)
    await memory_service.set_flag(Flag.NEW_NOTIFICATION_PIPELINE, enabled=False)
    assert not await memory_service.is_enabled(Flag.NEW_NOTIFICATION_PIPELINE)


async def test_allow_and_deny_lists_for_users_and_groups(memory_service: FeatureService) -> None:
    """Deny wins over allow, allow over the rollout; groups match the group lists."""
    await memory_service.set_flag(
        Flag.PUSH_NOTIFICATIONS,
        enabled=True,
        percentage=0,
        allow_users=["alice", 42],
        deny_users=["mallory"],
        allow_groups=["beta"],
        deny_groups=["banned"],
    )
    svc = memory_service
    flag = Flag.PUSH_NOTIFICATIONS
    assert await svc.is_enabled(flag, target=USER, target_id="alice")
    assert await svc.is_enabled(flag, target=USER, target_id=42)  # ids compare as strings
    assert not await svc.is_enabled(flag, target=USER, target_id="bob")  # 0% rollout
    assert await svc.is_enabled(flag, target=USER, target_id="bob", groups=["beta"])
    assert not await svc.is_enabled(flag, target=USER, target_id="alice", groups=["banned"])
    assert not await svc.is_enabled(flag, target=USER, target_id="mallory", groups=["beta"])
    assert await svc.is_enabled(flag, target=GROUP, target_id="beta")
    assert not await svc.is_enabled(flag, target=GROUP, target_id="banned")
    result = svc.evaluate(flag, USER, "mallory")
    assert (result.enabled, result.reason) == (False, "denied")
    assert svc.evaluate(flag, USER, "alice").reason == "allowed"
    assert svc.evaluate(flag, USER, "bob").reason == "rollout"


async def test_off_flag_ignores_allow_lists(memory_service: FeatureService) -> None:
    """A flag that is off is off for allowed users too (the master switch)."""
    await memory_service.set_flag("push_notifications", enabled=False, allow_users=["alice"])
    result = memory_service.evaluate("push_notifications", USER, "alice")
    assert (result.enabled, result.reason) == (False, "disabled")


async def test_per_environment_values() -> None:
    """environments overrides enabled for the service's environment only."""
    store = MemoryFeatureStore()
    prod = FeatureService(store=store, environment="production")
    await prod.set_flag("sms_notifications", enabled=True, environments={"production": False})
    staging = FeatureService(store=store, environment="staging")
    await staging.initialize()
    assert not await prod.is_enabled("sms_notifications")
    assert await staging.is_enabled("sms_notifications")
    await staging.shutdown()


async def test_expiry_falls_back_to_the_registered_default(
    memory_service: FeatureService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After expires_at the rule stops applying and the flag's default is served again."""
    from crown_nexus.core.features import service as service_module

    register_flag("holiday_banner", default=False)
    expires = datetime.now(UTC) + timedelta(hours=1)
    await memory_service.set_flag("holiday_banner", enabled=True, expires_at=expires)
    assert await memory_service.is_enabled("holiday_banner")
    monkeypatch.setattr(service_module, "_time", lambda: expires.timestamp() + 1)
    result = memory_service.evaluate("holiday_banner")
    assert (result.enabled, result.reason) == (False, "expired")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"percentage": 101}, "percentage"),
        ({"percentage": -1}, "percentage"),
        ({"percentage": 10.005}, "percentage"),
        ({"enabled": "maybe"}, "enabled"),
        ({"allow": {"global": ["x"]}}, "allow"),
        ({"allow": {"planet": ["x"]}}, "allow"),
        ({"allow_users": ["a"], "deny_users": ["a"]}, None),
        ({"allow_users": "alice"}, "allow_users"),
        ({"expires_at": "2020-01-01T00:00:00+00:00"}, "expires_at"),
        ({"expires_at": "2999-01-01T00:00:00"}, "expires_at"),  # naive: ambiguous
        ({"environments": {"": True}}, "environments"),
        ({"colour": "red"}, "colour"),
        ({"name": "other_flag"}, "name"),
        ({"on_value": {1, 2}}, "on_value"),
        ({"off_value": float("nan")}, "off_value"),
        ({"on_value": {"a": object()}}, "on_value"),
        ({"allow_users": [f"u{i}" for i in range(10_001)]}, "allow"),
    ],
)
async def test_bad_rules_are_validation_errors(
    memory_service: FeatureService, fields: dict[str, Any], field: str | None
) -> None:
    """Each malformed rule raises ValidationException (422) naming the field; nothing is stored."""
    with pytest.raises(ValidationException) as info:
        await memory_service.set_flag("sms_notifications", **fields)
    assert info.value.status_code == 422
    locs = [tuple(str(p) for p in e["loc"]) for e in info.value.errors]
    assert locs, info.value.errors
    if field is not None:
        assert any(field in loc for loc in locs), locs
    assert (await memory_service.get_flag("sms_notifications")).updated_at is None


async def test_bad_evaluation_arguments(memory_service: FeatureService) -> None:
    """Missing/superfluous ids, unknown targets and out-of-range percentages are 422s."""
    svc = memory_service
    await svc.set_flag("sms_notifications", enabled=True)
    for kwargs in (
        {"target": USER},
        {"target": GLOBAL, "target_id": "u1"},
        {"target": GLOBAL, "percentage": 10},
        {"target": "planet", "target_id": "x"},
        {"target": USER, "target_id": "u1", "percentage": 150},
        {"target": USER, "target_id": "u1", "percentage": True},
    ):
        with pytest.raises(ValidationException):
            await svc.is_enabled("sms_notifications", **kwargs)
    assert await svc.is_enabled("sms_notifications", target="user", target_id="u1")


async def test_admin_api(memory_service: FeatureService) -> None:
    """set_flag / get_flag / list_flags / delete_flag round-trip; unknown flags are 404."""
    svc = memory_service
    rule = await svc.set_flag(Flag.SMS_NOTIFICATIONS, {"enabled": True, "percentage": 25})
    assert isinstance(rule, FlagRule) and rule.updated_at is not None
    assert await svc.get_flag("sms_notifications") == rule
    names = [r.name for r in await svc.list_flags()]
    assert names == sorted(f.value for f in Flag)
    replaced = await svc.set_flag(Flag.SMS_NOTIFICATIONS, rule, percentage=50)
    assert replaced.percentage == 50 and replaced.enabled
    assert await svc.delete_flag(Flag.SMS_NOTIFICATIONS) is True
    assert await svc.delete_flag(Flag.SMS_NOTIFICATIONS) is False
    assert (await svc.get_flag(Flag.SMS_NOTIFICATIONS)).enabled is False
    for call in (svc.get_flag("nope"), svc.delete_flag("nope"), svc.set_flag("nope", enabled=True)):
        with pytest.raises(UnknownFlagException):
            await call


async def test_set_flag_publishes_feature_updated(memory_service: FeatureService) -> None:
    """Every change publishes feature.updated with the flag, the action and the rule."""
    from crown_nexus.core.events import EventService

    events = EventService()  # a fresh bus: earlier tests may leave the shared one reconfigured
    await events.initialize()
    seen: list[dict[str, Any]] = []

    async def handler(event: dict[str, Any]) -> None:
        seen.append(event)

    sub = events.subscribe("feature.updated", handler)
    try:
        with override_service("event_service", events):
            await memory_service.set_flag("push_notifications", enabled=True)
            await memory_service.delete_flag("push_notifications")
            for _ in range(50):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.01)
    finally:
        events.unsubscribe("feature.updated", sub)
        await events.shutdown()
    assert [e["data"]["action"] for e in seen] == ["set", "delete"]
    assert seen[0]["data"]["flag"] == "push_notifications"
    assert seen[0]["data"]["rule"]["enabled"] is True
    assert seen[1]["data"]["rule"] is None


async def test_evaluations_are_counted_by_flag_and_result() -> None:
    """feature_flag_evaluations_total{flag, result} counts every evaluation."""
    metrics = MetricsService()
    with override_service("metrics_service", metrics):
        svc = FeatureService(store=MemoryFeatureStore(), environment="test")
        await svc.set_flag("sms_notifications", enabled=True, allow_users=["a"], percentage=0)
        for uid in ("a", "b", "c", "a"):
            await svc.is_enabled("sms_notifications", target=USER, target_id=uid)
        svc.flush_metrics()
        total = "feature_flag_evaluations_total"
        assert metrics.get_counter_sum(total, {"flag": "sms_notifications", "result": "true"}) == 2
        assert metrics.get_counter_sum(total, {"flag": "sms_notifications", "result": "false"}) == 2
        assert metrics.get_counter_sum("feature_flag_updates_total", {"action": "set"}) == 1


async def test_metrics_flush_on_their_own_within_a_second() -> None:
    """Counts reach the metrics service without an explicit flush (an event-loop timer)."""
    from crown_nexus.core.features import _telemetry

    metrics = MetricsService()
    with override_service("metrics_service", metrics):
        svc = FeatureService(store=MemoryFeatureStore(), environment="test")
        await svc.is_enabled("sms_notifications")
        await asyncio.sleep(_telemetry.FLUSH_AFTER_SECONDS + 0.2)
        labels = {"flag": "sms_notifications", "result": "false"}
        assert metrics.get_counter_sum("feature_flag_evaluations_total", labels) == 1


async def test_registered_service_is_configured_from_settings() -> None:
    """configure_features follows an app's settings: store kind and environment."""
    from crown_nexus.core.features import configure_features
    from crown_nexus.settings import Settings

    svc = FeatureService(Settings(feature_store="memory"))
    with override_service("feature_service", svc):
        assert configure_features(Settings(feature_store="memory", ENVIRONMENT="test")) is svc
        assert svc.environment == "test" and svc.store.name == "memory"
        configure_features(Settings(feature_store="sql", database_url="sqlite+aiosqlite:///:memory:"))
        assert svc.store.name == "sql"


def test_store_for_settings_errors() -> None:
    """Asking for Redis without Redis configured is a ConfigurationException."""
    from crown_nexus.core.exceptions import ConfigurationException
    from crown_nexus.core.features import store_for_settings
    from crown_nexus.settings import Settings

    with pytest.raises(ConfigurationException):
        store_for_settings(Settings(feature_store="redis", REDIS_URI=None))
    assert store_for_settings(Settings(REDIS_URI="redis://127.0.0.1:1/0")).name == "redis"
    assert store_for_settings(Settings()).name == "memory"


def test_importing_features_imports_neither_redis_nor_openfeature() -> None:
    """The package registers its service without importing optional dependencies."""
    import subprocess
    import sys

    code = (
        "import sys\nimport crown_nexus.core.features\n"
        "print('redis' in sys.modules, 'openfeature' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_flag_name_rejects_other_types() -> None:
    """Only a Flag or a str names a flag."""
    assert feature_models.flag_name(Flag.SMS_NOTIFICATIONS) == "sms_notifications"
    with pytest.raises(TypeError):
        feature_models.flag_name(3)  # type: ignore[arg-type]


async def test_reloading_ignores_invalid_stored_rules(memory_service: FeatureService) -> None:
    """A corrupt stored rule is skipped (logged) and the valid ones still load."""
    store = memory_service.store
    await store.save("sms_notifications", {"name": "sms_notifications", "enabled": True})
    await store.save("push_notifications", {"name": "push_notifications", "percentage": 500})
    with capture_logs("warning") as logs:
        assert await memory_service.refresh(force=True)
    assert await memory_service.is_enabled("sms_notifications")
    assert any("invalid" in e["event"] for e in logs)


def test_an_override_is_not_captured_by_the_other_name() -> None:
    """Overriding feature_service does not leak into feature_flag_service's shared instance."""
    from crown_nexus.core.dependency_manager import get_registry

    registry = get_registry()
    registry.unregister("feature_flag_service")
    registry.unregister("feature_service")
    from crown_nexus.core.features import service as service_module

    for name in service_module._NAMES:
        registry.register(service_module._build_feature_service, name)
    fake = FeatureService(store=MemoryFeatureStore(), environment="test")
    with override_service("feature_service", fake):
        alias = get_service("feature_flag_service")
        assert alias is not fake and isinstance(alias, FeatureService)
    assert get_service("feature_service") is alias
