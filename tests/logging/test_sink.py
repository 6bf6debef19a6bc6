"""Lines reach the operating system when the call returns (os.write), unless buffered."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import orjson

from crown_nexus.logging import get_logger
from crown_nexus.testing import capture_logs, freeze_time

SCRIPT = textwrap.dedent(
    """
    import os
    from crown_nexus.logging import get_logger
    get_logger("crash").info("before crash", n=1)
    os._exit(0)  # no interpreter shutdown, no flush of Python buffers
    """
)


def _run(extra_env: dict[str, str]) -> bytes:
    env = {**os.environ, "ENVIRONMENT": "test"}
    env.pop("CROWN_NEXUS_LOG_BUFFERED", None)
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, timeout=60, check=True
    ).stdout


def test_unbuffered_line_survives_a_hard_exit() -> None:
    """Default (unbuffered): the line is written to fd 1 before the process dies."""
    out = _run({})
    rec = orjson.loads(out.splitlines()[-1])
    assert rec["event"] == "before crash" and rec["logger"] == "crash"


def test_buffered_mode_keeps_lines_in_user_space() -> None:
    """CROWN_NEXUS_LOG_BUFFERED=1 buffers in user space (a hard exit loses the line)."""
    out = _run({"CROWN_NEXUS_LOG_BUFFERED": "1"})
    assert b"before crash" not in out


def test_capture_logs_collects_processed_events() -> None:
    """crown_nexus.testing.capture_logs yields event dicts with ids, level and redaction."""
    from crown_nexus.logging import request_context

    with capture_logs() as logs:
        with request_context(request_id="cap"):
            get_logger("cap").debug("captured", password="pw", n=2)
    assert len(logs) == 1
    entry = logs[0]
    assert entry["event"] == "captured" and entry["level"] == "debug"
    assert entry["request_id"] == "cap" and entry["password"] == "[REDACTED]"
    assert entry["logger"] == "cap" and entry["n"] == 2
    assert entry["func_name"] == "test_capture_logs_collects_processed_events"


def test_freeze_time_pins_log_timestamps(json_logs) -> None:
    """Under freeze_time the timestamp is the frozen clock's and moves only with advance()."""
    with freeze_time() as clock:
        get_logger("clock").info("a")
        clock.advance(1.5)
        get_logger("clock").info("b")
    a, b = json_logs.lines()
    assert a["timestamp"] == "2024-01-01T00:00:00.000Z"
    assert b["timestamp"] == "2024-01-01T00:00:01.500Z"


def test_file_target_appends_json_lines(tmp_path, configure) -> None:
    """configure_logging(file=path) appends one JSON line per event to that file."""
    from crown_nexus.settings import Settings

    path = tmp_path / "app.log"
    path.write_bytes(b"")
    configure(Settings(ENVIRONMENT="production", secret_key="s" * 40), file=path)
    get_logger("file").info("to file", n=1)
    get_logger("file").info("again", n=2)
    lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    assert [r["event"] for r in lines] == ["to file", "again"]
