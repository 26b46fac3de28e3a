"""EventId: `<epoch>-<seq>`, ordered by epoch then sequence, parsed strictly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.realtime.ids import EventId

# What `EventId.parse` accepts: up to 19 ASCII digits on each side.
id_parts = st.integers(min_value=0, max_value=10**19 - 1)


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [
        pytest.param(EventId(1, 2), EventId(1, 3), id="same-epoch-by-seq"),
        pytest.param(EventId(1, 999), EventId(2, 0), id="epoch-before-seq"),
        pytest.param(EventId(9, 0), EventId(10, 0), id="numeric-not-lexical-epoch"),
        pytest.param(EventId(1, 9), EventId(1, 10), id="numeric-not-lexical-seq"),
    ],
)
def test_event_ids_order_by_epoch_then_sequence(smaller: EventId, larger: EventId) -> None:
    assert smaller < larger
    assert larger > smaller
    assert smaller != larger
    assert sorted([larger, smaller]) == [smaller, larger]


def test_event_ids_with_the_same_parts_are_equal_and_hash_alike() -> None:
    assert EventId(1, 2) == EventId(1, 2)
    assert hash(EventId(1, 2)) == hash(EventId(1, 2))


def test_str_is_epoch_dash_sequence() -> None:
    assert str(EventId(1700000000000, 42)) == "1700000000000-42"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("123-4", EventId(123, 4), id="plain"),
        pytest.param("0-0", EventId(0, 0), id="zeros"),
        pytest.param("1700000000000-42", EventId(1700000000000, 42), id="ms-epoch"),
        pytest.param(
            "9999999999999999999-9999999999999999999",
            EventId(10**19 - 1, 10**19 - 1),
            id="19-digits-each",
        ),
        pytest.param(" 1-2 ", EventId(1, 2), id="spaces-trimmed"),
        pytest.param("\t1-2\r\n", EventId(1, 2), id="tab-and-crlf-trimmed"),
    ],
)
def test_when_raw_is_a_valid_id_then_parse_returns_it(raw: str, expected: EventId) -> None:
    assert EventId.parse(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("abc", id="letters"),
        pytest.param("12", id="no-dash"),
        pytest.param("1-", id="no-seq"),
        pytest.param("-1", id="no-epoch"),
        pytest.param("-", id="dash-only"),
        pytest.param("1-2-3", id="three-parts"),
        pytest.param("-1-2", id="negative-epoch"),
        pytest.param("1.5-2", id="float-epoch"),
        pytest.param("1-2.5", id="float-seq"),
        pytest.param("+1-2", id="plus-sign"),
        pytest.param("0x1-2", id="hex"),
        pytest.param("1_000-2", id="underscore"),
        pytest.param("1 - 2", id="inner-spaces"),
        pytest.param("1-2x", id="trailing-garbage"),
        pytest.param("1" * 20 + "-1", id="epoch-20-digits"),
        pytest.param("1-" + "1" * 20, id="seq-20-digits"),
        pytest.param("9" * 4000 + "-1", id="epoch-4000-digits"),
    ],
)
def test_when_raw_is_not_an_id_then_parse_returns_none(raw: str | None) -> None:
    assert EventId.parse(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("\u0661\u0662-\u0663", id="arabic-indic-digits"),
        pytest.param("\uff11-\uff12", id="fullwidth-digits"),
        pytest.param("1-\u0968", id="devanagari-digit-seq"),
    ],
)
def test_when_raw_uses_non_ascii_digits_then_parse_returns_none(raw: str) -> None:
    # We only ever emit ASCII ids; "١٢-٣" is not one of ours and must not alias "12-3".
    assert EventId.parse(raw) is None


@given(epoch=id_parts, seq=id_parts)
def test_str_then_parse_round_trips(epoch: int, seq: int) -> None:
    event_id = EventId(epoch, seq)

    assert EventId.parse(str(event_id)) == event_id


@given(a=st.builds(EventId, id_parts, id_parts), b=st.builds(EventId, id_parts, id_parts))
def test_ordering_matches_the_epoch_seq_tuple(a: EventId, b: EventId) -> None:
    assert (a < b) == ((a.epoch, a.seq) < (b.epoch, b.seq))
    assert (a == b) == ((a.epoch, a.seq) == (b.epoch, b.seq))


@given(raw=st.text())
def test_parse_never_raises_and_returns_none_or_an_in_range_id(raw: str) -> None:
    parsed = EventId.parse(raw)

    assert parsed is None or (0 <= parsed.epoch < 10**19 and 0 <= parsed.seq < 10**19)
