import os
from typing import Any

import reflex as rx

from app.settings import get_settings

# One process and no Redis: page state in memory. The disk store pickled every tab's state
# after each event and purged expired ones on the event loop (about 14 % of the backend's
# CPU with 300 tabs open, docs/performance.md). With REFLEX_REDIS_URL Reflex keeps it in
# Redis and can run several workers; REFLEX_STATE_MANAGER_MODE=disk keeps the disk store.
_state_manager: dict[str, Any] = (
    {}
    if os.environ.get("REFLEX_REDIS_URL")
    else {"state_manager_mode": rx.constants.StateManagerMode.MEMORY}
)

config = rx.Config(
    app_name="app",
    telemetry_enabled=False,
    db_url=get_settings().database_url,
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="indigo"))],
    disable_plugins=[rx.plugins.SitemapPlugin],
    **_state_manager,
)
