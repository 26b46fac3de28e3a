"""The suite's one loopback TCP proxy, with the network faults the tests need:

- pass-through, keeping the head of every HTTP request it forwards, so a test can read
  exactly what went over the wire (the `?events=` query, the `Last-Event-ID` header), and
  rewriting the `Last-Event-ID` of the requests to come (a consumer whose position lags what
  it already processed);
- cut (`drop_all`, `offline`, `go_down`/`come_back`): every connection closed on both sides,
  seen from the client as the server closing it (a network drop), and new ones refused;
- stall (`vanish`): a peer that vanishes without a FIN (a phone leaving coverage, a pulled
  cable) closes nothing, the server's writes simply stop being taken: forwarding and reading
  stop in both directions, every socket stays open, neither side sees a FIN or a reset;
- hold (`hold`/`release`): what the server sends is taken from it at once but kept from the
  client until released, as a slow network path or a buffering proxy would (the server's
  writes do not wait; the client reads late);
- small window (`small_window=True`): the proxy connects to the server as a mobile-sized
  peer (`open_small_window`), so the server's buffers fill after tens of kilobytes, as they
  would towards a real distant client, instead of after the megabytes loopback allows.

Requests are forwarded head by head, found by the blank line that ends them: right for the
body-less GETs of an event stream and of a page, not meant for requests with a body.

The proxy runs on an asyncio loop; `proxy_in_a_thread` runs one on a loop of its own for
synchronous tests (Playwright's sync API, the Node driver).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

CHUNK = 65536
# A classic minimum MSS and a receive buffer the kernel rounds up to a few kilobytes.
SMALL_MSS = 536
SMALL_RCVBUF = 2048

T = TypeVar("T")


async def open_small_window(
    host: str, port: int, *, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection whose peer can only ever have a few kilobytes in flight to it.

    Loopback's 64 kB segments let the kernel grow a stream's send buffer to megabytes. Both
    options must be set before connecting: they shape the window and the segment size
    announced in the handshake."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, SMALL_MSS)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=limit)


def socket_transport(writer: asyncio.StreamWriter) -> asyncio.Transport:
    """The writer's transport, as the read-and-write transport it is.

    typeshed types `StreamWriter.transport` as a `WriteTransport`; a stream opened on a TCP
    socket (open_connection, start_server) has a selector socket transport, which reads too
    (pause_reading, resume_reading)."""
    return cast(asyncio.Transport, writer.transport)


@dataclass(eq=False)  # hashed by identity: links live in a set
class _Link:
    downstream: asyncio.StreamWriter  # towards the client
    upstream: asyncio.StreamWriter  # towards the server
    pipes: list[asyncio.Task[None]] = field(default_factory=list)

    def cut(self) -> None:
        for writer in (self.downstream, self.upstream):
            writer.close()

    def stall(self) -> None:
        for pipe in self.pipes:
            pipe.cancel()
        for writer in (self.downstream, self.upstream):
            # Bytes already in the kernel stay there; none are taken from now on, so the
            # far side's window closes and its writes back up.
            socket_transport(writer).pause_reading()

    def abort(self) -> None:
        for writer in (self.downstream, self.upstream):
            writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the target, with the faults of the module docstring."""

    def __init__(self, target_host: str, target_port: int, *, small_window: bool = False) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.small_window = small_window
        self.request_heads: list[str] = []
        self.last_event_id_override: str | None = None
        self.port = 0
        self.vanished = False
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._offline = False
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    # -- cut -------------------------------------------------------------------------------

    async def drop_all(self) -> None:
        """Close every open connection on both sides, and wait until they are gone."""
        links = list(self._links)
        for link in links:
            link.cut()
        await asyncio.gather(
            *(pipe for link in links for pipe in link.pipes), return_exceptions=True
        )

    async def go_down(self) -> None:
        """Drop every connection, and close each new one at once until `come_back()`."""
        self._offline = True
        await self.drop_all()

    def come_back(self) -> None:
        self._offline = False

    @contextlib.asynccontextmanager
    async def offline(self) -> AsyncIterator[None]:
        """Down (`go_down`) until the block ends."""
        await self.go_down()
        try:
            yield
        finally:
            self.come_back()

    # -- stall -----------------------------------------------------------------------------

    def vanish(self) -> None:
        """Stop forwarding and reading both ways; close nothing (no FIN, no RST). New
        connections are aborted: the peer is gone."""
        self.vanished = True
        for link in self._links:
            link.stall()

    # -- hold ------------------------------------------------------------------------------

    def hold(self) -> None:
        """Keep what the server sends from the clients until `release()`."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
        if self.vanished:
            for link in list(self._links):
                link.abort()
            self._links.clear()
        await self.drop_all()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- forwarding ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.vanished:
            writer.transport.abort()
            return
        if self._offline:
            await _close(writer)
            return
        connect = open_small_window if self.small_window else asyncio.open_connection
        try:
            up_reader, up_writer = await connect(self.target_host, self.target_port)
        except OSError:
            await _close(writer)
            return
        link = _Link(downstream=writer, upstream=up_writer)
        link.pipes = [
            asyncio.create_task(self._pipe_requests(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._links.add(link)
        await asyncio.wait(link.pipes, return_when=asyncio.FIRST_COMPLETED)
        if self.vanished:
            return  # the link stays open, stalled, until close() aborts it
        try:
            # When either side ends, the whole link goes: like a real connection would.
            link.cut()
            await asyncio.gather(*link.pipes, return_exceptions=True)
        finally:
            self._links.discard(link)
            await _close(writer)
            await _close(up_writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server to client: taken as it comes, handed on once not held."""
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(CHUNK):
                await self._flowing.wait()
                writer.write(chunk)
                await writer.drain()

    async def _pipe_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        pending = b""
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(CHUNK):
                pending += chunk
                while b"\r\n\r\n" in pending:
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    head = self._rewritten(head)
                    self.request_heads.append(head.decode("latin-1"))
                    writer.write(head + b"\r\n\r\n")
                await writer.drain()

    def _rewritten(self, head: bytes) -> bytes:
        if self.last_event_id_override is None:
            return head
        value = self.last_event_id_override.encode("latin-1")
        return _LAST_EVENT_ID.sub(lambda match: match.group(1) + value, head)


_LAST_EVENT_ID = re.compile(rb"(?im)^(last-event-id:[ \t]*)[^\r\n]*")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


class ThreadedProxy:
    """A `TcpProxy` on an event loop of its own thread, driven from synchronous code."""

    def __init__(self, proxy: TcpProxy, loop: asyncio.AbstractEventLoop) -> None:
        self.proxy = proxy
        self._loop = loop

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def port(self) -> int:
        return self.proxy.port

    def go_down(self) -> None:
        self._run(self.proxy.go_down())

    def come_back(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.come_back)

    def hold(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.hold)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.release)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)


@contextlib.contextmanager
def proxy_in_a_thread(target_port: int, *, small_window: bool = False) -> Iterator[ThreadedProxy]:
    """A started `TcpProxy` to 127.0.0.1:`target_port`, closed when the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    threaded = ThreadedProxy(TcpProxy("127.0.0.1", target_port, small_window=small_window), loop)
    try:
        threaded._run(threaded.proxy.start())
        yield threaded
    finally:
        threaded._run(threaded.proxy.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
