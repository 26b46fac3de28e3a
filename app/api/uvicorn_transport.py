"""The stream writer's shortcut past uvicorn's ASGI send: every private uvicorn access of the
stream path, in one place, checked before use.

Under uvicorn with httptools (scripts/serve), a body chunk sent through ASGI costs a message
dict, a coroutine and the server's checks and framing in Python, for every stream and every
event: 1-2 us a write against 0.1-0.3 us for writing the same chunked-encoding frame to the
transport directly (in-process, without the system call, December 2026), and at
N = 5,000 streams and 20,000 events/s 58 % against 41 % CPU (docs/performance.md). uvicorn
offers no public interface for it, so this reads its `RequestResponseCycle` (the object
whose bound method `send` is) and honours its flow control:

- `transport` (asyncio.Transport): written to, and `is_closing()` asked;
- `flow` (FlowControl): `write_paused` read, `drain()` awaited past the high-water mark;
- `chunked_encoding`, `response_complete`, `disconnected` (bool): the response's state.

The first uvicorn send seen is checked for all of these (names and types); a uvicorn that
lacks one raises a RuntimeError naming its version and what is missing, instead of writing
wrong bytes. uvicorn is pinned in requirements.txt to UVICORN_VERSION, and
tests/test_uvicorn_transport.py fails on any other version. Any other server, or a send
wrapped by middleware, keeps the ASGI send (None from `chunk_writer`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Send

# The uvicorn release this module (and app/serve_protocol.py) was checked against.
UVICORN_VERSION = "0.54.0"

ChunkWrite = Callable[[bytes], Awaitable[None] | None]

_CYCLE_CLASS = ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle")
_BOOLEANS = ("response_complete", "disconnected")

_checked = False


def chunk_writer(send: Send) -> ChunkWrite | None:
    """A writer of one body chunk per call straight to uvicorn's transport, or None when
    `send` is not uvicorn's own or the response is not chunked. Call it once the response
    has started. Raises RuntimeError on a uvicorn this module does not fit."""
    cycle: Any = getattr(send, "__self__", None)
    kind = type(cycle)
    if (kind.__module__, kind.__name__) != _CYCLE_CLASS:
        return None
    global _checked
    if not _checked:
        check_cycle(cycle)
        _checked = True
    if not cycle.chunked_encoding or cycle.response_complete:
        return None
    transport, flow = cycle.transport, cycle.flow

    def write(body: bytes) -> Awaitable[None] | None:
        if cycle.disconnected or transport.is_closing():
            raise ConnectionResetError("the peer went away")
        last_body, frame = _last_framed
        transport.write(frame if body is last_body else _framed(body))
        # Past the transport's high-water mark: the writer waits for it in a side task.
        return flow.drain() if flow.write_paused else None

    return write


def check_cycle(cycle: object) -> None:
    """Raise RuntimeError unless `cycle` (a started response's RequestResponseCycle) has
    every attribute `chunk_writer` uses, with the types it expects."""
    missing = [f"RequestResponseCycle.{name}" for name in _cycle_problems(cycle)]
    if missing:
        import uvicorn

        raise RuntimeError(
            f"app/api/uvicorn_transport.py was written against uvicorn {UVICORN_VERSION}; "
            f"uvicorn {uvicorn.__version__} is installed and lacks what it uses: "
            f"{', '.join(missing)}. Check the module against that release (or install "
            f"uvicorn=={UVICORN_VERSION})."
        )


def _cycle_problems(cycle: object) -> list[str]:
    problems = []
    transport = getattr(cycle, "transport", None)
    if not all(callable(getattr(transport, name, None)) for name in ("write", "is_closing")):
        problems.append("transport (an asyncio transport: write, is_closing)")
    flow = getattr(cycle, "flow", None)
    if not isinstance(getattr(flow, "write_paused", None), bool):
        problems.append("flow.write_paused (a bool)")
    if not inspect.iscoroutinefunction(getattr(flow, "drain", None)):
        problems.append("flow.drain (a coroutine function)")
    if not hasattr(cycle, "chunked_encoding") or not isinstance(
        cycle.chunked_encoding, bool | None
    ):
        problems.append("chunked_encoding (a bool, or None for a bodiless response)")
    problems += [f"{name} (a bool)" for name in _BOOLEANS if not _is_bool(cycle, name)]
    return problems


def _is_bool(cycle: object, name: str) -> bool:
    return isinstance(getattr(cycle, name, None), bool)


_last_framed: tuple[bytes, bytes] = (b"", b"0\r\n\r\n")


def _framed(body: bytes) -> bytes:
    """`body` as one chunk, remembered: a pass of the writer sends the same bytes object
    (one event's encoding) to every stream in turn, so it is framed once, not per stream."""
    global _last_framed
    frame = b"%x\r\n%b\r\n" % (len(body), body)
    _last_framed = (body, frame)
    return frame
