"""Who wants which event: the registry behind `subscribe()` and `on_status()`."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Handler = Callable[[T], Awaitable[None] | None]
Unsubscribe = Callable[[], None]

logger = logging.getLogger("app.client")

ALL = "*"


class HandlerRegistry(Generic[T]):
    """Handlers by key; `ALL` receives everything. A handler may be sync or async.

    A failing handler is logged and skipped: one bad handler must not stop a bot's stream
    or starve the handlers after it."""

    def __init__(self) -> None:
        self._entries: list[tuple[str, Handler[T]]] = []

    def add(self, key: str, handler: Handler[T]) -> Unsubscribe:
        entry = (key, handler)
        self._entries.append(entry)

        def unsubscribe() -> None:
            # By identity: the same handler subscribed twice is two subscriptions.
            for index, existing in enumerate(self._entries):
                if existing is entry:
                    del self._entries[index]
                    return

        return unsubscribe

    def __len__(self) -> int:
        return len(self._entries)

    async def dispatch(self, key: str, item: T) -> None:
        # A snapshot: a handler may unsubscribe itself or others while we go through them.
        for entry_key, handler in list(self._entries):
            if entry_key != key and entry_key != ALL:
                continue
            try:
                result: Any = handler(item)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("handler %r for %r failed", handler, key)
