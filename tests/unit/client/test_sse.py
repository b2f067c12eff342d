from __future__ import annotations

from userstream.client._sse import SseDecoder, SseMessage


def feed(decoder: SseDecoder, text: str) -> list[SseMessage]:
    messages = [decoder.feed(line) for line in text.split("\n")]
    return [message for message in messages if message is not None]


def test_events_ids_and_multiline_data() -> None:
    decoder = SseDecoder()
    messages = feed(decoder, 'event: change\nid: 41\ndata: {"a":\ndata: 1}\n\n: a comment\nevent: ping\ndata: {}\n\n')
    assert messages == [SseMessage("change", '{"a":\n1}', "41"), SseMessage("ping", "{}", None)]


def test_retry_only_blocks_set_retry_and_dispatch_nothing() -> None:
    decoder = SseDecoder()
    assert feed(decoder, "retry: 3000\n\n") == []
    assert decoder.retry == 3000
    feed(decoder, "retry: soon\n\n")
    assert decoder.retry == 3000


def test_a_block_without_data_is_not_dispatched_and_does_not_leak_its_fields() -> None:
    decoder = SseDecoder()
    assert feed(decoder, "event: offset\nid: 7\n\ndata: x\n\n") == [SseMessage("message", "x", None)]


def test_a_single_space_after_the_colon_is_dropped_only_once() -> None:
    decoder = SseDecoder()
    assert feed(decoder, "data:  two\n\ndata:none\n\n") == [
        SseMessage("message", " two", None),
        SseMessage("message", "none", None),
    ]
