"""A private redis-server (Debian's package) on a free loopback port, for one test run."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import redis

from tests.backend import free_port


def redis_server_path() -> str:
    """The redis-server binary; under CI a missing one fails the run instead of skipping."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed (scripts/test installs it as root)"
        _fail_under_ci_else_skip(message)
    return path


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_server_path(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
            raise RuntimeError("redis-server did not start")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def flush(self) -> None:
        client = redis.Redis(port=self.port)
        try:
            client.flushall()
        finally:
            client.close()


def start_redis(workdir: Path) -> RedisServer:
    server = RedisServer(port=free_port(), workdir=workdir)
    server.start()
    return server


def _fail_under_ci_else_skip(message: str) -> NoReturn:
    """Under CI=true a missing dependency fails the run; elsewhere the test is skipped."""
    (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(message)
