"""The door of Reflex's websocket: only what app/state/surface.py allows, with parsed arguments.

Reflex's `EventNamespace.on_event` (reflex/app.py) enqueues whatever a client names; the
event processor then looks the name up and, for a name it does not know, logs a traceback
(`_process_queue` in reflex_base/event/processor/event_processor.py); a handler called with
arguments it cannot take raises inside Reflex, and Reflex's own transform of the arguments
logs the raw value. This wrapper runs first, for the page's CONNECT event too (Reflex's
`on_connect` calls `self.on_event`), and refuses quietly: one warning line, and a readable
toast on the tab. Events that our own handlers chain (`return ChatState.open_conversation(..)`)
do not come through the socket and are not checked here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import reflex as rx
import socketio
from reflex.state import StateUpdate
from reflex_base.event import Event

from app.state.arguments import BadArguments, parse_arguments, parse_value
from app.state.replies import cannot_do
from app.state.surface import allowed

logger = logging.getLogger(__name__)

# The parts of an event's router data that Reflex reads as a given type (reflex/app.py,
# `on_event`): the page's path and query. The rest is plain JSON, bounded like arguments.
_ROUTER_FIELDS: dict[str, Any] = {"pathname": str, "asPath": str, "query": dict[str, Any]}


class Refused(Exception):
    """An event the gate does not hand to Reflex: `reason` is for the tab, `what` for the log."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


def install(app: rx.App) -> None:
    """Put the gate in front of the app's websocket event handler."""
    namespace = app.event_namespace
    if namespace is None:
        return  # no websocket (a backend without state): nothing to guard
    allowed()  # a handler with parameters no client may fill in fails the start, not a call
    dispatch: Callable[[str, Any], Awaitable[None]] = namespace.on_event

    async def on_event(sid: str, data: Any = None) -> None:  # an emit may carry no data
        try:
            frame = admit(data)
        except Refused as refusal:
            logger.warning("refused a websocket event: %s", refusal)
            token = namespace.sid_to_token.get(sid)
            if token is not None:
                update = StateUpdate(events=Event.from_event_type(cannot_do(refusal.reason)))
                await namespace.emit_update(update, token)
            return
        await dispatch(sid, frame)

    # python-socketio dispatches "event" to the attribute `on_event` of the namespace,
    # so an instance attribute takes the place of Reflex's method.
    namespace.on_event = on_event  # type: ignore[method-assign]  # replaced on this one instance, on purpose
    if app.sio is not None:
        _drop_undecodable_packets(app.sio, namespace)


# Set when python-socketio hands a decoded packet to the namespace (Reflex's code): what
# raises after that is not a malformed packet, and keeps its traceback.
_decoded: ContextVar[bool] = ContextVar("socket_packet_decoded", default=False)


def _drop_undecodable_packets(server: socketio.AsyncServer, namespace: Any) -> None:
    """python-socketio raises for a packet it cannot decode or dispatch (broken JSON, an
    integer past Python's 4,300 digits, an unknown packet type, an event packet without an
    event name), and engine.io logs it at ERROR with its traceback ("message async handler
    error"): any client could fill the log with them. Those become one warning line. Reflex
    runs the message handler inline (async_handlers=False), so the namespace's handlers run
    in the same context, and `_decoded` tells the client's garbage from our own errors."""
    handle = server.eio.handlers["message"]
    trigger = namespace.trigger_event

    async def trigger_event(event: str, *args: Any) -> Any:
        _decoded.set(True)
        return await trigger(event, *args)

    async def on_message(eio_sid: str, data: Any) -> None:
        token = _decoded.set(False)
        try:
            await handle(eio_sid, data)
        except (ValueError, LookupError, TypeError) as exc:
            if _decoded.get():
                raise
            logger.warning(
                "dropped a websocket packet socket.io could not decode: %s: %s",
                type(exc).__name__,
                ascii(str(exc)[:200]),
            )
        finally:
            _decoded.reset(token)

    namespace.trigger_event = trigger_event
    server.eio.on("message", on_message)


def admit(data: Any) -> dict[str, Any]:
    """The frame to hand to Reflex, its arguments parsed; Refused if it may not pass."""
    if not isinstance(data, dict):
        raise Refused("a frame that is not an event", "that message was not understood.")
    name = data.get("name")
    entry = allowed().get(name) if isinstance(name, str) else None
    if entry is None:
        shown = ascii(name[:120]) if isinstance(name, str) else "a nameless event"
        raise Refused(shown, "this page cannot ask for that.")
    what = f"{entry.entry.state.__name__}.{entry.entry.handler}"
    try:
        payload = parse_arguments(entry.parameters, data.get("payload", {}))
        router_data = _router_data(data.get("router_data", {}))
    except BadArguments as bad:
        raise Refused(what, str(bad)) from None
    return {"name": name, "payload": payload, "router_data": router_data}


def _router_data(value: Any) -> dict[str, Any]:
    parsed = parse_value(value, dict[str, Any], "router_data")
    for key, annotation in _ROUTER_FIELDS.items():
        if key in parsed:
            parsed[key] = parse_value(parsed[key], annotation, f"router_data.{key}")
    return parsed
