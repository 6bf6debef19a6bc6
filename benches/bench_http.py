"""HTTP benchmark: bare FastAPI vs the full crown-nexus stack vs the hand-written peer, over granian.

Run ``nox -s bench_http`` (or ``python benches/bench_http.py``; ``--help`` for the options).

Three apps serve the same two routes (``benches/http/``): ``GET /hello`` (``{"message":
"hello"}``) and ``GET /items?page=1`` (20 pydantic items, about 2.9 KB of JSON):

* ``bare``: FastAPI alone;
* ``full``: ``setup_app`` with every layer (12 in guide §13, plus any the stack has gained),
  ``ENVIRONMENT=production``, CORS for the client's
  Origin, a rate rule high enough never to refuse (every request is still counted);
* ``peer``: what most teams write today -- ``BaseHTTPMiddleware`` request id, security headers
  and Prometheus metrics, slowapi, Starlette's CORS and GZip;
* ``floor``: bare FastAPI behind one hand-written layer doing only the work visible in
  ``full``'s answers, fused and as cheap as we know how (``benches/http/app_floor.py``): an
  upper bound on what fusing the stack's layers into one Python layer could reach.

Each app runs in its own granian (1 worker, asyncio loop, HTTP/1) on 127.0.0.1, pinned to core 0
when the machine has two cores or more; ``wrk -t1 -c64`` runs pinned to core 1 and sends
``Accept-Encoding: gzip`` and an ``Origin``. Before any load each app's answers are checked
(status, body, and for ``full`` every header the stack promises). Repetitions alternate the
apps (the order rotates every repetition) and the table reports the median requests/s per app
and route and the ratio of medians to ``bare`` -- on a shared machine only ratios from one run
mean anything. The full stack's worker RSS is sampled after every load run.

Writes ``benches/results/http.json`` and ``benches/results/http.png`` (matplotlib). ``--smoke``
runs one short repetition (about a second per app and route), checks every app answers, prints
the ratios and writes nothing unless ``--out`` is given: CI's smoke test, never a speed verdict.
Servers are started with their own process group and stopped by their process id.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APPS_DIR = ROOT / "benches" / "http"
RESULTS = ROOT / "benches" / "results"
APPS = {
    "bare": "app_bare:app",
    "full": "app_full:app",
    "peer": "app_peer:app",
    "floor": "app_floor:app",
}
ROUTES = {"hello": "/hello", "items": "/items?page=1"}
#: the apps that run in production and answer in the SPEC §3 envelope with the full headers
ENVELOPED_APPS = ("full", "floor")
ORIGIN = "http://bench.example"
#: headers the full stack must put on /hello (request id, tracing, security, rate limit, CORS,
#: cache-control)
FULL_HEADERS = (
    "x-request-id",
    "traceparent",
    "x-content-type-options",
    "content-security-policy",
    "strict-transport-security",
    "x-ratelimit-limit",
    "ratelimit",
    "access-control-allow-origin",
    "cache-control",
)


@dataclass
class Server:
    """One granian process serving one app on a loopback port."""

    name: str
    target: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    requests_served: int = 0
    rss_trace: list[tuple[int, int]] = field(default_factory=list)

    def start(self, pin: str | None) -> None:
        """Start granian (its own process group, stdout/stderr to ``log_path``)."""
        cmd = [
            sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", "1", "--loop", "asyncio", "--http", "1",
            "--no-ws", "--log-level", "warning", "--working-dir", str(APPS_DIR), self.target,
        ]
        if pin is not None:
            cmd = ["taskset", "-c", pin, *cmd]
        env = dict(os.environ)
        # the apps' directory only: crown_nexus is the installed one (compiled twins included)
        env["PYTHONPATH"] = os.pathsep.join([str(APPS_DIR), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        if self.name in ENVELOPED_APPS:
            env["ENVIRONMENT"] = "production"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, cwd=APPS_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until ``/hello`` answers; raise with the server's log when it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            try:
                status, _, _ = fetch(self.port, "/hello")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer on port {self.port}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def rss_kib(self) -> int:
        """Resident memory of the server's process tree (granian main + worker), KiB."""
        if self.proc is None:
            return 0
        total = 0
        for pid in _tree(self.proc.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"VmRSS:\s+(\d+)", status)
            if match:
                total += int(match.group(1))
        return total

    def stop(self) -> None:
        """Stop the server by its process id (its process group), SIGKILL after 10 s."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, ()))
    return out


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` like the load generator does (gzip accepted, Origin sent); body decoded."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip", "Origin": ORIGIN})
        resp = conn.getresponse()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return resp.status, headers, body


def check_answers(server: Server) -> None:
    """Raise unless the app answers both routes as it should (full: every promised header)."""
    problems: list[str] = []
    for route, path in ROUTES.items():
        status, headers, body = fetch(server.port, path)
        if status != 200:
            problems.append(f"{route}: status {status}")
            continue
        doc = json.loads(body)
        data = doc
        if server.name in ENVELOPED_APPS:
            if doc.get("success") is not True or "meta" not in doc:
                problems.append(f"{route}: no SPEC §3 envelope")
            data = doc.get("data")
            missing = [h for h in FULL_HEADERS if h not in headers]
            if missing:
                problems.append(f"{route}: missing headers {missing}")
        if route == "hello" and data != {"message": "hello"}:
            problems.append(f"hello: body {data!r}")
        if route == "items":
            if not isinstance(data, list) or len(data) != 20:
                problems.append("items: not 20 items")
            if server.name != "bare" and headers.get("content-encoding") != "gzip":
                problems.append("items: not compressed")
        if server.name != "bare" and headers.get("access-control-allow-origin") != ORIGIN:
            problems.append(f"{route}: no CORS grant")
    if problems:
        raise RuntimeError(f"{server.name} answers wrongly: {'; '.join(problems)}")


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_ERRORS = re.compile(r"Socket errors:.*")
_LATENCY = re.compile(r"Latency\s+([\d.]+)(us|ms|s)")


def run_wrk(
    wrk: str, port: int, path: str, duration: float, connections: int, pin: str | None
) -> dict[str, Any]:
    """One ``wrk`` run; returns requests/s, total requests, non-2xx count, mean latency (ms)."""
    cmd = [
        wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
        "-H", "Accept-Encoding: gzip", "-H", f"Origin: {ORIGIN}",
        f"http://127.0.0.1:{port}{path}",
    ]
    if pin is not None:
        cmd = ["taskset", "-c", pin, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = _RPS.search(out)
    if rps is None:
        raise RuntimeError(f"wrk gave no result:\n{out}")
    total = _TOTAL.search(out)
    non2xx = _NON2XX.search(out)
    errors = _ERRORS.search(out)
    latency = _LATENCY.search(out)
    latency_ms = None
    if latency:
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[latency.group(2)]
        latency_ms = float(latency.group(1)) * scale
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
        "latency_ms": latency_ms,
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("crown-nexus", "fastapi", "starlette", "pydantic", "granian", "slowapi", "orjson"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    try:
        wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5)
        out["wrk"] = (wrk_v.stdout or wrk_v.stderr).split()[1]
    except (OSError, IndexError, subprocess.SubprocessError):
        out["wrk"] = "unknown"
    try:
        from crown_nexus import accel

        out["implementations"] = json.dumps(accel.implementations(), sort_keys=True)
    except Exception as exc:  # the table is still worth printing
        out["implementations"] = f"unavailable: {exc}"
    return out


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Medians per app and route, ratios of medians to bare."""
    table: dict[str, Any] = {}
    for route in ROUTES:
        row: dict[str, Any] = {}
        for app, per_route in runs.items():
            values = [r["rps"] for r in per_route.get(route, [])]
            if values:
                row[app] = {"median_rps": round(statistics.median(values), 1), "runs": values}
        bare = row.get("bare", {}).get("median_rps")
        for app, cell in row.items():
            cell["ratio_to_bare"] = round(cell["median_rps"] / bare, 3) if bare else None
        table[route] = row
    return table


