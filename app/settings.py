"""Every tunable of the app: declared once here, read once from the environment.

Each field of `Settings` is one environment variable named after it in capitals
(`sse_heartbeat_seconds` is SSE_HEARTBEAT_SECONDS), with its default, its bounds, and the
description that README.md's settings table shows: `python -m app.settings --markdown`
prints that table, and tests/test_settings.py checks the README against it. Add new
tunables here rather than reading `os.environ` anywhere else (DESIGN.md section 4).

Deliberate choices, so that nobody "fixes" them:
- `Settings` is a frozen pydantic *dataclass*, not a `BaseSettings`: code and tests build
  variants with `dataclasses.replace` (validated like the environment is), and `Settings()`
  is the defaults whatever the environment says. Only `Settings.from_env()` reads the
  environment, through a pydantic-settings model made from these same fields.
- A blank value (empty, or spaces) of a number, a boolean or a list counts as unset, as it
  always has. Strings are taken as given.
- Booleans take 1/true/yes/on and 0/false/no/off, any case; pydantic's t/f/y/n are refused.
- `get_settings()` ends the process with one line per bad variable instead of raising: the
  first call happens while Reflex or uvicorn imports the app, and a traceback from there
  buries the one line that matters.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import sys
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import BeforeValidator, Field, ValidationError, create_model
from pydantic.dataclasses import dataclass, is_pydantic_dataclass
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# uvicorn's exit status for "failed before serving": its supervisor then stops instead of
# restarting workers (WORKERS > 1) that would fail the same way forever.
STARTUP_FAILURE = 3

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_BOOLEAN_WORDS = "true or false (1/0, yes/no, on/off)"


def _boolean(value: object) -> object:
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError(f"must be {_BOOLEAN_WORDS}, got {_shown_input(value)}")


def _boolean_or_auto(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        return _boolean(value)
    except ValueError:
        raise ValueError(f"must be auto, {_BOOLEAN_WORDS}, got {_shown_input(value)}") from None


def _origins(value: object) -> object:
    """A comma-separated list of origins (or `*`); empty items are ignored."""
    if not isinstance(value, str):
        return value
    items = tuple(item.strip().rstrip("/") for item in value.split(",") if item.strip())
    for item in items:
        parts = urlsplit(item)
        # A bare host never equals a browser's Origin header: it would trust nobody, silently.
        if item != "*" and not (parts.scheme and parts.netloc):
            raise ValueError(
                "must be comma-separated origins (scheme://host[:port]) or *, "
                f"got {_shown_input(item)}"
            )
    return items


SENTINEL_SCHEME = "redis+sentinel"


@dataclasses.dataclass(frozen=True)
class SentinelTarget:
    """Where `REDIS_URL=redis+sentinel://...` says the primary is to be found."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def sentinel_target(url: str) -> SentinelTarget | None:
    """`redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`, parsed; None
    for any other URL. redis-py has no parser for it: its `Sentinel` takes a list of
    addresses and a service name, which one URL carries here so that Redis is named once.
    The credentials are the data nodes'; the sentinels are asked without any."""
    scheme, found, rest = url.partition("://")
    if not found or scheme.lower() != SENTINEL_SCHEME:
        return None
    authority, _, path = rest.partition("/")
    credentials, _, hosts = authority.rpartition("@")
    sentinels = tuple(_address(item) for item in hosts.split(","))
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise ValueError(f"must name the Sentinel service: {SENTINEL_SCHEME}://host:port/<service>")
    if db and not (db.isascii() and db.isdigit()):
        raise ValueError(f"must end in a database number, got {_shown_input(db)}")
    username, _, password = (unquote(part) for part in credentials.partition(":"))
    return SentinelTarget(
        sentinels=sentinels,
        service=unquote(service),
        db=int(db or 0),
        username=username or None,
        password=password or None,
    )


def _address(item: str) -> tuple[str, int]:
    host, _, port = item.strip().rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"must list the sentinels as host:port, got {_shown_input(item)}")
    return host.strip("[]"), int(port)


def _redis_url(value: object) -> object:
    if isinstance(value, str):
        sentinel_target(value)  # raises on a malformed Sentinel URL
    return value


Flag = Annotated[bool, BeforeValidator(_boolean)]
# None is "auto": each request decides.
FlagOrAuto = Annotated[bool | None, BeforeValidator(_boolean_or_auto)]
# NoDecode: pydantic-settings would otherwise expect JSON for a tuple.
Origins = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_origins)]
RedisUrl = Annotated[str, BeforeValidator(_redis_url)]


def _networks(value: object) -> object:
    """A comma-separated list of IP addresses or CIDR networks; empty items are ignored."""
    if not isinstance(value, str):
        return value
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            # A host name would never equal a peer's address: it would trust nobody, silently.
            raise ValueError(
                f"must be comma-separated IP addresses or networks, got {_shown_input(item)}"
            ) from None
    return items


