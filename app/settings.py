"""Every tunable of the app, read once from the environment.

Operators, benchmarks and scripts rely on these names (DESIGN.md section 4); add new
tunables here rather than reading `os.environ` anywhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be a number, got {raw!r}") from exc


_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise ValueError(f"setting {name} must be true or false, got {raw!r}")


def _env_bool_or_auto(name: str) -> bool | None:
    """True or false when the setting says so; None ("auto", or unset) leaves it to each
    request."""
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    return None


def _env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list; empty items are ignored."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return tuple(item.strip().rstrip("/") for item in raw.split(",") if item.strip())


def _default_database_url() -> str:
    # A hidden folder: Reflex's dev reloader ignores it (it would restart on every WAL write).
    return f"sqlite:///{PROJECT_ROOT / '.data' / 'chat.db'}"


@dataclass(frozen=True)
class Settings:
    # Storage and brokers
    database_url: str = field(default_factory=_default_database_url)
    redis_url: str = ""
    # "dev" opens diagnostics to every signed-in user; anything else keeps them admin-only.
    app_env: str = "production"
    seed_demo_data: bool = True

    # The stream
    sse_heartbeat_seconds: float = 30.0
    sse_retry_ms: int = 3000
    sse_max_streams_per_user: int = 10
    # Open chat tabs (Reflex websockets listening for events) per user in one process.
    max_tabs_per_user: int = 20
    sse_client_queue_size: int = 1000
    # A stream whose body write has not completed for this long is cut off like a slow
    # consumer (0: never). The HTTP server and the kernel buffer tens of kilobytes to
    # megabytes per stream, so a write stalls only once a peer that stopped reading (or
    # vanished without a FIN) has let them fill.
    sse_write_timeout_seconds: float = 60.0
    # When events follow each other (the stream writer wrote less than 5 delays ago), it
    # waits this long for more before writing: at high rates several events then share one
    # write per stream (cheaper), at the cost of up to this much latency. An event after a
    # quiet spell is written at once.
    sse_flush_delay_ms: float = 10.0
    sse_replay_buffer_size: int = 1000
    sse_replay_max_age_seconds: float = 300.0
    # With Redis: events kept per tenant for replay (a Stream capped with MAXLEN ~).
    redis_log_max_events: int = 100_000

    # Authentication
    token_ttl_seconds: int = 12 * 3600
    # How long a process trusts a token it checked (a revocation by another process takes
    # effect within this; 0 checks the database on every request).
    auth_cache_seconds: float = 2.0
    rate_limit_enabled: bool = True
    login_max_failures: int = 5
    login_max_failures_per_address: int = 20
    login_failure_window_seconds: float = 300.0
    # None ("auto"): the session cookie gets `Secure` when the request came over HTTPS
    # (directly or per X-Forwarded-Proto); True/False force it.
    session_cookie_secure: bool | None = None
    # Unrevoked tokens per user: a new sign-in past this revokes the oldest.
    max_tokens_per_user: int = 20
    # Threads that hash passwords (argon2 takes tens of milliseconds of CPU each), and how
    # many sign-ins may wait for one before the next gets 503: sign-in floods must not
    # starve every other request.
    password_hash_workers: int = 1
    password_hash_queue: int = 16

    # Browser origins besides the app's own that may call the API and open the stream with
    # credentials (CORS), and whose cookie-authenticated requests are trusted. Empty: only
    # the app's own frontend (closed by default). "*" opens it to every origin.
    cors_allowed_origins: tuple[str, ...] = ()
    # Bearer secret for GET /metrics. Empty: only loopback callers may read it.
    metrics_token: str = ""

    # Chat
    message_max_chars: int = 4000
    conversation_title_max_chars: int = 200
    group_max_participants: int = 500
    # A typist's client repeats "typing" at most this often; the server drops closer repeats.
    typing_throttle_seconds: float = 3.0
    # With no word from a typist for this long, the server announces the stop itself.
    typing_expiry_seconds: float = 8.0
    # No client for this long before a user turns offline (a reload must not flap).
    presence_grace_seconds: float = 5.0
    # No activity for this long turns an online user away.
    presence_idle_seconds: float = 300.0
    # A 1:1 message its recipient has not read this long after it was sent notifies them.
    dm_notify_after_seconds: float = 5.0
    rate_limit_messages_per_minute: int = 60
    rate_limit_messages_burst: int = 20
    rate_limit_typing_per_minute: int = 60
    rate_limit_typing_burst: int = 10
    # Searches per user (each is a full-text query of the database).
    rate_limit_searches_per_minute: int = 60
    rate_limit_searches_burst: int = 10

    # Input limits
    max_body_bytes: int = 64 * 1024
    # scripts/serve: a request whose header block is larger is refused (431), and a
    # connection that has not sent its headers within the timeout is closed.
    max_header_bytes: int = 32 * 1024
    header_read_timeout_seconds: float = 10.0
    max_password_chars: int = 256
    notification_title_max_chars: int = 200
    notification_body_max_chars: int = 4000
    notification_link_max_chars: int = 2000

    @property
    def dev_mode(self) -> bool:
        return self.app_env.lower() in {"dev", "development"}

    @classmethod
    def from_env(cls) -> Settings:
        defaults = cls()
        return cls(
            database_url=_env_str("DATABASE_URL", defaults.database_url),
            redis_url=_env_str("REDIS_URL", defaults.redis_url),
            app_env=_env_str("APP_ENV", defaults.app_env),
            seed_demo_data=_env_bool("SEED_DEMO_DATA", defaults.seed_demo_data),
            sse_heartbeat_seconds=_env_float(
                "SSE_HEARTBEAT_SECONDS", defaults.sse_heartbeat_seconds
            ),
            sse_retry_ms=_env_int("SSE_RETRY_MS", defaults.sse_retry_ms),
            sse_max_streams_per_user=_env_int(
                "SSE_MAX_STREAMS_PER_USER", defaults.sse_max_streams_per_user
            ),
            max_tabs_per_user=_env_int("MAX_TABS_PER_USER", defaults.max_tabs_per_user),
            sse_client_queue_size=_env_int("SSE_CLIENT_QUEUE_SIZE", defaults.sse_client_queue_size),
            sse_write_timeout_seconds=_env_float(
                "SSE_WRITE_TIMEOUT_SECONDS", defaults.sse_write_timeout_seconds
            ),
            sse_flush_delay_ms=_env_float("SSE_FLUSH_DELAY_MS", defaults.sse_flush_delay_ms),
            sse_replay_buffer_size=_env_int(
                "SSE_REPLAY_BUFFER_SIZE", defaults.sse_replay_buffer_size
            ),
            sse_replay_max_age_seconds=_env_float(
                "SSE_REPLAY_MAX_AGE_SECONDS", defaults.sse_replay_max_age_seconds
            ),
            redis_log_max_events=_env_int("REDIS_LOG_MAX_EVENTS", defaults.redis_log_max_events),
            token_ttl_seconds=_env_int("TOKEN_TTL_SECONDS", defaults.token_ttl_seconds),
            auth_cache_seconds=_env_float("AUTH_CACHE_SECONDS", defaults.auth_cache_seconds),
            rate_limit_enabled=_env_bool("RATE_LIMIT_ENABLED", defaults.rate_limit_enabled),
            login_max_failures=_env_int("LOGIN_MAX_FAILURES", defaults.login_max_failures),
            login_max_failures_per_address=_env_int(
                "LOGIN_MAX_FAILURES_PER_ADDRESS", defaults.login_max_failures_per_address
            ),
            login_failure_window_seconds=_env_float(
                "LOGIN_FAILURE_WINDOW_SECONDS", defaults.login_failure_window_seconds
            ),
            session_cookie_secure=_env_bool_or_auto("SESSION_COOKIE_SECURE"),
            max_tokens_per_user=_env_int("MAX_TOKENS_PER_USER", defaults.max_tokens_per_user),
            password_hash_workers=_env_int("PASSWORD_HASH_WORKERS", defaults.password_hash_workers),
            password_hash_queue=_env_int("PASSWORD_HASH_QUEUE", defaults.password_hash_queue),
            cors_allowed_origins=_env_list("CORS_ALLOWED_ORIGINS", defaults.cors_allowed_origins),
            metrics_token=_env_str("METRICS_TOKEN", defaults.metrics_token),
            max_body_bytes=_env_int("MAX_BODY_BYTES", defaults.max_body_bytes),
            max_header_bytes=_env_int("MAX_HEADER_BYTES", defaults.max_header_bytes),
            header_read_timeout_seconds=_env_float(
                "HEADER_READ_TIMEOUT_SECONDS", defaults.header_read_timeout_seconds
            ),
            message_max_chars=_env_int("MESSAGE_MAX_CHARS", defaults.message_max_chars),
            group_max_participants=_env_int(
                "GROUP_MAX_PARTICIPANTS", defaults.group_max_participants
            ),
            typing_throttle_seconds=_env_float(
                "TYPING_THROTTLE_SECONDS", defaults.typing_throttle_seconds
            ),
            typing_expiry_seconds=_env_float(
                "TYPING_EXPIRY_SECONDS", defaults.typing_expiry_seconds
            ),
            presence_grace_seconds=_env_float(
                "PRESENCE_GRACE_SECONDS", defaults.presence_grace_seconds
            ),
            presence_idle_seconds=_env_float(
                "PRESENCE_IDLE_SECONDS", defaults.presence_idle_seconds
            ),
            dm_notify_after_seconds=_env_float(
                "DM_NOTIFY_AFTER_SECONDS", defaults.dm_notify_after_seconds
            ),
            rate_limit_messages_per_minute=_env_int(
                "RATE_LIMIT_MESSAGES_PER_MINUTE", defaults.rate_limit_messages_per_minute
            ),
            rate_limit_messages_burst=_env_int(
                "RATE_LIMIT_MESSAGES_BURST", defaults.rate_limit_messages_burst
            ),
            rate_limit_typing_per_minute=_env_int(
                "RATE_LIMIT_TYPING_PER_MINUTE", defaults.rate_limit_typing_per_minute
            ),
            rate_limit_typing_burst=_env_int(
                "RATE_LIMIT_TYPING_BURST", defaults.rate_limit_typing_burst
            ),
            rate_limit_searches_per_minute=_env_int(
                "RATE_LIMIT_SEARCHES_PER_MINUTE", defaults.rate_limit_searches_per_minute
            ),
            rate_limit_searches_burst=_env_int(
                "RATE_LIMIT_SEARCHES_BURST", defaults.rate_limit_searches_burst
            ),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
