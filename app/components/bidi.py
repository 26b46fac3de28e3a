"""Text people wrote, bidi-isolated: a right-to-left override (U+202E) or an Arabic or Hebrew
run in a name, title or message changes the order of that string only, never of the text the
page puts around it.

`user_text` is the one way the UI shows such a string: its own element with `dir="auto"` (its
direction comes from its own first strong letter) and `unicode-bidi: plaintext` (an isolate
whose every line finds its own direction; embeddings and overrides end with the element).

Isolation only helps if each user string is an element of its own, so strings the state
composes from several of them ("Bob: hi", "Alice, Bob, Carol", "Bob is typing…") are split
again here (`names`, `conversation_name`, `preview_parts`, `typists`) and each piece shown
with `user_text`, the glue (", ", ": ", " is typing…") outside them.
"""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.vars import var_operation, var_operation_return

# Invisible bidi controls: LRM, RLM, ALM, the embeddings and overrides, the isolates.
_BIDI_CONTROLS = r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
# The state joins names with this (app/state/items.py).
NAME_SEPARATOR = ", "
PREVIEW_SEPARATOR = ": "


def user_text(text: rx.Var[str] | str, *, as_: str = "p", **props: Any) -> rx.Component:
    """One user string as a bidi isolate: a paragraph, or with `as_="span"` an inline run."""
    custom_attrs = {"dir": "auto", **props.pop("custom_attrs", {})}
    return rx.text(text, as_=as_, unicode_bidi="plaintext", custom_attrs=custom_attrs, **props)


def joined(parts: rx.Var[list[str]], separator: str = NAME_SEPARATOR) -> rx.Component:
    """`parts` shown as "a, b, c", each part its own isolate."""
    return rx.foreach(
        parts,
        lambda part, index: rx.fragment(
            rx.cond(index > 0, separator, ""), user_text(part, as_="span")
        ),
    )


@var_operation
def names(joined_names: rx.Var[str]):  # type: ignore[no-untyped-def]
    """"Alice, Bob" -> ["Alice", "Bob"] (a name that itself holds ", " comes out in pieces,
    each still isolated)."""
    return var_operation_return(
        js_expression=f"(({joined_names}) || '').split({NAME_SEPARATOR!r})",
        var_type=list[str],
    )


@var_operation
def conversation_name(  # type: ignore[no-untyped-def]
    name: rx.Var[str], member_names: rx.Var[str], me: rx.Var[str]
):
    """A conversation's name as the names it is made of: the other members' names when it
    is named after them (no title), else the title (or "Just you") whole."""
    return var_operation_return(
        js_expression=f"""((name, members, me) => {{
  const others = (members || '').split({NAME_SEPARATOR!r});
  const mine = others.indexOf(me);
  if (mine >= 0) others.splice(mine, 1);
  return others.length > 0 && others.join({NAME_SEPARATOR!r}) === name ? others : [name];
}})({name}, {member_names}, {me})""",
        var_type=list[str],
    )


@var_operation
def preview_parts(preview: rx.Var[str], member_names: rx.Var[str]):  # type: ignore[no-untyped-def]
    """"Bob: hi there" -> ["Bob", "hi there"]; ["", preview] when there is no sender.
    The sender is the longest member name (or "You") the preview starts with, so a name that
    holds ": " is not cut; failing that, the text before the first ": "."""
    return var_operation_return(
        js_expression=f"""((preview, members) => {{
  preview = preview || '';
  const sep = {PREVIEW_SEPARATOR!r};
  let sender = ['You', ...(members || '').split({NAME_SEPARATOR!r})]
    .filter((n) => n && preview.startsWith(n + sep))
    .reduce((a, b) => (b.length > a.length ? b : a), '');
  if (!sender && preview.includes(sep)) sender = preview.slice(0, preview.indexOf(sep));
  return sender ? [sender, preview.slice(sender.length + sep.length)] : ['', preview];
}})({preview}, {member_names})""",
        var_type=list[str],
    )


@var_operation
def typists(  # type: ignore[no-untyped-def]
    by_conversation: rx.Var[dict[str, dict[str, float]]], conversation_id: rx.Var[int]
):
    """The names typing in a conversation (ChatState.typists), sorted as the state's label
    sorts them."""
    return var_operation_return(
        js_expression=(
            f"Object.keys(({by_conversation} || {{}})[String({conversation_id})] || {{}})"
            ".sort()"
        ),
        var_type=list[str],
    )


@var_operation
def initial(name: rx.Var[str]):  # type: ignore[no-untyped-def]
    """The first letter of a name for an avatar, skipping invisible bidi controls."""
    return var_operation_return(
        js_expression=(
            f"((Array.from(({name} || '').replace(/{_BIDI_CONTROLS}/gu, '').trim())[0])"
            " || '?').toUpperCase()"
        ),
        var_type=str,
    )
