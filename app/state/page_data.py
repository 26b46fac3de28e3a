"""What a tab's store starts from: its snapshot and the history pages it asks for.

Built from the same use cases as the REST API, as the rows the pages render
(app/state/items.py, as plain dicts: the shape Reflex gives a dataclass var). The page's
store (assets/live_store.js) applies the live events on top, by the same rules.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from app.domain.messages import HistoryPage
from app.domain.principal import Principal
from app.runtime import Runtime
from app.state.items import conversation_item, message_item, notification_item, person_item

HISTORY_PAGE = 30
NOTIFICATIONS_SHOWN = 20
_PRESENCE_ORDER = {"online": 0, "away": 1, "offline": 2}


async def snapshot(runtime: Runtime, principal: Principal) -> dict[str, Any]:
    """The tab's live data as it is now: conversations, people, notifications."""
    me = principal.user_id
    views, total = await runtime.conversations.list_for(principal)
    people = await runtime.presence.snapshot(principal.tenant_id)
    notifications = await runtime.notifications.list_for(
        principal, limit=NOTIFICATIONS_SHOWN, before=None
    )
    rows = [person_item(p.to_data()) for p in people]
    rows.sort(key=lambda p: (_PRESENCE_ORDER.get(p.status, 3), p.name.lower()))
    return {
        "me": me,
        "conversations": [dataclasses.asdict(conversation_item(v, me)) for v in views],
        "totalUnread": total,
        "people": [dataclasses.asdict(p) for p in rows],
        "notifications": [
            dataclasses.asdict(notification_item(n.to_data(), read=n.id in notifications.read_ids))
            for n in notifications.items
        ],
        "notificationsUnread": notifications.unread_count,
        # Server-owned timings and sizes, sent rather than repeated in the page.
        "notificationsShown": NOTIFICATIONS_SHOWN,
        "typingForgetSeconds": runtime.settings.typing_forget_seconds,
    }


def history(
    conversation_id: int, page: HistoryPage, me: int, *, older: bool = False, focus: int = 0
) -> dict[str, Any]:
    """A page of the conversation's messages, oldest first: the newest page (`older`
    False: the store shows it, with what arrived live meanwhile) or the page before the
    oldest shown (`older` True: the store puts it in front). `focus`: a message the view
    scrolls to (paging back to it if need be), from a search result or a link."""
    return {
        "focus": focus,
        "conversationId": conversation_id,
        "messages": [
            dataclasses.asdict(message_item(m.to_data(), me)) for m in reversed(page.items)
        ],
        "hasOlder": page.has_more,
        "older": older,
    }
