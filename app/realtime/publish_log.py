"""The `event.publish` log line: once per event, when the broker has given it its id.

The id is what an operator looks for (docs/OPERATIONS.md's recipe), so the line waits for
it: the manager writes it when the broker answers with the id, the Redis broker when it
sends an event that waited in its outbox (the manager then wrote `event.queued`).
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
