"""app/settings.py: one declaration, read from the environment, validated at start, and the
README's settings table made from it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app.runtime import Runtime
from app.settings import (
    FIELDS,
    PROJECT_ROOT,
    STARTUP_FAILURE,
    Settings,
    SettingsError,
    env_name,
    markdown_table,
    shown_default,
)
from app.state import page_data
from tests.backend import ROOT, TEST_ENV, bearer, free_port, running_backend, start_backend

ENV_NAMES = [env_name(name) for name in FIELDS]


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment with none of the settings set."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def from_env(environ: pytest.MonkeyPatch, **values: str) -> Settings:
    for name, value in values.items():
        environ.setenv(name, value)
    return Settings.from_env()


def problems(environ: pytest.MonkeyPatch, **values: str) -> tuple[str, ...]:
    with pytest.raises(SettingsError) as raised:
        from_env(environ, **values)
    return raised.value.problems


# -- the README's table ---------------------------------------------------------------------


def readme_table() -> list[str]:
    """The table rows of README.md's `## Settings` section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def readme_rows() -> dict[str, tuple[str, str]]:
    """Variable -> (default, meaning), as the README shows them."""
    rows = {}
    for line in readme_table()[2:]:
        name, default, meaning = (cell.strip() for cell in line.strip("|").split(" | ", 2))
        rows[name.strip("`")] = (default, meaning.strip())
    return rows


def test_the_readme_lists_exactly_the_settings_the_class_defines() -> None:
    listed = list(readme_rows())
    assert set(listed) == set(ENV_NAMES), (
        f"missing from README: {sorted(set(ENV_NAMES) - set(listed))}; "
        f"not settings: {sorted(set(listed) - set(ENV_NAMES))}"
    )
    assert len(listed) == len(set(listed)), "a setting is listed twice"


def test_the_readme_shows_each_default_and_description_of_the_field() -> None:
    rows = readme_rows()
    for name, info in FIELDS.items():
        default, meaning = rows[env_name(name)]
        assert default == shown_default(info.get_default(call_default_factory=True)), name
        assert info.description, f"{name} has no description"
        assert meaning == info.description, name


def test_the_readme_table_is_the_generated_one() -> None:
    """Order and layout too: regenerate with `python -m app.settings --markdown`."""
    assert readme_table() == markdown_table().splitlines()


def test_the_markdown_command_prints_the_table() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "app.settings", "--markdown"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert printed.stdout == markdown_table()


def test_defaults_are_shown_as_operators_know_them() -> None:
    assert shown_default(Settings().database_url) == "`sqlite:///.data/chat.db`"
    assert shown_default(None) == "`auto`"
    assert shown_default(()) == "empty"
    assert shown_default("") == "empty"
    assert shown_default(True) == "`true`"
    assert shown_default(30.0) == "`30`"
    assert shown_default(2.5) == "`2.5`"
    assert shown_default(12 * 3600) == "`43200`"


# -- reading the environment ----------------------------------------------------------------


