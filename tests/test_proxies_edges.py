"""app/security/proxies.py on its own: whose forwarded headers rewrite the ASGI scope."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from app.security.proxies import behind_trusted_proxies


async def _seen(trusted: tuple[str, ...], peer: str, headers: list[tuple[bytes, bytes]]) -> Scope:
    """The scope the wrapped app is called with, for an HTTP request from `peer`."""
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    scope: Scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 50000),
        "headers": headers,
        "path": "/",
        "method": "GET",
    }
    await behind_trusted_proxies(inner, trusted)(scope, receive, send)
    return seen[0]


FORWARDED = [(b"x-forwarded-for", b"198.51.100.9, 203.0.113.7"), (b"x-forwarded-proto", b"https")]


def test_no_trusted_proxies_adds_no_layer() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    assert behind_trusted_proxies(app, ()) is app


async def test_a_trusted_peer_s_headers_name_the_client_and_the_scheme() -> None:
    scope = await _seen(("127.0.0.1",), "127.0.0.1", FORWARDED)
    # The rightmost address that is not a trusted proxy is the client.
    assert scope["client"][0] == "203.0.113.7"
    assert scope["scheme"] == "https"


async def test_an_untrusted_peer_s_headers_are_ignored() -> None:
    scope = await _seen(("127.0.0.1",), "127.0.0.9", FORWARDED)
    assert scope["client"][0] == "127.0.0.9"
    assert scope["scheme"] == "http"


async def test_a_trusted_network_covers_its_addresses_and_a_chain_of_proxies() -> None:
    scope = await _seen(
        ("10.0.5.0/24", "127.0.0.1"),
        "127.0.0.1",
        [
            (b"x-forwarded-for", b"203.0.113.7, 10.0.5.3"),
        ],
    )
    assert scope["client"][0] == "203.0.113.7"
