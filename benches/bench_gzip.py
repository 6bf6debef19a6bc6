"""Whole-body gzip: the formatter's ISA-L and zlib implementations vs the standard library's call.

Group ``gzip-json-page``: the SPEC §3 envelope of the HTTP benchmark's ``/items`` page (20 items,
about 3 KB of JSON) gzipped at level 3 (``CompressionMiddleware``'s default) by each
implementation of ``crown_nexus.middleware._gzip`` (``isal``: ISA-L's level 1, what
``gzip_body`` uses when the wheel is installed; ``zlib``: ``zlib.compress(wbits=31)``) and by
``gzip.compress(body, compresslevel=3)`` (the one-call standard-library peer). Each row first
checks its output inflates to the body and records the compressed size
(``extra_info["bytes"]``). A tight loop keeps zlib's 256 KB of deflate state hot in cache; inside
a request it is not, and the gap is wider (README "Performance").
Run: ``python -m pytest benches/bench_gzip.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from crown_nexus.middleware._gzip import GZIP_IMPLEMENTATIONS

sys.path.insert(0, str(Path(__file__).resolve().parent / "http"))
from _routes import _page  # noqa: E402  (the HTTP benchmark's /items page)

LEVEL = 3
BODY = orjson.dumps(
    {
        "success": True,
        "data": [item.model_dump() for item in _page(1)],
        "meta": {
            "request_id": "0b7c3a52-4f0e-4d71-9a43-6c1f2b8e5d10",
            "timestamp": "2026-12-07T23:00:00.000Z",
        },
    }
)

ROWS: dict[str, Callable[[bytes, int], bytes]] = {
    **{f"crown_nexus-{name}": fn for name, fn in sorted(GZIP_IMPLEMENTATIONS.items())},
    "stdlib-gzip.compress": lambda body, level: gzip.compress(body, compresslevel=level),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_gzip_json_page(benchmark: Any, row: str) -> None:
    """One ~3 KB JSON envelope gzipped at level 3."""
    benchmark.group = "gzip-json-page"
    fn = ROWS[row]
    out = fn(BODY, LEVEL)
    assert gzip.decompress(out) == BODY
    benchmark.extra_info["bytes"] = len(out)
    benchmark.extra_info["body_bytes"] = len(BODY)
    benchmark(fn, BODY, LEVEL)
