"""A private Prometheus (Debian's package) on a free loopback port, scraping given targets."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.backend import free_port
from tests.redis_server import _fail_under_ci_else_skip


def prometheus_tool(name: str) -> str:
    """`prometheus` or `promtool`; under CI a missing one fails the run instead of skipping."""
    path = shutil.which(name)
    if path is None:
        _fail_under_ci_else_skip(
            f"{name} is not installed (scripts/test installs prometheus as root)"
        )
    return path


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def start_prometheus(workdir: Path, target: str, token: str, rules: Path) -> Prometheus:
    """Scrapes `target` (host:port) every second with `token`, evaluating `rules`."""
    token_file = workdir / "token"
    token_file.write_text(token)
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {rules}\n"
        "scrape_configs:\n  - job_name: chat\n    metrics_path: /metrics\n"
        f"    authorization:\n      type: Bearer\n      credentials_file: {token_file}\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    with (workdir / "prometheus.log").open("wb") as log:  # the child keeps its own copy
        process = subprocess.Popen(
            [
                prometheus_tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(url=f"http://127.0.0.1:{port}", process=process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {(workdir / 'prometheus.log').read_text()}")
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("prometheus did not become ready")