def test_an_empty_environment_gives_the_defaults(environ: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    assert settings == Settings()
    assert settings.database_url == f"sqlite:///{PROJECT_ROOT / '.data' / 'chat.db'}"
    assert settings.sse_heartbeat_seconds == 30.0
    assert settings.session_cookie_secure is None
    assert settings.cors_allowed_origins == ()
    assert settings.seed_demo_data is True


def test_blank_values_of_numbers_booleans_and_lists_mean_the_default(
    environ: pytest.MonkeyPatch,
) -> None:
    blank = {"SSE_RETRY_MS": "", "SSE_HEARTBEAT_SECONDS": "  ", "SEED_DEMO_DATA": " "}
    settings = from_env(environ, **blank, CORS_ALLOWED_ORIGINS="", SESSION_COOKIE_SECURE="")
    assert settings == Settings()


def test_strings_are_taken_as_given(environ: pytest.MonkeyPatch) -> None:
    settings = from_env(environ, REDIS_URL="", APP_ENV="dev", METRICS_TOKEN="s3cret ")
    assert (settings.redis_url, settings.app_env, settings.metrics_token) == ("", "dev", "s3cret ")
    assert settings.dev_mode


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        # Never read from the environment before.
        ("CONVERSATION_TITLE_MAX_CHARS", "80", "conversation_title_max_chars", 80),
        ("MAX_PASSWORD_CHARS", "128", "max_password_chars", 128),
        ("NOTIFICATION_TITLE_MAX_CHARS", "90", "notification_title_max_chars", 90),
        ("NOTIFICATION_BODY_MAX_CHARS", "900", "notification_body_max_chars", 900),
        ("NOTIFICATION_LINK_MAX_CHARS", "500", "notification_link_max_chars", 500),
        # Hard-coded in app/state before.
        ("TYPING_REPEAT_SECONDS", "1.5", "typing_repeat_seconds", 1.5),
        ("TYPING_FORGET_SECONDS", "20", "typing_forget_seconds", 20.0),
    ],
)
def test_settings_not_read_before_are_read_now(
    environ: pytest.MonkeyPatch, variable: str, value: str, attribute: str, expected: object
) -> None:
    assert getattr(from_env(environ, **{variable: value}), attribute) == expected
    assert getattr(Settings(), attribute) != expected


def test_every_setting_is_read_from_its_variable(environ: pytest.MonkeyPatch) -> None:
    """A value each field accepts and is not its default, through its capitalised name."""
    changed: dict[str, object] = {}
    for name, info in FIELDS.items():
        default = info.get_default(call_default_factory=True)
        raw: str
        value: object
        if isinstance(default, bool) or default is None:
            raw, value = "false", False
        elif isinstance(default, int | float):
            raw, value = str(default + 1), default + 1
        elif name == "trusted_proxies":
            raw, value = "192.0.2.0/24, 127.0.0.1", ("192.0.2.0/24", "127.0.0.1")
        elif isinstance(default, tuple):
            raw, value = "https://other.example", ("https://other.example",)
        elif name == "log_format":
            raw, value = "JSON", "json"
        elif name == "log_level":
            raw, value = " debug", "DEBUG"
        else:
            raw, value = f"{default}-x", f"{default}-x"
        environ.setenv(env_name(name), raw)
        changed[name] = value
    settings = Settings.from_env()
    assert {name: getattr(settings, name) for name in FIELDS} == changed


@pytest.mark.parametrize(
    ("variable", "raw", "problem"),
    [
        ("LOG_FORMAT", "yaml", "LOG_FORMAT must be text or json, got yaml"),
        ("LOG_FORMAT", "", "LOG_FORMAT must be text or json, got ''"),
        (
            "LOG_LEVEL",
            "verbose",
            "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got verbose",
        ),
    ],
)
def test_a_log_setting_outside_its_words_is_named(
    environ: pytest.MonkeyPatch, variable: str, raw: str, problem: str
) -> None:
    environ.setenv(variable, raw)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env()
    assert refused.value.problems == (problem,)


@pytest.mark.parametrize("word", ["1", "true", "YES", " on ", "True"])
def test_booleans_take_the_words_for_true(environ: pytest.MonkeyPatch, word: str) -> None:
    assert from_env(environ, SEED_DEMO_DATA="false", RATE_LIMIT_ENABLED=word).rate_limit_enabled


@pytest.mark.parametrize("word", ["0", "false", "No", "OFF "])
def test_booleans_take_the_words_for_false(environ: pytest.MonkeyPatch, word: str) -> None:
    assert not from_env(environ, RATE_LIMIT_ENABLED=word).rate_limit_enabled


@pytest.mark.parametrize(
    ("value", "expected"), [("auto", None), ("AUTO", None), ("", None), ("on", True), ("0", False)]
)
def test_the_secure_cookie_is_auto_true_or_false(
    environ: pytest.MonkeyPatch, value: str, expected: bool | None
) -> None:
    assert from_env(environ, SESSION_COOKIE_SECURE=value).session_cookie_secure is expected


