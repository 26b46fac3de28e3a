"""No token, password, message body or notification body in the server's log, in either
LOG_FORMAT, at the most talkative LOG_LEVEL.

A real backend (scripts/serve) is driven through sign-in (a good and a bad password), a
stream opened with its token in the query string, messages sent and edited, a notification
and a logout that ends the stream's session, each carrying a secret string of its own; then
every line the process wrote (ours, uvicorn's, anything else) is searched for them.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.logs import parse_lines
from tests.backend import Stream, bearer, conversation_titled, open_stream, running_backend

WRONG_PASSWORD = "wrong-pw-Zq81secret"
MESSAGE_BODY = "message-body-Kx93secret"
EDITED_BODY = "edited-body-Lm27secret"
NOTIFICATION_BODY = "notification-body-Pw55secret"
NOTIFICATION_TITLE = "notification-title-Hd40"


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_no_secret_reaches_the_log(
    tmp_path_factory: pytest.TempPathFactory, log_format: str
) -> None:
    env = {"LOG_FORMAT": log_format, "LOG_LEVEL": "DEBUG"}
    with running_backend(
        tmp_path_factory.mktemp(f"redaction-{log_format}"), env, launcher="serve"
    ) as backend:
        async with httpx.AsyncClient(base_url=backend.url, timeout=10) as http:
            refused = await http.post(
                "/api/auth/token", json={"username": "bob", "password": WRONG_PASSWORD}
            )
            assert refused.status_code == 401
            alice, bob = backend.token("alice"), backend.token("bob")
            bob_id = int((await http.get("/api/me", headers=bearer(bob))).json()["id"])
            team = conversation_titled(backend, "alice", "Acme team")
            async with open_stream(http, None, params={"access_token": bob}) as stream:
                sent = await http.post(
                    f"/api/conversations/{team}/messages",
                    headers=bearer(alice),
                    json={"content": MESSAGE_BODY},
                )
                assert sent.status_code == 201, sent.text
                assert (await _next_of(stream, "chat:message"))["message"][
                    "content"
                ] == MESSAGE_BODY
                edited = await http.patch(
                    f"/api/conversations/{team}/messages/{sent.json()['id']}",
                    headers=bearer(alice),
                    json={"content": EDITED_BODY},
                )
                assert edited.status_code == 200, edited.text
                notified = await http.post(
                    "/api/notifications",
                    headers=bearer(alice),
                    json={
                        "userId": bob_id,
                        "type": "mention",
                        "title": NOTIFICATION_TITLE,
                        "body": NOTIFICATION_BODY,
                        "link": "/chat",
                    },
                )
                assert notified.status_code == 201, notified.text
                assert (await _next_of(stream, "notification:new"))["body"] == NOTIFICATION_BODY
                assert (await http.post("/api/auth/logout", headers=bearer(bob))).status_code == 204
                assert await stream.ended()
            unknown = await http.get("/api/me", headers=bearer(bob))  # revoked now: a 401
            assert unknown.status_code == 401
        log = backend.log_path.read_text()

    secrets = {
        "bob's token": bob,
        "alice's token": alice,
        "bob's password": "bob-pass",
        "alice's password": "alice-pass",
        "a wrong password": WRONG_PASSWORD,
        "a message body": MESSAGE_BODY,
        "an edited message body": EDITED_BODY,
        "a notification body": NOTIFICATION_BODY,
    }
    leaked = [what for what, secret in secrets.items() if secret in log]
    assert not leaked, f"{leaked} in the log:\n{log}"
    # The log did record what happened, so the absence above means something.
    events = _events(log, log_format)
    assert {
        "stream.connect",
        "event.publish",
        "stream.session_ended",
        "stream.disconnect",
    } <= events


async def _next_of(stream: Stream, event_type: str) -> dict[str, Any]:
    """The data of the next event of that type (unread counts and the like in between)."""
    while True:
        event = await stream.next()
        if event.event == event_type:
            return dict(json.loads(event.data))


def _events(log: str, log_format: str) -> set[str]:
    if log_format == "json":
        return {entry["event"] for entry in parse_lines(log.splitlines())}
    # `<ts> <LEVEL> <logger>[<pid>] <event> key=value ...`
    return {
        words[3]
        for words in (line.split(" ") for line in log.splitlines())
        if len(words) > 3 and words[2].startswith("app.")
    }
