"""The guide block extractor finds every block the guide tests run, unchanged, in the repo's copy of the guide."""

from __future__ import annotations

import ast

import pytest

from tests.guide._blocks import (
    GUIDE,
    PINNED,
    SHARED_GUIDE,
    find_block,
    guide_block,
    parse_guide,
    section_blocks,
)


@pytest.mark.parametrize(("section", "marker"), sorted(PINNED), ids=lambda v: str(v)[:40])
def test_pinned_block_is_in_the_guide_unchanged(section: int, marker: str) -> None:
    """Each block a test runs stands once in its section with the text it was pinned with."""
    block = guide_block(section, marker)
    assert block.section == section and marker in block.source
    compile(block.code, f"<guide §{section}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)  # still Python


def test_repo_copy_matches_the_shared_guide() -> None:
    """docs/DEVELOPER_GUIDE.md is the shared guide, byte for byte, wherever the shared guide is at hand."""
    if not SHARED_GUIDE.exists():
        pytest.skip(f"{SHARED_GUIDE} is not next to this checkout (CI clones the repo alone)")
    assert GUIDE.read_bytes() == SHARED_GUIDE.read_bytes(), (
        f"{GUIDE} differs from {SHARED_GUIDE}: copy the shared guide over it, then run tests/guide"
    )


def test_every_section_has_its_blocks() -> None:
    """The repo's copy parses into sections 1..14, each with at least one python block."""
    assert [n for n in range(1, 15) if not section_blocks(n)] == []


GUIDE_TEXT = """\
## 1. First

### Plain

```python
from app.core.cache import cached
x = 1
```

- a list item:
  ```python
  from app.logging import get_logger
  app.add_middleware(M)
  ```

## 2. Second

```python
y = 2
```
"""


def test_parse_guide_sections_indices_headings_and_indented_fences() -> None:
    """Blocks are numbered per section, an indented fence loses its indent, only imports of app. are renamed."""
    blocks = parse_guide(GUIDE_TEXT)
    assert [(b.section, b.index, b.heading, b.line) for b in blocks] == [
        (1, 0, "Plain", 6),
        (1, 1, "Plain", 12),
        (2, 0, "2. Second", 19),
    ]
    assert blocks[0].code == "from crown_nexus.core.cache import cached\nx = 1\n"
    assert blocks[1].code == "from crown_nexus.logging import get_logger\napp.add_middleware(M)\n"
    assert blocks[2].run()["y"] == 2


def test_parse_guide_refuses_an_unclosed_block() -> None:
    """A ```python fence that never closes is an error naming its line, not a block running to the end."""
    with pytest.raises(ValueError, match="line 3"):
        parse_guide("## 1. A\n\n```python\nx = 1\n")


def test_a_marker_must_name_exactly_one_block() -> None:
    """An ambiguous or absent marker is an error listing where it stands."""
    with pytest.raises(ValueError, match=r"stands in block \d+ \(line \d+\), block \d+"):
        find_block(9, "from app.core.cache import")
    with pytest.raises(ValueError, match="no block"):
        find_block(9, "this text is in no block of the guide")


def test_an_unpinned_or_changed_block_fails() -> None:
    """guide_block refuses a marker not in PINNED, and a block whose text no longer has the pinned digest."""
    with pytest.raises(KeyError, match="not in PINNED"):
        guide_block(9, "cache_key = f\"user:profile:{user_id}\"")
    (section, marker), digest = next(iter(PINNED.items()))
    PINNED[(section, marker)] = "0" * 16
    try:
        with pytest.raises(AssertionError, match="changed"):
            guide_block(section, marker)
    finally:
        PINNED[(section, marker)] = digest


async def test_run_async_runs_top_level_await() -> None:
    """A block written with top-level await runs as a coroutine body; its names come back."""
    (block,) = parse_guide("## 1. A\n\n```python\nimport asyncio\nawait asyncio.sleep(0)\nz = w + 1\n```\n")
    assert (await block.run_async(w=41))["z"] == 42


def test_adapted_replaces_exactly_one_place() -> None:
    """adapted() swaps one place of the block for the user's text, and refuses text that is absent or repeated."""
    (block,) = parse_guide("## 1. A\n\n```python\nport = 9090\n# user logic\n# user logic\n```\n")
    assert block.adapted("9090", "8080").run()["port"] == 8080
    with pytest.raises(ValueError, match="2 times"):
        block.adapted("# user logic", "x = 1")
    with pytest.raises(ValueError, match="0 times"):
        block.adapted("9091", "1")
