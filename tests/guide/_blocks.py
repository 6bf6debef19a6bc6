"""The guide's ```python blocks, read from the developer guide itself, so a test runs the text a reader sees.

The guide is ``docs/DEVELOPER_GUIDE.md`` (a copy of the shared ``../shared/guide/DEVELOPER_GUIDE.md``,
kept in the repo because CI clones the repo alone; ``test_guide_blocks.py`` checks the copy matches
the shared file wherever that file exists). A block is found by its section number and a marker: a
piece of text that stands in exactly one ```python block of that section. Every block a test uses is
pinned in :data:`PINNED` by the SHA-256 of its text, so a block that goes missing, splits in two or
changes in the guide fails the test that runs it (and ``test_guide_blocks.py`` lists them all),
instead of a test silently running something else.

The only change made to a block is the guide's own rule "every ``app.X`` is ``crown_nexus.X``",
applied to import lines (``app.add_middleware`` and logger names like ``"app.services"`` stay).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: the guide as the repo carries it (CI has only the repo)
GUIDE = REPO / "docs" / "DEVELOPER_GUIDE.md"
#: the specification's own copy, next to the repo on a developer's machine
SHARED_GUIDE = REPO.parent / "shared" / "guide" / "DEVELOPER_GUIDE.md"

_SECTION = re.compile(r"^## (\d+)\. ")
_FENCE_OPEN = re.compile(r"^(\s*)```python\s*$")
_IMPORT = re.compile(r"^(\s*)(from|import) app\.", re.MULTILINE)

#: (section, marker) -> first 16 hex digits of the SHA-256 of the block's text as the guide writes it
PINNED: dict[tuple[int, str], str] = {
    # §5 Validation System
    (5, "user = validate_data(user_data, UserCreate)"): "7eb4dd4487cb1f5b",
    # §6 Metrics System
    (6, 'name="user_registrations_total",'): "fb5ac40165e05930",
    (6, "metrics_service.track_db_query("): "40bfd0b5dd289f51",
    (6, "async def long_running_operation():"): "d6ed5d28f9287482",
    (6, '@track_db_insert(entity="order")'): "5fee15079d6bf9b8",
    (6, "class MetricsMiddleware(BaseHTTPMiddleware):"): "abb26c7bfe70c3eb",
    (6, "metrics_config = MetricsConfig("): "fdd27151dfef4c4a",
    # §8 Rate Limiting System
    (8, "auth_rule = RateLimitRule("): "cd8cdbe8bc65a79e",
    (8, "block_exceeding_requests=True"): "312d493532897d79",
    (8, '@router.post("/custom-rate-limited")'): "f849e315b1ee5d07",
    (8, "async def send_email(user_id: str, subject: str, body: str):"): "0391ad9cf2549cfb",
    (8, "async def rate_limit_exception_handler("): "65b2cf0f11f5c8b6",
    # §9 Cache System
    (9, "async def get_user_profile(user_id: str):"): "93e74591d53eb20c",
    (9, '@invalidate_cache(pattern="product:*")'): "bee0309afee00fa3",
    (9, "@memoize(ttl=60)"): "340433def262def6",
    (9, "async def clear_product_cache():"): "bafcc3011edae06f",
    (9, "async def get_cached_data(key: str):"): "4df794eb1b4a5de2",
    (9, 'value = await cache_service.get("my_key")'): "d78900cd5a1abff5",
    (9, "hit_rate = metrics_service.get_counter_rate"): "cb04c51325971860",
    (9, "async def get_product(self, product_id):"): "108c275a3b9b395e",
    # §11 Permission System
    (11, "required_permission = Permission.USER_CREATE"): "d88e675a7633ae65",
    (11, "def check_user_access(user, permission):"): "199d3ba464fb7a6f",
    (11, "def enforce_product_access(user, product, permission):"): "056c3a2d01b85a0d",
    (11, "@require_admin()"): "fa310898b1aa0f08",
    (11, '@router.get("/products/{product_id}/sensitive-data")'): "b5dd72e6c7ac506c",
    (11, "async def update_product_price(self, product_id: str, new_price: float, user_id: str):"): "2ac84c1fdb2a2a25",
    (11, "async def get_user_permissions(user_id: str, db: AsyncSession):"): "ca6d0e3f8e86cda7",
    (11, "def can_perform_all(user, permissions: List[str]):"): "377218fc54e2100e",
    # §12 Security System
    (12, '@router.post("/auth/login")'): "52cb6227dd299e5b",
    (12, '@router.post("/users/{user_id}/settings")'): "5d5a666729970411",
    (12, "async def add_security_headers(request: Request, call_next):"): "388e500bb8a86f28",
    # §13 Middleware System
    (13, "from app.middleware import RateLimitMiddleware"): "a6afc0f099c18b84",
    # §14 Common Patterns
    (14, "async def generate_report(self, user_id: str, report_type: str):"): "d7b5c902a6ec06c5",
    (14, "async def get_product_with_details(self, product_id: str):"): "670050ab959a3dff",
}


@dataclass(frozen=True)
class GuideBlock:
    """One ```python block of the guide: where it stands and its text."""

    section: int
    index: int  # 0-based among the section's python blocks
    heading: str  # the nearest heading above it
    line: int  # 1-based guide line of the block's first code line
    source: str  # as the guide writes it (``app.`` imports)

    @property
    def code(self) -> str:
        """The block with ``app.`` imports read as ``crown_nexus.`` (the guide's own naming rule)."""
        return _IMPORT.sub(r"\1\2 crown_nexus.", self.source)

    @property
    def digest(self) -> str:
        """First 16 hex digits of the SHA-256 of :attr:`source` (what :data:`PINNED` records)."""
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def adapted(self, old: str, new: str) -> GuideBlock:
        """This block with the user's ``new`` in place of the guide's ``old``, which stands in it exactly once.

        For what the guide leaves to the reader: a placeholder comment filled with the user's logic,
        or a value the test's setup must choose (a free port instead of the guide's 9090).
        """
        if self.source.count(old) != 1:
            raise ValueError(f"guide §{self.section} block {self.index}: {old!r} stands {self.source.count(old)} times, not once")
        return replace(self, source=self.source.replace(old, new))

    def run(self, **names: Any) -> dict[str, Any]:
        """Execute the block as a module whose globals start as ``names``; returns those globals."""
        namespace: dict[str, Any] = {"__name__": f"guide_s{self.section:02d}_{self.index}", **names}
        exec(compile(self.code, f"<guide §{self.section} block {self.index}, line {self.line}>", "exec", dont_inherit=True), namespace)
        return namespace

    async def run_async(self, **names: Any) -> dict[str, Any]:
        """Execute a block written with top-level ``await`` as the body of a coroutine; returns its locals."""
        body = "async def __guide_block__():\n"
        body += "".join(f"    {line}\n" for line in self.code.splitlines())
        body += "    return locals()\n"
        namespace: dict[str, Any] = {"__name__": f"guide_s{self.section:02d}_{self.index}", **names}
        exec(compile(body, f"<guide §{self.section} block {self.index}, line {self.line}>", "exec", dont_inherit=True), namespace)
        result: dict[str, Any] = await namespace["__guide_block__"]()
        return result


def parse_guide(text: str) -> list[GuideBlock]:
    """Every ```python block of ``text``, in order, with its section, index, heading and line."""
    found: list[GuideBlock] = []
    section = 0
    heading = ""
    per_section: dict[int, int] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if match := _SECTION.match(line):
            section = int(match.group(1))
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if match := _FENCE_OPEN.match(line):
            indent = match.group(1)
            start = i + 1
            end = start
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if end == len(lines):
                raise ValueError(f"guide line {i + 1}: ```python block never closed")
            body = [ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines[start:end]]
            index = per_section.get(section, 0)
            per_section[section] = index + 1
            found.append(GuideBlock(section, index, heading, start + 1, "\n".join(body) + "\n"))
            i = end
        i += 1
    return found


@cache
def all_blocks() -> tuple[GuideBlock, ...]:
    """Every ```python block of :data:`GUIDE`."""
    return tuple(parse_guide(GUIDE.read_text(encoding="utf-8")))


def section_blocks(section: int) -> list[GuideBlock]:
    """The ```python blocks of guide section ``section`` (``## N.``), in order; index them as in the guide."""
    return [block for block in all_blocks() if block.section == section]


def find_block(section: int, marker: str) -> GuideBlock:
    """The one ```python block of ``section`` whose text contains ``marker`` (ValueError unless exactly one)."""
    matches = [block for block in section_blocks(section) if marker in block.source]
    if len(matches) != 1:
        where = ", ".join(f"block {b.index} (line {b.line})" for b in matches) or "no block"
        raise ValueError(f"guide §{section}: {marker!r} stands in {where}; expected exactly one")
    return matches[0]


def guide_block(section: int, marker: str) -> GuideBlock:
    """The pinned block of ``section`` holding ``marker``; fails if it is unpinned, missing or changed."""
    pinned = PINNED.get((section, marker))
    if pinned is None:
        raise KeyError(f"guide §{section} block {marker!r} is not in PINNED (tests/guide/_blocks.py)")
    block = find_block(section, marker)
    if block.digest != pinned:
        raise AssertionError(
            f"guide §{section} block {block.index} (line {block.line}, {marker!r}) changed: "
            f"digest {block.digest}, pinned {pinned}; re-read the tests that run it, then update PINNED"
        )
    return block


def section(number: int) -> Callable[[str], GuideBlock]:
    """``guide_block`` for one section: ``s09 = section(9)``, then ``s09(marker)``."""

    def block(marker: str) -> GuideBlock:
        return guide_block(number, marker)

    block.__name__ = block.__qualname__ = f"s{number:02d}"
    block.__doc__ = f"The pinned §{number} block holding ``marker``."
    return block
