"""Whether a tab's websocket is still open on this process, as Reflex itself decides it.

A listener started by a direct websocket call (not by the page's on_load) is not cancelled
when its socket closes, and the connection manager (app/realtime, which knows nothing of
Reflex) cannot see websockets. So the listener hands the manager a check built here.

Reflex's token manager maps each client token to the socket that holds it (`SocketRecord`:
the socket id and the id of the process that owns it); that is what
`EventNamespace.on_disconnect` and `emit_update` consult. A tab is alive while its token
is still held by the very socket that started its listener, on this process: a reload
keeps the token but opens another socket, and with REFLEX_REDIS_URL a record of another
worker's socket may be cached here.
"""

from __future__ import annotations

from collections.abc import Callable

from reflex.utils.prerequisites import get_and_validate_app
from reflex.utils.token_manager import TokenManager


def _token_manager() -> TokenManager | None:
    namespace = get_and_validate_app().app.event_namespace
    # Private in Reflex 0.10.1, and the one place that knows which socket holds a token;
    # its public `token_to_sid` copies the whole table on every read.
    return None if namespace is None else namespace._token_manager


def socket_check(client_token: str, sid: str) -> Callable[[], bool]:
    """A check that answers True while `sid` still holds `client_token` on this process."""
    manager = _token_manager()
    if manager is None:  # no websocket server in this process: nothing to judge by
        return lambda: True

    def alive() -> bool:
        record = manager.token_to_socket.get(client_token)
        # instance_id is read each time: Reflex assigns a fresh one when a worker starts.
        return (
            record is not None and record.sid == sid and record.instance_id == manager.instance_id
        )

    return alive