def test_trusted_proxies_are_addresses_or_networks(environ: pytest.MonkeyPatch) -> None:
    assert from_env(environ, TRUSTED_PROXIES=" ").trusted_proxies == ()
    assert from_env(environ, TRUSTED_PROXIES="::1,127.0.0.0/8,").trusted_proxies == (
        "::1",
        "127.0.0.0/8",
    )
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES must be comma-separated IP"):
        from_env(environ, TRUSTED_PROXIES="127.0.0.1,proxy.internal")


def test_origins_are_a_comma_separated_list(environ: pytest.MonkeyPatch) -> None:
    settings = from_env(
        environ, CORS_ALLOWED_ORIGINS=" https://a.example/ ,, http://b.example:8080,*,"
    )
    assert settings.cors_allowed_origins == ("https://a.example", "http://b.example:8080", "*")


async def test_the_page_is_sent_the_typing_forget_time_of_the_settings(tmp_path: Path) -> None:
    settings = replace(
        Settings(),
        database_url=f"sqlite:///{tmp_path / 'chat.db'}",
        sse_heartbeat_seconds=0,
        typing_forget_seconds=20.0,
    )
    runtime = Runtime(settings)
    await runtime.start()
    try:
        alice = (await runtime.accounts.sign_in("alice", "alice-pass", "127.0.0.1")).principal
        snapshot = await page_data.snapshot(runtime, alice)
    finally:
        await runtime.stop()
    assert snapshot["typingForgetSeconds"] == 20.0


