"""The origin policy: the app's own origin and the named frontends, nothing else unless
an operator says `*`; a request without Origin is no cross-site request."""

from __future__ import annotations

from app.security.origins import OriginPolicy, origin_of, own_frontend_origins, request_origin


def test_origin_of_keeps_scheme_and_host_lowercased_and_leaves_non_urls_trimmed() -> None:
    assert origin_of(" HTTP://Example.COM:8080/some/path?q=1 ") == "http://example.com:8080"
    assert origin_of("example.com/") == "example.com"
    assert origin_of("http:///path/") == "http:///path"


def test_own_frontends_are_the_deploy_url_and_the_dev_frontend_on_localhost() -> None:
    assert own_frontend_origins("https://chat.example.com/app", 3001) == (
        "https://chat.example.com",
        "http://localhost:3001",
        "http://127.0.0.1:3001",
    )
    assert own_frontend_origins(None, None) == ("http://localhost:3000", "http://127.0.0.1:3000")
    assert own_frontend_origins("http://localhost:3000", None) == (
        "http://localhost:3000",
        "http://127.0.0.1:3000",
    )


def test_request_origin_follows_the_first_forwarded_proto() -> None:
    assert request_origin("http", "Chat.Example.com") == "http://chat.example.com"
    assert request_origin("http", "h", "https, http") == "https://h"
    assert request_origin("http", "h", " , https") == "http://h"
    assert request_origin("http", "h", "") == "http://h"


def test_the_policy_allows_named_origins_its_own_and_requests_without_origin() -> None:
    policy = OriginPolicy.build(["https://Partner.example/"], ["http://localhost:3000"])
    assert policy.allowed == frozenset({"https://partner.example", "http://localhost:3000"})
    assert policy.allows(None) is True
    assert policy.allows(" HTTPS://partner.example ") is True
    assert policy.allows("http://localhost:3000") is True
    assert policy.allows("https://evil.example") is False
    assert policy.allows("https://own.example", own_origin="https://own.example") is True
    assert policy.allows("https://evil.example", own_origin="https://own.example") is False
    assert policy.cors_list() == ["http://localhost:3000", "https://partner.example"]


def test_a_star_opens_the_policy_to_any_origin() -> None:
    policy = OriginPolicy.build(["*", ""], [])
    assert policy.allow_any is True and policy.allowed == frozenset()
    assert policy.allows("https://anyone.example") is True
    assert policy.cors_list() == ["*"]
    closed = OriginPolicy.build([], [])
    assert closed.allow_any is False
    assert closed.allows("https://anyone.example") is False
    assert closed.cors_list() == []


def test_the_socket_check_uses_the_requests_own_origin() -> None:
    policy = OriginPolicy.build([], [])
    environ = {"HTTP_HOST": "chat.example.com", "wsgi.url_scheme": "http"}
    assert policy.for_socketio("http://chat.example.com", environ) is True
    assert policy.for_socketio("https://chat.example.com", environ) is False
    forwarded = {**environ, "HTTP_X_FORWARDED_PROTO": "https"}
    assert policy.for_socketio("https://chat.example.com", forwarded) is True
    assert policy.for_socketio("http://chat.example.com", {"HTTP_HOST": "chat.example.com"}) is True
    assert policy.for_socketio("http://chat.example.com", {}) is False
    assert policy.for_socketio(None, {}) is True


def test_the_configured_origins_may_be_any_iterable_read_once() -> None:
    policy = OriginPolicy.build((o for o in ["https://a.example", "*"]), iter([]))
    assert policy.allow_any is True
    assert policy.allowed == frozenset({"https://a.example"})
