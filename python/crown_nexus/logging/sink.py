"""Where rendered log lines go: the process's one :class:`LogSink`.

Owns the output side of logging: a file descriptor written with ``os.write`` (one syscall per
line, nothing buffered in the process) or a stream, optionally buffered (flushed at exit), and
the count of lines that could not be written. Writing never raises.
"""

from __future__ import annotations

import atexit
import io
import os
import threading
from typing import IO, Any

import orjson

from crown_nexus.logging.redaction import safe_str
from crown_nexus.logging.render import fallback_line

__all__ = ["LogSink", "write_line"]


def _dict_line(line: Any) -> bytes:
    """A line for a chain that left a dict (or other object) unrendered: orjson, odd values as
    their text; :func:`fallback_line` when even that fails."""
    event = line if isinstance(line, dict) else {"event": line}
    try:
        return orjson.dumps(
            event,
            default=safe_str,
            option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS,
        )
    except Exception as exc:
        return fallback_line(event, exc)


class LogSink:
    """Where rendered lines go: a file descriptor (``os.write``) or a stream.

    ``write(line)`` accepts the chain's output (``bytes`` with its newline, ``str`` without, or
    a dict that no renderer turned into text) and never raises.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fd: int | None = None
        self.stream: IO[Any] | None = None
        self.text = False
        self.buffered = False
        #: lines that could not be written (closed stream, full disk): counted, never raised
        self.failures = 0

    def target(
        self, *, fd: int | None = None, stream: IO[Any] | None = None, buffered: bool = False
    ) -> None:
        """Point the sink at ``fd`` or ``stream`` (exactly one), buffered or not."""
        with self._lock:
            self._flush_locked()
            self.buffered = buffered
            if stream is None and fd is not None and buffered:
                stream = open(fd, "wb", buffering=64 * 1024, closefd=False)
                fd = None
            self.fd = fd
            self.stream = stream
            self.text = stream is not None and not isinstance(
                stream, (io.RawIOBase, io.BufferedIOBase)
            )

    def _flush_locked(self) -> None:
        if self.stream is not None:
            try:
                self.stream.flush()
            except Exception:  # a closed stream must not break logging
                self.failures += 1

    def flush(self) -> None:
        """Flush a buffered stream (called at interpreter exit)."""
        with self._lock:
            self._flush_locked()

    def write(self, line: Any) -> None:
        """Write one rendered line; never raises."""
        fd = self.fd
        if fd is not None and type(line) is bytes:
            try:
                written = os.write(fd, line)
                if written != len(line):  # partial write (pipe full, signal): finish it
                    view = memoryview(line)[written:]
                    while view:
                        view = view[os.write(fd, view) :]
            except Exception:  # a log call never raises; the failure is counted
                self.failures += 1
            return
        try:
            if isinstance(line, str):
                data = (line + "\n").encode("utf-8", "replace")
            elif isinstance(line, (bytes, bytearray)):
                data = bytes(line)
            else:
                data = _dict_line(line)
            fd = self.fd
            if fd is not None:
                written = os.write(fd, data)
                if written != len(data):  # partial write (pipe full, signal): finish it
                    view = memoryview(data)[written:]
                    while view:
                        view = view[os.write(fd, view) :]
                return
            stream = self.stream
            if stream is None:
                return
            with self._lock:
                if self.text:
                    stream.write(data.decode("utf-8", "replace"))
                else:
                    stream.write(data)
                if not self.buffered:
                    stream.flush()
        except Exception:  # a log call never raises; the failure is counted
            self.failures += 1

    # structlog calls the method named like the log method on the wrapped logger
    msg = debug = info = warning = warn = error = exception = critical = fatal = log = write


_SINK = LogSink()
atexit.register(_SINK.flush)


def write_line(sink: Any, line: Any) -> None:
    """Hand one rendered line to ``sink``: ``os.write`` straight to a :class:`LogSink`'s
    descriptor for ``bytes``, else ``sink.write(line)``; never raises."""
    fd = getattr(sink, "fd", None)
    if fd is not None and type(line) is bytes:
        try:
            written = os.write(fd, line)
        except Exception:  # a log call never raises; the failure is counted
            sink.failures += 1
            return
        if written != len(line):  # partial write: the sink finishes it
            sink.write(line[written:])
        return
    try:
        sink.write(line)
    except Exception:  # a foreign logger's write failed: counted on the process's sink
        _SINK.failures += 1
