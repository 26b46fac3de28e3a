"""Search above the conversation list: results with their hits marked, a click opens the
conversation at the message."""

from __future__ import annotations

import reflex as rx
from reflex.vars import ObjectVar

from app.components.bidi import user_text
from app.state.chat import ChatState
from app.state.search import SearchResult, SearchState, SnippetPart


def _part(part: ObjectVar[SnippetPart]) -> rx.Component:
    # Text pieces, each an element of its own: a hit is a <mark>, nothing is markup.
    return rx.cond(
        part.hit,
        rx.el.mark(
            part.text,
            custom_attrs={"data-testid": "search-hit"},
            style={"background": "var(--amber-a5)", "color": "inherit", "border_radius": "2px"},
        ),
        rx.el.span(part.text),
    )


def _result(result: ObjectVar[SearchResult]) -> rx.Component:
    return rx.box(
        rx.hstack(
            user_text(result.conversation_name, as_="span", size="1", weight="bold", truncate=True),
            rx.spacer(),
            rx.moment(result.created_at, format="D MMM", font_size="11px", color="var(--gray-10)"),
            width="100%",
        ),
        rx.text(
            user_text(result.sender_name, as_="span", weight="medium"),
            ": ",
            rx.el.span(rx.foreach(result.snippet, _part), dir="auto"),
            size="2",
            style={"overflow_wrap": "anywhere"},
        ),
        padding="6px 8px",
        border_radius="6px",
        cursor="pointer",
        _hover={"background": "var(--gray-a3)"},
        on_click=[
            ChatState.open_message(result.conversation_id, result.message_id),  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
            SearchState.clear_search,
        ],
        custom_attrs={
            "data-testid": "search-result",
            "data-conversation": result.conversation_id,
            "data-message": result.message_id,
        },
    )


def _results() -> rx.Component:
    return rx.cond(
        SearchState.searched | (SearchState.error != ""),
        rx.box(
            rx.hstack(
                rx.text("Results for ", rx.el.q(SearchState.query), size="1", color_scheme="gray"),
                rx.spacer(),
                rx.icon_button(
                    rx.icon("x", size=12),
                    size="1",
                    variant="ghost",
                    aria_label="Close the results",
                    on_click=SearchState.clear_search,
                    custom_attrs={"data-testid": "search-close"},
                ),
                width="100%",
                align="center",
            ),
            rx.cond(
                SearchState.error != "",
                rx.text(
                    SearchState.error,
                    size="2",
                    color_scheme="red",
                    custom_attrs={"data-testid": "search-error"},
                ),
                rx.cond(
                    SearchState.results.length() == 0,
                    rx.text(
                        "No messages match.",
                        size="2",
                        color_scheme="gray",
                        custom_attrs={"data-testid": "search-empty"},
                    ),
                    rx.vstack(rx.foreach(SearchState.results, _result), spacing="1", width="100%"),
                ),
            ),
            max_height="50vh",
            overflow_y="auto",
            width="100%",
            padding="4px 8px",
            border_bottom="1px solid var(--gray-5)",
            custom_attrs={"data-testid": "search-results"},
        ),
    )


def search_box() -> rx.Component:
    return rx.vstack(
        rx.form(
            rx.input(
                rx.input.slot(rx.icon("search", size=14)),
                name="q",
                placeholder="Search messages",
                type="search",
                max_length=200,
                size="2",
                width="100%",
                custom_attrs={"data-testid": "search-input", "aria-label": "Search messages"},
            ),
            on_submit=SearchState.search,
            reset_on_submit=False,
            width="100%",
            padding="4px 12px",
        ),
        _results(),
        spacing="0",
        width="100%",
    )
