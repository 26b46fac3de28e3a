"""Open streams outlive nothing they were opened with: the rule for closing them.

A stream (or a tab) stays open while its token is valid and its user is a member of the
stream's tenant. Either can end in another process (a sign-out there, an admin removing a
member), so no request here notices: `SessionSweep.end_stale` finds those clients and closes
them. The runtime runs it once a heartbeat.
"""

from __future__ import annotations

from app.domain.accounts import Accounts
from app.realtime.client import Client, CloseReason
from app.realtime.manager import ConnectionManager


class SessionSweep:
    def __init__(self, accounts: Accounts, manager: ConnectionManager) -> None:
        self._accounts = accounts
        self._manager = manager

    async def end_stale(self) -> int:
        """Close every client whose token was revoked or expired, or whose user is no longer
        a member of the client's tenant; returns how many were closed."""
        clients = self._manager.clients()
        ended = await self._accounts.ended_sessions(
            {c.session_ref for c in clients if c.session_ref is not None}
        )
        # Checked per client too: a stream opened with `?tenant=` is in another tenant than
        # its token, and that membership can go while the token stays valid.
        lost = await self._accounts.lost_memberships(
            {(c.user_id, c.tenant_id) for c in clients if c.session_ref is not None}
        )
        if not ended and not lost:
            return 0
        for token_id in ended:
            self._accounts.forget_token(token_id)
        for user_id, _ in lost:
            self._accounts.forget_user(user_id)

        def stale(client: Client) -> bool:
            return client.session_ref is not None and (
                client.session_ref in ended or (client.user_id, client.tenant_id) in lost
            )

        return self._manager.close_where(stale, CloseReason.SESSION_ENDED)
