"""Sign-in, tokens, sign-out and /api/me against the real backend."""

from __future__ import annotations

import httpx

from tests.backend import Backend


async def test_json_sign_in_returns_an_oauth_shaped_token(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/auth/token", json={"username": "alice", "password": "alice-pass"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    assert len(body["access_token"]) >= 40
    assert body["user"]["username"] == "alice"
    assert body["user"]["role"] == "admin"
    assert "password" not in response.text and "passwordHash" not in response.text


async def test_form_sign_in_follows_the_oauth2_password_flow(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/auth/token",
        data={"grant_type": "password", "username": "BOB", "password": "bob-pass"},
    )
    assert response.status_code == 200
    assert response.json()["user"]["username"] == "bob"


async def test_unsupported_grant_type_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/auth/token", data={"grant_type": "client_credentials", "username": "bob"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_grant_type"


async def test_wrong_password_gets_401_json(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/auth/token", json={"username": "carol", "password": "nope"})
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "not_authenticated", "message": "Invalid username or password."}
    }


async def test_repeated_failures_for_one_username_get_429_with_retry_after(
    http: httpx.AsyncClient,
) -> None:
    attempts = [
        await http.post("/api/auth/token", json={"username": "mallory", "password": f"guess{i}"})
        for i in range(4)
    ]
    assert [a.status_code for a in attempts] == [401, 401, 401, 429]
    assert int(attempts[-1].headers["retry-after"]) > 0
    assert attempts[-1].json()["error"]["code"] == "rate_limited"
    # Another username from the same address is not punished for mallory's failures.
    other = await http.post("/api/auth/token", json={"username": "erin", "password": "erin-pass"})
    assert other.status_code == 200


async def test_sign_in_into_a_chosen_tenant(http: httpx.AsyncClient) -> None:
    carol = (
        await http.post("/api/auth/token", json={"username": "carol", "password": "carol-pass"})
    ).json()["user"]
    globex = next(m["tenantId"] for m in carol["memberships"] if m["tenantSlug"] == "globex")
    chosen = await http.post(
        "/api/auth/token", json={"username": "carol", "password": "carol-pass", "tenant": globex}
    )
    refused = await http.post(
        "/api/auth/token", json={"username": "bob", "password": "bob-pass", "tenant": globex}
    )
    assert chosen.json()["user"]["tenantId"] == globex
    assert refused.status_code == 403


async def test_me_lists_memberships_and_needs_a_bearer_header(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    token = backend.token("carol")
    me = await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert sorted(m["tenantSlug"] for m in me.json()["memberships"]) == ["acme", "globex"]
    # A token in a query string is accepted on /api/sse only (URLs end up in logs).
    in_query = await http.get("/api/me", params={"access_token": token})
    assert in_query.status_code == 401
    assert in_query.headers["www-authenticate"] == "Bearer"


async def test_logout_revokes_the_token_only(backend: Backend, http: httpx.AsyncClient) -> None:
    first, second = backend.token("bob"), backend.token("bob")
    out = await http.post("/api/auth/logout", headers={"Authorization": f"Bearer {first}"})
    assert out.status_code == 204
    assert (
        await http.get("/api/me", headers={"Authorization": f"Bearer {first}"})
    ).status_code == 401
    assert (
        await http.get("/api/me", headers={"Authorization": f"Bearer {second}"})
    ).status_code == 200
