"""``FeatureService``: the guide's ``feature_service`` (also registered as ``feature_flag_service``).

``await feature_service.is_enabled(flag, target=FeatureTarget.USER, target_id=user_id,
percentage=10)`` answers from a local, compiled copy of the flags: an evaluation never waits on
the network. The copy is loaded from the store at start-up (``initialize()``, done by
``setup_app``'s lifespan, or on first use inside an event loop) and, for a shared store (SQL,
Redis), kept fresh by a background task that polls the store's version every
``poll_interval`` seconds and reloads when it changed. When the store is down the last known
flags stay in force; the outage is logged once (and its end once) and every failed call is
counted in ``feature_store_errors_total``.

How a flag is evaluated for ``target`` / ``target_id`` (see ``models.FlagRule``):

1. unknown name (neither registered nor stored): :class:`UnknownFlagException` (404);
2. an expired rule is ignored: the flag's registered default applies;
3. off (``enabled``, or its value for this service's environment, is false): ``False``;
4. ``FeatureTarget.GLOBAL`` (no id): ``True``;
5. the id (or one of ``groups``) in a deny list: ``False``; in an allow list: ``True``;
6. percentage rollout: ``True`` when the id's bucket is inside both the rule's ``percentage``
   and the call's ``percentage`` (each 100 when not given).

The store follows the settings (``CROWN_NEXUS_FEATURE_STORE``: ``auto`` = Redis when Redis is
configured, else memory; ``memory``; ``sql`` on ``CROWN_NEXUS_DATABASE_URL``; ``redis``);
each app container builds its own service from its app's settings; :func:`configure_features`
re-points the current one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from asyncio import events as _events
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import pydantic

from crown_nexus import accel
from crown_nexus.core._tasks import cancel_and_wait, raise_if_cancelling
from crown_nexus.core.dependency_manager import get_registry, get_service, register_service
from crown_nexus.core.exceptions import ValidationException
from crown_nexus.core.features._bucket import BUCKETS, bucketer, threshold
from crown_nexus.core.features._telemetry import RELOADS, STORE_ERRORS, UPDATES, FeatureTelemetry
from crown_nexus.core.features.models import (
    FeatureStoreException,
    FeatureTarget,
    Flag,
    FlagDefinition,
    FlagRegistry,
    FlagRule,
    UnknownFlagException,
    flag_name,
    get_flag_registry,
    now_utc,
)
from crown_nexus.core.features.stores.base import FeatureStore
from crown_nexus.core.features.stores.memory import MemoryFeatureStore
from crown_nexus.logging import get_logger

__all__ = [
    "FeatureService",
    "FlagEvaluation",
    "configure_features",
    "get_feature_service",
    "store_for_settings",
]

logger = get_logger("crown_nexus.core.features")

_get_running_loop = _events._get_running_loop
_time = time.time
_GLOBAL = FeatureTarget.GLOBAL
_INF = math.inf
STORE_KINDS = ("auto", "memory", "sql", "redis")
#: the local copy's version after its own write: never equal to a store's version
_STALE = "\x00stale"
#: call-site percentage -> buckets (validated once per distinct value)
_THRESHOLDS: dict[Any, int] = {}

#: set_flag keyword shortcuts: name -> (allow|deny, target kind)
_LIST_SHORTCUTS = {
    f"{side}_{kind}s": (side, kind)
    for side in ("allow", "deny")
    for kind in ("user", "group", "tenant")
}


class FlagEvaluation(NamedTuple):
    """One evaluation: the flag, on or off, the value served and why (``reason``).

    ``reason`` is ``"on"``, ``"disabled"``, ``"denied"``, ``"allowed"``, ``"rollout"`` or
    ``"expired"`` (the rule had expired and the registered default applied).
    """

    flag: str
    enabled: bool
    value: Any
    reason: str


class _Compiled:
    """A flag's rule prepared for evaluation in one environment."""

    __slots__ = (
        "allow",
        "deny",
        "expires",
        "fallback",
        "group_allow",
        "group_deny",
        "keys",
        "lists",
        "name",
        "off_value",
        "on",
        "on_value",
        "threshold",
    )

    def __init__(
        self, name: str, rule: FlagRule | None, definition: FlagDefinition | None, env: str
    ) -> None:
        default = definition.default if definition is not None else False
        self.name = name
        self.keys = ((name, "false"), (name, "true"))
        self.fallback: _Compiled | None = None
        if rule is None:
            self.on = default
            self.threshold = BUCKETS
            self.allow: dict[FeatureTarget, frozenset[str]] = {}
            self.deny: dict[FeatureTarget, frozenset[str]] = {}
            self.expires = _INF
            self.on_value: Any = True
            self.off_value: Any = False
        else:
            self.on = rule.environments.get(env, rule.enabled)
            self.threshold = BUCKETS if rule.percentage is None else threshold(rule.percentage)
            self.allow = {FeatureTarget(k): frozenset(v) for k, v in rule.allow.items()}
            self.deny = {FeatureTarget(k): frozenset(v) for k, v in rule.deny.items()}
            self.expires = rule.expires_at.timestamp() if rule.expires_at is not None else _INF
            self.on_value = rule.on_value
            self.off_value = rule.off_value
            if self.expires != _INF:
                self.fallback = _Compiled(name, None, definition, env)
        self.group_allow = self.allow.get(FeatureTarget.GROUP)
        self.group_deny = self.deny.get(FeatureTarget.GROUP)
        self.lists = bool(self.allow or self.deny)


