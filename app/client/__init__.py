"""A standalone async Python client for the chat's event stream (`GET /api/sse`).

Depends on httpx and httpx-sse only, never on the rest of `app`: an integrator can copy this
folder into their own project. See README.md, "Consuming the stream", and `python -m
app.client tail --help`.
"""

from .auth import sign_in, token_from_password
from .backoff import Backoff
from .client import RealtimeClient
from .errors import AuthenticationError, RealtimeError, StreamRejected
from .events import ClientEvent, ClientStatus
from .latency import LatencyStats

__all__ = [
    "AuthenticationError",
    "Backoff",
    "ClientEvent",
    "ClientStatus",
    "LatencyStats",
    "RealtimeClient",
    "RealtimeError",
    "StreamRejected",
    "sign_in",
    "token_from_password",
]
