"""app/api/uvicorn_transport.py against a real uvicorn (httptools) on a loopback port: the
shortcut is found, writes correct chunks, honours flow control, and refuses a uvicorn that
does not have what it reads."""

from __future__ import annotations

import asyncio
import re
import types
from typing import Any

import httpx
import pytest
import uvicorn

from app.api.uvicorn_transport import UVICORN_VERSION, check_cycle, chunk_writer
from tests.asgi_server import serving
from tests.backend import ROOT

TIMEOUT = 10.0


async def start_chunked(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})


async def end_body(send: Any) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_the_installed_uvicorn_is_the_one_the_adapter_was_written_against() -> None:
    pinned = re.search(r"^uvicorn==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned, "uvicorn is no longer pinned in requirements.txt"
    assert uvicorn.__version__ == pinned.group(1) == UVICORN_VERSION, (
        f"uvicorn {uvicorn.__version__} is installed, requirements.txt pins "
        f"{pinned.group(1)}, app/api/uvicorn_transport.py was written against "
        f"{UVICORN_VERSION}: check the module (and app/serve_protocol.py) against the new "
        "release, then update UVICORN_VERSION"
    )


async def test_uvicorns_own_send_gets_the_direct_writer_and_its_chunks_arrive_whole() -> None:
    found: list[object] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start_chunked(send)
        write = chunk_writer(send)
        found.append(write)
        if write is not None:
            for part in (b"data: one\n\n", b"data: two\n\n", b"data: one\n\n"):
                assert write(part) is None  # handed to the transport, nothing to wait for
        await end_body(send)

    async with serving(app) as url, httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.get(url)
    assert found and found[0] is not None, (
        f"uvicorn {uvicorn.__version__}'s send was not recognised: the stream writer would "
        "fall back to the slower ASGI send (see app/api/uvicorn_transport.py)"
    )
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == b"data: one\n\ndata: two\n\ndata: one\n\n"


async def test_a_send_wrapped_by_middleware_keeps_the_asgi_send() -> None:
    found: list[object] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def wrapped(message: Any) -> None:
            await send(message)

        await start_chunked(wrapped)
        found.append(chunk_writer(wrapped))
        await end_body(wrapped)

    async with serving(app) as url, httpx.AsyncClient(timeout=TIMEOUT) as http:
        assert (await http.get(url)).status_code == 200
    assert found == [None]


async def test_a_peer_that_stops_reading_makes_the_writer_wait_until_it_reads_again() -> None:
    paused = asyncio.Event()
    chunk = b"x" * 256 * 1024

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start_chunked(send)
        write = chunk_writer(send)
        assert write is not None
        for _ in range(512):  # 128 MB: far past what the socket buffers hold
            waiting = write(chunk)
            if waiting is not None:
                paused.set()
                await waiting  # returns once the peer has read enough
                break
        await end_body(send)

    async with serving(app) as url:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        try:
            async with asyncio.timeout(TIMEOUT):
                await paused.wait()  # we have read nothing yet
                received = bytearray()
                while not received.endswith(b"\r\n0\r\n\r\n"):
                    received += await reader.read(1024 * 1024)
        finally:
            writer.close()
            await writer.wait_closed()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    frames = body.split(b"\r\n")
    sizes = {int(size, 16) for size in frames[0:-3:2]}
    assert sizes == {len(chunk)}  # every frame whole, none torn by the wait


async def test_a_uvicorn_without_what_the_adapter_reads_is_refused_by_name() -> None:
    cycles: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start_chunked(send)
        cycles.append(send.__self__)
        await end_body(send)

    async with serving(app) as url, httpx.AsyncClient(timeout=TIMEOUT) as http:
        await http.get(url)
    check_cycle(cycles[0])  # the real one passes
    reshaped = types.SimpleNamespace(**vars(cycles[0]))
    del reshaped.flow
    reshaped.disconnected = None
    with pytest.raises(RuntimeError) as refused:
        check_cycle(reshaped)
    message = str(refused.value)
    assert f"uvicorn {uvicorn.__version__} is installed" in message
    assert f"written against uvicorn {UVICORN_VERSION}" in message
    assert "RequestResponseCycle.flow.write_paused" in message
    assert "RequestResponseCycle.disconnected" in message
