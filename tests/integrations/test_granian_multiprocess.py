"""Metrics under ``granian --workers 2`` in multiprocess mode: exact totals, dead workers cleaned.

A real granian serves the reference service (production mode, a fresh SQLite database, so both
workers' start-ups create and seed it at once) on a free loopback port with
``PROMETHEUS_MULTIPROC_DIR`` set; the test sends M requests over many connections (so both
workers serve), scrapes ``/metrics`` (answered by either worker, with the metrics token) and
requires the request counter to total exactly M. Then it kills one worker: granian respawns it,
the next scrape drops the dead worker's live gauge file and the total is still M (counters of
dead workers stay).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._servers import free_port

pytestmark = pytest.mark.skipif(
    shutil.which("granian") is None and not Path(sys.executable).with_name("granian").exists(),
    reason="granian is not installed",
)

#: the reference service, plus a route saying which worker answered
APP = textwrap.dedent(
    """
    import os

    from crown_nexus.demo.app import app


    @app.get("/work/{item}")
    async def work(item: int) -> dict[str, int]:
        return {"item": item, "pid": os.getpid()}
    """
)

REQUESTS = 400
TOKEN = "granian-scrape-token-0123456789"


def _total(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _granian() -> str:
    local = Path(sys.executable).with_name("granian")
    return str(local) if local.exists() else str(shutil.which("granian"))


def _children(pid: int) -> list[int]:
    try:
        raw = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in raw.split()]


def _start_granian(port: int, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """``granian --workers 2`` on loopback, in its own process group (stopped by the test)."""
    return subprocess.Popen(
        [
            _granian(), "--interface", "asgi", "--workers", "2", "--host", "127.0.0.1",
            "--port", str(port), "--respawn-failed-workers", "--respawn-interval", "0.2",
            "--no-access-log", "--log-level", "warning", "granian_app:app",
        ],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


async def _wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"granian exited with {proc.returncode}")
        try:
            if (await client.get("/work/0")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("granian did not answer in time")


async def _scrape(base: str) -> str:
    # a fresh connection each time, so either worker may answer
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        resp = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.text
    return resp.text


async def test_two_workers_scrape_exact_totals_and_clean_dead_workers(tmp_path: Path) -> None:
    """M requests over two granian workers: every scrape totals exactly M, before and after a
    worker is killed; the killed worker's live gauge file is removed."""
    (tmp_path / "granian_app.py").write_text(APP)
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(mp_dir),
        "ENVIRONMENT": "production",
        "CROWN_NEXUS_SECRET_KEY": "granian-secret-0123456789-abcdefghijkl",
        "CROWN_NEXUS_METRICS_TOKEN": TOKEN,
        "CROWN_NEXUS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/granian.db",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("REDIS_URI", None)
    proc = _start_granian(port, env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as probe:
            await _wait_ready(probe, proc)
        baseline = _total(await _scrape(base), "http_requests_total", endpoint="/work/{item}")

        pids: set[int] = set()

        async def burst(start: int, count: int) -> None:
            limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per request
            async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:
                for i in range(start, start + count):
                    resp = await client.get(f"/work/{i}")
                    assert resp.status_code == 200
                    pids.add(resp.json()["data"]["pid"])

        per_task = REQUESTS // 8
        await asyncio.gather(*(burst(t * per_task, per_task) for t in range(8)))
        assert len(pids) == 2, f"both workers should have served: {pids}"

        for _ in range(4):  # whichever worker answers, the total is every worker's
            text = await _scrape(base)
            assert _total(text, "http_requests_total", endpoint="/work/{item}") - baseline == REQUESTS
            assert _total(text, "http_request_duration_seconds_count", endpoint="/work/{item}") - baseline == REQUESTS
            assert _total(text, "http_requests_in_progress") == 0  # livesum of idle workers

        victim = sorted(pids)[0]
        assert (mp_dir / f"gauge_livesum_{victim}.db").exists()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            workers = _children(proc.pid)
            if victim not in workers and len(workers) >= 2:
                break
            await asyncio.sleep(0.2)
        assert proc.poll() is None, "granian should survive a worker's death"

        text = ""
        for _ in range(6):  # until a scrape has run the cleanup (any worker does)
            text = await _scrape(base)
            if not (mp_dir / f"gauge_livesum_{victim}.db").exists():
                break
        assert not (mp_dir / f"gauge_livesum_{victim}.db").exists()
        assert _total(text, "http_requests_total", endpoint="/work/{item}") - baseline == REQUESTS
        assert any(p.name.startswith("counter_") and str(victim) in p.name for p in mp_dir.iterdir())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        stderr: Any = proc.stderr.read() if proc.stderr else b""
        if proc.stderr:
            proc.stderr.close()
        if isinstance(stderr, bytes) and b"Traceback" in stderr:
            print(stderr.decode(errors="replace")[-4000:])
