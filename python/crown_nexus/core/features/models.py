"""Feature flag names, targets and rules (guide §14): ``Flag``, ``FeatureTarget``, ``FlagRule``.

``Flag`` holds the flags crown-nexus ships (the guide's); applications add their own names at
start-up with :func:`register_flag`, as they add permissions. Flags are looked up by their
string value, so ``Flag.SMS_NOTIFICATIONS`` and ``"sms_notifications"`` are the same flag.

A :class:`FlagRule` is what an administrator sets for one flag (validated with pydantic; a bad
rule raises :class:`~crown_nexus.core.exceptions.ValidationException` from the service):

- ``enabled``: the master switch (``environments`` may override it per environment);
- ``allow`` / ``deny``: ids per target kind (``{"user": [...], "group": [...]}``) always on /
  always off while the flag is on (deny wins);
- ``percentage``: the share of ids (0-100, two decimals) the flag is on for; the call site may
  pass a ``percentage`` too, and an id must be inside both;
- ``expires_at``: after it the rule no longer applies and the flag's registered default does;
- ``on_value`` / ``off_value``: what :meth:`FeatureService.get_value` (and OpenFeature's typed
  resolvers) return when the flag is on / off (``True`` / ``False`` by default).
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from crown_nexus.core.exceptions import ResourceNotFoundException, ServiceException

__all__ = [
    "FLAG_NAME_PATTERN",
    "FeatureStoreException",
    "FeatureTarget",
    "Flag",
    "FlagDefinition",
    "FlagRegistry",
    "FlagRule",
    "UnknownFlagException",
    "flag_name",
    "get_flag_registry",
    "register_flag",
    "reset_flag_registry",
]

#: what a flag name may look like: starts with a letter or digit, at most 128 characters
FLAG_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
_NAME_RE = re.compile(FLAG_NAME_PATTERN)


class Flag(StrEnum):
    """The flags crown-nexus ships (those guide §14 uses); applications register more."""

    PUSH_NOTIFICATIONS = "push_notifications"
    NEW_NOTIFICATION_PIPELINE = "new_notification_pipeline"
    SMS_NOTIFICATIONS = "sms_notifications"


class FeatureTarget(StrEnum):
    """Whom a flag is evaluated for: one user, one group, one tenant, or everyone (``GLOBAL``).

    ``GLOBAL`` takes no id and answers whether the flag is on; the others need an id, which
    the allow/deny lists of that kind and the percentage rollout are matched against.
    """

    USER = "user"
    GROUP = "group"
    TENANT = "tenant"
    GLOBAL = "global"


class UnknownFlagException(ResourceNotFoundException):
    """No flag of that name is registered or stored (404, ``RESOURCE_NOT_FOUND``)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            resource_type="FeatureFlag",
            resource_id=name,
            message=f"Unknown feature flag {name!r}: register it with register_flag()",
        )
        self.flag = name


class FeatureStoreException(ServiceException):
    """The flag store could not be written or read (502, ``SERVICE_ERROR``)."""


def flag_name(flag: Flag | str) -> str:
    """The string name of ``flag`` (a :class:`Flag` member's value, or the string itself).

    Raises ``TypeError`` for anything else.
    """
    if type(flag) is str:
        return flag
    if isinstance(flag, str):
        return str.__str__(flag) if not isinstance(flag, StrEnum) else flag.value
    raise TypeError(f"a feature flag is a Flag or a str, not {type(flag).__name__}")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid feature flag name {name!r}: letters, digits, '_', '.', ':', '-' "
            "(starting with a letter or digit), at most 128 characters"
        )
    return name


