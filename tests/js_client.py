"""The scenarios of assets/realtime-client.js, written against `JsClientDriver`: the Node
tests (tests/test_client_js_node.py, tests/node/driver.mjs) and the Chromium tests
(tests/test_client_js_browser.py, a page) run the very same ones through the same harness
(tests/node/harness.mjs).
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, cast

import httpx
import pytest

from tests.backend import ROOT, Backend
from tests.browser import _fail_under_ci_else_skip
from tests.tcp_proxy import ThreadedProxy

NODE_DIR = ROOT / "tests" / "node"
WAIT_SECONDS = 15.0
# Fast backoff so refusals and restarts cost the suite a second, not thirty.
FAST_BACKOFF = {"initialMs": 200, "maxMs": 1600, "factor": 2}

Record = dict[str, Any]


# -- the client under test, seen through its records ---------------------------------------


class JsClientDriver:
    """Sends harness commands (tests/node/harness.mjs) and collects the records it reports."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._seq = 0

    def _send(self, command: Record) -> None:
        raise NotImplementedError

    def _pull(self, timeout: float) -> list[Record]:
        """Records reported since the last pull; waits up to `timeout` for at least one."""
        raise NotImplementedError

    def command(self, op: str, **fields: Any) -> None:
        self._seq += 1
        seq = self._seq
        self._send({"op": op, "seq": seq, **fields})
        answer = self.wait_until(
            lambda records: next(
                (r for r in records if r["kind"] in ("ack", "failed") and r.get("seq") == seq),
                None,
            ),
            what=f"answer to {op}",
        )
        assert answer["kind"] == "ack", answer

    def wait_until(
        self,
        condition: Callable[[list[Record]], Any],
        timeout: float = WAIT_SECONDS,
        what: str = "",
    ) -> Any:
        """The first truthy `condition(records)`, re-checked as records arrive."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition(self.records)
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tail = "\n".join(json.dumps(r) for r in self.records[-30:])
                raise TimeoutError(f"timed out waiting for {what}; last records:\n{tail}")
            self.records.extend(self._pull(min(remaining, 1.0)))

    # Shorthands over the records.

    def events(self, handler: str) -> list[Record]:
        return [r for r in self.records if r["kind"] == "event" and r["handler"] == handler]

    def statuses(self, client: str) -> list[Record]:
        return [r for r in self.records if r["kind"] == "status" and r["client"] == client]

    def wait_for_status(self, client: str, status: str, after: int = 0) -> Record:
        """The first `status` report of `client` after its first `after` status reports."""

        def reported(_: list[Record]) -> Record | None:
            return next((s for s in self.statuses(client)[after:] if s["status"] == status), None)

        return self.wait_until(reported, what=f"{client} status {status!r}")

    def wait_for_content(self, handler: str, content: str) -> Record:
        return self.wait_until(
            lambda _: next((e for e in self.events(handler) if _content(e) == content), None),
            what=f"{handler} to receive {content!r}",
        )

    def assert_no_duplicates(self) -> None:
        """No handler was given the same event twice, whatever reconnected meanwhile."""
        deliveries = Counter(
            (r["handler"], r["type"], r["id"])
            for r in self.records
            if r["kind"] == "event" and r["id"]
        )
        twice = {key: n for key, n in deliveries.items() if n > 1}
        assert not twice, f"delivered more than once: {twice}"
        errors = [r for r in self.records if r["kind"] in ("error", "failed")]
        assert not errors, errors


def _content(event: Record) -> str | None:
    data = event["data"]
    if not isinstance(data, dict):
        return None
    if event["type"] == "message":  # subscribeToConversation's onMessage gets the message
        return data.get("content")
    if event["type"] == "chat:message":
        return data["message"]["content"]
    return data.get("title")


class NodeDriver(JsClientDriver):
    def __init__(self) -> None:
        super().__init__()
        node = shutil.which("node")
        if node is None:
            _fail_under_ci_else_skip("Node is not installed")
        if not (NODE_DIR / "node_modules" / "eventsource").is_dir():
            pytest.fail("tests/node/node_modules is missing: source scripts/bootstrap.sh")
        self._process = subprocess.Popen(
            [str(node), str(NODE_DIR / "driver.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=NODE_DIR,
        )
        self._lines: queue.Queue[Record | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_until(lambda records: any(r["kind"] == "ready" for r in records), what="node")

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def _send(self, command: Record) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()

    def _pull(self, timeout: float) -> list[Record]:
        try:
            first = self._lines.get(timeout=timeout)
        except queue.Empty:
            return []
        pulled = [first]
        while not self._lines.empty():
            pulled.append(self._lines.get_nowait())
        if None in pulled:
            stderr = self._process.stderr.read() if self._process.stderr else ""
            raise AssertionError(f"the node driver exited: {stderr}")
        return cast(list[Record], pulled)  # no None: the check above raised on it

    def stop(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()  # the driver closes its clients and exits
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._reader.join(timeout=5)  # it reads stdout to the end before we close it
        for pipe in (self._process.stdout, self._process.stderr):
            if pipe is not None:
                pipe.close()


# -- the app over REST -----------------------------------------------------------------------


class Api:
    """One signed-in user of the app, producing events over REST."""

    def __init__(self, base_url: str, username: str) -> None:
        self.base_url = base_url
        self.token = _sign_in(base_url, username)
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        self.id: int = self.http.get("/api/me").json()["id"]

    def conversation(self, participant_ids: list[int], title: str | None = None) -> int:
        response = self.http.post(
            "/api/conversations", json={"participantIds": participant_ids, "title": title}
        )
        assert response.status_code in (200, 201), response.text
        return response.json()["id"]

    def send(self, conversation_id: int, content: str) -> Record:
        response = self.http.post(
            f"/api/conversations/{conversation_id}/messages", json={"content": content}
        )
        assert response.status_code == 201, response.text
        return response.json()

    def typing(self, conversation_id: int) -> None:
        response = self.http.post(
            f"/api/conversations/{conversation_id}/typing", json={"isTyping": True}
        )
        assert response.status_code == 204, response.text

    def notify(self, user_id: int, title: str) -> None:
        response = self.http.post(
            "/api/notifications",
            json={"userId": user_id, "type": "mention", "title": title, "body": "b", "link": "/"},
        )
        assert response.status_code == 201, response.text

    def streams_of(self, user_id: int) -> int:
        diagnostics = self.http.get("/api/sse/diagnostics").json()
        return diagnostics["clientsByUser"].get(str(user_id), 0)

    def close(self) -> None:
        self.http.close()


def _sign_in(base_url: str, username: str) -> str:
    body = {"username": username, "password": f"{username}-pass"}
    response = httpx.post(f"{base_url}/api/auth/token", json=body, timeout=10)
    response.raise_for_status()
    return response.json()["access_token"]


def _login(username: str) -> dict[str, str]:
    return {"username": username, "password": f"{username}-pass"}


# -- scenarios, shared with the Chromium tests -------------------------------------------------


def subscribe_and_unsubscribe(driver: JsClientDriver, base_url: str) -> None:
    alice, bob = Api(base_url, "alice"), Api(base_url, "bob")
    direct = alice.conversation([bob.id])
    streams_before = alice.streams_of(bob.id)
    driver.command("connect", client="c", baseUrl=base_url, token=bob.token)
    driver.command("subscribe", client="c", handler="messages", type="chat:message")
    driver.command("subscribe", client="c", handler="everything", type="*")
    driver.command("subscribe", client="c", handler="bell", type="notification:new")
    driver.command("subscribeToConversation", client="c", handler="direct", conversationId=direct)
    assert driver.wait_for_status("c", "open")["connected"] is True
    # Four subscriptions, one stream.
    assert alice.streams_of(bob.id) == streams_before + 1
    # Another client keeps only notifications, filtered by the server.
    driver.command(
        "connect", client="n", baseUrl=base_url, token=bob.token, events=["notification:new"]
    )
    driver.command("subscribe", client="n", handler="only-notifications", type="*")
    driver.wait_for_status("n", "open")

    alice.send(direct, "one")
    for handler in ("messages", "everything", "direct"):
        driver.wait_for_content(handler, "one")
    driver.command("unsubscribe", handler="messages")
    alice.send(direct, "two")
    alice.notify(bob.id, "ring")
    # Handlers run in subscription order for each event: once `everything` and `bell` have
    # the notification sent after "two", `messages` has had every chance to get "two".
    driver.wait_for_content("everything", "ring")
    driver.wait_for_content("bell", "ring")
    driver.wait_for_content("direct", "two")
    assert [_content(e) for e in driver.events("messages")] == ["one"]
    assert [_content(e) for e in driver.events("bell")] == ["ring"]
    assert "ping" not in {e["type"] for e in driver.events("everything")}
    driver.wait_for_content("only-notifications", "ring")
    assert {e["type"] for e in driver.events("only-notifications")} == {"notification:new"}
    driver.assert_no_duplicates()
    driver.command("close", client="c")
    closed = driver.wait_for_status("c", "closed")
    assert (closed["reason"], closed["connected"]) == ("client_closed", False)
    for api in (alice, bob):
        api.close()


def conversation_filtering(driver: JsClientDriver, base_url: str) -> None:
    alice, bob, carol = Api(base_url, "alice"), Api(base_url, "bob"), Api(base_url, "carol")
    direct = alice.conversation([bob.id])
    group = alice.conversation([bob.id, carol.id], title=f"js filter {time.monotonic_ns()}")
    driver.command("connect", client="c", baseUrl=base_url, token=bob.token)
    driver.command("subscribeToConversation", client="c", handler="c1", conversationId=direct)
    # A string id works too: ids in URLs and data attributes are strings.
    driver.command("subscribeToConversation", client="c", handler="c2", conversationId=str(group))
    driver.wait_for_status("c", "open")

    alice.typing(direct)
    alice.send(group, "for the group")
    alice.send(direct, "for bob only")
    driver.wait_for_content("c1", "for bob only")
    driver.wait_for_content("c2", "for the group")
    kinds = lambda handler: {e["type"] for e in driver.events(handler)}
    driver.wait_until(lambda _: kinds("c1") >= {"typing", "message", "unread"}, what="c1 kinds")
    driver.wait_until(lambda _: kinds("c2") >= {"message", "unread"}, what="c2 kinds")

    for handler, conversation in (("c1", direct), ("c2", group)):
        for event in driver.events(handler):
            data = event["data"]
            assert data["conversationId"] == conversation, (handler, event)
    assert [_content(e) for e in driver.events("c1") if e["type"] == "message"] == ["for bob only"]
    assert [_content(e) for e in driver.events("c2") if e["type"] == "message"] == ["for the group"]
    typing = next(e for e in driver.events("c1") if e["type"] == "typing")["data"]
    assert (typing["userId"], typing["isTyping"]) == (alice.id, True)
    driver.assert_no_duplicates()
    for api in (alice, bob, carol):
        api.close()


def gives_up_when_retrying_cannot_help(driver: JsClientDriver, base_url: str) -> None:
    """Not a member of the tenant (403), or a bad token and no getToken (401): the client
    ends with the code instead of retrying forever."""
    bob = Api(base_url, "bob")  # Acme only
    driver.command("connect", client="globex", baseUrl=base_url, token=bob.token, tenant=2)
    driver.command("connect", client="forged", baseUrl=base_url, token="not-a-token")
    globex = driver.wait_for_status("globex", "closed")
    forged = driver.wait_for_status("forged", "closed")
    assert (globex["code"], globex["reason"]) == (403, "forbidden")
    assert (forged["code"], forged["reason"]) == (401, "unauthorized")
    for client in ("globex", "forged"):
        assert [s["status"] for s in driver.statuses(client)] == ["connecting", "closed"]
    bob.close()


def reconnect_after_restart(driver: JsClientDriver, server: Backend) -> None:
    """A restarted server has forgotten its history: the client is told to resync, then
    live events flow again on the same client."""
    alice, bob = Api(server.url, "alice"), Api(server.url, "bob")
    direct = alice.conversation([bob.id])
    driver.command("connect", client="c", baseUrl=server.url, token=bob.token, backoff=FAST_BACKOFF)
    driver.command("subscribe", client="c", handler="messages", type="chat:message")
    driver.command("subscribeToConversation", client="c", handler="direct", conversationId=direct)
    driver.wait_for_status("c", "open")
    alice.send(direct, "before the restart")
    driver.wait_for_content("messages", "before the restart")
    opened = len(driver.statuses("c"))

    server.kill()
    driver.wait_for_status("c", "backoff", after=opened)
    server.start()
    resync = driver.wait_until(
        lambda records: next((r for r in records if r["kind"] == "resync"), None), what="resync"
    )
    assert resync["data"]["reason"]
    driver.wait_for_status("c", "open", after=opened)
    alice.send(direct, "after the restart")
    driver.wait_for_content("messages", "after the restart")
    driver.wait_for_content("direct", "after the restart")
    assert [_content(e) for e in driver.events("messages")] == [
        "before the restart",
        "after the restart",
    ]
    driver.assert_no_duplicates()
    for api in (alice, bob):
        api.close()


def backoff_while_refused(driver: JsClientDriver, base_url: str) -> None:
    """Three streams are all TEST_ENV allows erin: the client backs off with a growing
    ceiling, reports the 429, and connects once a slot frees."""
    dave, erin = Api(base_url, "dave"), Api(base_url, "erin")
    with ExitStack() as held, httpx.Client(base_url=base_url, timeout=10) as http:
        slots = [
            held.enter_context(
                http.stream("GET", "/api/sse", headers={"Authorization": f"Bearer {erin.token}"})
            )
            for _ in range(3)
        ]
        assert [slot.status_code for slot in slots] == [200, 200, 200]
        driver.command(
            "connect", client="c", baseUrl=base_url, token=erin.token, backoff=FAST_BACKOFF
        )
        driver.command("subscribe", client="c", handler="bell", type="notification:new")

        def backoffs_so_far() -> list[Record]:
            return [s for s in driver.statuses("c") if s["status"] == "backoff"]

        driver.wait_until(lambda _: len(backoffs_so_far()) >= 4, what="four backoff reports")
        slots[0].close()  # a slot frees: the next attempt gets in
        driver.wait_for_status("c", "open")
    backoffs = backoffs_so_far()
    assert not any(s["status"] == "open" for s in driver.statuses("c")[:-1])
    assert {b["code"] for b in backoffs} == {429}
    ceilings = [b["ceilingMs"] for b in backoffs[:4]]
    assert ceilings == [200, 400, 800, 1600]
    assert [b["attempt"] for b in backoffs[:4]] == [1, 2, 3, 4]
    assert all(0 <= b["delayMs"] < b["ceilingMs"] for b in backoffs)
    dave.notify(erin.id, "you are in")
    driver.wait_for_content("bell", "you are in")
    driver.assert_no_duplicates()
    for api in (dave, erin):
        api.close()


def token_refresh_after_logout(driver: JsClientDriver, base_url: str) -> None:
    """Logging out the client's token closes its stream; getToken gives a new one and
    delivery goes on, the message sent meanwhile included, each message once."""
    alice, bob = Api(base_url, "alice"), Api(base_url, "bob")
    direct = alice.conversation([bob.id])
    driver.command(
        "connect", client="c", baseUrl=base_url, login=_login("bob"), backoff=FAST_BACKOFF
    )
    driver.command("subscribeToConversation", client="c", handler="direct", conversationId=direct)
    driver.command("subscribe", client="c", handler="everything", type="*")
    driver.wait_for_status("c", "open")
    alice.send(direct, "first")
    driver.wait_for_content("direct", "first")
    first_token = next(r for r in driver.records if r["kind"] == "token")
    assert first_token["reason"] == "initial"
    opened = len(driver.statuses("c"))

    logout = httpx.post(
        f"{base_url}/api/auth/logout",
        headers={"Authorization": f"Bearer {first_token['token']}"},
        timeout=10,
    )
    assert logout.status_code == 204
    alice.send(direct, "while signed out")
    driver.wait_for_status("c", "open", after=opened)
    alice.send(direct, "with the new token")
    driver.wait_for_content("direct", "with the new token")
    driver.wait_for_content("direct", "while signed out")

    tokens = [r for r in driver.records if r["kind"] == "token"]
    assert [t["reason"] for t in tokens] == ["initial", "expired"]
    assert tokens[1]["token"] != first_token["token"]
    refused = [s for s in driver.statuses("c")[opened:] if s.get("code") == 401]
    assert refused, driver.statuses("c")
    messages = [_content(e) for e in driver.events("direct") if e["type"] == "message"]
    assert messages == ["first", "while signed out", "with the new token"]
    driver.assert_no_duplicates()
    for api in (alice, bob):
        api.close()


def latency_through_a_held_network(
    driver: JsClientDriver, proxy: ThreadedProxy, api_url: str
) -> None:
    """Through a proxy that holds the server's bytes for a known while: the event's
    `meta.latencyMs` and the client's `latency` figures show that while, against the
    server's `sentAt`; an event that was not held shows a small figure."""
    alice, bob = Api(api_url, "alice"), Api(api_url, "bob")
    direct = alice.conversation([bob.id])
    driver.command("connect", client="c", baseUrl=proxy.url, token=bob.token, backoff=FAST_BACKOFF)
    driver.command("subscribe", client="c", handler="messages", type="chat:message")
    driver.wait_for_status("c", "open")
    alice.send(direct, "prompt")
    prompt = driver.wait_for_content("messages", "prompt")
    proxy.hold()
    alice.send(direct, "held")
    time.sleep(HELD_SECONDS)  # the delay under test: the network keeps the event this long
    proxy.release()
    held = driver.wait_for_content("messages", "held")
    assert isinstance(held["data"]["sentAt"], int)
    assert held["latencyMs"] >= HELD_SECONDS * 1000, held
    assert prompt["latencyMs"] < HELD_SECONDS * 1000, prompt
    driver.command("latency", client="c")
    stats = driver.wait_until(
        lambda records: next((r["stats"] for r in records if r["kind"] == "latency"), None),
        what="the latency figures",
    )
    assert stats["count"] >= 2
    assert stats["maxMs"] >= HELD_SECONDS * 1000
    assert stats["p50Ms"] is not None and stats["p99Ms"] >= stats["p50Ms"]
    driver.assert_no_duplicates()
    for api in (alice, bob):
        api.close()


