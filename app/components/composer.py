"""The message box: Enter sends, Shift+Enter makes a new line, empty messages are refused."""

from __future__ import annotations

import reflex as rx

from app.state.chat import ChatState

# Enter submits the composer's form unless Shift is held (or an IME is composing).
ENTER_SENDS = rx.script(
    """
document.addEventListener('keydown', (e) => {
  const t = e.target;
  if (t && t.id === 'composer' && e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    if (t.form) t.form.requestSubmit();
  }
}, true);
"""
)


def composer() -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.cond(
                ChatState.composer_error != "",
                rx.text(
                    ChatState.composer_error,
                    color_scheme="red",
                    size="2",
                    custom_attrs={"data-testid": "composer-error"},
                ),
            ),
            rx.hstack(
                rx.text_area(
                    id="composer",
                    name="content",
                    placeholder="Write a message…  (Enter sends, Shift+Enter for a new line)",
                    rows="1",
                    resize="vertical",
                    max_length=4000,
                    auto_focus=True,
                    flex="1",
                    on_key_down=ChatState.typed,
                    on_blur=ChatState.stopped_typing,
                ),
                rx.button(
                    rx.icon("send-horizontal", size=16),
                    "Send",
                    type="submit",
                    loading=ChatState.sending,
                    custom_attrs={"data-testid": "send"},
                ),
                width="100%",
                align="end",
            ),
            spacing="1",
            width="100%",
        ),
        on_submit=ChatState.send,
        reset_on_submit=True,
        width="100%",
        padding="12px 16px",
    )
