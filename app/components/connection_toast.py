"""The toast a person sees while the page is offline, in place of Reflex's own.

Reflex's toaster says "Cannot connect to server: timeout. Check if server is reachable at
ws://...:8000/_event": words for a developer. This one says what happened and what the page
does about it; the header's badge says "offline: reconnecting…" meanwhile.
"""

from __future__ import annotations

import json

from reflex.components.component import Component
from reflex_base.components.memo import memo
from reflex_base.constants import Hooks
from reflex_base.vars import VarData
from reflex_base.vars.base import Var
from reflex_components_core.base.fragment import Fragment
from reflex_components_core.core.banner import (
    connect_error_var_data,
    connection_pulser,
    has_too_many_connection_errors,
)
from reflex_components_sonner.toast import toast_ref

TOAST_ID = "websocket-error"
OFFLINE_TITLE = "You are offline"
OFFLINE_TEXT = (
    "Chat lost its connection and keeps trying to reconnect. "
    "New messages will appear as soon as it is back."
)


class OfflineToast(Fragment):
    def add_hooks(self) -> list[str | Var]:
        toast_id = json.dumps(TOAST_ID)
        show = (
            f"toast?.error({json.dumps(OFFLINE_TITLE)}, {{id: {toast_id},"
            f" description: {json.dumps(OFFLINE_TEXT)}, closeButton: true, duration: Infinity}})"
        )
        return [
            Hooks.CONNECT_ERRORS,
            Var(f"const toast = {toast_ref};"),
            Var(
                "useEffect(() => {"
                f" if ({has_too_many_connection_errors!s}) {{ {show}; }}"
                f" else {{ toast?.dismiss({toast_id}); }}"
                " }, [connectErrors]);",
                _var_data=VarData.merge(
                    connect_error_var_data, VarData(imports={"react": ["useEffect"]})
                ),
            ),
        ]


def offline_overlay(stateful: bool) -> Component | None:
    """Replaces Reflex's overlay (app wrap "Overlay"): the pulser, and our toast."""
    if not stateful:
        return None
    # Memoised as Reflex's own is: its hooks run in a component of its own, inside the
    # event loop's context, not in the app's root.
    return Fragment.create(memo(_offline_overlay)())


def _offline_overlay() -> Component:
    return Fragment.create(connection_pulser(), OfflineToast.create())
