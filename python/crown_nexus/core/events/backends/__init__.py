"""Event backends: where published events go (memory: this process; celery: a worker).

:class:`EventBackend` is the interface; :class:`MemoryEventBackend` runs handlers as tasks in this
process. The Celery backend (``crown_nexus.core.events.backends.celery``) needs the ``celery``
extra and is imported only when chosen.
"""

from __future__ import annotations

from crown_nexus.core.events.backends.base import EventBackend
from crown_nexus.core.events.backends.memory import MemoryEventBackend

__all__ = ["EventBackend", "MemoryEventBackend"]
