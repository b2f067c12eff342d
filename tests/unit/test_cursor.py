"""Cursors: parse/format round trip, order, malformed input, and where a cursor stands in a log."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from userstream.cursor import SEQUENCE_SPAN, Cursor, CursorCodec, CursorError, LogBounds, Position, parse_cursor

LOG_IDS = st.integers(min_value=1, max_value=99_999_999_999)  # creation times, in seconds, for millennia
SEQUENCES = st.integers(min_value=0, max_value=SEQUENCE_SPAN - 1)
CURSORS = st.builds(Cursor, LOG_IDS, SEQUENCES)


@given(CURSORS)
def test_round_trip(cursor: Cursor) -> None:
    assert parse_cursor(str(cursor)) == cursor


@given(LOG_IDS, SEQUENCES)
def test_codec_agrees_with_cursor(log_id: int, sequence: int) -> None:
    codec = CursorCodec(log_id)
    assert codec.encode(sequence) == str(Cursor(log_id, sequence))
    assert codec.cursor(sequence) == Cursor(log_id, sequence)
    assert parse_cursor(codec.encode(sequence)) == Cursor(log_id, sequence)


@given(LOG_IDS, SEQUENCES, SEQUENCES)
def test_order_of_one_log_is_the_order_of_sequences(log_id: int, a: int, b: int) -> None:
    codec = CursorCodec(log_id)
    assert (int(codec.encode(a)) < int(codec.encode(b))) == (a < b)


@given(CURSORS, CURSORS)
def test_cursors_of_a_later_log_sort_after_every_cursor_of_an_earlier_one(x: Cursor, y: Cursor) -> None:
    if x.log_id != y.log_id:
        assert (int(str(x)) < int(str(y))) == (x.log_id < y.log_id)


@given(SEQUENCES)
def test_a_bare_sequence_is_a_position_in_the_current_log(sequence: int) -> None:
    assert parse_cursor(str(sequence)) == Cursor(0, sequence)


def test_example_from_the_docstring() -> None:
    assert parse_cursor("1796012345000000000057") == Cursor(1796012345, 57)
    assert str(Cursor(1796012345, 57)) == "1796012345000000000057"
    assert str(Cursor(1796012345, 0)) == "1796012345000000000000"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "-1",
        "+1",
        "1.0",
        "1e3",
        "0x10",
        " 1",
        "1 ",
        "1\n",
        "01",
        "00",
        "now",
        "1_000",
        "١٢٣",  # Arabic-Indic digits: digits to Python, not to us
        "²",
        "9" * 26,
    ],
)
def test_malformed_cursors_are_rejected(text: str) -> None:
    with pytest.raises(CursorError):
        parse_cursor(text)


@given(st.text())
def test_parse_either_returns_a_cursor_that_formats_back_or_raises(text: str) -> None:
    try:
        cursor = parse_cursor(text)
    except CursorError:
        return
    assert str(cursor) == text


@given(st.text(alphabet=st.characters(blacklist_categories=["Nd"]), min_size=1))
def test_text_without_digits_is_never_a_cursor(text: str) -> None:
    with pytest.raises(CursorError):
        parse_cursor(text)


BOUNDS = LogBounds(log_id=1796012345, first_sequence=11, last_sequence=20)


@pytest.mark.parametrize(
    ("cursor", "position"),
    [
        (Cursor(1796012345, 20), Position.VALID),  # the head: nothing after it yet
        (Cursor(1796012345, 15), Position.VALID),
        (Cursor(1796012345, 10), Position.VALID),  # everything after 10 is retained
        (Cursor(1796012345, 9), Position.EXPIRED),  # event 10 is gone
        (Cursor(1796012345, 0), Position.EXPIRED),
        (Cursor(1796012345, 21), Position.UNKNOWN),  # ahead of the head
        (Cursor(1796012344, 15), Position.UNKNOWN),  # another log
        (Cursor(1796012346, 15), Position.UNKNOWN),
        (Cursor(0, 15), Position.VALID),  # a bare sequence
        (Cursor(0, 9), Position.EXPIRED),
        (Cursor(0, 21), Position.UNKNOWN),
    ],
)
def test_locate(cursor: Cursor, position: Position) -> None:
    assert BOUNDS.locate(cursor) is position


def test_empty_log_knows_only_its_start() -> None:
    empty = LogBounds(log_id=7, first_sequence=0, last_sequence=0)
    assert empty.locate(Cursor(7, 0)) is Position.VALID
    assert empty.locate(Cursor(0, 0)) is Position.VALID
    assert empty.locate(Cursor(7, 1)) is Position.UNKNOWN
    assert empty.head == Cursor(7, 0)


def test_log_whose_events_all_expired() -> None:
    # JetStream reports first = last + 1 once every retained message is gone.
    bounds = LogBounds(log_id=7, first_sequence=31, last_sequence=30)
    assert bounds.locate(Cursor(7, 30)) is Position.VALID
    assert bounds.locate(Cursor(7, 29)) is Position.EXPIRED
    assert bounds.head == Cursor(7, 30)


@given(LOG_IDS, st.integers(min_value=1, max_value=10**9), st.integers(min_value=0, max_value=10**6), SEQUENCES)
def test_locate_is_valid_exactly_when_nothing_after_the_cursor_is_lost(
    log_id: int, first: int, length: int, sequence: int
) -> None:
    bounds = LogBounds(log_id, first, first + length - 1)
    expected = (
        Position.UNKNOWN
        if sequence > bounds.last_sequence
        else Position.EXPIRED
        if sequence < first - 1
        else Position.VALID
    )
    assert bounds.locate(Cursor(log_id, sequence)) is expected
