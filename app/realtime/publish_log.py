"""The `event.publish` log line: once per event, when the broker has given it its id.

The id is what an operator looks for (docs/OPERATIONS.md's recipe), so the line waits for
it: the manager writes it when the broker answers with the id; the Redis broker writes it
when it sends an event that waited in its outbox (it wrote `event.queued` then), and for a
message it publishes early to keep a conversation's order (it then skips the late copy,
`event.duplicate`).
"""

from __future__ import annotations

import logging

from app.logs import log_event
from app.realtime.events import Event

logger = logging.getLogger(__name__)


def log_published(event: Event) -> None:
    log_event(
        logger,
        "event.publish",
        eventId=event.id,
        type=event.type,
        channels=event.channels,
        tenant=event.tenant_id,
    )


def log_queued(event: Event) -> None:
    """Redis is unreachable: the event waits in the outbox, without an id yet."""
    log_event(
        logger,
        "event.queued",
        logging.WARNING,
        type=event.type,
        channels=event.channels,
        tenant=event.tenant_id,
    )


def log_duplicate(event: Event) -> None:
    """A message's event not published: it went out already (a gap's refill, or a retry)."""
    order = event.order
    log_event(
        logger,
        "event.duplicate",
        type=event.type,
        tenant=event.tenant_id,
        conversation=None if order is None else order.conversation_id,
        message=None if order is None else order.message_id,
    )
