"""A coloured dot for online / away / offline."""

from __future__ import annotations

import reflex as rx

_COLORS = {"online": "var(--green-9)", "away": "var(--amber-9)", "offline": "var(--gray-8)"}


def presence_dot(status: rx.Var[str]) -> rx.Component:
    return rx.box(
        width="10px",
        height="10px",
        border_radius="50%",
        flex_shrink="0",
        background=rx.match(
            status,
            ("online", _COLORS["online"]),
            ("away", _COLORS["away"]),
            _COLORS["offline"],
        ),
        title=status,
        custom_attrs={"data-status": status},
    )
