"""``utc_timestamp`` writes what ``datetime.isoformat`` would, from a per-second cache."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from crown_nexus.core.exceptions import _base, utc_timestamp


def test_format_and_value_match_datetime() -> None:
    """ISO-8601 UTC with milliseconds and ``Z``, within a few ms of ``datetime.now(UTC)``."""
    for _ in range(2000):
        before = datetime.now(UTC)
        text = utc_timestamp()
        after = datetime.now(UTC)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text), text
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        assert before - timedelta(milliseconds=1) <= parsed <= after, (before, text, after)


def test_second_text_follows_the_clock(monkeypatch) -> None:
    """A new second is formatted afresh; the cached text never leaks into another second."""
    clock = iter([1_700_000_000.25, 1_700_000_000.9995, 1_700_000_001.0])
    monkeypatch.setattr(_base, "_time", lambda: next(clock))
    assert utc_timestamp() == "2023-11-14T22:13:20.250Z"
    assert utc_timestamp() == "2023-11-14T22:13:20.999Z"
    assert utc_timestamp() == "2023-11-14T22:13:21.000Z"
