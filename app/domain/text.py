"""Shortening people's text for a one-line preview: the one rule for the conversation list
and for notifications."""

from __future__ import annotations

ELLIPSIS = "…"


def shorten(text: str, limit: int, *, whole_up_to: int | None = None) -> str:
    """`text` on one line, at most `limit` characters with the "…": cut after a whole word,
    unless one long word (a URL) fills more than half of it, which is cut inside. Text up to
    `whole_up_to` characters (default `limit`) is shown whole."""
    flat = " ".join(text.split())
    if len(flat) <= (limit if whole_up_to is None else whole_up_to):
        return flat
    cut = flat[: limit - 1]
    if flat[limit - 1] != " ":
        space = cut.rfind(" ")
        if space >= limit // 2:
            cut = cut[:space]
    return cut.rstrip() + ELLIPSIS
