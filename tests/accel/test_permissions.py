"""Permission registry: every case runs against every implementation (pure and Cython)."""

from __future__ import annotations

from enum import StrEnum
from types import ModuleType

import pytest

from crown_nexus import accel
from crown_nexus._pure.permissions import UnknownPermissionError, UnknownRoleError
from tests.conftest import implementations_of


class Perm(StrEnum):
    """A str-enum like the shipped ``Permission``."""

    DOC_READ = "doc:read"
    DOC_EDIT = "doc:edit"


@pytest.fixture(params=implementations_of("permissions"))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The permissions implementation under test."""
    return accel.available("permissions")[request.param]


@pytest.fixture
def reg(impl: ModuleType):  # type: ignore[no-untyped-def]
    """A registry with three roles: viewer < editor < admin."""
    r = impl.PermissionRegistry()
    r.register_role("viewer", ["doc:read"])
    r.register_role("editor", ["doc:edit"], inherits=["viewer"])
    r.register_role("admin", ["system:admin"], inherits=["editor"])
    return r


def test_cython_twin_is_built_and_chosen() -> None:
    """The compiled twin is importable here and chosen in auto mode (no silent fallback)."""
    if accel.requested_mode() == "pure":
        pytest.skip("CROWN_NEXUS_IMPL=pure")
    assert "cython" in accel.available("permissions")
    assert accel.implementations()["permissions"] == "cython"


def test_bits_are_sequential_and_stable(impl: ModuleType) -> None:
    """Each new permission gets the next bit; registering again returns the same bit."""
    r = impl.PermissionRegistry()
    assert [r.register_permission(p) for p in ("a:x", "b:y", "a:x", "c:z")] == [0, 1, 0, 2]
    assert r.permissions() == ["a:x", "b:y", "c:z"]
    assert r.bit_of("b:y") == 1


def test_role_inheritance(reg) -> None:
    """A role's mask includes everything it inherits, transitively."""
    assert reg.role_permissions("viewer") == {"doc:read"}
    assert reg.role_permissions("editor") == {"doc:read", "doc:edit"}
    assert reg.role_permissions("admin") == {"doc:read", "doc:edit", "system:admin"}
    assert reg.inherits("admin") == ("editor",)
    assert reg.roles() == ["viewer", "editor", "admin"]


def test_redefining_a_role_updates_its_heirs(reg) -> None:
    """Re-registering a role changes every role that inherits it."""
    reg.register_role("viewer", ["doc:read", "doc:list"])
    assert "doc:list" in reg.role_permissions("admin")


def test_cycles_are_rejected_and_change_nothing(reg) -> None:
    """A definition that would create an inheritance cycle raises ValueError, state unchanged."""
    before = reg.role_mask("viewer")
    with pytest.raises(ValueError, match="cycle"):
        reg.register_role("viewer", ["doc:read"], inherits=["admin"])
    with pytest.raises(ValueError, match="cycle"):
        reg.register_role("solo", [], inherits=["solo"])
    assert reg.role_mask("viewer") == before
    assert "solo" not in reg.roles()


def test_unknown_inherited_role(reg) -> None:
    """Inheriting a role that does not exist raises UnknownRoleError (a KeyError)."""
    with pytest.raises(UnknownRoleError) as info:
        reg.register_role("x", [], inherits=["ghost"])
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "unknown role 'ghost'"


def test_has_has_all_has_any(reg) -> None:
    """The three checks on a mask."""
    m = reg.role_mask("editor")
    assert reg.has(m, "doc:read") and reg.has(m, "doc:edit")
    assert not reg.has(m, "system:admin")
    assert reg.has_all(m, ["doc:read", "doc:edit"])
    assert not reg.has_all(m, ["doc:read", "system:admin"])
    assert reg.has_any(m, ["system:admin", "doc:edit"])
    assert not reg.has_any(m, ["system:admin"])
    assert reg.has_all(m, []) is True
    assert reg.has_any(m, []) is False
    assert reg.has_all(m, (p for p in ["doc:read"]))


def test_enum_members_work_as_names(reg) -> None:
    """str-enum members are looked up by their value (repeatedly, via the cache)."""
    m = reg.role_mask("viewer")
    for _ in range(3):
        assert reg.has(m, Perm.DOC_READ) is True
        assert reg.has(m, Perm.DOC_EDIT) is False
    assert reg.mask_of([Perm.DOC_READ]) == reg.mask_of(["doc:read"])


def test_unknown_permission_is_a_typed_key_error(reg) -> None:
    """Checking an unregistered permission raises UnknownPermissionError (a KeyError)."""
    for call in (
        lambda: reg.has(1, "nope:x"),
        lambda: reg.has_all(1, ["doc:read", "nope:x"]),
        lambda: reg.has_any(1, ["doc:read", "nope:x"]),
        lambda: reg.mask_of(["nope:x"]),
        lambda: reg.bit_of("nope:x"),
    ):
        with pytest.raises(UnknownPermissionError) as info:
            call()
        assert isinstance(info.value, KeyError)
        assert str(info.value) == "unknown permission 'nope:x'"
    with pytest.raises(UnknownRoleError):
        reg.role_mask("ghost")
    assert "nope:x" not in reg
    assert "doc:read" in reg


