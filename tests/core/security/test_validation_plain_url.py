"""``url_is_plain`` never hides a detection: whatever it calls plain, both finders pass.

``SecureRequestMiddleware`` skips the URL checks for targets the screen calls plain, so a
target it wrongly called plain would be an attack let through. Checked on random targets built
from the screen's alphabet and the words and marks the patterns look for, on the labelled
corpus, and on hand-picked near misses.
"""

from __future__ import annotations

import random

import pytest

from crown_nexus.core.security.validation import (
    find_suspicious_patterns,
    find_url_attacks,
    url_is_plain,
)

from ._corpus import load_corpus

#: pieces random targets are made of: the plain alphabet and what the patterns match on
PIECES = [
    *"abcdefghijklmnopqrstuvwxyzABCXYZ0123456789/_.~,-=&",
    "..", "--", "&&", "/", "=", "&", "-", ".", "_",
    "union", "select", "from", "where", "or", "and", "drop", "table", "exec", "xp_",
    "sleep", "waitfor", "delay", "information_schema", "etc", "/etc/", "passwd", "boot.ini",
    "boot", "ini", "srcdoc", "script", "javascript", "data", "text/html", "cat", "ls", "id",
    "whoami", "null", "1", "0", "x",
    # characters outside the screen's alphabet: a target holding one is never plain
    "%", "+", ":", "'", '"', ";", "|", "$", "(", ")", "<", ">", " ", "\t", "*", "#", "`",
    "\\", "%00", "%2e%2e", "%3c", "é",
]


def _findings(path: str, query: str) -> list[str]:
    """What SecureRequestMiddleware.inspect would find (both finders, heuristics on)."""
    strict = find_url_attacks(path, query)
    fuzzy = find_suspicious_patterns(path if not query else f"{path}?{query}")
    return [*strict, *fuzzy]


def _check(path: str, query: str) -> bool:
    raw_path = path.encode("utf-8", "surrogateescape")
    plain = url_is_plain(raw_path, query.encode("utf-8", "surrogateescape"))
    if plain:
        assert _findings(path, query) == [], (path, query)
    return plain


@pytest.mark.parametrize("seed", range(4))
def test_random_targets_called_plain_have_no_findings(seed: int) -> None:
    """20,000 random targets per seed: every one called plain passes both finders."""
    rng = random.Random(seed)
    plain = 0
    for _ in range(20_000):
        path = "/" + "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8)))
        query = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 10)))
        plain += _check(path, query)
    assert plain > 2_000  # the screen is exercised, not just refusing everything


def test_corpus_attacks_are_never_plain_and_benign_plain_ones_pass() -> None:
    """No attack of the labelled corpus is called plain; plain benign targets find nothing."""
    benign, attacks = load_corpus()
    for target in attacks:
        assert not url_is_plain(target.path.encode(), target.query.encode()), str(target)
    for target in benign:
        _check(target.path, target.query)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/files/../etc", ""),
        ("/a", "q=select-x-from-y-where-z--"),
        ("/a", "q=1&&ls"),
        ("/information_schema", ""),
        ("/x/etc/passwd", ""),
        ("/boot.ini", ""),
        ("/a", "srcdoc=1"),
        ("/a%2e%2e/b", ""),
        ("/a", "q=union+select+null"),
    ],
)
def test_near_misses_are_not_plain(path: str, query: str) -> None:
    """Targets one step from an attack are left to the full checks."""
    assert not url_is_plain(path.encode(), query.encode())


def test_ordinary_targets_are_plain() -> None:
    """The targets most requests have skip the checks."""
    assert url_is_plain(b"/hello")
    assert url_is_plain(b"/items", b"page=1")
    assert url_is_plain(b"/api/v1/users/42/orders", b"sort=-created_at&page=2&fields=id,name")
