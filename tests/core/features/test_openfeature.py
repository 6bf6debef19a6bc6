"""The OpenFeature provider: SDK clients read the same flags as feature_service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from crown_nexus.core.features import (
    FeatureService,
    FeatureTarget,
    MemoryFeatureStore,
    register_flag,
)
from crown_nexus.core.features.openfeature import CrownNexusProvider
from crown_nexus.testing import override_service


@pytest.fixture
def flags() -> Iterator[FeatureService]:
    """A memory FeatureService behind the OpenFeature API (as the shared feature_service)."""
    svc = FeatureService(store=MemoryFeatureStore(), environment="test")
    with override_service("feature_service", svc):
        api.set_provider(CrownNexusProvider())
        try:
            yield svc
        finally:
            api.clear_providers()


async def test_boolean_flags_match_is_enabled(flags: FeatureService) -> None:
    """For 2,000 users the SDK's boolean answer equals is_enabled's, targeting_key = user id."""
    await flags.set_flag("sms_notifications", enabled=True, percentage=30, deny_users=["u1"])
    client = api.get_client()
    for i in range(2000):
        uid = f"u{i}"
        expected = await flags.is_enabled(
            "sms_notifications", target=FeatureTarget.USER, target_id=uid
        )
        got = client.get_boolean_value("sms_notifications", not expected, EvaluationContext(uid))
        assert got is expected, uid
    details = client.get_boolean_details("sms_notifications", True, EvaluationContext("u1"))
    assert (details.value, details.reason, details.variant) == (False, Reason.TARGETING_MATCH, "off")


async def test_context_groups_global_and_async(flags: FeatureService) -> None:
    """groups come from the context attributes; no targeting key means GLOBAL; async resolvers work."""
    await flags.set_flag("push_notifications", enabled=True, percentage=0, allow_groups=["beta"])
    client = api.get_client()
    ctx = EvaluationContext("someone", {"groups": ["beta"]})
    assert client.get_boolean_value("push_notifications", False, ctx) is True
    assert client.get_boolean_value("push_notifications", True, EvaluationContext("x")) is False
    assert client.get_boolean_value("push_notifications", False) is True  # GLOBAL: it is on
    assert await client.get_boolean_value_async("push_notifications", False, ctx) is True
    group_ctx = EvaluationContext("beta", {"target": "group"})
    assert client.get_boolean_value("push_notifications", False, group_ctx) is True


async def test_typed_values_and_errors(flags: FeatureService) -> None:
    """String/int/float/object resolvers serve on/off values; mismatches and unknown flags error."""
    register_flag("checkout_theme")
    register_flag("max_items")
    await flags.set_flag("checkout_theme", enabled=True, on_value="dark", off_value="light")
    await flags.set_flag("max_items", enabled=False, on_value=50, off_value=10)
    client = api.get_client()
    assert client.get_string_value("checkout_theme", "x") == "dark"
    assert client.get_integer_value("max_items", 0) == 10
    assert client.get_float_value("max_items", 0.5) == 10.0
    register_flag("limits")
    await flags.set_flag("limits", enabled=True, on_value={"rps": 5})
    assert client.get_object_value("limits", {}) == {"rps": 5}

    mismatch = client.get_boolean_details("checkout_theme", False)
    assert (mismatch.value, mismatch.error_code) == (False, ErrorCode.TYPE_MISMATCH)
    missing = client.get_boolean_details("no_such_flag", True)
    assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
    bad = client.get_boolean_details("checkout_theme", False, EvaluationContext("u", {"target": "x"}))
    assert bad.error_code == ErrorCode.INVALID_CONTEXT
    bad_groups = client.get_boolean_details("checkout_theme", False, EvaluationContext("u", {"groups": "a"}))
    assert bad_groups.error_code == ErrorCode.INVALID_CONTEXT
    assert CrownNexusProvider().get_metadata().name == "crown-nexus"
