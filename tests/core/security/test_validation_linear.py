"""Every regex of crown_nexus.core.security.validation runs in linear time on hostile input.

Python cannot count regex steps, so each pattern is run on adversarial inputs of ``N`` and
``8 * N`` characters under a generous absolute bound (1 second for the long one). That is a
safety bound, not a speed claim: a quadratic pattern (the old ``<[^>]*\\bon[a-z]+\\s*=`` took
200 ms on ``'<' * 4000``) needs minutes on 80 000 characters; a linear one milliseconds.
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import pytest

from crown_nexus.core.security import validation
from crown_nexus.core.security.validation import (
    ContentModerator,
    find_suspicious_patterns,
    find_url_attacks,
)

N = 6_250
LONG = 8 * N
BOUND_SECONDS = 1.0

#: fragments of the patterns' literals and character classes; each is repeated to the input size
TOKENS = [
    "<",
    "<a ",
    "<a on",
    "</",
    "on",
    " on",
    " ",
    "\t",
    "\x00",
    "'",
    '"',
    "`",
    "' or ",
    "'1'='",
    "or 1=",
    "1",
    "a",
    "a(",
    ".",
    "../",
    "..\\",
    "%25",
    "&#",
    "union ",
    "union/**/",
    "/*!5",
    "/**/",
    "-- x",
    "#",
    "select ",
    "select from where '",
    "; ",
    "| ",
    "$(",
    "javascript:",
    "javascript:a",
    "j\ta",
    "data: ",
    ": expression ",
    "sleep(",
    "; drop ",
    "\n",
    "\uff1c",
]


def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    """Every compiled regex the module holds (module level, in containers, per moderator)."""
    found: dict[int, tuple[str, re.Pattern[str]]] = {}

    def add(name: str, obj: object) -> None:
        if isinstance(obj, re.Pattern):
            found.setdefault(id(obj), (name, obj))
        elif isinstance(obj, dict):
            for key, value in obj.items():
                add(f"{name}[{key}]", value)
        elif isinstance(obj, tuple | list):
            for i, value in enumerate(obj):
                add(f"{name}[{i}]", value)

    for name, obj in vars(validation).items():
        add(name, obj)
    moderator = ContentModerator()
    for name, obj in vars(moderator).items():
        add(f"ContentModerator.{name}", obj)
    return sorted(found.values(), key=lambda item: item[0])


def _inputs(size: int) -> list[str]:
    out = []
    for token in TOKENS:
        body = token * (size // len(token))
        out.append(body)
        out.append(body + "!")  # a near-miss ending forces every start to fail
    return out


def _timed(fn, text: str) -> float:
    start = time.perf_counter()
    fn(text)
    return time.perf_counter() - start


def test_every_pattern_is_found() -> None:
    """The pattern collector sees the module's regexes (the test below covers each)."""
    collected = _patterns()
    ids = {id(pattern) for _, pattern in collected}
    assert len(collected) >= 15
    assert id(validation._XSS_TAG) in ids and id(validation._SQL_FUZZY) in ids
    assert any(name.startswith("ContentModerator.") for name, _ in collected)


@pytest.mark.parametrize(
    ("name", "pattern"), _patterns(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_pattern_is_linear_on_adversarial_input(name: str, pattern: re.Pattern[str]) -> None:
    """search/match on N and 8N adversarial characters stays under the safety bound."""
    for size in (N, LONG):
        for text in _inputs(size):
            subject = text.encode("utf-8", "surrogatepass") if isinstance(pattern.pattern, bytes) else text
            elapsed = _timed(pattern.search, subject)  # search tries every start: the worst case
            assert elapsed < BOUND_SECONDS, (name, repr(text[:12]), size, round(elapsed, 3))


@pytest.mark.parametrize(
    "fn",
    [find_suspicious_patterns, lambda t: find_url_attacks("/" + t, "q=" + quote(t, safe=""))],
    ids=["find_suspicious_patterns", "find_url_attacks"],
)
def test_whole_checks_are_linear_on_adversarial_input(fn) -> None:
    """The whole checks (every form, every pattern) also stay under the bound on 8N input."""
    for text in _inputs(LONG):
        elapsed = _timed(fn, text)
        assert elapsed < BOUND_SECONDS, (repr(text[:12]), round(elapsed, 3))
