"""What the client raises. Everything derives from RealtimeError, so one `except` catches all."""

from __future__ import annotations


class RealtimeError(Exception):
    """Base class of every error this client raises on purpose."""


class AuthenticationError(RealtimeError):
    """The server refused the credentials or token, and no fresh token could be had."""


class StreamRejected(RealtimeError):
    """The server refused the stream for a reason that retrying cannot fix (400, 403, 404...)."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