# How long latency_through_a_held_network holds an event in the network.
HELD_SECONDS = 0.6


def replay_after_network_drop(driver: JsClientDriver, proxy: ThreadedProxy, api_url: str) -> None:
    """Through a proxy that cuts every connection and refuses new ones for a while: events
    published meanwhile come back by replay, in order, and none twice."""
    alice, bob = Api(api_url, "alice"), Api(api_url, "bob")
    direct = alice.conversation([bob.id])
    driver.command("connect", client="c", baseUrl=proxy.url, token=bob.token, backoff=FAST_BACKOFF)
    driver.command("subscribeToConversation", client="c", handler="direct", conversationId=direct)
    driver.command("subscribe", client="c", handler="messages", type="chat:message")
    driver.wait_for_status("c", "open")
    alice.send(direct, "seen live")
    driver.wait_for_content("direct", "seen live")
    opened = len(driver.statuses("c"))

    proxy.go_down()
    driver.wait_for_status("c", "backoff", after=opened)
    for text in ("missed 1", "missed 2", "missed 3"):
        alice.send(direct, text)  # straight to the backend, not through the proxy
    # Down long enough for at least one refused attempt.
    driver.wait_until(
        lambda _: sum(s["status"] == "backoff" for s in driver.statuses("c")[opened:]) >= 2,
        what="a refused attempt while down",
    )
    proxy.come_back()
    driver.wait_for_status("c", "open", after=opened)
    alice.send(direct, "live again")
    driver.wait_for_content("messages", "live again")
    driver.wait_for_content("direct", "live again")
    expected = ["seen live", "missed 1", "missed 2", "missed 3", "live again"]
    assert [_content(e) for e in driver.events("messages")] == expected
    assert [_content(e) for e in driver.events("direct") if e["type"] == "message"] == expected
    assert not any(r["kind"] == "resync" for r in driver.records)
    driver.assert_no_duplicates()
    for api in (alice, bob):
        api.close()
