"""Multiprocess mode: several worker processes, one correct total (PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent(
    """
    import sys
    from crown_nexus.core.metrics import MetricsService
    m = MetricsService()
    n = int(sys.argv[1])
    for _ in range(n):
        m.increment_counter("jobs_total", 1, {"kind": "email"})
        m.observe_histogram("job_seconds", 0.2, {"kind": "email"})
    m.track_in_progress("workers_busy", {"kind": "email"}, 1)
    """
)

READER = textwrap.dedent(
    """
    import sys
    from crown_nexus.core.metrics import MetricsService
    m = MetricsService()
    m.create_counter("jobs_total", "Jobs", ["kind"])
    for pid in sys.argv[1:]:
        m.mark_process_dead(int(pid))
    print(m.get_counter_sum("jobs_total", {"kind": "email"}))
    print(m.render_latest()[0].decode())
    """
)


def test_counts_from_several_processes_are_aggregated(tmp_path) -> None:
    """Three worker processes write; a fourth sums them all (counters, histograms) and
    live gauges drop the worker marked dead."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(n)], env=env) for n in (3, 4, 5)]
    assert [w.wait(timeout=60) for w in workers] == [0, 0, 0]
    assert any(tmp_path.iterdir())
    dead = [str(workers[0].pid)]
    out = subprocess.run(
        [sys.executable, "-c", READER, *dead],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    first, body = out.split("\n", 1)
    assert float(first) == 12.0
    assert 'jobs_total{kind="email"} 12.0' in body
    assert 'job_seconds_count{kind="email"} 12.0' in body
    # live gauges: the worker marked dead no longer counts (livesum of the two others)
    assert 'workers_busy{kind="email"} 2.0' in body
