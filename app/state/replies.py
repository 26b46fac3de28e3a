"""What a tab is told when it asked for something it cannot have: short, readable, the same
wherever it comes from (the socket gate, a handler, the backend exception handler)."""

from __future__ import annotations

import reflex as rx
from reflex_base.event import EventSpec

SIGNED_OUT = "Your session has ended. Sign in again."
# Only for a genuine bug: the details are in the server log, not on the page.
UNEXPECTED = "Something went wrong on our side. Try again, or reload the page."


def cannot_do(reason: str) -> EventSpec:
    """An argument or an event the server refused before anything ran."""
    return rx.toast.error(f"That did not work: {reason}", id="refused")


def refused(message: str) -> EventSpec:
    """A use case said no (DomainError.message: written for the user already)."""
    return rx.toast.error(message)


def signed_out() -> EventSpec:
    return rx.toast.warning(SIGNED_OUT, id="signed-out")


def unexpected() -> EventSpec:
    return rx.toast.error(UNEXPECTED, id="unexpected")
