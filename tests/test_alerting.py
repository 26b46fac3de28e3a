"""The shipped alerting rules (deploy/prometheus/) are valid, do what their unit tests say,
and use metric names a real backend exports, as a real Prometheus scraping it sees them."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend import Backend, bearer, running_backend
from tests.prometheus_server import Prometheus, prometheus_tool, start_prometheus
from tests.redis_server import RedisServer

RULES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULES = RULES_DIR / "rules.yml"
TOKEN = "scrape-secret-for-tests"
# PromQL's words that look like metric names in an expression.
_PROMQL_WORDS = {
    "sum",
    "rate",
    "deriv",
    "max",
    "by",
    "and",
    "or",
    "unless",
    "on",
    "without",
    "histogram_quantile",
    "le",
    "transport",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [prometheus_tool("promtool"), *args],
        check=False,
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def alert_names() -> set[str]:
    return set(re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.MULTILINE))


def metric_names(expressions: list[str]) -> set[str]:
    """Every metric the expressions read (labels, ranges and strings set aside)."""
    names: set[str] = set()
    for expr in expressions:
        bare = re.sub(r'\{[^}]*\}|\[[^\]]*\]|"[^"]*"', " ", expr)
        names.update(
            word
            for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)
            if word not in _PROMQL_WORDS
        )
    return names


def loaded_rules(prometheus: Prometheus) -> list[dict[str, Any]]:
    """The rules as the running Prometheus parsed them from the shipped file."""
    response = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10)
    response.raise_for_status()
    groups = response.json()["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_rules_are_valid() -> None:
    checked = promtool("check", "rules", "rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout


def test_every_alert_fires_on_its_trouble_and_stays_quiet_otherwise() -> None:
    tested = promtool("test", "rules", "rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = (RULES_DIR / "rules.test.yml").read_text()
    assert len(alert_names()) == 6
    # Each alert has a case where it fires (an exp_alerts list that is not empty).
    for alert in alert_names():
        assert re.search(rf"alertname: {alert}\n\s+exp_alerts:\n\s+- ", cases), alert


@pytest.fixture(scope="module")
def scraped(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Backend, Prometheus]]:
    env = {"REDIS_URL": redis_server.url, "METRICS_TOKEN": TOKEN}
    workdir = tmp_path_factory.mktemp("scraped")
    with running_backend(workdir, env, launcher="serve", backend_only=True) as backend:
        prometheus = start_prometheus(
            tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{backend.port}", TOKEN, RULES
        )
        try:
            yield backend, prometheus
        finally:
            prometheus.stop()


def deliver_one_event(backend: Backend) -> None:
    """A notification from alice (an admin) reaches bob's open stream."""
    alice, bob = backend.token("alice"), backend.token("bob")
    with httpx.Client(base_url=backend.url, timeout=10) as http:
        bob_id = http.get("/api/me", headers=bearer(bob)).json()["id"]
        params = {"events": "notification:new"}
        with http.stream("GET", "/api/sse", headers=bearer(bob), params=params) as stream:
            assert stream.status_code == 200
            sent = http.post(
                "/api/notifications",
                headers=bearer(alice),
                json={"userId": bob_id, "type": "info", "title": "scraped", "body": ""},
            )
            assert sent.status_code == 201, sent.text
            for line in stream.iter_lines():
                if line == "event: notification:new":
                    break


def test_a_real_prometheus_finds_every_metric_the_rules_use(
    scraped: tuple[Backend, Prometheus],
) -> None:
    backend, prometheus = scraped
    assert httpx.get(f"{backend.url}/api/conversations", timeout=10).status_code == 401
    deliver_one_event(backend)  # the latency histogram has a series once one went out
    rules = loaded_rules(prometheus)
    assert {rule["name"] for rule in rules} == alert_names()
    used = metric_names([rule["query"] for rule in rules])
    assert used == {
        "chat_http_requests_total",
        "chat_slow_consumers_cut_total",
        "chat_broker_outbox_events",
        "chat_resyncs_total",
        "chat_event_delivery_seconds_bucket",
        "up",
    }
    missing = set(used)
    deadline = time.monotonic() + 30
    while missing and time.monotonic() < deadline:
        missing = {name for name in missing if not prometheus.query(name)}
        time.sleep(0.2)
    assert missing == set(), f"the rules read metrics the backend does not export: {missing}"
    # With Redis, how a conversation's order was kept is counted too (nothing to keep yet).
    [gaps] = prometheus.query("chat_broker_order_fill_failures_total")
    assert gaps["value"][1] == "0"
    [up] = prometheus.query('up{job="chat"}')
    assert up["value"][1] == "1"  # scraped with the bearer token
    # Evaluated on those series without an error (a rule's health is unknown until then).
    while time.monotonic() < deadline:
        rules = loaded_rules(prometheus)
        if all(rule["health"] != "unknown" for rule in rules):
            break
        time.sleep(0.2)
    assert all(rule["health"] == "ok" for rule in rules), rules
