"""The SSE encoder (`encode_sse`) and `Event.wire()`.

Byte-exact examples pin the wire format; property tests feed the output to a real SSE parser
(httpx-sse's decoders) and to a tiny WHATWG line splitter, and check that what a client reads
is exactly what was encoded, with no field injected.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import pytest
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from hypothesis import given
from hypothesis import strategies as st

from app.realtime.encoding import encode_sse
from app.realtime.events import Event
from app.realtime.ids import EventId
from tests.wire import payload as payload_of

# -- helpers -------------------------------------------------------------------------

_SPEC_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def spec_split(text: str) -> tuple[list[str], str]:
    """WHATWG event-stream line splitting: lines end with CRLF, CR or LF.

    Returns the complete lines and the unterminated rest (empty for a well-formed stream).
    """
    *lines, rest = _SPEC_LINE_BREAK.split(text)
    return lines, rest


def parse_sse(raw: bytes) -> list[ServerSentEvent]:
    """Every event a real SSE client dispatches for `raw` (one whole stream)."""
    line_decoder = SSELineDecoder()
    decoder = SSEDecoder()
    lines = line_decoder.decode(raw.decode("utf-8")) + line_decoder.flush()
    return [event for line in lines if (event := decoder.decode(line)) is not None]


def field_names(raw: bytes) -> list[str]:
    """The field name of every line of one encoded message, in order (":" for comments).

    Also checks the framing: the message ends with its only blank line.
    """
    lines, rest = spec_split(raw.decode("utf-8"))
    assert rest == "", "the message must end with a line break"
    assert lines and lines[-1] == "", "the message must end with a blank line"
    assert "" not in lines[:-1], "a blank line inside the message would dispatch early"
    return [":" if line.startswith(":") else line.partition(":")[0] for line in lines[:-1]]


def as_client_reads(data: str) -> str:
    """`data` after the protocol's normalisation: CRLF and lone CR come back as LF."""
    return data.replace("\r\n", "\n").replace("\r", "\n")


# -- strategies ----------------------------------------------------------------------

TRICKY_CHARACTERS = ["\r", "\n", "\r\n", "\x00", "\u2028", "\u2029", "\x85", ":", " ", "\ufeff"]

# The Unicode category of the surrogates (typed: mypy infers a bare tuple literal as tuple[str]).
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)

# Any Unicode scalar value (no lone surrogates: they are not UTF-8), biased towards the
# characters that matter to the SSE framing.
any_text = st.lists(
    st.one_of(
        st.characters(exclude_categories=SURROGATES),
        st.sampled_from(TRICKY_CHARACTERS),
    )
).map("".join)

# Text that tries to smuggle a field or an early dispatch into the stream.
injection_text = st.builds(
    lambda before, payload, after: before + payload + after,
    any_text,
    st.sampled_from(
        [
            "\nretry: 1",
            "\r\nevent: evil",
            "\rid: 9-9",
            "\n\ndata: injected",
            "\r\rdata: injected",
            "\x00",
            "\ndata: x\n\n",
        ]
    ),
    any_text,
)

field_text = st.one_of(any_text, injection_text)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | field_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(field_text, children, max_size=5)
    ),
    max_leaves=20,
)
json_payloads: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    field_text, json_values, max_size=5
)


