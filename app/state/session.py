"""Who is signed in to this browser, through the same Accounts use cases as the REST API."""

from __future__ import annotations

from typing import Any

import reflex as rx

from app import routes
from app.domain.errors import DomainError
from app.domain.principal import Principal
from app.metrics import sign_in_failure_reason
from app.runtime import get_runtime
from app.security.tokens import token_digest
from app.state.browser_session import (
    drop_session_cookie,
    note_workspace_switch,
    session_digest_from,
    store_session_cookie,
)


class SessionState(rx.State):
    # The session stays on the server (a backend var never reaches the page), and only as
    # the token's SHA-256 digest: this state is saved to disk or Redis, and a digest is not
    # accepted by any public entry point. A new tab finds the session in the HttpOnly
    # cookie its websocket handshake carried (hashed on arrival, browser_session.py);
    # /api/sse accepts the same cookie, so the page and an EventSource share one session.
    _token_digest: str = ""
    # The socket that learned the digest, the only one that may use it: any other socket
    # of this client token (a reload, or someone who got hold of the token of a saved
    # state) must bring the cookie again.
    _token_socket: str = ""
    user_id: int = 0
    username: str = ""
    display_name: str = ""
    tenant_id: rx.Field[int] = rx.field(0)
    tenant_name: str = ""
    is_admin: bool = False
    memberships: rx.Field[list[dict[str, Any]]] = rx.field(default_factory=list)
    # The user's own unread totals in their other workspaces, by tenant id (as text).
    unread_elsewhere: rx.Field[dict[str, int]] = rx.field(default_factory=dict)
    login_error: str = ""
    signing_in: bool = False

    @rx.var
    def signed_in(self) -> bool:
        return self.user_id > 0

    @rx.var
    def has_several_tenants(self) -> bool:
        return len(self.memberships) > 1

    @rx.var
    def initials(self) -> str:
        return (self.display_name[:1] or "?").upper()

    async def _principal(self) -> Principal | None:
        """The caller behind this tab's session, checked again (it may have been revoked)."""
        socket = self.router.session.session_id
        if not self._token_digest or self._token_socket != socket:
            self._token_digest = session_digest_from(self.router.headers.cookie) or ""
            self._token_socket = socket
        if not self._token_digest:
            return None
        return await get_runtime().accounts.principal_for_digest(self._token_digest)

    def _learn(self, token: str) -> None:
        """Keep a token just issued to this tab, as its digest."""
        self._token_digest = token_digest(token)
        self._token_socket = self.router.session.session_id

    def _remember(self, principal: Principal) -> None:
        self.user_id = principal.user_id
        self.username = principal.username
        self.display_name = principal.display_name
        self.tenant_id = principal.tenant_id
        self.tenant_name = principal.membership.tenant_name
        self.is_admin = principal.is_admin
        self.memberships = [
            {"tenantId": m.tenant_id, "tenantName": m.tenant_name, "role": m.role}
            for m in principal.memberships
        ]

    def _forget(self) -> None:
        self._token_digest = ""
        self._token_socket = ""
        self.user_id = 0
        self.username = ""
        self.display_name = ""
        self.tenant_id = 0
        self.tenant_name = ""
        self.is_admin = False
        self.memberships = []
        self.unread_elsewhere = {}

    @rx.event
    async def sign_in(self, form_data: dict[str, Any]):
        username = str(form_data.get("username", "")).strip()
        password = str(form_data.get("password", ""))
        if not username or not password:
            self.login_error = "Enter your username and password."
            return
        if len(username) > 64 or len(password) > get_runtime().settings.max_password_chars:
            self.login_error = "Invalid username or password."
            return
        self.signing_in = True
        yield
        try:
            grant = await get_runtime().accounts.sign_in(
                username, password, self.router.session.client_ip or "unknown"
            )
        except DomainError as exc:
            get_runtime().metrics.auth_failure(sign_in_failure_reason(exc))
            self.login_error = exc.message
            return
        finally:
            self.signing_in = False
        self.login_error = ""
        self._learn(grant.access_token)
        self._remember(grant.principal)
        yield rx.call_script(store_session_cookie(grant.access_token))
        yield rx.redirect(routes.CHAT)

    @rx.event
    async def sign_out(self):
        principal = await self._principal()
        if principal is not None:
            await get_runtime().accounts.sign_out(principal)
        self._forget()
        yield rx.call_script(drop_session_cookie())
        yield rx.redirect(routes.LOGIN)

    @rx.event
    async def switch_tenant(self, tenant_id: str):
        principal = await self._principal()
        if principal is None:
            self._forget()
            return rx.redirect(routes.LOGIN)
        try:
            grant = await get_runtime().accounts.switch_tenant(principal, int(tenant_id))
        except (DomainError, ValueError):
            return rx.toast.error("You are not a member of that workspace.")
        self._learn(grant.access_token)
        self._remember(grant.principal)
        # A full reload once the cookie holds the new token: every live view belongs to the
        # tenant that was left.
        # The user's other tabs were signed out of the old one: they reload too, and say why.
        note = note_workspace_switch(grant.principal.membership.tenant_name)
        return rx.call_script(
            store_session_cookie(grant.access_token, reload_after=True, stored=note)
        )

    @rx.event
    async def require_session(self):
        """on_load of signed-in pages: back to the sign-in page without a valid session."""
        principal = await self._principal()
        if principal is None:
            self._forget()
            return rx.redirect(routes.LOGIN)
        self._remember(principal)
        await self._count_elsewhere(principal)
        return None

    @rx.event
    async def refresh_workspaces(self, open: bool):
        """The workspace switcher opened: how many unread wait in each of the others."""
        if open is not True:
            return
        principal = await self._principal()
        if principal is None:
            return
        await self._count_elsewhere(principal)
        return

    async def _count_elsewhere(self, principal: Principal) -> None:
        counts = await get_runtime().conversations.unread_elsewhere(principal)
        self.unread_elsewhere = {str(tenant): n for tenant, n in counts.items()}

    @rx.event
    async def skip_login_if_signed_in(self):
        if await self._principal() is not None:
            return rx.redirect(routes.CHAT)
        return None
