"""The soak's server: the production start (scripts/serve) on a free loopback port, with a
fresh SQLite database and settings that let a few hundred streams per user exist."""

from __future__ import annotations

import argparse
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.servers import ROOT, Server, free_port, start_redis, wait_ready

HOST = "127.0.0.1"


@dataclass
class Started:
    server: Server
    log: Path
    redis: subprocess.Popen[bytes] | None
    env: dict[str, str]


def replay_max_age(seconds: float) -> float:
    """Below the warm-up, so the replay buffers are full-grown before memory is judged;
    far above any gap a consumer leaves (`--max-gap` plus the time since its last event)."""
    return min(300.0, max(15.0, seconds / 3))


def start_server(args: argparse.Namespace, workdir: Path) -> Started:
    port = free_port()
    redis_process = None
    redis_url = args.redis_url or ""
    if redis_url == "local":
        started = start_redis(workdir)
        if started is None:
            raise SystemExit("--redis-url local needs redis-server on PATH")
        redis_process, redis_url = started
    if args.workers > 1 and not redis_url:
        raise SystemExit("--workers > 1 needs --redis-url (events must cross processes)")
    settings = {
        "DATABASE_URL": f"sqlite:///{workdir / 'soak.db'}",
        "REDIS_URL": redis_url,
        "APP_ENV": "production",
        "SSE_MAX_STREAMS_PER_USER": "1000000",
        "SSE_HEARTBEAT_SECONDS": "5",
        "SSE_REPLAY_BUFFER_SIZE": str(args.replay_buffer),
        "SSE_REPLAY_MAX_AGE_SECONDS": f"{replay_max_age(args.seconds):g}",
        "RATE_LIMIT_ENABLED": "false",
        "WORKERS": str(args.workers),
    }
    if redis_url and args.workers > 1:
        # Reflex keeps page state in Redis with several workers (README, "Scale out").
        settings["REFLEX_REDIS_URL"] = redis_url.rsplit("/", 1)[0] + "/1"
    env = {
        **os.environ,
        **settings,
        "HOST": HOST,
        "PORT": str(port),
        # Compile into the run's folder, not the project's .web (a dev server may use it).
        "REFLEX_WEB_WORKDIR": str(workdir / ".web"),
        "REFLEX_STATES_WORKDIR": str(workdir / ".states"),
    }
    log = workdir / "server.log"
    process = subprocess.Popen(
        [str(ROOT / "scripts" / "serve")],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready(f"http://{HOST}:{port}/ping", process, log)
    except BaseException:
        Server("soak", port, process).stop()
        raise
    return Started(Server("soak", port, process), log, redis_process, settings)


def server_rss(server: Server) -> int:
    try:
        return server.rss()
    except psutil.Error:
        return 0  # the tree changed under us (or the server died: the run will say so)


def log_errors(log: Path) -> list[str]:
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "ERROR" in line or "Traceback" in line
    ]
