"""The live logging configuration every logger reads: level, format, redactor and the chain.

Owns the process's logging state (one object, changed only by
:func:`crown_nexus.logging.config.configure_logging` under :data:`_CONFIG_LOCK`) and the processor
chain list shared by every logger: reconfiguring replaces the list's contents in place, so
loggers created earlier follow.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from crown_nexus.logging.redaction import Redactor

__all__ = ["LogFormat"]

LogFormat = Literal["json", "console"]


class _State:
    __slots__ = ("automatic", "configured", "log_format", "min_level", "redactor", "render_kind")

    def __init__(self) -> None:
        self.configured = False
        #: True while the configuration came from first use or an app's settings, not from an
        #: explicit ``configure_logging`` call (which ``configure_logging_for_app`` never overrides)
        self.automatic = False
        self.min_level = 20
        self.log_format: LogFormat = "json"
        self.render_kind: str | None = None
        self.redactor = Redactor()


_STATE = _State()
_CONFIG_LOCK = threading.RLock()
#: the processor chain shared by every logger (mutated in place on reconfiguration)
_PROCESSORS: list[Any] = []
