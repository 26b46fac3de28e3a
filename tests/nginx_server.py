"""A private nginx (Debian's package) running the shipped deploy/nginx.conf, for one test run.

The shipped file is what an operator copies; the test runs it unchanged except for two
substitutions, each of which must match exactly once (a changed file fails loudly instead of
testing something else):
- `listen 80;` becomes a free loopback port;
- the upstream's example `server 127.0.0.1:8000 ...;` line becomes the backends under test.
Around it goes a minimal main config with the pid file, logs and temporary folders in the
run's own folder, so nothing under /etc or /var is read or written (`nginx -p DIR -c conf`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from tests.backend import ROOT, free_port

SHIPPED_CONFIG = ROOT / "deploy" / "nginx.conf"
LISTEN_LINE = "listen 80;"
UPSTREAM_LINE = "server 127.0.0.1:8000 max_fails=3 fail_timeout=10s;"
START_SECONDS = 10.0

_MAIN_CONFIG = """\
daemon off;
worker_processes 1;
{user}pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/temp/body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;
    include {dir}/chat.conf;
}}
"""


def nginx_path() -> str:
    """The nginx binary (Debian's is in /usr/sbin); under CI a missing one fails the run."""
    path = shutil.which("nginx")
    if path is None and os.access("/usr/sbin/nginx", os.X_OK):
        path = "/usr/sbin/nginx"
    if path is None:
        _fail_under_ci_else_skip("nginx is not installed (scripts/test installs it as root)")
    return path


def render_site(shipped: str, port: int, backends: list[str]) -> str:
    """The shipped server block, listening on `port` and proxying to `backends` (host:port)."""
    for line in (LISTEN_LINE, UPSTREAM_LINE):
        count = shipped.count(line)
        if count != 1:
            raise AssertionError(f"deploy/nginx.conf has {count} lines {line!r}, expected 1")
    servers = "\n    ".join(
        f"server {backend} max_fails=3 fail_timeout=10s;" for backend in backends
    )
    return shipped.replace(LISTEN_LINE, f"listen 127.0.0.1:{port};").replace(UPSTREAM_LINE, servers)


@dataclass
class NginxServer:
    port: int
    workdir: Path
    backends: list[str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.workdir / "error.log"

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    def write_config(self) -> Path:
        (self.workdir / "temp").mkdir(parents=True, exist_ok=True)
        site = render_site(SHIPPED_CONFIG.read_text(), self.port, self.backends)
        (self.workdir / "chat.conf").write_text(site)
        # As root, nginx's workers would run as `nobody`, who cannot enter pytest's
        # private temporary folders.
        user = "user root;\n" if os.geteuid() == 0 else ""
        main = self.workdir / "nginx.conf"
        main.write_text(_MAIN_CONFIG.format(dir=self.workdir, user=user))
        return main

    def command(self, *extra: str) -> list[str]:
        main = self.workdir / "nginx.conf"
        # -e: the log for the start itself, before the config names its own.
        return [
            nginx_path(),
            "-p",
            str(self.workdir),
            "-c",
            str(main),
            "-e",
            str(self.error_log),
            *extra,
        ]

    def start(self) -> None:
        self.write_config()
        check = subprocess.run(self.command("-t"), capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused the config:\n{check.stderr}")
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_SECONDS
        while not _accepts(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited early:\n{self.error_log.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not listen in time:\n{self.error_log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # nginx's fast shutdown; the workers follow the master
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_nginx(workdir: Path, backends: list[str], port: int | None = None) -> NginxServer:
    server = NginxServer(port=port or free_port(), workdir=workdir, backends=backends)
    server.start()
    return server


def _fail_under_ci_else_skip(message: str) -> NoReturn:
    """Under CI=true a missing dependency fails the run; elsewhere the test is skipped."""
    (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(message)
