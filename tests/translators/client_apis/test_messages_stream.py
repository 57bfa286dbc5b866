"""The Messages writer on its own: typed answer events in, Anthropic's stream out."""

from __future__ import annotations

from aigateway.translators.client_apis.chat import events as ev
from aigateway.translators.client_apis.messages_stream import MessagesEventStream
from aigateway.translators.contract import TokenUsage
from tests.translators.anthropic_wire import tool_use
from tests.translators.client_apis.sinks import names, write

USAGE = TokenUsage(input_tokens=30, output_tokens=5, total_tokens=35, cached_input_tokens=10)


def stream() -> MessagesEventStream:
    return MessagesEventStream("msg_1", "claude")


def test_a_text_answer_is_one_text_block_between_start_and_stop() -> None:
    sink = stream()
    sink.usage = USAGE
    out = write(
        sink, ev.START, ev.TextDelta("Hello"), ev.TextDelta(" there"), ev.Finish("stop"), ev.DONE
    )
    assert names(out) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert out[0][1]["message"]["id"] == "msg_1" and out[0][1]["message"]["model"] == "claude"
    assert out[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert [d["delta"] for _, d in out[2:4]] == [
        {"type": "text_delta", "text": "Hello"},
        {"type": "text_delta", "text": " there"},
    ]
    # Anthropic's input_tokens leave out cache reads, which OpenAI's prompt tokens include.
    assert out[5][1]["usage"] == {
        "input_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 10,
        "output_tokens": 5,
    }
    assert out[5][1]["delta"]["stop_reason"] == "end_turn"
    assert sink.finished


def test_thinking_text_and_a_tool_call_are_blocks_numbered_in_turn() -> None:
    block = {"type": "thinking", "thinking": "Hmm.", "signature": "sig"}
    out = write(
        stream(),
        ev.START,
        ev.ReasoningDelta("Hmm."),
        ev.ThinkingBlock(block),
        ev.TextDelta("Let me look."),
        ev.ToolCallStart(0, "toolu_1", "lookup"),
        ev.ToolArgumentsDelta(0, '{"q":'),
        ev.ToolArgumentsDelta(0, '"x"}'),
        ev.Finish("tool_calls"),
        ev.DONE,
    )
    starts = [d for name, d in out if name == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [
        (0, "thinking"),
        (1, "text"),
        (2, "tool_use"),
    ]
    assert starts[2]["content_block"] == tool_use("toolu_1", "lookup", {})
    deltas = [(d["index"], d["delta"]) for name, d in out if name == "content_block_delta"]
    assert deltas == [
        (0, {"type": "thinking_delta", "thinking": "Hmm."}),
        (0, {"type": "signature_delta", "signature": "sig"}),
        (1, {"type": "text_delta", "text": "Let me look."}),
        (2, {"type": "input_json_delta", "partial_json": '{"q":'}),
        (2, {"type": "input_json_delta", "partial_json": '"x"}'}),
    ]
    assert [d["index"] for name, d in out if name == "content_block_stop"] == [0, 1, 2]
    assert out[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_a_whole_thinking_block_and_a_redacted_one_become_blocks_of_their_own() -> None:
    out = write(
        stream(),
        ev.ThinkingBlock({"type": "thinking", "thinking": "All at once.", "signature": "s"}),
        ev.ThinkingBlock({"type": "redacted_thinking", "data": "opaque"}),
        ev.DONE,
    )
    starts = [d["content_block"] for name, d in out if name == "content_block_start"]
    assert starts == [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "redacted_thinking", "data": "opaque"},
    ]
    deltas = [d["delta"] for name, d in out if name == "content_block_delta"]
    assert deltas == [
        {"type": "thinking_delta", "thinking": "All at once."},
        {"type": "signature_delta", "signature": "s"},
    ]


def test_arguments_of_a_call_whose_block_is_closed_are_dropped() -> None:
    out = write(
        stream(),
        ev.ToolCallStart(0, "a", "one"),
        ev.ToolCallStart(1, "b", "two"),
        ev.ToolArgumentsDelta(0, "{}"),  # call 0's block was closed by call 1's start
        ev.ToolArgumentsDelta(1, "{}"),
        ev.DONE,
    )
    deltas = [
        (d["index"], d["delta"]["partial_json"]) for n, d in out if n == "content_block_delta"
    ]
    assert deltas == [(1, "{}")]


def test_an_error_ends_the_stream_and_nothing_follows() -> None:
    sink = stream()
    error = {"message": "Too many requests", "type": "rate_limit_error", "code": None}
    out = write(sink, ev.START, ev.TextDelta("Hi"), ev.Error(error), ev.TextDelta("late"), ev.DONE)
    assert names(out)[-1] == "error"
    assert out[-1][1] == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Too many requests"},
    }
    assert sink.finished
    assert write(sink, ev.TextDelta("more"), ev.DONE) == []


def test_keepalives_and_chat_only_usage_write_nothing() -> None:
    out = write(stream(), ev.KEEPALIVE, ev.Usage(USAGE), ev.KEEPALIVE)
    assert out == []


def test_an_empty_answer_still_starts_and_stops() -> None:
    assert names(write(stream(), ev.DONE)) == ["message_start", "message_delta", "message_stop"]


def test_the_buffer_gives_the_chunks_usage_to_events_written_before_it_was_known() -> None:
    writer = stream()
    buffer = ev.EventBuffer(writer)
    buffer.start()  # the backend's first event: usage not reported yet
    buffer.text("Hi")
    buffer.usage = USAGE  # reported later in the same chunk
    out = write(buffer)
    assert out[0][0] == "message_start"
    assert out[0][1]["message"]["usage"]["input_tokens"] == 20
    assert not buffer.finished
    buffer.done()
    assert names(write(buffer))[-1] == "message_stop"
    assert buffer.finished