# -- byte-exact wire format ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"data": "hello"}, b"data: hello\n\n", id="plain-data"),
        pytest.param({"data": "a\nb"}, b"data: a\ndata: b\n\n", id="data-lf"),
        pytest.param({"data": "a\r\nb"}, b"data: a\ndata: b\n\n", id="data-crlf"),
        pytest.param({"data": "a\rb"}, b"data: a\ndata: b\n\n", id="data-lone-cr"),
        pytest.param({"data": "a\n\nb"}, b"data: a\ndata: \ndata: b\n\n", id="data-blank-line"),
        pytest.param({"data": "a\n"}, b"data: a\ndata: \n\n", id="data-trailing-newline"),
        pytest.param({"data": ""}, b"data: \n\n", id="data-empty-string"),
        pytest.param({"data": " lead"}, b"data:  lead\n\n", id="data-leading-space"),
        pytest.param({"data": "\U0001f44b"}, b"data: \xf0\x9f\x91\x8b\n\n", id="data-emoji"),
        pytest.param(
            {"data": "\u4f60\u597d"}, b"data: \xe4\xbd\xa0\xe5\xa5\xbd\n\n", id="data-cjk"
        ),
        pytest.param(
            {"data": "a\u2028b"}, b"data: a\xe2\x80\xa8b\n\n", id="data-u2028-is-not-a-break"
        ),
        pytest.param(
            {"data": "x", "event": "chat:message", "id": "1-2"},
            b"id: 1-2\nevent: chat:message\ndata: x\n\n",
            id="id-event-data-order",
        ),
        pytest.param({"retry_ms": 3000}, b"retry: 3000\n\n", id="retry-only"),
        pytest.param({"retry_ms": 0}, b"retry: 0\n\n", id="retry-zero"),
        pytest.param({"comment": "connected"}, b": connected\n\n", id="comment-only"),
        pytest.param({"comment": ""}, b": \n\n", id="comment-empty"),
        pytest.param(
            {"comment": "a\nb\r\nc\rd"}, b": a\n: b\n: c\n: d\n\n", id="comment-multi-line"
        ),
        pytest.param(
            {
                "comment": "hi",
                "retry_ms": 5000,
                "id": "7-8",
                "event": "ping",
                "data": "a\nb",
            },
            b": hi\nretry: 5000\nid: 7-8\nevent: ping\ndata: a\ndata: b\n\n",
            id="all-fields",
        ),
    ],
)
def test_encode_sse_produces_the_exact_bytes(fields: dict[str, Any], expected: bytes) -> None:
    assert encode_sse(**fields) == expected


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(
            Event(
                type="chat:message",
                data={"text": "h\u00e9llo \U0001f44b", "n": 1, "ok": True, "none": None},
                id=EventId(1, 2),
                published_at=1_700_000_000.1234,
            ),
            b'id: 1-2\nevent: chat:message\ndata: {"text":"h\xc3\xa9llo \xf0\x9f\x91\x8b",'
            b'"n":1,"ok":true,"none":null,"sentAt":1700000000123}\n\n',
            id="with-id-compact-json-utf8",
        ),
        pytest.param(
            Event(type="ping", data={"ts": "2024-01-01T00:00:00Z"}, published_at=1704067200.0),
            b'event: ping\ndata: {"ts":"2024-01-01T00:00:00Z","sentAt":1704067200000}\n\n',
            id="without-id-no-id-line",
        ),
        pytest.param(
            Event(
                type="chat:message",
                data={"content": "line1\nline2\r\n"},
                id=EventId(3, 4),
                published_at=2.5,
            ),
            b'id: 3-4\nevent: chat:message\ndata: {"content":"line1\\nline2\\r\\n",'
            b'"sentAt":2500}\n\n',
            id="line-breaks-in-payload-are-json-escaped",
        ),
    ],
)
def test_event_wire_produces_the_exact_bytes(event: Event, expected: bytes) -> None:
    assert event.wire() == expected


# -- guards --------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "event"])
@pytest.mark.parametrize(
    "value",
    ["a\rb", "a\nb", "a\r\nb", "a\x00b", "\r", "\n", "\x00", "1-2\n", "x\nretry: 1"],
    ids=["cr", "lf", "crlf", "nul", "only-cr", "only-lf", "only-nul", "trailing-lf", "injection"],
)
def test_when_id_or_event_contains_cr_lf_or_nul_then_value_error(field: str, value: str) -> None:
    fields: dict[str, Any] = {field: value}  # `id` or `event`: both take a str
    with pytest.raises(ValueError, match="must not contain CR, LF or NUL"):
        encode_sse(data="x", **fields)


