"""Who is subscribed to which events: handlers, their ids, and the subscription table.

Owns :class:`Subscription` (one handler for one event name, with its filter, timeout and id),
:func:`handler_id` (a handler's stable ``module:qualname`` name, the same in every process) and
:class:`SubscriptionTable` (subscribe, unsubscribe, and the handlers an event runs, in
subscription order, ``"*"`` subscriptions last). Running handlers is
:mod:`crown_nexus.core.events.runner`'s job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from crown_nexus.core.events.exceptions import EventConfigurationException

__all__ = ["ALL_EVENTS", "EventHandler", "Subscription", "SubscriptionTable", "handler_id"]

EventHandler = Callable[[dict[str, Any]], Awaitable[Any] | Any]

#: the event name a subscription uses to receive every event
ALL_EVENTS = "*"


def handler_id(handler: Callable[..., Any]) -> str:
    """A stable name for ``handler``: ``module:qualname`` (the same in every process)."""
    module = getattr(handler, "__module__", None) or type(handler).__module__
    qualname = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}:{qualname}"


@dataclass(eq=False)
class Subscription:
    """One handler subscribed to one event name (``"*"``: every event)."""

    event_name: str
    handler: EventHandler
    filter_func: Callable[[dict[str, Any]], Any] | None = None
    timeout: float | None = None
    id: str = ""
    runs: int = 0

    def __post_init__(self) -> None:
        if not self.id:
            self.id = handler_id(self.handler)


class SubscriptionTable:
    """The subscriptions of one event service, by event name.

    Lists are replaced, never changed in place (copy-on-write), so a publisher iterating the
    handlers of an event is not disturbed by a subscription made meanwhile.
    """

    __slots__ = ("by_name",)

    def __init__(self, by_name: dict[str, list[Subscription]] | None = None) -> None:
        #: event name -> its subscriptions, in subscription order
        self.by_name: dict[str, list[Subscription]] = {} if by_name is None else by_name

    def subscribe(
        self,
        event_name: str,
        handler: EventHandler,
        filter_func: Callable[[dict[str, Any]], Any] | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> Subscription:
        """Add and return a subscription; :class:`EventConfigurationException` for an empty
        name or a handler or filter that is not callable."""
        if not isinstance(event_name, str) or not event_name:
            raise EventConfigurationException("event_name must be a non-empty string")
        if not callable(handler):
            raise EventConfigurationException(f"handler for {event_name!r} is not callable")
        if filter_func is not None and not callable(filter_func):
            raise EventConfigurationException(f"filter_func for {event_name!r} is not callable")
        sub = Subscription(event_name, handler, filter_func, timeout, name or "")
        self.by_name[event_name] = [*self.by_name.get(event_name, ()), sub]
        return sub

    def unsubscribe(
        self, event_name: str, handler: EventHandler | Subscription | None = None
    ) -> int:
        """Remove ``handler`` (or a subscription) from ``event_name``; without one, every
        handler of that name. Returns how many subscriptions were removed."""
        subs = self.by_name.get(event_name, [])
        if handler is None:
            keep: list[Subscription] = []
        elif isinstance(handler, Subscription):
            keep = [s for s in subs if s is not handler]
        else:
            keep = [s for s in subs if s.handler is not handler]
        removed = len(subs) - len(keep)
        if keep:
            self.by_name[event_name] = keep
        else:
            self.by_name.pop(event_name, None)
        return removed

    def handlers_for(self, event_name: str) -> list[Subscription]:
        """The subscriptions an event named ``event_name`` runs, in subscription order."""
        exact = self.by_name.get(event_name)
        wildcard = self.by_name.get(ALL_EVENTS)
        if wildcard is None:
            return exact or []
        if exact is None or event_name == ALL_EVENTS:
            return wildcard
        return [*exact, *wildcard]

    def copy(self) -> dict[str, list[Subscription]]:
        """Every subscription, by event name (new lists)."""
        return {k: list(v) for k, v in self.by_name.items()}
