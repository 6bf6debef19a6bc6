"""Service registry: naming, singletons, kwargs, unknown names, cycles, lifecycle, overrides."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from crown_nexus.core import dependency_manager as dm
from crown_nexus.core.dependency_manager import (
    DependencyCycleException,
    ServiceInitializationException,
    ServiceNotFoundException,
    ServiceRegistry,
    get_dependency,
    get_service,
    inject_dependency,
    override_service,
    register_service,
    with_dependencies,
)
from crown_nexus.core.exceptions import ConfigurationException


@pytest.fixture
def registry() -> ServiceRegistry:
    """A private registry per test."""
    return ServiceRegistry()


@pytest.fixture
def cleanup():
    """Names registered globally in a test, unregistered afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        dm.unregister_service(name)


class NotificationService:
    """A stand-in service that remembers its db argument."""

    def __init__(self, db=None) -> None:
        self.db = db

    async def send_notification(self, user_id, message):
        return (user_id, message)


def test_guide_registration_names(cleanup) -> None:
    """Bare decorator strips get_; name= wins; a class registers under its class name."""

    @register_service
    def get_notification_service_t1(db=None):
        """Create and return a notification service instance."""
        return NotificationService(db)

    @register_service(name="email_sender_t1")
    def get_email_service():
        return object()

    class UserServiceT1:
        def __init__(self, db=None) -> None:
            self.db = db

    register_service(UserServiceT1)
    cleanup += ["notification_service_t1", "email_sender_t1", "UserServiceT1"]
    assert get_notification_service_t1.__name__ == "get_notification_service_t1"
    assert isinstance(get_service("notification_service_t1"), NotificationService)
    assert get_service("email_sender_t1") is get_service("email_sender_t1")
    user_service = get_dependency(UserServiceT1.__name__, db="session")
    assert isinstance(user_service, UserServiceT1) and user_service.db == "session"
    with pytest.raises(ServiceNotFoundException):
        get_service("email_service")


def test_singleton_without_kwargs_fresh_with_kwargs(registry) -> None:
    """No kwargs: one shared instance. With kwargs: a fresh instance per call."""
    registry.register(lambda db=None: NotificationService(db), "notifications")
    a = registry.get("notifications")
    assert a is registry.get("notifications")
    b = registry.get("notifications", db="s1")
    c = registry.get("notifications", db="s1")
    assert b is not c and b.db == "s1" and b is not a


def test_singleton_built_once_across_threads(registry) -> None:
    """Concurrent first use builds the singleton exactly once."""
    calls = []

    def factory():
        calls.append(1)
        return object()

    registry.register(factory, "shared")
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(registry.get("shared"))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(r is results[0] for r in results)


def test_unknown_name_lists_close_matches(registry) -> None:
    """An unknown name raises a typed error that suggests close names."""
    registry.register(lambda: 1, "notification_service")
    with pytest.raises(ServiceNotFoundException) as info:
        registry.get("notifcation_service")
    err = info.value
    assert isinstance(err, ConfigurationException) and isinstance(err, LookupError)
    assert "notification_service" in err.message
    assert err.suggestions == ["notification_service"]


def test_dependency_cycle_is_reported(registry) -> None:
    """A factory that needs itself through others raises DependencyCycleException with the path."""
    registry.register(lambda: registry.get("b"), "a")
    registry.register(lambda: registry.get("c"), "b")
    registry.register(lambda: registry.get("a"), "c")
    with pytest.raises(DependencyCycleException) as info:
        registry.get("a")
    assert info.value.cycle == ["a", "b", "c", "a"]
    assert "a -> b -> c -> a" in str(info.value)


def test_registered_instance(registry) -> None:
    """A non-callable object registers as itself."""
    obj = {"k": "v"}
    registry.register(obj, "config_obj")
    assert registry.get("config_obj") is obj


def test_reregistering_replaces_instance(registry) -> None:
    """Registering a name again drops its cached singleton."""
    registry.register(lambda: "one", "svc")
    assert registry.get("svc") == "one"
    registry.register(lambda: "two", "svc")
    assert registry.get("svc") == "two"


def test_builtin_service_is_imported_on_demand() -> None:
    """get_service('error_service') works without importing crown_nexus.core.error first."""
    service = get_service("error_service")
    assert hasattr(service, "report_error") and hasattr(service, "permission_denied")


