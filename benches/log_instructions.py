"""The guide's log call N times, for counting instructions per call under callgrind.

``python benches/log_instructions.py {crown-nexus|structlog-chain} N`` writes N lines of
``get_logger("app.api").info("request handled", method=..., path=..., status=...,
duration_ms=...)`` (request id and user id bound) to ``os.devnull``: crown-nexus's production
JSON logger (accel's implementation), or the lean structlog chain of ``bench_logging.py``.
Instructions per call are the difference of two callgrind runs, N=40000 minus N=20000, over
20000::

    valgrind --tool=callgrind --callgrind-out-file=a.out python benches/log_instructions.py crown-nexus 20000
    valgrind --tool=callgrind --callgrind-out-file=b.out python benches/log_instructions.py crown-nexus 40000
    callgrind_annotate a.out | grep TOTALS; callgrind_annotate b.out | grep TOTALS
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any


def _crown_nexus(fd: int) -> Any:
    from crown_nexus.logging import configure_logging, get_logger
    from crown_nexus.settings import Settings

    configure_logging(Settings(ENVIRONMENT="production", secret_key="b" * 40), fd=fd)
    return get_logger("app.api")


def _structlog_chain(fd: int) -> Any:
    import orjson
    import structlog

    sink = open(fd, "wb", buffering=0, closefd=False)  # noqa: SIM115 - lives as long as the run
    structlog.contextvars.bind_contextvars(request_id="req-1", user_id="u-1")
    return structlog.wrap_logger(
        structlog.BytesLogger(file=sink),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    ).bind()


def run(who: str, n: int) -> None:
    """Write ``n`` guide lines with logger ``who`` to os.devnull."""
    from crown_nexus.logging import request_context

    fd = os.open(os.devnull, os.O_WRONLY)
    log = _crown_nexus(fd) if who == "crown-nexus" else _structlog_chain(fd)
    with request_context(request_id="req-1", user_id="u-1"):
        for _ in range(n):
            log.info(
                "request handled", method="GET", path="/api/users", status=200, duration_ms=12.5
            )


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("crown-nexus", "structlog-chain"):
        sys.exit(__doc__)
    run(sys.argv[1], int(sys.argv[2]))
