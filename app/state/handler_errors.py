"""What happens when a websocket event handler raises, and when a page reports an error.

No `from __future__ import annotations` here: rx.App checks these functions' annotations
by evaluating them in reflex/app.py's namespace, where our names do not exist.
"""

import logging
import traceback

from reflex_base.event import EventSpec

from app.domain.errors import DomainError
from app.state import replies

logger = logging.getLogger(__name__)

# A page's error report is client text: logged short, on one line.
_REPORT_CHARS = 2_000


def backend_exception_handler(exception: Exception) -> EventSpec:
    """A use case's refusal is the user's answer, as a 4xx is on the REST side: a readable
    toast and a warning line. Anything else is a bug of ours: ERROR with its traceback, as
    Reflex's default handler logs it, and a message that does not pretend to explain it."""
    if isinstance(exception, DomainError):
        logger.warning("an event handler was refused: %s (%s)", exception.code, exception.message)
        return replies.refused(exception.message)
    logger.error(
        "an event handler failed:\n%s",
        "".join(traceback.format_exception(type(exception), exception, exception.__traceback__)),
    )
    return replies.unexpected()


def frontend_exception_handler(exception: Exception) -> None:
    """Any websocket client can send one of these (FrontendEventExceptionState or the
    `client_error` socket event), with any text: Reflex's default logs it at ERROR, so a
    client could write error lines, or a fake traceback, into our log. A warning, bounded."""
    report = str(exception)[:_REPORT_CHARS]
    logger.warning("a page reported an error: %s", ascii(report))