def test_override_service(registry, cleanup) -> None:
    """override_service swaps a service for the block, then restores it."""
    name = f"ovr_{uuid.uuid4().hex}"
    register_service(lambda: "real", name=name)
    cleanup.append(name)
    with override_service(name, "fake") as value:
        assert value == "fake"
        assert get_service(name) == "fake"
        assert get_service(name, db=1) == "fake"
    assert get_service(name) == "real"


def test_testing_helpers_override() -> None:
    """crown_nexus.testing.override_services overrides several names at once."""
    from crown_nexus.testing import override_services

    with override_services({"x_one": 1, "x_two": 2}):
        assert get_service("x_one") == 1 and get_service("x_two") == 2
    with pytest.raises(ServiceNotFoundException):
        get_service("x_one")


class Audit:
    """Records actions; sync and async flavours."""

    def __init__(self) -> None:
        self.actions: list[tuple] = []

    def log_action(self, user_id, action, **kw):
        self.actions.append((user_id, action, kw))


def test_inject_dependency_sync(cleanup) -> None:
    """inject_dependency fills the parameter named after the service; explicit args win."""
    audit = Audit()
    name = "audit_t_inject"
    register_service(audit, name=name)
    cleanup.append(name)

    @inject_dependency(name)
    def log_user_action(user_id, action, audit_t_inject=None):
        """Log a user action using the injected audit service."""
        audit_t_inject.log_action(user_id, action)
        return audit_t_inject

    assert log_user_action("u1", "login") is audit
    assert audit.actions == [("u1", "login", {})]
    other = Audit()
    assert log_user_action("u2", "x", other) is other
    assert log_user_action("u2", "x", audit_t_inject=other) is other
    assert log_user_action.__doc__ == "Log a user action using the injected audit service."


async def test_with_dependencies_async(cleanup) -> None:
    """with_dependencies fills several parameters on an async function; explicit args win."""
    notifier = NotificationService()
    audit = Audit()
    register_service(notifier, name="notif_t_with")
    register_service(audit, name="audit_t_with")
    cleanup += ["notif_t_with", "audit_t_with"]

    @with_dependencies(notifier="notif_t_with", audit="audit_t_with")
    async def process_order(order_data, user_id, notifier=None, audit=None):
        """Process an order with multiple injected services."""
        sent = await notifier.send_notification(user_id, "Order processed")
        audit.log_action(user_id, "order_processed", order_id=order_data["id"])
        return sent, audit

    assert asyncio.iscoroutinefunction(process_order)
    sent, used = await process_order({"id": 7}, "u1")
    assert sent == ("u1", "Order processed") and used is audit
    assert audit.actions == [("u1", "order_processed", {"order_id": 7})]
    mine = Audit()
    _, used = await process_order({"id": 8}, "u1", audit=mine)
    assert used is mine and mine.actions


def test_inject_into_missing_parameter_is_an_error() -> None:
    """Injecting into a parameter the function lacks fails at decoration time."""
    with pytest.raises(TypeError):

        @with_dependencies(missing="x")
        def f(a):
            return a


class Lifecycle:
    """A service that records start/stop into a shared journal."""

    def __init__(self, name, journal, fail=False, stop="shutdown", async_=True) -> None:
        self.name, self.journal, self.fail = name, journal, fail
        if stop == "close":
            self.close = self._stop
        elif stop == "shutdown":
            self.shutdown = self._stop
        self.async_ = async_

    async def initialize(self):
        if self.fail:
            raise RuntimeError("cannot start")
        self.journal.append(("start", self.name))

    async def _stop(self):
        self.journal.append(("stop", self.name))


async def test_initialize_in_dependency_order_and_shutdown_in_reverse(registry) -> None:
    """Services start after what they use and stop before it; close() counts as shutdown."""
    journal: list = []
    # registered in the "wrong" order on purpose: api uses cache, cache uses db
    registry.register(lambda: (registry.get("cache"), Lifecycle("api", journal))[1], "api")
    registry.register(
        lambda: (registry.get("db"), Lifecycle("cache", journal, stop="close"))[1], "cache"
    )
    registry.register(lambda: Lifecycle("db", journal), "db")
    registry.register(lambda needed: needed, "needs_args")
    started = await registry.initialize()
    assert started == ["db", "cache", "api"]
    assert journal == [("start", "db"), ("start", "cache"), ("start", "api")]
    journal.clear()
    stopped = await registry.shutdown()
    assert stopped == ["api", "cache", "db"]
    assert journal == [("stop", "api"), ("stop", "cache"), ("stop", "db")]
    kept = registry.instances()
    assert set(kept) == {"api", "cache", "db"}, "singletons survive shutdown"
    journal.clear()
    assert await registry.initialize() == ["db", "cache", "api"]
    assert registry.get("api") is kept["api"], "the same instances are started again"
    await registry.shutdown(drop_instances=True)
    assert registry.instances() == {}


