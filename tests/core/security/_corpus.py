"""The labelled URL corpus (tests/core/security/data/url_corpus.json) as request targets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

CORPUS_FILE = Path(__file__).parent / "data" / "url_corpus.json"
DEFAULT_PATH = "/products"


@dataclass(frozen=True)
class Target:
    """One corpus entry as the raw path and query string a client sends."""

    label: str  # "benign", or the attack category
    tier: str  # "benign", "strict" or "heuristic"
    path: str
    query: str

    @property
    def url(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    def __str__(self) -> str:
        return f"{self.tier}:{self.url[:80]}"


def _target(entry: dict, label: str, tier: str) -> Target:
    if "value" in entry:
        return Target(label, tier, DEFAULT_PATH, urlencode({"q": entry["value"]}))
    if "raw_query" in entry:
        return Target(label, tier, DEFAULT_PATH, entry["raw_query"])
    return Target(label, tier, entry["path"], "")


def load_corpus() -> tuple[list[Target], list[Target]]:
    """``(benign, attacks)`` of the corpus."""
    data = json.loads(CORPUS_FILE.read_text(encoding="utf-8"))
    benign = [_target(e, "benign", "benign") for e in data["benign"]]
    attacks = [_target(e, e["category"], e["tier"]) for e in data["attacks"]]
    return benign, attacks