def print_table(table: dict[str, Any]) -> None:
    """The median req/s and ratio to bare per route and app."""
    apps = [a for a in APPS if any(a in row for row in table.values())]
    print()
    print(f"{'route':<8}" + "".join(f"{a + ' req/s':>14}{a + '/bare':>11}" for a in apps))
    for route, row in table.items():
        line = f"{route:<8}"
        for app in apps:
            cell = row.get(app)
            if cell is None:
                line += f"{'-':>14}{'-':>11}"
            else:
                ratio = cell["ratio_to_bare"]
                line += f"{cell['median_rps']:>14,.0f}{(f'{ratio:.2f}x' if ratio else '-'):>11}"
        print(line)
    print("(median of the alternating repetitions; ratios are only meaningful within one run)")


def chart(result: dict[str, Any], path: Path) -> None:
    """A grouped bar chart of median req/s per route and app, ratios to bare on the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result["table"]
    routes = list(table)
    apps = [a for a in APPS if any(a in table[r] for r in routes)]
    labels = {
        "bare": "bare FastAPI",
        "full": "crown-nexus (every setup_app layer)",
        "peer": "hand-written peer",
        "floor": "floor: the visible work fused in one layer",
    }
    colours = {"bare": "#9e9e9e", "full": "#1f77b4", "peer": "#ff7f0e", "floor": "#2ca02c"}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(apps))
    for i, app in enumerate(apps):
        xs = [j + (i - (len(apps) - 1) / 2) * width for j in range(len(routes))]
        ys = [table[r].get(app, {}).get("median_rps", 0.0) for r in routes]
        bars = ax.bar(xs, ys, width, label=labels[app], color=colours[app])
        for bar, route in zip(bars, routes):
            ratio = table[route].get(app, {}).get("ratio_to_bare")
            if ratio:
                ax.annotate(
                    f"{ratio:.2f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8,
                )
    ax.set_xticks(range(len(routes)), [f"GET {ROUTES[r]}" for r in routes])
    ax.set_ylabel("requests / s (median)")
    cfg = result["config"]
    ax.set_title(
        f"granian 1 worker, wrk -t1 -c{cfg['connections']} {cfg['duration_s']}s x "
        f"{cfg['repetitions']} reps ({result['date'][:10]})",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def memory_run(
    wrk: str, server: Server, total: int, connections: int, pin: str | None,
    first: int = 20_000,
) -> dict[str, Any]:
    """Load ``server`` (both routes in turn, 2 s runs) from a fresh count until ``total``
    requests; RSS after the first ``first`` and at the end (target: within 5%)."""
    served = 0
    rss_first = 0
    first_at = 0
    trace: list[tuple[int, int]] = []
    paths = list(ROUTES.values())
    i = 0
    while served < total:
        result = run_wrk(wrk, server.port, paths[i % len(paths)], 2.0, connections, pin)
        i += 1
        served += result["requests"]
        rss = server.rss_kib()
        trace.append((served, rss))
        if not rss_first and served >= first:
            rss_first, first_at = rss, served
        print(f"memory: {served:>9,} requests  RSS {rss:>9,} KiB", flush=True)
    rss_end = trace[-1][1]
    return {
        "first": first_at,
        "served": served,
        "rss_kib_at_first": rss_first,
        "rss_kib_at_end": rss_end,
        "growth_pct": round((rss_end - rss_first) / rss_first * 100.0, 2) if rss_first else None,
        "trace": trace,
    }


def ensure_wrk() -> str:
    """The wrk binary; installs the Debian package when missing and allowed (root + apt-get)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing the Debian package", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, env=env)
        found = shutil.which("wrk")
        if not found:
            subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
            found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is required: apt-get install wrk")
    return found


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the benchmark, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of untimed load first")
    parser.add_argument("--apps", default="bare,full,peer,floor", help="comma-separated subset")
    parser.add_argument("--routes", default="hello,items", help="comma-separated subset")
    parser.add_argument("--smoke", action="store_true", help="one 1 s repetition, nothing written")
    parser.add_argument("--out", type=Path, default=None, help=f"results directory ({RESULTS})")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    parser.add_argument(
        "--memory", type=int, default=0, metavar="N",
        help="afterwards, load the full stack until N requests (e.g. 200000) and compare its "
        "RSS with the RSS after the first 20 000",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.reps, args.warmup = 1.0, 1, 0.0
        args.connections = min(args.connections, 16)
    out_dir: Path | None = args.out if args.out is not None else (None if args.smoke else RESULTS)
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    unknown = [a for a in apps if a not in APPS] + [r for r in routes if r not in ROUTES]
    if unknown:
        parser.error(f"unknown app or route: {unknown}")
    wrk = ensure_wrk()
    cores = os.cpu_count() or 1
    pin = not args.no_pin and cores >= 2 and shutil.which("taskset") is not None
    server_cpu, client_cpu = ("0", "1") if pin else (None, None)

    workdir = Path(tempfile.mkdtemp(prefix="crown-nexus-bench-http."))
    servers = {
        name: Server(name, APPS[name], free_port(), workdir / f"{name}.log") for name in apps
    }
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {a: {r: [] for r in routes} for a in apps}
    memory: dict[str, Any] | None = None
    started_at = _dt.datetime.now(_dt.UTC)
    try:
        for server in servers.values():
            server.start(server_cpu)
        for server in servers.values():
            server.wait_ready()
            check_answers(server)
            print(f"{server.name}: answering on 127.0.0.1:{server.port}", flush=True)
        if args.warmup > 0:
            for server in servers.values():
                for route in routes:
                    run_wrk(wrk, server.port, ROUTES[route], args.warmup, args.connections, client_cpu)
        order = list(servers)
        for rep in range(args.reps):
            rotated = order[rep % len(order):] + order[: rep % len(order)]
            for route in routes:
                for name in rotated:
                    server = servers[name]
                    result = run_wrk(
                        wrk, server.port, ROUTES[route], args.duration, args.connections, client_cpu
                    )
                    server.requests_served += result["requests"]
                    server.rss_trace.append((server.requests_served, server.rss_kib()))
                    runs[name][route].append(result)
                    flag = f"  non-2xx {result['non_2xx']}" if result["non_2xx"] else ""
                    print(
                        f"rep {rep + 1}/{args.reps} {route:<6} {name:<5} "
                        f"{result['rps']:>10,.0f} req/s{flag}",
                        flush=True,
                    )
            for server in servers.values():
                if server.proc is not None and server.proc.poll() is not None:
                    raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
        for server in servers.values():
            check_answers(server)  # still answering correctly after the load
        if args.memory and "full" in servers:
            memory = memory_run(wrk, servers["full"], args.memory, args.connections, client_cpu)
    finally:
        for server in servers.values():
            server.stop()
    bad = {
        f"{app}/{route}": sum(r["non_2xx"] for r in rs)
        for app, per in runs.items() for route, rs in per.items()
        if any(r["non_2xx"] for r in rs)
    }
    table = summarise(runs)
    result: dict[str, Any] = {
        "date": started_at.isoformat(timespec="seconds"),
        "machine": _machine(),
        "versions": _versions(),
        "config": {
            "server": "granian --workers 1 --loop asyncio --http 1",
            "client": f"wrk -t1 -c{args.connections}",
            "duration_s": args.duration,
            "repetitions": args.reps,
            "connections": args.connections,
            "pinned": pin,
            "client_headers": {"Accept-Encoding": "gzip", "Origin": ORIGIN},
        },
        "table": table,
        "rss_kib": {name: s.rss_trace for name, s in servers.items()},
        "non_2xx": bad,
        "memory": memory,
        "runs": runs,
    }
    print_table(table)
    if memory is not None:
        print(
            f"full stack RSS: {memory['rss_kib_at_first']:,} KiB after {memory['first']:,} requests, "
            f"{memory['rss_kib_at_end']:,} KiB after {memory['served']:,}: "
            f"{memory['growth_pct']:+.1f}%"
        )
    if bad:
        print(f"non-2xx answers under load: {bad}")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "http.json").write_text(json.dumps(result, indent=2) + "\n")
        chart(result, out_dir / "http.png")
        print(f"wrote {out_dir / 'http.json'} and {out_dir / 'http.png'}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if bad else 0


def rechart(json_path: Path, png_path: Path) -> None:
    """Draw the chart again from a results file (``python benches/bench_http.py --rechart``)."""
    chart(json.loads(json_path.read_text()), png_path)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rechart"]:
        rechart(RESULTS / "http.json", RESULTS / "http.png")
        sys.exit(0)
    sys.exit(main())