Networks = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_networks)]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _one_of(words: tuple[str, ...], canonical: Callable[[str], str]) -> Callable[[object], object]:
    """A validator of one of `words`, read in any case (`canonical` writes it as listed)."""
    listed = " or ".join(words) if len(words) == 2 else "one of " + ", ".join(words)

    def validate(value: object) -> object:
        if not isinstance(value, str):
            return value
        word = canonical(value.strip())
        if word not in words:
            raise ValueError(f"must be {listed}, got {_shown_input(value)}")
        return word

    return validate


LogFormat = Annotated[str, BeforeValidator(_one_of(LOG_FORMATS, str.lower))]
LogLevel = Annotated[str, BeforeValidator(_one_of(LOG_LEVELS, str.upper))]


def _default_database_url() -> str:
    # A hidden folder: Reflex's dev reloader ignores it (it would restart on every WAL write).
    return f"sqlite:///{PROJECT_ROOT / '.data' / 'chat.db'}"


@dataclass(frozen=True)
class Settings:
    # Storage and brokers
    database_url: str = Field(
        default_factory=_default_database_url,
        min_length=1,
        description="SQLite (one machine) or PostgreSQL, "
        "`postgresql+psycopg://user:pass@host:5432/chat` (several machines)",
    )
    database_auto_migrate: Flag = Field(
        default=False,
        description="at start, migrate a database whose schema is behind instead of refusing "
        "with the command to run (`scripts/migrate`); one process migrates, the others wait",
    )
    redis_url: RedisUrl = Field(
        default="",
        description="Redis for events, presence and limits across processes; "
        "`redis+sentinel://host:port,host:port/<service>[/db]` follows the primary that "
        "Sentinel names, through failovers",
    )
    redis_log_max_events: int = Field(
        default=100_000, ge=1, description="events kept per tenant in Redis for replay"
    )
    app_env: str = Field(
        default="production", description="`dev` opens diagnostics to every signed-in user"
    )
    seed_demo_data: Flag = Field(
        default=True, description="seed the demo tenants when the database is empty"
    )

    # Logs (app/logs.py; the vocabulary is in docs/OPERATIONS.md)
    log_format: LogFormat = Field(
        default="text",
        description="`json`: one JSON object per line (`ts`, `level`, `logger`, `event` and "
        "its fields), for a log pipeline; `text`: the same fields as `key=value`, for people",
    )
    log_level: LogLevel = Field(
        default="INFO",
        description="the app's least severe log lines kept: `DEBUG`, `INFO` (every connect, "
        "disconnect and publish), `WARNING`, `ERROR` or `CRITICAL`",
    )

    # The stream
    sse_heartbeat_seconds: float = Field(
        default=30.0,
        ge=0,
        description="ping interval; also how often ended sessions are swept",
    )
    sse_retry_ms: int = Field(
        default=3000, ge=0, description="the `retry:` sent at the start of a stream"
    )
    sse_max_streams_per_user: int = Field(
        default=10, ge=1, description="open streams per user before 429"
    )
    # Tabs are Reflex websockets listening for events, counted per process.
    max_tabs_per_user: int = Field(
        default=20,
        ge=1,
        description="open chat tabs per user in one process; the next tab shows "
        '"too many open tabs"',
    )
    sse_client_queue_size: int = Field(
        default=1000, ge=1, description="events queued for one client before it is cut off"
    )
    # Several events then share one write per stream (cheaper), at the cost of up to this
    # much latency.
    sse_flush_delay_ms: float = Field(
        default=10.0,
        ge=0,
        description="when events follow each other (the last write was under 5 delays ago) "
        "the stream writer gathers them this long, so busy streams get several per write; "
        "an event after a quiet spell goes out at once",
    )
    # The HTTP server and the kernel buffer tens of kilobytes to megabytes per stream, so a
    # write stalls only once a peer that stopped reading (or vanished without a FIN) has let
    # them fill.
    sse_write_timeout_seconds: float = Field(
        default=60.0,
        ge=0,
        description="a stream whose write stalls this long (a peer that stopped reading or "
        "vanished) is cut off like a slow consumer; `0`: never",
    )
    sse_replay_buffer_size: int = Field(
        default=1000, ge=1, description="events kept per channel for `Last-Event-ID`"
    )
    sse_replay_max_age_seconds: float = Field(
        default=300.0, ge=0, description="and at most this old"
    )

    # Authentication
    token_ttl_seconds: int = Field(default=12 * 3600, ge=1, description="token lifetime")
    auth_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description="how long a process trusts a token it checked: a revocation by another "
        "process takes effect within this; `0`: the database is asked on every request",
    )
    session_cookie_secure: FlagOrAuto = Field(
        default=None,
        description="`Secure` on the session cookie: `auto` when served over HTTPS "
        "(or `X-Forwarded-Proto: https`)",
    )
    max_tokens_per_user: int = Field(
        default=20,
        ge=1,
        description="unrevoked tokens per user; a sign-in past this revokes the oldest "
        "(401 from then on, its streams close)",
    )
    # Argon2 takes tens of milliseconds of CPU per hash: sign-in floods must not starve
    # every other request.
    password_hash_workers: int = Field(
        default=1,
        ge=1,
        description="threads that hash passwords on sign-in (at a lower CPU priority than "
        "requests)",
    )
    password_hash_queue: int = Field(
        default=16,
        ge=0,
        description="sign-ins that may wait for a hashing thread; past that, 503 "
        "`sign_in_busy` with `Retry-After`",
    )
    max_password_chars: int = Field(
        default=256,
        ge=1,
        description="a longer password is refused at sign-in without being hashed",
    )
    # Closed by default: only the app's own frontend.
    cors_allowed_origins: Origins = Field(
        default=(),
        description="other browser origins trusted with credentials (comma-separated; `*` "
        "for any); the app's own are always trusted",
    )
    metrics_token: str = Field(
        default="",
        description="bearer secret for `GET /metrics`; empty: loopback callers only",
    )
    # One decision for both starts (app/security/proxies.py); scripts/serve turns uvicorn's
    # own header handling off.
    trusted_proxies: Networks = Field(
        default=(),
        description="reverse proxies (comma-separated IPs or CIDRs) whose `X-Forwarded-For` "
        "and `X-Forwarded-Proto` are believed: the client is the rightmost address not in this "
        "list; empty: no forwarded header is believed",
    )

    # Limits per user and address
    rate_limit_enabled: Flag = Field(
        default=True,
        description="sign-in throttling and the per-user limits below (a benchmark may turn "
        "them off)",
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description="failures per username in the window before 429, counted from addresses "
        "the user has not signed in from; each address he has signed in from (in the last 30 "
        "days) has its own budget of this size for him. Attempts still hashing count as "
        "failures",
    )
    login_max_failures_per_address: int = Field(
        default=20, ge=1, description="failures per client address in the window"
    )
    login_failure_window_seconds: float = Field(default=300.0, gt=0, description="the window")
    rate_limit_messages_per_minute: int = Field(
        default=60,
        ge=1,
        description="messages (sends and edits) per user, after a burst of "
        "`RATE_LIMIT_MESSAGES_BURST` (`20`); past it, 429 with `Retry-After` (the page holds "
        "the extra messages and sends them in order)",
    )
    rate_limit_messages_burst: int = Field(
        default=20,
        ge=1,
        description="messages a user may send at once before `RATE_LIMIT_MESSAGES_PER_MINUTE` "
        "applies",
    )
    rate_limit_typing_per_minute: int = Field(
        default=60,
        ge=1,
        description="typing notices per user, after a burst of `RATE_LIMIT_TYPING_BURST` (`10`)",
    )
    rate_limit_typing_burst: int = Field(
        default=10,
        ge=1,
        description="typing notices a user may send at once before "
        "`RATE_LIMIT_TYPING_PER_MINUTE` applies",
    )
    # Each search is a full-text query of the database.
    rate_limit_searches_per_minute: int = Field(
        default=60,
        ge=1,
        description="searches per user, after a burst of `RATE_LIMIT_SEARCHES_BURST` (`10`)",
    )
    rate_limit_searches_burst: int = Field(
        default=10,
        ge=1,
        description="searches a user may make at once before `RATE_LIMIT_SEARCHES_PER_MINUTE` "
        "applies",
    )

    # Chat
    message_max_chars: int = Field(default=4000, ge=1, description="longest message, in characters")
    conversation_title_max_chars: int = Field(
        default=200, ge=1, description="longest conversation title, in characters"
    )
    group_max_participants: int = Field(
        default=500, ge=2, description="people in one conversation, its creator included"
    )
    typing_throttle_seconds: float = Field(
        default=3.0,
        ge=0,
        description="a typist is announced again at most this often; repeats in between "
        "only keep them typing",
    )
    typing_expiry_seconds: float = Field(
        default=8.0,
        gt=0,
        description="with no word from a typist for this long, the server announces that "
        "they stopped",
    )
    # Server-owned like the others: the tab is Reflex state on the server.
    typing_repeat_seconds: float = Field(
        default=2.5,
        ge=0,
        description='a chat tab tells the server "still typing" at most this often',
    )
    # Sent to the page: a safety net for a lost stop, longer than the expiry.
    typing_forget_seconds: float = Field(
        default=10.0,
        gt=0,
        description="a page forgets a typist it has not heard of for this long, whatever "
        "the server says",
    )
    # A reload must not flap the user offline and back.
    presence_grace_seconds: float = Field(
        default=5.0,
        ge=0,
        description="no open stream or tab for this long before a user turns offline",
    )
    presence_idle_seconds: float = Field(
        default=300.0, gt=0, description="no activity for this long turns an online user away"
    )
    dm_notify_after_seconds: float = Field(
        default=5.0,
        ge=0,
        description="a 1:1 message its recipient has not read this long after it was sent "
        "notifies them (`direct`)",
    )
    notification_title_max_chars: int = Field(
        default=200,
        ge=1,
        description="longest notification title; the app's own notifications are cut to it",
    )
    notification_body_max_chars: int = Field(
        default=4000, ge=1, description="longest notification body"
    )
    notification_link_max_chars: int = Field(
        default=2000, ge=1, description="longest notification link"
    )

    # Input limits
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1, description="larger API request bodies get 413"
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1,
        description="`scripts/serve`: a larger request header block gets 431",
    )
    header_read_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="`scripts/serve`: a connection that has not sent its request headers by "
        "then is closed",
    )

    @property
    def dev_mode(self) -> bool:
        return self.app_env.lower() in {"dev", "development"}

    @classmethod
    def from_env(cls) -> Settings:
        """The settings the environment gives; SettingsError names every bad variable."""
        try:
            loaded = _FromEnvironment()
        except ValidationError as exc:
            raise SettingsError([_problem(error) for error in exc.errors()]) from None
        return cls(**{name: getattr(loaded, name) for name in FIELDS})


