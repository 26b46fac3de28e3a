"""Text people wrote, bidi-isolated: a right-to-left override (U+202E) or an Arabic or Hebrew
run in a name, title or message changes the order of that string only, never of the text the
page puts around it.

`user_text` is the one way the UI shows such a string: its own element with `dir="auto"` (its
direction comes from its own first strong letter) and `unicode-bidi: plaintext` (an isolate
whose every line finds its own direction; embeddings and overrides end with the element).

Isolation only helps if each user string is an element of its own, so the state sends the
pieces (a conversation's name parts and members, a preview's sender and text, the typists)
and each piece is shown with `user_text`, the glue (", ", ": ", " is typing…") outside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import reflex as rx
from reflex.vars import var_operation, var_operation_return

# Invisible bidi controls: LRM, RLM, ALM, the embeddings and overrides, the isolates.
_BIDI_CONTROLS = r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
NAME_SEPARATOR = ", "


def user_text(text: rx.Var[str] | str, *, as_: str = "p", **props: Any) -> rx.Component:
    """One user string as a bidi isolate: a paragraph, or with `as_="span"` an inline run."""
    custom_attrs = {"dir": "auto", **props.pop("custom_attrs", {})}
    return rx.text(text, as_=as_, unicode_bidi="plaintext", custom_attrs=custom_attrs, **props)


def joined(parts: rx.Var[Sequence[str]], separator: str = NAME_SEPARATOR) -> rx.Component:
    """`parts` shown as "a, b, c", each part its own isolate."""
    return rx.foreach(
        parts,
        lambda part, index: rx.fragment(
            rx.cond(index > 0, separator, ""), user_text(part, as_="span")
        ),
    )


@var_operation
def typists(
    by_conversation: rx.Var[dict[str, dict[str, dict[str, Any]]]], conversation_id: rx.Var[int]
):
    """The names typing in a conversation (ChatState.typists: typists by user id), sorted;
    two people of the same name are both named."""
    return var_operation_return(
        js_expression=(
            f"Object.values(({by_conversation} || {{}})[String({conversation_id})] || {{}})"
            ".map((typist) => typist.name).sort()"
        ),
        var_type=list[str],
    )


@var_operation
def initial(name: rx.Var[str]):
    """The first letter of a name for an avatar, skipping invisible bidi controls."""
    return var_operation_return(
        js_expression=(
            f"((Array.from(({name} || '').replace(/{_BIDI_CONTROLS}/gu, '').trim())[0])"
            " || '?').toUpperCase()"
        ),
        var_type=str,
    )