def _invalid(message: str, field: str) -> ValidationException:
    return ValidationException(
        message=message, errors=[{"loc": [field], "msg": message, "type": "value_error"}]
    )


def _target_of(target: Any) -> FeatureTarget:
    try:
        return FeatureTarget(target)
    except ValueError:
        raise _invalid(
            f"unknown feature target {target!r}; expected one of "
            f"{', '.join(t.value for t in FeatureTarget)}",
            "target",
        ) from None


def _threshold_of(percentage: Any) -> int:
    if isinstance(percentage, bool) or not isinstance(percentage, int | float) or not (
        0 <= percentage <= 100
    ):
        raise _invalid("percentage must be a number from 0 to 100", "percentage")
    return threshold(percentage)


def _id_of(target_id: Any) -> str:
    text = str(target_id)
    if not text:
        raise _invalid("target_id must not be empty", "target_id")
    return text


def store_for_settings(settings: Any) -> FeatureStore:
    """The store ``settings`` ask for (see the module docstring).

    Raises ``ConfigurationException`` for an unknown kind or a missing URL.
    """
    from crown_nexus.core.exceptions import ConfigurationException

    kind, url = _store_config(settings)
    if kind == "memory":
        return MemoryFeatureStore()
    if kind == "redis":
        from crown_nexus.core.features.stores.redis import RedisFeatureStore

        return RedisFeatureStore(url)
    if kind == "sql":
        from crown_nexus.core.features.stores.sql import SQLFeatureStore

        return SQLFeatureStore(url)
    raise ConfigurationException(  # pragma: no cover - _store_config validated the kind
        message=f"unknown feature store {kind!r}"
    )


def _store_config(settings: Any) -> tuple[str, str | None]:
    from crown_nexus.core.exceptions import ConfigurationException

    kind = str(getattr(settings, "feature_store", "auto") or "auto")
    if kind not in STORE_KINDS:
        raise ConfigurationException(
            message=f"unknown feature store {kind!r}; expected one of {', '.join(STORE_KINDS)}"
        )
    redis_url = getattr(settings, "redis_url", None)
    if kind == "auto":
        kind = "redis" if redis_url else "memory"
    if kind == "redis":
        if not redis_url:
            raise ConfigurationException(
                message="CROWN_NEXUS_FEATURE_STORE is redis but Redis is not configured (REDIS_URI)"
            )
        return kind, str(redis_url)
    if kind == "sql":
        return kind, str(settings.database_url)
    return kind, None


def _environment_of(settings: Any) -> str:
    env = getattr(settings, "ENVIRONMENT", "development")
    return str(getattr(env, "value", env))


