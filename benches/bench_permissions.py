"""Permission check: Cython vs pure vs pycasbin's RBAC ``enforce``, on the same roles.

Every implementation gets the shipped roles and permissions (``ROLE_PERMISSIONS``); casbin gets
them as ``p, <role>, <resource>, <action>`` policies plus ``g, <user>, <role>`` from an RBAC model
written as a string. One check = "may this user (role + extra grants) do <resource>:<action>?"

Groups:
* ``permissions`` -- one check at the hot-path level (``user_mask`` + ``has``) vs ``enforce``.
* ``permissions-checker`` -- the public API ``PermissionChecker.has_permission`` on a user dict,
  with its metrics (``permission_checks_total`` and the duration histogram, counted in a local
  batch and handed to the metrics service) and, as ``<impl>-no-metrics``, with the recording
  replaced by a no-op: the difference is what the metrics cost per check.

Each benchmark first checks that its implementation gives the right answers (grant and deny).
Run: ``pytest benches/bench_permissions.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

from typing import Any

import casbin
import pytest

from crown_nexus import accel
from crown_nexus.core.permissions import (
    ROLE_PERMISSIONS,
    PermissionChecker,
    build_default_registry,
    reset_registry,
)

IMPLS = accel.available("permissions")
KINDS = sorted(IMPLS)

RBAC_MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
"""

ROLE = "manager"
GRANTED = "product:update"
DENIED = "system:admin"


def _casbin() -> Any:
    model = casbin.model.Model()
    model.load_model_from_text(RBAC_MODEL)
    enforcer = casbin.Enforcer(model)
    for role, perms in ROLE_PERMISSIONS.items():
        for perm in perms:
            resource, _, action = perm.value.partition(":")
            enforcer.add_policy(role.value, resource, action)
    enforcer.add_grouping_policy("alice", ROLE)
    return enforcer


def _info(benchmark: Any, impl: str) -> None:
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["impl"] = impl


@pytest.mark.parametrize("impl", [*KINDS, "casbin"])
def test_permission_check(benchmark: Any, impl: str) -> None:
    """One check: may a manager update a product?"""
    benchmark.group = "permissions"
    _info(benchmark, impl)
    if impl == "casbin":
        enforcer = _casbin()
        resource, _, action = GRANTED.partition(":")
        assert enforcer.enforce("alice", resource, action) is True
        assert enforcer.enforce("alice", *DENIED.split(":")) is False
        result = benchmark(enforcer.enforce, "alice", resource, action)
    else:
        reg = build_default_registry(impl)
        user_mask, has = reg.user_mask, reg.has

        def check(role: str, perm: str) -> bool:
            return has(user_mask(role, None, True), perm)

        assert check(ROLE, GRANTED) is True
        assert check(ROLE, DENIED) is False
        result = benchmark(check, ROLE, GRANTED)
    assert result is True


@pytest.mark.parametrize("impl", KINDS)
def test_checker_has_permission(benchmark: Any, impl: str) -> None:
    """The public API on a user dict (role + one extra grant)."""
    benchmark.group = "permissions-checker"
    _info(benchmark, impl)
    reset_registry(impl)
    try:
        user = {"id": "u1", "role": ROLE, "permissions": ["report:read"], "is_active": True}
        assert PermissionChecker.has_permission(user, GRANTED) is True
        assert benchmark(PermissionChecker.has_permission, user, GRANTED) is True
    finally:
        reset_registry()


@pytest.mark.parametrize("impl", KINDS)
def test_checker_has_permission_no_metrics(benchmark: Any, impl: str) -> None:
    """The public API with metrics recording replaced by a no-op (the metrics' share)."""
    from crown_nexus.core.permissions import checker

    benchmark.group = "permissions-checker"
    _info(benchmark, f"{impl}-no-metrics")
    reset_registry(impl)
    recorded = checker.record_check
    checker.record_check = lambda *args: None  # type: ignore[assignment]
    try:
        user = {"id": "u1", "role": ROLE, "permissions": ["report:read"], "is_active": True}
        assert PermissionChecker.has_permission(user, GRANTED) is True
        assert benchmark(PermissionChecker.has_permission, user, GRANTED) is True
    finally:
        checker.record_check = recorded
        reset_registry()