# -- refusing bad values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SSE_HEARTBEAT_SECONDS", "-1", "SSE_HEARTBEAT_SECONDS must be >= 0, got -1"),
        ("SSE_RETRY_MS", "soon", "SSE_RETRY_MS must be an integer, got soon"),
        ("TOKEN_TTL_SECONDS", "1.5", "TOKEN_TTL_SECONDS must be an integer, got 1.5"),
        ("SSE_FLUSH_DELAY_MS", "fast", "SSE_FLUSH_DELAY_MS must be a number, got fast"),
        ("TYPING_EXPIRY_SECONDS", "0", "TYPING_EXPIRY_SECONDS must be > 0, got 0"),
        ("MAX_TOKENS_PER_USER", "0", "MAX_TOKENS_PER_USER must be >= 1, got 0"),
        ("GROUP_MAX_PARTICIPANTS", "1", "GROUP_MAX_PARTICIPANTS must be >= 2, got 1"),
        (
            "SEED_DEMO_DATA",
            "maybe",
            "SEED_DEMO_DATA must be true or false (1/0, yes/no, on/off), got maybe",
        ),
        # pydantic alone would take "t" for true; the app never did.
        (
            "RATE_LIMIT_ENABLED",
            "t",
            "RATE_LIMIT_ENABLED must be true or false (1/0, yes/no, on/off), got t",
        ),
        (
            "SESSION_COOKIE_SECURE",
            "sometimes",
            (
                "SESSION_COOKIE_SECURE must be auto, true or false (1/0, yes/no, on/off), "
                "got sometimes"
            ),
        ),
        (
            "CORS_ALLOWED_ORIGINS",
            "https://a.example, partner.example",
            (
                "CORS_ALLOWED_ORIGINS must be comma-separated origins (scheme://host[:port]) "
                "or *, got partner.example"
            ),
        ),
        ("DATABASE_URL", "", "DATABASE_URL must not be empty, got ''"),
    ],
)
def test_a_bad_value_is_refused_with_a_message_naming_its_variable(
    environ: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    assert problems(environ, **{variable: value}) == (message,)


def test_every_bad_variable_gets_its_own_line(environ: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as raised:
        from_env(environ, SSE_RETRY_MS="-5", SEED_DEMO_DATA="maybe", MAX_BODY_BYTES="big")
    assert str(raised.value).splitlines() == [
        "invalid settings (see Settings in README.md):",
        "  SEED_DEMO_DATA must be true or false (1/0, yes/no, on/off), got maybe",
        "  SSE_RETRY_MS must be >= 0, got -5",
        "  MAX_BODY_BYTES must be an integer, got big",
    ]


def test_a_variant_built_in_code_is_validated_too() -> None:
    with pytest.raises(ValidationError):
        replace(Settings(), sse_heartbeat_seconds=-1)
    assert replace(Settings(), sse_heartbeat_seconds=0).sse_heartbeat_seconds == 0


def test_settings_built_in_code_ignore_the_environment(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("SSE_RETRY_MS", "5")
    assert Settings().sse_retry_ms == 3000


# -- refusing to start ----------------------------------------------------------------------


def _clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return {**env, **values}


def test_get_settings_ends_the_process_with_the_message_and_no_traceback() -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "from app.settings import get_settings; get_settings()"],
        check=False,
        cwd=ROOT,
        env=_clean_env(SSE_HEARTBEAT_SECONDS="-1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ended.returncode == STARTUP_FAILURE
    assert ended.stderr == (
        "invalid settings (see Settings in README.md):\n"
        "  SSE_HEARTBEAT_SECONDS must be >= 0, got -1\n"
    )


@pytest.mark.server
def test_a_backend_with_a_bad_value_stops_at_start_with_the_message(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as raised:
        start_backend(tmp_path, {"SSE_HEARTBEAT_SECONDS": "-1"}, backend_only=True)
    log = str(raised.value)
    # "exited early", not "did not start in time": it gave up at once.
    assert log.startswith("the server exited early")
    assert "SSE_HEARTBEAT_SECONDS must be >= 0, got -1" in log
    assert "Traceback" not in log


@pytest.mark.server
def test_a_backend_applies_the_limits_it_never_read_before(tmp_path: Path) -> None:
    """MAX_PASSWORD_CHARS reaches the API's sign-in body, NOTIFICATION_TITLE_MAX_CHARS the
    use case (both were fixed at their defaults, whatever the environment said)."""
    limits = {"MAX_PASSWORD_CHARS": "10", "NOTIFICATION_TITLE_MAX_CHARS": "5"}
    with running_backend(tmp_path, limits, backend_only=True) as server:
        too_long = httpx.post(
            f"{server.url}/api/auth/token",
            json={"username": "alice", "password": "alice-pass!"},  # 11 characters
            timeout=30,
        )
        assert too_long.status_code == 422
        alice = server.token("alice")  # "alice-pass": 10 characters
        bob = server.token("bob")
        me = httpx.get(f"{server.url}/api/me", headers=bearer(bob), timeout=30).json()
        refused = httpx.post(
            f"{server.url}/api/notifications",
            json={"userId": me["id"], "title": "abcdef"},
            headers=bearer(alice),
            timeout=30,
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["message"] == "title is longer than 5 characters."


@pytest.mark.server
def test_scripts_serve_with_a_bad_value_starts_no_worker(tmp_path: Path) -> None:
    """With several workers uvicorn would start them, see them fail, and exit 0."""
    served = subprocess.run(
        [str(ROOT / "scripts" / "serve")],
        check=False,
        cwd=ROOT,
        env=_clean_env(
            **TEST_ENV,
            DATABASE_URL=f"sqlite:///{tmp_path / 'chat.db'}",
            REFLEX_WEB_WORKDIR=str(tmp_path / ".web"),
            REFLEX_STATES_WORKDIR=str(tmp_path / ".states"),
            HOST="127.0.0.1",
            PORT=str(free_port()),
            WORKERS="2",
            MAX_HEADER_BYTES="0",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode == STARTUP_FAILURE
    assert "MAX_HEADER_BYTES must be >= 1, got 0" in served.stderr
    assert "Traceback" not in served.stderr
    assert "Uvicorn running" not in served.stderr + served.stdout


def test_no_other_module_of_the_app_reads_the_environment() -> None:
    """One settings module (the chat client's command line is a program of its own)."""
    readers = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "app").rglob("*.py")
        if re.search(r"os\.environ|getenv\(", path.read_text(encoding="utf-8"))
    ]
    assert sorted(readers) == ["app/client/cli.py", "app/settings.py"]
