import reflex as rx

from app.settings import get_settings

config = rx.Config(
    app_name="app",
    telemetry_enabled=False,
    db_url=get_settings().database_url,
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="indigo"))],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