def _fields() -> dict[str, FieldInfo]:
    assert is_pydantic_dataclass(Settings)  # for the type checker: it has the fields' info
    return Settings.__pydantic_fields__


FIELDS = _fields()


class SettingsError(ValueError):
    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "invalid settings (see Settings in README.md):\n"
            + "\n".join(f"  {line}" for line in self.problems)
        )


class _BlankIsUnset(EnvSettingsSource):
    """The environment, where `SSE_RETRY_MS=` (or spaces) means the default."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        value, key, is_complex = super().get_field_value(field, field_name)
        if isinstance(value, str) and not value.strip() and field.annotation is not str:
            value = None
        return value, key, is_complex


class _EnvironmentOnly(BaseSettings):
    """Reads nothing but the environment: no .env file, no secrets folder."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_BlankIsUnset(settings_cls),)


# The same fields (types, defaults, bounds), as a pydantic-settings model of the environment.
_FIELD_DEFINITIONS: dict[str, Any] = {
    name: (info.annotation, info) for name, info in FIELDS.items()
}
_FromEnvironment = create_model("_FromEnvironment", __base__=_EnvironmentOnly, **_FIELD_DEFINITIONS)


def env_name(field_name: str) -> str:
    return field_name.upper()


_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}
_PROBLEMS = {
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_too_short": "must not be empty",
}


