"""`python -m app.client tail`: print the live events of one user as they arrive.

    python -m app.client tail --url http://127.0.0.1:8000 --user bob --events chat:message

The password comes from --password, else $CHAT_PASSWORD, else a prompt (demo users:
`<username>-pass`). One line per event (`--json`: one JSON object per line) on stdout;
connection changes on stderr, so stdout stays clean for pipes. Reconnects forever; Ctrl-C
or SIGTERM ends it with status 0; bad credentials or a refused stream end it with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TextIO

from .auth import token_from_password
from .client import RealtimeClient
from .errors import RealtimeError
from .events import ClientEvent, ClientStatus, EventType
from .format import describe

DEFAULT_URL = "http://127.0.0.1:8000"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.client", description="Live events of the chat's /api/sse stream."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    tail = commands.add_parser(
        "tail",
        help="print live events as they arrive",
        description="Print live events as they arrive; reconnects until Ctrl-C.",
        epilog="Demo users sign in with the password <username>-pass (e.g. bob-pass). "
        "Exit status: 0 on Ctrl-C or SIGTERM, 1 on bad credentials or a refused stream.",
    )
    tail.add_argument(
        "--url",
        default=os.environ.get("CHAT_URL", DEFAULT_URL),
        help=f"the backend (default $CHAT_URL or {DEFAULT_URL})",
    )
    tail.add_argument("--user", help="sign in as this user")
    tail.add_argument("--password", help="default: $CHAT_PASSWORD, else a prompt")
    tail.add_argument("--token", help="use this bearer token instead of signing in")
    tail.add_argument("--events", help="comma-separated types, e.g. chat:message,notification:new")
    tail.add_argument("--tenant", type=int, help="active tenant id (default: the user's first)")
    tail.add_argument("--conversation", type=int, help="only events of this conversation")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.token is None and args.user is None:
        print("error: give --user (to sign in) or --token", file=sys.stderr)
        return 2
    try:
        return asyncio.run(tail(args, sys.stdout, sys.stderr))
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was in place
        return 0


async def tail(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    client = RealtimeClient(
        args.url,
        token=args.token,
        get_token=_signer(args),
        types=args.events.split(",") if args.events else None,
        tenant=args.tenant,
    )
    stop = asyncio.Event()
    _stop_on_signals(stop)
    async with client:
        client.on_status(lambda status: _print_status(status, args.url, err))
        printer = asyncio.create_task(_print_events(client, args, out))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({printer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not printer.done():
            printer.cancel()
        try:
            await printer
        except asyncio.CancelledError:
            pass
        except RealtimeError as exc:
            print(f"error: {exc}", file=err, flush=True)
            return 1
    return 0


def _signer(args: argparse.Namespace) -> Callable[[], Awaitable[str]] | None:
    """Signs in whenever a token is needed: at the start, and when the server refuses the
    current one (expired or revoked). With only --token there is no way to renew it."""
    if args.user is None:
        return None
    password = args.password or os.environ.get("CHAT_PASSWORD") or None
    if password is None and args.token is None:
        password = getpass.getpass(f"Password for {args.user}: ")
    if password is None:
        return None
    return token_from_password(args.url, args.user, password, args.tenant)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(signum, stop.set)


async def _print_events(client: RealtimeClient, args: argparse.Namespace, out: TextIO) -> None:
    async for event in client.events():
        if args.conversation is not None and not _about(event, args.conversation):
            continue
        line = event.to_json() if args.json else _human_line(event)
        print(line, file=out, flush=True)


def _about(event: ClientEvent, conversation_id: int) -> bool:
    return event.type == EventType.RESYNC or event.conversation_id == conversation_id


def _human_line(event: ClientEvent) -> str:
    return f"{datetime.now():%H:%M:%S}  {event.type:<18} {describe(event)}"


def _print_status(status: ClientStatus, url: str, err: TextIO) -> None:
    if status.state == "connected":
        print(f"-- connected to {url}", file=err, flush=True)
    elif status.state == "disconnected":
        print(
            f"-- disconnected ({status.reason}); retrying in {status.delay:.1f} s",
            file=err,
            flush=True,
        )