def _ids(value: Any) -> tuple[str, ...]:
    """Ids as sorted unique strings (ints and UUIDs are accepted and turned into strings)."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ValueError("expected a list of ids")
    out: set[str] = set()
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int | uuid.UUID):
            raise ValueError(f"an id is a string, an int or a UUID, not {type(item).__name__}")
        text = str(item)
        if not text or len(text) > 256:
            raise ValueError("an id has 1 to 256 characters")
        out.add(text)
    if len(out) > MAX_IDS:
        raise ValueError(f"a list holds at most {MAX_IDS} ids")
    return tuple(sorted(out))


#: most ids one allow or deny list may hold
MAX_IDS = 10_000


def _check_json(value: Any, depth: int) -> None:
    """``value`` must be JSON data (what every store keeps and OpenFeature can serve)."""
    if depth > 16:
        raise ValueError("a flag value is nested at most 16 levels deep")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("a flag value cannot be NaN or infinite")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_json(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("a flag value's object keys are strings")
            _check_json(item, depth + 1)
        return
    raise ValueError(f"a flag value is JSON data, not {type(value).__name__}")


_TARGET_KINDS = tuple(t.value for t in FeatureTarget if t is not FeatureTarget.GLOBAL)


class FlagRule(BaseModel):
    """The rules of one flag (see the module docstring). Immutable; build a new one to change it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    enabled: bool = False
    percentage: float | None = Field(default=None, ge=0, le=100)
    allow: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    deny: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    environments: dict[str, bool] = Field(default_factory=dict)
    expires_at: AwareDatetime | None = None
    description: str = Field(default="", max_length=1000)
    on_value: Any = True
    off_value: Any = False
    updated_at: AwareDatetime | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("percentage")
    @classmethod
    def _two_decimals(cls, value: float | None) -> float | None:
        if value is not None and abs(value * 100 - round(value * 100)) > 1e-6:
            raise ValueError("percentage has at most two decimals (buckets of 0.01%)")
        return value

    @field_validator("allow", "deny", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> dict[str, tuple[str, ...]]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of target kind to a list of ids")
        out: dict[str, tuple[str, ...]] = {}
        for kind, ids in value.items():
            key = kind.value if isinstance(kind, FeatureTarget) else kind
            if key not in _TARGET_KINDS:
                raise ValueError(
                    f"unknown target kind {kind!r}; expected one of {', '.join(_TARGET_KINDS)}"
                )
            listed = _ids(ids)
            if listed:
                out[key] = listed
        return out

    @field_validator("on_value", "off_value")
    @classmethod
    def _json_value(cls, value: Any) -> Any:
        _check_json(value, 0)
        return value

    @field_validator("environments")
    @classmethod
    def _environment_names(cls, value: dict[str, bool]) -> dict[str, bool]:
        for env in value:
            if not env or len(env) > 64:
                raise ValueError("an environment name has 1 to 64 characters")
        return value

    @model_validator(mode="after")
    def _no_contradiction(self) -> FlagRule:
        for kind, ids in self.allow.items():
            both = set(ids) & set(self.deny.get(kind, ()))
            if both:
                raise ValueError(
                    f"{kind} ids both allowed and denied: {', '.join(sorted(both)[:5])}"
                )
        return self

    def to_json(self) -> dict[str, Any]:
        """The rule as JSON-ready data (what the stores keep and the admin API returns)."""
        return self.model_dump(mode="json")


@dataclass(frozen=True, slots=True)
class FlagDefinition:
    """A known flag: its name, what it is for, and its value when no rule is set (``default``)."""

    name: str
    description: str = ""
    default: bool = False


class FlagRegistry:
    """The flags an application knows: the shipped :class:`Flag` members plus its own.

    ``version`` changes on every registration, so services notice new or changed defaults.
    """

    def __init__(self) -> None:
        self._flags: dict[str, FlagDefinition] = {}
        self._lock = threading.Lock()
        self.version = 0
        for flag in Flag:
            self.register(flag.value)

    def register(
        self, name: Flag | str, *, description: str = "", default: bool = False
    ) -> FlagDefinition:
        """Register flag ``name`` (idempotent; registering again replaces its description and
        default). Raises ``ValueError`` for a malformed name and ``TypeError`` for a non-bool
        default."""
        key = _check_name(flag_name(name))
        if not isinstance(default, bool):
            raise TypeError("a flag's default is True or False")
        definition = FlagDefinition(key, description, default)
        with self._lock:
            if self._flags.get(key) != definition:
                self._flags[key] = definition
                self.version += 1
        return definition

    def get(self, name: str) -> FlagDefinition | None:
        """The definition of ``name``, or ``None``."""
        return self._flags.get(name)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._flags)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._flags

    def __iter__(self) -> Any:
        return iter(list(self._flags.values()))


_registry = FlagRegistry()


def get_flag_registry() -> FlagRegistry:
    """The process-wide flag registry every ``FeatureService`` reads by default."""
    return _registry


def register_flag(name: Flag | str, *, description: str = "", default: bool = False) -> str:
    """Register an application flag ``name`` (default off unless ``default=True``); return it."""
    return _registry.register(name, description=description, default=default).name


def reset_flag_registry() -> FlagRegistry:
    """Forget application flags, keeping the shipped ones (for tests); returns the registry."""
    with _registry._lock:
        _registry._flags = {f.value: FlagDefinition(f.value) for f in Flag}
        _registry.version += 1
    return _registry


def now_utc() -> datetime:
    """The current aware UTC time (a hook for tests)."""
    from datetime import UTC

    return datetime.now(UTC)