def test_bad_types(reg) -> None:
    """Non-strings and bad masks raise TypeError / ValueError."""
    with pytest.raises(TypeError):
        reg.has(1, 5)
    with pytest.raises(TypeError):
        reg.has(1, ["doc:read"])
    with pytest.raises(TypeError):
        reg.has("1", "doc:read")
    with pytest.raises(TypeError):
        reg.has(True, "doc:read")
    with pytest.raises(ValueError):
        reg.has(-1, "doc:read")
    with pytest.raises(TypeError):
        reg.has_all(1, "doc:read")
    with pytest.raises(TypeError):
        reg.mask_of(None)
    with pytest.raises(TypeError):
        reg.role_mask(3)


@pytest.mark.parametrize(
    ("name", "exc"),
    [
        ("nocolon", ValueError),
        (":action", ValueError),
        ("resource:", ValueError),
        ("a:b:c", ValueError),
        ("a b:c", ValueError),
        ("", ValueError),
        (None, TypeError),
        (3, TypeError),
    ],
)
def test_malformed_permission_names(impl: ModuleType, name, exc) -> None:
    """Only '<resource>:<action>' names can be registered."""
    with pytest.raises(exc):
        impl.PermissionRegistry().register_permission(name)


def test_bad_role_definitions(impl: ModuleType) -> None:
    """Role names must be non-empty strings; permissions an iterable of names (not a str)."""
    r = impl.PermissionRegistry()
    with pytest.raises(ValueError):
        r.register_role("", [])
    with pytest.raises(ValueError):
        r.register_role(" padded ", [])
    with pytest.raises(TypeError):
        r.register_role(None, [])
    with pytest.raises(TypeError):
        r.register_role("r", "doc:read")
    with pytest.raises(ValueError):
        r.register_role("r", ["bad"])
    assert r.roles() == []


def test_user_mask_is_lenient_about_stored_data(reg) -> None:
    """Unknown roles and grants add nothing; inactive users hold nothing."""
    editor = reg.role_mask("editor")
    assert reg.user_mask("editor") == editor
    assert reg.user_mask("editor", ["system:admin"]) == reg.role_mask("admin")
    assert reg.user_mask("editor", ["system:admin"], False) == 0
    assert reg.user_mask("ghost", ["doc:read", "junk", "zz:unknown", 5, None]) == reg.role_mask(
        "viewer"
    )
    assert reg.user_mask(None, ["doc:edit"]) == reg.mask_of(["doc:edit"])
    assert reg.user_mask(None) == 0
    assert reg.user_mask(42, "doc:read") == 0
    assert reg.user_mask("viewer", 17) == reg.role_mask("viewer")
    assert reg.user_mask(["unhashable"], [["x"]]) == 0


def test_many_permissions_beyond_64_bits(impl: ModuleType) -> None:
    """Any number of permissions works: masks above 64 bits test correctly."""
    r = impl.PermissionRegistry()
    names = [f"res{i}:act" for i in range(300)]
    for n in names:
        r.register_permission(n)
    r.register_role("big", names[::3])
    m = r.role_mask("big")
    assert m.bit_length() > 64
    for i, n in enumerate(names):
        assert r.has(m, n) is (i % 3 == 0)
    assert r.has_all(m, names[::3])
    assert not r.has_all(m, names[:2])
    assert r.has_any(m, names[2:4])
    assert not r.has_any(m, names[1:3])
    assert r.permissions_of(m) == names[::3]
    # bits beyond what is registered are ignored by permissions_of
    assert r.permissions_of(m | (1 << 5000)) == names[::3]


def test_permissions_of_round_trips(reg) -> None:
    """permissions_of(mask_of(x)) gives x back in bit order."""
    m = reg.mask_of(["system:admin", "doc:read"])
    assert reg.permissions_of(m) == ["doc:read", "system:admin"]
    assert reg.permissions_of(0) == []


def test_object_rule(impl: ModuleType) -> None:
    """object_allowed: superuser, or the resource's admin permission, or permission + ownership."""
    r = impl.PermissionRegistry()
    for name in ("doc:read", "doc:edit", "doc:admin", "note:edit", "system:admin"):
        r.register_permission(name)
    edit = r.mask_of(["doc:edit"])
    assert r.object_allowed(edit, "doc:edit", True) is True
    assert r.object_allowed(edit, "doc:edit", False) is False
    assert r.object_allowed(r.mask_of(["doc:read"]), "doc:edit", True) is False
    assert r.object_allowed(r.mask_of(["doc:admin"]), "doc:edit", False) is True
    assert r.object_allowed(r.mask_of(["doc:admin"]), "note:edit", False) is False
    assert r.object_allowed(r.mask_of(["system:admin"]), "note:edit", False) is True
    assert r.object_allowed(r.mask_of(["note:edit"]), "note:edit", 1) is True
    with pytest.raises(UnknownPermissionError):
        r.object_allowed(edit, "doc:share", True)
    with pytest.raises(ValueError):
        r.object_allowed(-1, "doc:edit", True)
