"""Pure pieces of the page states, without a browser."""

from __future__ import annotations

import pytest

from app.state.items import PREVIEW_CHARS, preview


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        ("hello   there\nbob", "hello there bob"),
        ("word " * 30, ("word " * 16).rstrip() + "…"),
        (
            "see https://example.com/" + "a" * 200,
            ("see https://example.com/" + "a" * 200)[:80] + "…",
        ),
        ("https://example.com/" + "a" * 200, ("https://example.com/" + "a" * 200)[:80] + "…"),
    ],
)
def test_a_preview_is_one_line_cut_at_a_word_with_an_ellipsis(content: str, shown: str) -> None:
    assert preview(content) == shown
    assert len(preview(content)) <= PREVIEW_CHARS + 1
