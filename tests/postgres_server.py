"""A private PostgreSQL server (Debian's `postgresql` package) on a free loopback port, for one
test run; each test that asks gets a database of its own on it.

Debian keeps the server's programs out of PATH, in /usr/lib/postgresql/<version>/bin.
PostgreSQL refuses to run as root, and the test command runs as root in CI: the server then
runs as the `postgres` user the package creates, in a folder of its own under /tmp (pytest's
temporary folders are private to root).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.backend import free_port
from tests.redis_server import _fail_under_ci_else_skip

SUPERUSER = "postgres"


def postgres_bin_dir() -> Path:
    """The folder of initdb and postgres (the newest installed version); under CI a missing
    server fails the run instead of skipping."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(on_path).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        _fail_under_ci_else_skip("postgresql is not installed (scripts/test installs it as root)")
    return candidates[-1].parent


def _run_as() -> str | None:
    """The user the server runs as: ours, unless we are root."""
    return SUPERUSER if os.geteuid() == 0 else None


@dataclass
class PostgresServer:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for the app's DATABASE_URL (driver psycopg 3)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        bin_dir = postgres_bin_dir()
        user = _run_as()
        if not self.datadir.exists():
            subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
                check=True,
                cwd=self.workdir,
                user=user,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        self.process = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(self.datadir),
                "-p",
                str(self.port),
                "-k",
                str(self.workdir),
                "-c",
                "listen_addresses=127.0.0.1",
                # A test server: durability is not what is under test, speed is welcome.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ],
            cwd=self.workdir,
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}")
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise RuntimeError("postgres did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGINT: "fast" shutdown, which ends the sessions still open (SIGTERM would
            # wait for them: a pool a test left behind would hold the run up).
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def create_database(self, prefix: str = "test", *, template: str | None = None) -> str:
        """A new database, empty or a copy of `template` (the URL of another database here,
        which nobody may be connected to: CREATE DATABASE copies its files); returns its
        SQLAlchemy URL."""
        name = f"{prefix}_{next(self._names)}"
        copy = f' TEMPLATE "{database_name(template)}"' if template else ""
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)


def database_name(url: str) -> str:
    """The database a URL of this server names."""
    return url.rsplit("/", 1)[-1].split("?", 1)[0]


def start_postgres() -> PostgresServer:
    workdir = Path(tempfile.mkdtemp(prefix="chat-tests-postgres-"))
    user = _run_as()
    if user is not None:
        shutil.chown(workdir, user=user, group=user)
    server = PostgresServer(port=free_port(), workdir=workdir)
    server.start()
    return server


def remove_postgres(server: PostgresServer) -> None:
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)
