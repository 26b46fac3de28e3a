"""A message's text with links, formatting and mentions (assets/message_text.js; the rules are
in assets/message_format.js).

`message_text` keeps what `user_text` (app/components/bidi.py) gives a message: its own bidi
isolate (`dir="auto"`, `unicode-bidi: plaintext`), the sender's line breaks (pre-wrap) and
long words wrapped. Its root is a `div`, not a `p`: a code block's `pre` may not sit in a `p`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import reflex as rx

# Radix Themes' size "2" text, as `user_text(..., size="2")` had it.
_TEXT = {
    "font_size": "var(--font-size-2)",
    "line_height": "var(--line-height-2)",
    "letter_spacing": "var(--letter-spacing-2)",
}
_CODE = {
    "font_family": "var(--code-font-family, monospace)",
    "font_size": "0.9em",
    "background": "var(--gray-a3)",
    "border_radius": "var(--radius-1)",
}
_STYLE: dict[str, Any] = {
    "& code": {**_CODE, "padding": "0.1em 0.3em"},
    # A long line scrolls inside the block instead of widening the bubble.
    "& pre": {
        **_CODE,
        "margin": "4px 0",
        "padding": "6px 8px",
        "white_space": "pre",
        "overflow_x": "auto",
        "max_width": "100%",
        "word_break": "normal",
    },
    "& pre code": {"background": "none", "padding": "0", "font_size": "inherit"},
    "& a": {"color": "var(--accent-11)", "text_decoration": "underline"},
    "& [data-mention]": {
        "background": "var(--accent-a4)",
        "border_radius": "var(--radius-1)",
        "padding": "0 0.15em",
    },
    "& [data-mention-me]": {"font_weight": "bold", "background": "var(--accent-a6)"},
}


class MessageText(rx.Component):
    library = "$/public/message_text.js"
    tag = "MessageText"

    text: rx.Var[str]
    # The usernames an @mention may name: the open conversation's members.
    mentions: rx.Var[list[str]]
    # The viewer's username: mentions of the viewer stand out more.
    me: rx.Var[str]


def message_text(
    text: rx.Var[str] | str,
    mentions: rx.Var[Sequence[str]] | Sequence[str],
    me: rx.Var[str] | str,
    **props: Any,
) -> rx.Component:
    """One message's text, formatted, as its own bidi isolate."""
    custom_attrs = {"dir": "auto", "data-testid": "message-text", **props.pop("custom_attrs", {})}
    style = {**_STYLE, **props.pop("style", {})}
    return MessageText.create(
        text=text,
        mentions=mentions,
        me=me,
        custom_attrs=custom_attrs,
        style=style,
        margin="0",
        unicode_bidi="plaintext",
        white_space="pre-wrap",
        word_break="break-word",
        **{**_TEXT, **props},
    )
