"""The app's log lines: a stable vocabulary of events, as JSON lines or as text.

Call sites name an event and its fields (`log_event(logger, "stream.connect", user=2, ...)`);
the formatter chosen by LOG_FORMAT writes them. docs/OPERATIONS.md lists every event and
field: operators grep and alert on them, so a key is renamed only on purpose.

Deliberate choices, so that nobody "fixes" them:
- The standard library's `logging`, no structlog: the fields ride on the record
  (`extra=`), so third-party handlers and pytest's caplog still see ordinary records.
- Only the `app` logger tree is configured. Reflex, uvicorn and granian keep their own
  output; their lines are not part of the vocabulary.
- A line that is not one of ours (a warning, a traceback) still comes out as one JSON
  object: `event` is `log` and the text is under `message`.
- Fields are whatever the call site passes, nothing is scraped from the record's
  arguments: no token, password, message body or notification body ever reaches a field
  unless a call site names it, and none does (tests/test_log_redaction.py).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

APP_LOGGER = "app"
# The record attribute that carries an event's fields.
_FIELDS = "event_fields"
# An ordinary record (no event of the vocabulary) is this event.
PLAIN_EVENT = "log"


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `event` with its fields, if `level` is enabled (nothing is built otherwise)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={_FIELDS: fields})


def field_value(value: Any) -> Any:
    """A field as JSON shows it: sets sorted into lists, ids and enums as strings."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, frozenset | set):
        return sorted(str(item) for item in value)
    if isinstance(value, list | tuple):
        return [field_value(item) for item in value]
    return str(value)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_and_fields(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    fields = getattr(record, _FIELDS, None)
    if fields is None:
        return PLAIN_EVENT, {"message": record.getMessage()}
    return str(record.msg), {key: field_value(value) for key, value in fields.items()}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts`, `level`, `logger`, `event`, `pid`, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = _event_and_fields(record)
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "event": event,
            # Client ids ("c12") are numbered per process: with several workers or
            # machines a connection is (host, pid, client).
            "pid": record.process,
        }
        line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`2026-12-04T02:31:52.123Z INFO app.realtime.manager[812] stream.connect user=2 ...`"""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = _event_and_fields(record)
        head = f"{_timestamp(record)} {record.levelname} {record.name}[{record.process}]"
        if event == PLAIN_EVENT:
            text = f"{head}: {fields['message']}"
        else:
            text = " ".join([head, event, *(_pair(key, value) for key, value in fields.items())])
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _pair(key: str, value: Any) -> str:
    if isinstance(value, list):
        value = ",".join(str(item) for item in value)
    shown = "-" if value is None else str(value)
    # Quoted only when a space or a quote would make the line ambiguous.
    if not shown or any(char in shown for char in ' "='):
        shown = json.dumps(shown, ensure_ascii=False)
    return f"{key}={shown}"


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


def configure(log_format: str, level: str, stream: TextIO | None = None) -> None:
    """The app's loggers write `log_format` lines at `level` and up to `stream` (stderr).

    Idempotent: a second call (a Reflex hot reload, a test) replaces our handler instead
    of adding one, so no line is written twice."""
    logger = logging.getLogger(APP_LOGGER)
    for handler in [h for h in logger.handlers if getattr(h, "_app_logs", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(FORMATTERS[log_format]())
    handler._app_logs = True  # type: ignore[attr-defined]  # marks the handler as ours
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON lines of the vocabulary in a log that may hold other lines too (a server's
    output mixes ours with Reflex's and uvicorn's): what the recipe in docs/OPERATIONS.md
    reads."""
    found = []
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            entry = json.loads(text)
        except ValueError:
            continue
        if isinstance(entry, dict) and "event" in entry and "ts" in entry:
            found.append(entry)
    return found
