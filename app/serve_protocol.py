"""scripts/serve's HTTP/1.1 protocol: uvicorn's httptools protocol with bounded request headers.

uvicorn 0.54 with httptools keeps whatever a client sends as a header block until the blank
line that ends it, and waits for that line forever: four connections sending 50 MB of
headers each took scripts/serve from 115 to 416 MiB (371 MiB once they closed), and a
connection that never finishes its headers holds its socket for good. This subclass adds
what a reverse proxy would:

- a header block larger than MAX_HEADER_BYTES is refused with 431 and the connection is
  closed; the bytes are counted as they arrive, so an unfinished block is refused at most one
  socket read past the limit, and nothing past that is kept;
- a connection that has not finished a request's headers HEADER_READ_TIMEOUT_SECONDS after it
  opened (or after that request's first byte) is closed. Nothing else is timed: once the
  headers are complete the timer is gone, so an hours-long /api/sse stream or a websocket
  is not affected; an idle keep-alive connection is uvicorn's own (--timeout-keep-alive).

Every use of uvicorn's internals by this protocol is in this module (the stream's write path
has its own, app/api/uvicorn_transport.py), and uvicorn is pinned in requirements.txt; tests/test_serve_limits.py::test_the_uvicorn_internals_this_protocol_uses
fails when they change (and the other tests there show the behaviour on scripts/serve).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

# The uvicorn release whose HttpToolsProtocol this subclass was written against: one pin for
# both of the modules that reach into uvicorn (the stream's write path is the other).
from app.api.uvicorn_transport import UVICORN_VERSION
from app.settings import get_settings

__all__ = ["LIMITS", "UVICORN_VERSION", "BoundedHeadersProtocol", "HeaderLimits"]

# After a 431, read and drop up to this much more for at most this long before closing: a
# socket closed with unread bytes resets the connection, and the reset can reach an ordinary
# client (one with a few oversized cookies) before the 431 does. As for 413 (app/api/errors.py).
_LINGER_BYTES = 1024 * 1024
_LINGER_SECONDS = 2.0

_TOO_LARGE_BODY = b"Request header fields too large"
_TOO_LARGE = b"".join(
    [
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(_TOO_LARGE_BODY),
        b"connection: close\r\n",
        b"\r\n",
        _TOO_LARGE_BODY,
    ]
)


@dataclass(frozen=True)
class HeaderLimits:
    max_bytes: int
    timeout_seconds: float

    @classmethod
    def from_settings(cls) -> HeaderLimits:
        settings = get_settings()
        # Both are checked positive where settings are read (app/settings.py).
        return cls(settings.max_header_bytes, settings.header_read_timeout_seconds)


# Read when uvicorn imports this class (before it listens), so that a bad setting stops the
# server at start rather than failing every connection.
LIMITS = HeaderLimits.from_settings()


class _Phase(Enum):
    IDLE = "idle"  # no request begun: a new connection, or between keep-alive requests
    HEADERS = "headers"  # a request's first byte has arrived, its blank line has not
    BODY = "body"  # headers complete, the body (if any) still arriving


class BoundedHeadersProtocol(HttpToolsProtocol):
    """Pass `--http app.serve_protocol:BoundedHeadersProtocol` to uvicorn."""

    # Slots, not the instance dict uvicorn's attributes live in: eight more keys there grew
    # that dict from 296 to 1,584 bytes per connection (in slots they cost 64), and one
    # server holds 10,000 streams.
    __slots__ = (
        "_begun_in_read",
        "_deadline",
        "_linger_left",
        "_linger_timer",
        "_parsed_bytes",
        "_phase",
        "_raw_bytes",
        "_refused",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._phase = _Phase.IDLE
        self._begun_in_read = 0  # requests begun during the current data_received
        self._parsed_bytes = 0  # URL and headers of this block as the parser reports them
        self._raw_bytes = 0  # whole reads that fell inside this (still unfinished) block
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False
        self._linger_left = 0
        self._linger_timer: asyncio.TimerHandle | None = None

    # -- connection ----------------------------------------------------------------------

    # uvicorn's protocol narrows BaseProtocol's BaseTransport to Transport, as asyncio hands it.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # see above
        super().connection_made(transport)
        # A connection that never sends a byte owes its first request's headers too.
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._linger(len(data))
            return
        phase_before = self._phase
        self._begun_in_read = 0
        super().data_received(data)
        if self._refused:
            self._refuse()
            return
        if self._phase is _Phase.HEADERS and self._read_was_all_headers(phase_before):
            # The parser keeps an unfinished header line to itself (httptools joins the
            # pieces of a header as they come): only whole reads can be counted here.
            self._raw_bytes += len(data)
            if self._raw_bytes > LIMITS.max_bytes:
                self._refused = True
                self._refuse()

    def _read_was_all_headers(self, phase_before: _Phase) -> bool:
        """Did the whole read fall inside the header block still open now? Yes if it
        continued that block, or began it on an idle connection; not if it also held the
        end of an earlier request (then the parser's own counts bound it: one read more)."""
        if phase_before is _Phase.HEADERS:
            return self._begun_in_read == 0
        return phase_before is _Phase.IDLE and self._begun_in_read == 1

    def handle_websocket_upgrade(self) -> None:
        if self._refused:
            return  # a refused header block is not handed to the websocket protocol either
        super().handle_websocket_upgrade()

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._refused:
            return
        self._phase = _Phase.HEADERS
        self._begun_in_read += 1
        self._parsed_bytes = 0
        self._raw_bytes = 0
        self._arm_deadline()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._refused or self._count(len(url)):
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # 4: the ": " and CRLF around them, as on the wire.
        if self._refused or self._count(len(name) + len(value) + 4):
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._phase = _Phase.BODY
        self._disarm_deadline()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._phase = _Phase.IDLE
        super().on_message_complete()

    # -- the limits ----------------------------------------------------------------------

    def _count(self, size: int) -> bool:
        """Add to this header block; True (and refused) once it is past the limit."""
        self._parsed_bytes += size
        if self._parsed_bytes > LIMITS.max_bytes:
            self._refused = True  # data_received answers once the parser has returned
        return self._refused

    def _arm_deadline(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(LIMITS.timeout_seconds, self._headers_overdue)

    def _disarm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_overdue(self) -> None:
        self._deadline = None
        if self._phase is not _Phase.BODY and not self.transport.is_closing():
            # No answer: nothing may have been asked yet, and a slow sender is not owed one.
            self.transport.close()

    def _refuse(self) -> None:
        """Answer 431 (unless a response is under way: then just close), then drop what
        the client still sends for a little while before closing."""
        self._disarm_deadline()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        self.transport.write(_TOO_LARGE)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_left = _LINGER_BYTES
        self._linger_timer = self.loop.call_later(_LINGER_SECONDS, self.transport.close)

    def _linger(self, size: int) -> None:
        self._linger_left -= size
        if self._linger_left <= 0 and not self.transport.is_closing():
            self.transport.close()