async def test_declared_dependencies_order(registry) -> None:
    """dependencies= on registration orders start-up even without a lookup in the factory."""
    journal: list = []
    registry.register(lambda: Lifecycle("b", journal), "b", dependencies=["a"])
    registry.register(lambda: Lifecycle("a", journal), "a")
    assert await registry.initialize() == ["a", "b"]
    await registry.shutdown()


async def test_failing_initialize_raises_typed_error(registry) -> None:
    """A service whose initialize fails stops start-up with ServiceInitializationException."""
    registry.register(lambda: Lifecycle("bad", [], fail=True), "bad")
    with pytest.raises(ServiceInitializationException) as info:
        await registry.initialize()
    assert info.value.name == "bad"


async def test_failing_shutdown_does_not_stop_others(registry) -> None:
    """A service failing to shut down is logged; the others still stop."""
    journal: list = []

    class Broken:
        async def shutdown(self):
            raise RuntimeError("stuck")

    registry.register(lambda: Lifecycle("a", journal), "a")
    registry.register(lambda: Broken(), "broken")
    await registry.initialize()
    stopped = await registry.shutdown()
    assert set(stopped) == {"a", "broken"}
    assert ("stop", "a") in journal


async def test_factory_failing_at_startup_stays_lazy(registry) -> None:
    """A factory that fails at start-up is skipped, not fatal."""
    registry.register(lambda: 1 / 0, "flaky")
    registry.register(lambda: "ok", "fine")
    assert await registry.initialize() == ["fine"]


async def test_sync_initialize_and_close(registry) -> None:
    """Sync initialize/close methods are called too."""
    journal: list = []

    class SyncService:
        def initialize(self):
            journal.append("init")

        def close(self):
            journal.append("close")

    registry.register(SyncService, "sync_svc")
    await registry.initialize()
    await registry.shutdown()
    assert journal == ["init", "close"]


def test_unaccepted_kwargs_are_dropped(registry) -> None:
    """get_service(name, db=db) on a factory without db returns the singleton."""
    registry.register(lambda: object(), "no_args")
    shared = registry.get("no_args")
    assert registry.get("no_args", db="session") is shared
    registry.register(lambda db=None, **kw: (db, kw), "takes_all")
    assert registry.get("takes_all", db=1, x=2) == (1, {"x": 2})


def test_guide_user_service_constructor(cleanup) -> None:
    """Guide §4's UserService gets audit and notification services with db=db."""

    @register_service
    def get_notification_service_t2(db=None):
        return NotificationService(db)

    cleanup.append("notification_service_t2")

    class UserService:
        def __init__(self, db):
            self.db = db
            self.audit_service = get_service("audit_service", db=db)
            self.notification_service = get_service("notification_service_t2", db=db)

    service = UserService("session")
    assert service.audit_service.db == "session"
    assert service.notification_service.db == "session"


def test_async_factory_refused(registry) -> None:
    """An async factory is refused at registration with a clear TypeError."""

    async def get_thing():
        return 1

    with pytest.raises(TypeError, match="initialize"):
        registry.register(get_thing)


def test_getter_answers_what_get_answers(registry: ServiceRegistry) -> None:
    """registry.getter(name)() is get(name): built singleton, override (even None), unregister."""
    registry.register(lambda: object(), "thing")
    lookup = registry.getter("thing")
    first = lookup()
    assert first is registry.get("thing") and lookup() is first
    replacement = object()
    with registry.override("thing", replacement):
        assert lookup() is replacement
    with registry.override("thing", None):
        assert lookup() is None
    assert lookup() is first
    registry.unregister("thing")
    with pytest.raises(ServiceNotFoundException):
        lookup()
