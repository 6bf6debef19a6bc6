"""Start real redis-server and PostgreSQL processes for the tests (no mocks).

``.ci/run`` starts both and exports ``CROWN_NEXUS_TEST_REDIS_URL`` /
``CROWN_NEXUS_TEST_POSTGRES_URL``; without those variables the fixtures start their own servers
from the Debian binaries, and skip (saying why) only where a server truly cannot run.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class RedisServer:
    """A redis-server on loopback that a test may stop and start again (same port)."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if not _wait_port(self.port):
            self.stop()
            raise RuntimeError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        cand = base / name
        if cand.exists():
            return str(cand)
    return None


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL cluster on loopback (run as the ``postgres`` user when root)."""

    port: int = field(default_factory=free_port)
    datadir: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _cmd(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def start(self) -> None:
        initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
        if not initdb or not postgres:
            raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
        self.datadir = tempfile.mkdtemp(prefix="cn-pg-")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            self._cmd([initdb, "-D", self.datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.proc = subprocess.Popen(
            self._cmd([postgres, "-D", self.datadir, "-p", str(self.port), "-h", "127.0.0.1",
                       "-k", self.datadir, "-c", "fsync=off", "-c", "max_connections=200"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if not _wait_port(self.port, 30):
            self.stop()
            raise RuntimeError("postgres did not start")

    def kill(self) -> None:
        """Stop the server abruptly (immediate shutdown: SIGQUIT, every backend dropped at once,
        no checkpoint), keeping its data for :meth:`restart`."""
        if self.proc is not None:
            # the postmaster itself (``runuser`` does not pass SIGQUIT on)
            with open(os.path.join(self.datadir, "postmaster.pid")) as fh:
                os.kill(int(fh.readline()), signal.SIGQUIT)
            self.proc.wait(timeout=15)
            self.proc = None

    def restart(self) -> None:
        """Start the server again on the same data directory and port."""
        postgres = _pg_bin("postgres")
        assert postgres and self.datadir and self.proc is None
        pid_file = os.path.join(self.datadir, "postmaster.pid")
        if os.path.exists(pid_file):  # left by the killed postmaster
            os.remove(pid_file)
        self.proc = subprocess.Popen(
            self._cmd([postgres, "-D", self.datadir, "-p", str(self.port), "-h", "127.0.0.1",
                       "-k", self.datadir, "-c", "fsync=off", "-c", "max_connections=200"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if not _wait_port(self.port, 30):
            raise RuntimeError("postgres did not restart")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        if self.datadir:
            shutil.rmtree(self.datadir, ignore_errors=True)
