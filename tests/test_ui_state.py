"""Pure pieces of the page states, without a browser."""

from __future__ import annotations

import pytest

from app.state.chat import typing_label


@pytest.mark.parametrize(
    ("names", "label"),
    [
        ([], ""),
        (["Bob"], "Bob is typing…"),
        (["Carol", "Bob"], "Bob and Carol are typing…"),
        (["Carol", "Bob", "Alice"], "Several people are typing…"),
    ],
)
def test_typing_label_names_one_or_two_typists_and_summarises_more(
    names: list[str], label: str
) -> None:
    assert typing_label(names) == label
