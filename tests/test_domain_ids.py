"""app/domain/ids.py: the one parser of ids sent as text, at its boundaries."""

from __future__ import annotations

import pytest

from app.domain.ids import MAX_ID, parse_id
from app.routes import conversation_in_link, message_in_link


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("42", 42),
        ("0042", 42),
        (str(MAX_ID), MAX_ID),  # 9223372036854775807: the largest BIGINT, 19 digits
        (str(MAX_ID + 1), None),
        ("9" * 19, None),
        ("0" + str(MAX_ID), None),  # 20 characters, refused before int() sees it
        ("9" * 5000, None),  # int() itself refuses past 4,300 digits
        ("0", None),
        ("", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1.0", None),
        ("²", None),  # str.isdigit() admits it, int() does not
        ("١٢", None),  # Arabic-Indic digits: int() would take them
    ],
)
def test_an_id_is_ascii_digits_from_1_to_the_largest_bigint(
    text: str, expected: int | None
) -> None:
    assert parse_id(text) == expected


def test_links_use_the_same_rule() -> None:
    assert conversation_in_link(f"/?c={MAX_ID}") == MAX_ID
    assert conversation_in_link(f"/?c={MAX_ID + 1}") is None
    assert conversation_in_link("/?c=" + "9" * 5000) is None  # a ValueError before
    assert message_in_link(f"/?c=1&m={MAX_ID}") == MAX_ID
    assert message_in_link("/?c=1&m=0") is None