def _problem(error: ErrorDetails) -> str:
    """`SSE_HEARTBEAT_SECONDS must be >= 0, got -1`."""
    name = env_name(str(error["loc"][0])) if error["loc"] else "settings"
    kind, context = error["type"], error.get("ctx", {})
    if kind == "value_error":  # our validators' own words, the value included
        return f"{name} {context['error']}"
    if kind in _BOUNDS:
        sign, key = _BOUNDS[kind]
        problem = f"must be {sign} {_number(context[key])}"
    else:
        problem = _PROBLEMS.get(kind, error["msg"])
    return f"{name} {problem}, got {_shown_input(error['input'])}"


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _shown_input(value: object) -> str:
    # Quoted only when the quotes say something: around spaces, or nothing at all.
    if isinstance(value, str) and (value != value.strip() or not value):
        return repr(value)
    return str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings. A bad value ends the process here with a readable message:
    it would otherwise fail later, as a traceback or as a subtly wrong server."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(exc, file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_FAILURE) from None


def shown_default(value: object) -> str:
    """A default as the README's table shows it (paths relative to the project)."""
    if value is None:
        return "`auto`"
    if value in ("", ()):
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        value = ",".join(value)
    return f"`{_number(value).replace(f'{PROJECT_ROOT}/', '')}`"


def markdown_table() -> str:
    """README.md's settings table, made from the fields."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in FIELDS.items():
        default = shown_default(info.get_default(call_default_factory=True))
        rows.append(f"| `{env_name(name)}` | {default} | {info.description} |")
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.settings", description="The app's settings, from the environment."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--markdown", action="store_true", help="print README's table")
    action.add_argument(
        "--check", action="store_true", help="validate the environment; exit 3 if it is bad"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
        return 0
    try:
        Settings.from_env()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return STARTUP_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