@pytest.mark.parametrize("retry_ms", [-1, -5000])
def test_when_retry_is_negative_then_value_error(retry_ms: int) -> None:
    with pytest.raises(ValueError, match="retry must not be negative"):
        encode_sse(retry_ms=retry_ms)


def test_when_no_field_is_given_then_value_error() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        encode_sse()


def test_when_event_name_is_empty_then_clients_see_the_default_message_type() -> None:
    # `event: ` with an empty value leaves the spec's default type, "message".
    (parsed,) = parse_sse(encode_sse(event="", data="x"))
    assert parsed.event == "message"


# -- round trips through a real parser -----------------------------------------------


@given(payload=json_payloads)
def test_event_wire_round_trips_id_type_and_payload_through_an_sse_parser(
    payload: dict[str, Any],
) -> None:
    event = Event(type="chat:message", data=payload, channels=("user:1",), id=EventId(1, 2))
    raw = event.wire()

    (parsed,) = parse_sse(raw)

    assert parsed.id == "1-2"
    assert parsed.event == "chat:message"
    assert parsed.retry is None
    assert json.loads(parsed.data) == {**payload, "sentAt": int(event.published_at * 1000)}
    assert field_names(raw) == ["id", "event", "data"]


def test_when_payload_has_a_lone_surrogate_then_event_wire_still_round_trips() -> None:
    # A JS string with a broken surrogate pair arrives as "\ud83d" through json.loads: the
    # payload is valid JSON and must reach clients exactly, not break every stream.
    payload = {"content": "broken \ud83d pair"}
    event = Event(type="chat:message", data=payload, id=EventId(1, 2))

    (parsed,) = parse_sse(event.wire())

    assert payload_of(parsed.data) == payload


@given(data=any_text)
def test_any_data_comes_back_as_one_event_with_only_line_breaks_normalised(data: str) -> None:
    raw = encode_sse(data=data)

    events = parse_sse(raw)

    assert len(events) == 1
    assert events[0].data == as_client_reads(data)
    assert set(field_names(raw)) == {"data"}


@given(messages=st.lists(any_text, min_size=1, max_size=5))
def test_concatenated_messages_come_back_as_the_same_events_in_order(
    messages: list[str],
) -> None:
    raw = b"".join(encode_sse(data=data) for data in messages)

    events = parse_sse(raw)

    assert [event.data for event in events] == [as_client_reads(data) for data in messages]


@given(comment=field_text)
def test_any_comment_yields_no_event_and_no_field(comment: str) -> None:
    raw = encode_sse(comment=comment)

    assert parse_sse(raw) == []
    assert set(field_names(raw)) == {":"}


@given(value=field_text)
def test_any_id_is_refused_or_read_back_exactly_with_nothing_injected(value: str) -> None:
    forbidden = any(character in value for character in "\r\n\x00")
    if forbidden:
        with pytest.raises(ValueError):
            encode_sse(id=value, data="payload")
        return

    raw = encode_sse(id=value, data="payload")
    (parsed,) = parse_sse(raw)

    assert parsed.id == value
    assert parsed.event == "message"
    assert parsed.retry is None
    assert parsed.data == "payload"
    assert field_names(raw) == ["id", "data"]


@given(value=field_text)
def test_any_event_name_is_refused_or_read_back_exactly_with_nothing_injected(
    value: str,
) -> None:
    forbidden = any(character in value for character in "\r\n\x00")
    if forbidden:
        with pytest.raises(ValueError):
            encode_sse(event=value, data="payload")
        return

    raw = encode_sse(event=value, data="payload")
    (parsed,) = parse_sse(raw)

    # An empty name is the spec's default type (see the dedicated test above).
    assert parsed.event == (value or "message")
    assert parsed.id == ""
    assert parsed.retry is None
    assert parsed.data == "payload"
    assert field_names(raw) == ["event", "data"]