class FeatureService:
    """Feature flags: evaluation from a local copy, admin API over a store (module docstring).

    ``store`` is a :class:`FeatureStore` (default: what ``settings`` ask for); ``environment``
    picks the per-environment values (default: ``settings.ENVIRONMENT``); ``poll_interval``
    is how often a shared store is polled (default: the store's); ``op_timeout`` bounds every
    store call; ``bucket_impl`` (``"native"``/``"pure"``) picks the rollout hash implementation
    (default: the one ``crown_nexus.accel`` chose); ``registry`` the known flags (default: the
    process-wide one).
    """

    def __init__(
        self,
        settings: Any = None,
        *,
        store: FeatureStore | None = None,
        environment: str | None = None,
        poll_interval: float | None = None,
        op_timeout: float = 1.0,
        bucket_impl: str | None = None,
        registry: FlagRegistry | None = None,
        metrics: bool | None = None,
    ) -> None:
        if settings is None and (store is None or environment is None):
            from crown_nexus.core.config import settings as loaded

            settings = loaded
        self._settings = settings
        self._explicit_store = store is not None
        self._explicit_env = environment is not None
        self._explicit_poll = poll_interval
        self._registry = registry or get_flag_registry()
        self._bucket = bucketer(bucket_impl)
        #: which ``cache_keys`` implementation computes rollout buckets (``native``/``pure``)
        self.bucket_impl: str = bucket_impl or accel.implementations()["cache_keys"]
        self._op_timeout = op_timeout
        enabled = metrics if metrics is not None else bool(getattr(settings, "metrics_enabled", True))
        self.telemetry = FeatureTelemetry(enabled)
        self._retired: list[FeatureStore] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._use(
            store if store is not None else store_for_settings(settings),
            environment if environment is not None else _environment_of(settings),
        )
        self._store_config = None if store is not None else _store_config(settings)

    def _use(self, store: FeatureStore, environment: str) -> None:
        """Adopt ``store`` and ``environment``; the local copy starts from the defaults."""
        self.store = store
        self.environment = environment
        configured = getattr(self._settings, "feature_poll_interval", None)
        self.poll_interval: float = (
            self._explicit_poll
            if self._explicit_poll is not None
            else float(configured) if configured else store.default_poll_interval
        )
        self._shared = store.shared
        self._version: str | None = None
        self._rules: dict[str, FlagRule] = {}
        self._compiled: dict[str, _Compiled] = {}
        self._seen_registry = -1
        self._store_down = False
        self.initialized = False
        self._recompile()

    # --- configuration -------------------------------------------------------------------

    def configure(self, settings: Any) -> bool:
        """Follow ``settings`` (an app's): its store and environment. Returns whether anything
        changed. Explicitly passed stores/environments are kept. The old store is closed by
        the next :meth:`initialize` or :meth:`shutdown`. Raises ``ConfigurationException`` for
        a bad configuration (the service is left unchanged)."""
        env = self.environment if self._explicit_env else _environment_of(settings)
        config = None if self._explicit_store else _store_config(settings)
        self._settings = settings
        if config == self._store_config and env == self.environment:
            return False
        if config is not None and config != self._store_config:
            store = store_for_settings(settings)
            self._stop_task()
            self._retired.append(self.store)
            self._use(store, env)
            self._store_config = config
            self._loop = None
        else:
            self.environment = env
            self._recompile()
        logger.info("feature flags configured", store=self.store.describe(), environment=env)
        return True

    # --- the local copy --------------------------------------------------------------------

    def _recompile(self) -> None:
        registry = self._registry
        seen = registry.version
        env = self.environment
        compiled: dict[str, _Compiled] = {}
        for definition in registry:
            compiled[definition.name] = _Compiled(
                definition.name, self._rules.get(definition.name), definition, env
            )
        for name, rule in self._rules.items():
            if name not in compiled:
                compiled[name] = _Compiled(name, rule, None, env)
        self._compiled = compiled
        self._seen_registry = seen

    def _lookup(self, name: str) -> _Compiled:
        """The compiled flag ``name`` after a miss or a registry change."""
        if self._registry.version != self._seen_registry:
            self._recompile()
        compiled = self._compiled.get(name)
        if compiled is None:
            raise UnknownFlagException(name)
        return compiled

    def _install(self, version: str, raw: Mapping[str, Any]) -> None:
        rules: dict[str, FlagRule] = {}
        for name, data in raw.items():
            try:
                rule = FlagRule.model_validate(data)
            except pydantic.ValidationError as exc:
                logger.warning(
                    "stored feature flag rule ignored: invalid", flag=name, errors=exc.error_count()
                )
                continue
            if rule.name != name:
                logger.warning("stored feature flag rule ignored: name mismatch", flag=name)
                continue
            rules[name] = rule
        self._rules = rules
        self._version = version
        self._recompile()

    # --- evaluation (the hot path: local data only) ------------------------------------------

    def _decide(
        self,
        flag: Flag | str,
        target: Any,
        target_id: Any,
        percentage: Any,
        groups: Iterable[Any] | None,
    ) -> tuple[_Compiled, bool, str]:
        """The hot path behind :meth:`evaluate`, :meth:`check` and :meth:`is_enabled`."""
        if self._shared:
            loop = _get_running_loop()
            if loop is not None and loop is not self._loop:
                self._attach(loop)
        # a Flag member hashes and compares as its value: no conversion on a hit
        c = self._compiled.get(flag)
        if c is None or self._seen_registry != self._registry.version:
            c = self._lookup(flag_name(flag))
        if type(target) is not FeatureTarget:
            target = _target_of(target)
        expired = False
        if c.fallback is not None and c.expires <= _time():
            c = c.fallback  # the rule expired: the registered default applies
            expired = True
        if target is _GLOBAL:
            if target_id is not None:
                raise _invalid("FeatureTarget.GLOBAL takes no target_id", "target_id")
            if percentage is not None:
                raise _invalid("a percentage needs a target with an id (e.g. USER)", "percentage")
            enabled = c.on
            reason = "expired" if expired else ("on" if enabled else "disabled")
        elif target_id is None:
            raise _invalid(f"target_id is required for FeatureTarget.{target.name}", "target_id")
        elif not c.on:
            enabled, reason = False, ("expired" if expired else "disabled")
        else:
            tid = target_id if type(target_id) is str else _id_of(target_id)
            enabled, reason = self._targeted(c, target, tid, percentage, groups)
            if expired and reason == "on":
                reason = "expired"
        telemetry = self.telemetry
        key = c.keys[enabled]
        counts = telemetry.counts
        counts[key] = counts.get(key, 0) + 1
        pending = telemetry.pending + 1
        telemetry.pending = pending
        if pending == 1 or pending >= 1024:
            telemetry.noted()
        return c, enabled, reason

    def evaluate(
        self,
        flag: Flag | str,
        target: FeatureTarget | str = _GLOBAL,
        target_id: Any = None,
        percentage: float | None = None,
        *,
        groups: Iterable[Any] | None = None,
    ) -> FlagEvaluation:
        """Evaluate ``flag`` for ``target``/``target_id`` now, from the local copy (no I/O).

        ``groups`` are the groups the target belongs to (matched against the ``group``
        allow/deny lists). Raises :class:`UnknownFlagException` for an unknown flag and
        ``ValidationException`` for a bad target, a missing or superfluous ``target_id`` or a
        percentage outside 0-100.
        """
        c, enabled, reason = self._decide(flag, target, target_id, percentage, groups)
        return FlagEvaluation(c.name, enabled, c.on_value if enabled else c.off_value, reason)

    def _targeted(
        self,
        c: _Compiled,
        target: FeatureTarget,
        tid: str,
        percentage: float | None,
        groups: Iterable[Any] | None,
    ) -> tuple[bool, str]:
        if c.lists:
            member_of: frozenset[str] | None = None
            if groups is not None and (c.group_deny or c.group_allow):
                member_of = frozenset(g if type(g) is str else str(g) for g in groups)
            deny = c.deny.get(target)
            if (deny is not None and tid in deny) or (
                member_of and c.group_deny and not c.group_deny.isdisjoint(member_of)
            ):
                return False, "denied"
            allow = c.allow.get(target)
            if (allow is not None and tid in allow) or (
                member_of and c.group_allow and not c.group_allow.isdisjoint(member_of)
            ):
                return True, "allowed"
        limit = c.threshold
        if percentage is not None:
            call_limit = _THRESHOLDS.get(percentage) if type(percentage) is not bool else None
            if call_limit is None:
                call_limit = _threshold_of(percentage)  # validates
                if len(_THRESHOLDS) < 4096:
                    _THRESHOLDS[percentage] = call_limit
            if call_limit < limit:
                limit = call_limit
        if limit >= BUCKETS:
            return True, "on"
        if limit <= 0:
            return False, "rollout"
        return self._bucket(c.name, tid) < limit, "rollout"

    def check(
        self,
        flag: Flag | str,
        target: FeatureTarget | str = _GLOBAL,
        target_id: Any = None,
        percentage: float | None = None,
        *,
        groups: Iterable[Any] | None = None,
    ) -> bool:
        """:meth:`is_enabled` without awaiting (for synchronous code); same rules and errors."""
        return self._decide(flag, target, target_id, percentage, groups)[1]

    async def is_enabled(
        self,
        flag: Flag | str,
        target: FeatureTarget | str = _GLOBAL,
        target_id: Any = None,
        percentage: float | None = None,
        *,
        groups: Iterable[Any] | None = None,
    ) -> bool:
        """Whether ``flag`` is on for ``target`` / ``target_id`` (guide §14).

        ``percentage`` limits the call to that share of ids (sticky: the same id gets the same
        answer in every process and run; raising it only adds ids). Answers from the local copy;
        never waits on the network. Raises :class:`UnknownFlagException` (404) for an unknown
        flag and ``ValidationException`` (422) for bad arguments.
        """
        return self._decide(flag, target, target_id, percentage, groups)[1]

    async def get_value(
        self,
        flag: Flag | str,
        target: FeatureTarget | str = _GLOBAL,
        target_id: Any = None,
        percentage: float | None = None,
        *,
        groups: Iterable[Any] | None = None,
    ) -> Any:
        """The flag's ``on_value`` when it is on for the target, else its ``off_value``."""
        return self.evaluate(flag, target, target_id, percentage, groups=groups).value

    # --- admin API -------------------------------------------------------------------------

    def _known(self, name: str) -> FlagDefinition | None:
        definition = self._registry.get(name)
        if definition is None and name not in self._rules:
            raise UnknownFlagException(name)
        return definition

    def _default_rule(self, name: str, definition: FlagDefinition | None) -> FlagRule:
        if definition is None:
            return FlagRule(name=name)
        return FlagRule(name=name, enabled=definition.default, description=definition.description)

    async def get_flag(self, flag: Flag | str) -> FlagRule:
        """The rule in force for ``flag``: the stored one, else its registered default.

        Raises :class:`UnknownFlagException` for an unknown flag.
        """
        name = flag_name(flag)
        definition = self._known(name)
        rule = self._rules.get(name)
        return rule if rule is not None else self._default_rule(name, definition)

    async def list_flags(self) -> list[FlagRule]:
        """The rule in force for every known flag (registered or stored), sorted by name."""
        names = set(self._registry.names()) | set(self._rules)
        return [
            self._rules.get(n) or self._default_rule(n, self._registry.get(n)) for n in sorted(names)
        ]

    def validate_rule(
        self, flag: Flag | str, rule: FlagRule | Mapping[str, Any] | None = None, **fields: Any
    ) -> FlagRule:
        """Build and check the rule :meth:`set_flag` would store, without storing it.

        ``rule`` (a :class:`FlagRule` or a mapping) and ``fields`` give the rule's fields
        (``fields`` win); ``allow_users=[...]``, ``deny_groups=[...]`` etc. add to ``allow`` /
        ``deny``. Raises ``ValidationException`` (422) for a bad rule, including an
        ``expires_at`` that is not in the future.
        """
        try:
            name = flag_name(flag)
        except TypeError as exc:
            raise _invalid(str(exc), "name") from None
        if isinstance(rule, FlagRule):
            data: dict[str, Any] = rule.model_dump()
        elif rule is None:
            data = {}
        elif isinstance(rule, Mapping):
            data = dict(rule)
        else:
            raise _invalid("a rule is a FlagRule or a mapping of its fields", "rule")
        data.update(fields)
        for shortcut, (side, kind) in _LIST_SHORTCUTS.items():
            if shortcut in data:
                ids = data.pop(shortcut)
                lists = data.get(side) or {}
                if not isinstance(lists, Mapping):
                    raise _invalid(f"{side} is a mapping of target kind to ids", side)
                lists = dict(lists)
                existing = lists.get(kind) or []
                if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
                    raise _invalid(f"{shortcut} is a list of ids", shortcut)
                lists[kind] = [*existing, *ids]
                data[side] = lists
        if data.get("name", name) != name:
            raise _invalid(f"the rule names flag {data['name']!r}, not {name!r}", "name")
        data["name"] = name
        now = now_utc()
        data["updated_at"] = now
        try:
            parsed = FlagRule.model_validate(data)
        except pydantic.ValidationError as exc:
            raise ValidationException.from_errors(
                exc, message=f"Invalid rule for feature flag {name!r}"
            ) from None
        if parsed.expires_at is not None and parsed.expires_at <= now:
            raise _invalid("expires_at must be in the future", "expires_at")
        return parsed

    async def _store_call(self, operation: str, *args: Any) -> Any:
        try:
            async with asyncio.timeout(self._op_timeout):
                return await getattr(self.store, operation)(*args)
        except Exception as exc:
            self.telemetry.inc(STORE_ERRORS, {"store": self.store.name})
            logger.warning(
                "feature flag store write failed",
                store=self.store.describe(),
                operation=operation,
                error=type(exc).__name__,
            )
            raise FeatureStoreException(
                message="The feature flag store is unavailable; nothing was changed",
                service_name=f"feature_store:{self.store.name}",
            ) from exc

    async def set_flag(
        self, flag: Flag | str, rule: FlagRule | Mapping[str, Any] | None = None, /, **fields: Any
    ) -> FlagRule:
        """Store the rule of ``flag`` (replacing the previous one) and apply it here at once.

        Other processes on a shared store see it within their poll interval. Publishes
        ``feature.updated``. Raises ``ValidationException`` (422) for a bad rule (see
        :meth:`validate_rule`), :class:`UnknownFlagException` (404) for a flag that is neither
        registered nor stored, and :class:`FeatureStoreException` (502) when the store fails.
        """
        parsed = self.validate_rule(flag, rule, **fields)
        name = parsed.name
        self._known(name)
        await self._store_call("save", name, parsed.to_json())
        self._version = _STALE  # the store moved on: the next poll reloads it all
        self._rules[name] = parsed
        self._compiled[name] = _Compiled(name, parsed, self._registry.get(name), self.environment)
        self.telemetry.inc(UPDATES, {"action": "set"})
        logger.info("feature flag set", flag=name, enabled=parsed.enabled, store=self.store.name)
        await self.telemetry.publish(
            "feature.updated", {"flag": name, "action": "set", "rule": parsed.to_json()}
        )
        return parsed

    async def delete_flag(self, flag: Flag | str) -> bool:
        """Remove the stored rule of ``flag`` (it goes back to its registered default); return
        whether one was stored. Publishes ``feature.updated`` when one was. Raises
        :class:`UnknownFlagException` for an unknown flag and :class:`FeatureStoreException`
        when the store fails."""
        name = flag_name(flag)
        definition = self._known(name)
        existed = bool(await self._store_call("delete", name))
        self._version = _STALE
        existed = self._rules.pop(name, None) is not None or existed
        if definition is not None:
            self._compiled[name] = _Compiled(name, None, definition, self.environment)
        else:
            self._compiled.pop(name, None)
        if existed:
            self.telemetry.inc(UPDATES, {"action": "delete"})
            logger.info("feature flag deleted", flag=name, store=self.store.name)
            await self.telemetry.publish(
                "feature.updated", {"flag": name, "action": "delete", "rule": None}
            )
        return existed

    # --- keeping the copy fresh --------------------------------------------------------------

    def _store_failed(self, exc: BaseException) -> None:
        self.telemetry.inc(STORE_ERRORS, {"store": self.store.name})
        if not self._store_down:
            self._store_down = True
            logger.warning(
                "feature flag store unavailable; the last known flags stay in force",
                store=self.store.describe(),
                error=type(exc).__name__,
            )

    def _store_ok(self) -> None:
        if self._store_down:
            self._store_down = False
            logger.info("feature flag store available again", store=self.store.describe())

    @property
    def store_available(self) -> bool:
        """False while the last call to the store failed."""
        return not self._store_down

    @property
    def version(self) -> str | None:
        """The store version the local copy reflects (``None`` before the first load and after
        this service's own write, until the next reload)."""
        return None if self._version == _STALE else self._version

    async def refresh(self, force: bool = False) -> bool:
        """Reload the local copy when the store's version changed (always with ``force``).

        Returns whether it reloaded. Never raises: a failing store is logged once per outage
        and counted, and the last known flags stay in force.
        """
        store = self.store
        try:
            async with asyncio.timeout(self._op_timeout):
                if not force and self._version is not None:
                    if await store.version() == self._version:
                        self._store_ok()
                        return False
                version, raw = await store.load()
        except Exception as exc:
            if store is self.store:
                self._store_failed(exc)
            return False
        if store is not self.store:  # reconfigured meanwhile
            return False
        self._store_ok()
        self._install(version, raw)
        self.telemetry.inc(RELOADS, {"store": store.name})
        return True

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start keeping the copy fresh on ``loop`` (the loop in use changed)."""
        self._stop_task()
        self._loop = loop
        if not self._shared:
            return
        self._task = loop.create_task(self._sync(load_first=self._version is None))

    def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # its loop is closed
                task.cancel()

    async def _sync(self, load_first: bool) -> None:
        if load_first:
            await self.refresh(force=True)
        while True:
            raise_if_cancelling()  # a cancel swallowed by the store's client still stops us
            interval = self.poll_interval
            await asyncio.sleep(max(interval, 1.0) if self._store_down else interval)
            await self.refresh()

    # --- lifecycle -------------------------------------------------------------------------

    async def _close_retired(self) -> None:
        retired, self._retired = self._retired, []
        for store in retired:
            try:
                await store.close()
            except Exception as exc:
                logger.warning("feature flag store did not close cleanly", error=repr(exc))

    async def initialize(self) -> None:
        """Load the flags from the store and (shared store) start polling it on this loop.

        Idempotent on one loop. A store that is down leaves the defaults (or the last known
        flags) in force; it is retried in the background.
        """
        loop = asyncio.get_running_loop()
        if self.initialized and self._loop is loop:
            return
        await self._close_retired()
        self._stop_task()
        try:
            async with asyncio.timeout(self._op_timeout):
                await self.store.initialize()
        except Exception as exc:
            self._store_failed(exc)
        else:
            await self.refresh(force=True)
        self._loop = loop
        if self._shared:
            self._task = loop.create_task(self._sync(load_first=self._store_down))
        self.initialized = True

    async def shutdown(self) -> None:
        """Stop polling, hand pending metrics over and close the store. The last known flags
        stay in force (a later :meth:`initialize` reloads them)."""
        task, self._task = self._task, None
        await cancel_and_wait(task, self._op_timeout + 1.0, what="feature flag poller")
        self.telemetry.flush()
        await self._close_retired()
        try:
            await self.store.close()
        except Exception as exc:
            logger.warning("feature flag store did not close cleanly", error=repr(exc))
        self._loop = None
        self.initialized = False

    def flush_metrics(self) -> None:
        """Hand pending evaluation counts to ``metrics_service`` now."""
        self.telemetry.flush()

    def status(self) -> dict[str, Any]:
        """What the service uses now: store, environment, version, availability, flag count."""
        return {
            "store": self.store.describe(),
            "environment": self.environment,
            "version": self._version,
            "store_available": not self._store_down,
            "flags": len(self._compiled),
            "bucket_impl": self.bucket_impl,
        }

    def __repr__(self) -> str:
        return f"<FeatureService store={self.store.name!r} environment={self.environment!r}>"


_NAMES = ("feature_service", "feature_flag_service")


def _build_feature_service() -> FeatureService:
    """Factory of the shared service under both names: the instance one name already holds
    (so ``feature_service`` and ``feature_flag_service`` are one object), else a new one from
    the current app's settings. Overrides stay per name, as for every service."""
    instances = get_registry().instances()
    for name in _NAMES:
        existing = instances.get(name)
        if isinstance(existing, FeatureService):
            return existing
    return FeatureService()


for _name in _NAMES:
    register_service(_build_feature_service, name=_name)


def get_feature_service() -> FeatureService:
    """The current app's ``feature_service`` (the same object as ``get_service("feature_service")``)."""
    service: FeatureService = get_service("feature_service")
    return service


def configure_features(settings: Any) -> FeatureService:
    """Point the current app's ``feature_service`` (the default container's outside an app) at
    ``settings`` and return it; ``setup_app`` does not need it. An override that is not a
    ``FeatureService`` is left alone.
    """
    service = get_service("feature_service")
    if isinstance(service, FeatureService):
        service.configure(settings)
    return service  # type: ignore[no-any-return]
