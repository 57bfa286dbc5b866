"""The Responses writer on its own: typed answer events in, the Responses stream out."""

from __future__ import annotations

from aigateway.translators.client_apis.chat import events as ev
from aigateway.translators.client_apis.responses_stream import (
    ResponseHead,
    ResponsesEventStream,
)
from aigateway.translators.contract import TokenUsage
from tests.translators.client_apis.sinks import TEXT_ITEM_EVENTS, names, write

USAGE = TokenUsage(input_tokens=30, output_tokens=5, total_tokens=35, reasoning_tokens=2)


def stream() -> ResponsesEventStream:
    return ResponsesEventStream(ResponseHead("resp_1", 1700000000, {"model": "m"}))


def test_a_text_answer_is_one_message_item_and_a_completed_response() -> None:
    sink = stream()
    sink.usage = USAGE
    out = write(
        sink, ev.START, ev.TextDelta("Hello"), ev.TextDelta(" there"), ev.Finish("stop"), ev.DONE
    )
    assert names(out) == [
        "response.created",
        "response.in_progress",
        *TEXT_ITEM_EVENTS,
        "response.completed",
    ]
    # Every event numbered in turn, from 0.
    assert [data["sequence_number"] for _, data in out] == list(range(len(out)))
    assert [data["delta"] for name, data in out if name == "response.output_text.delta"] == [
        "Hello",
        " there",
    ]
    item = out[-2][1]["item"]
    assert item["type"] == "message" and item["status"] == "completed"
    assert item["content"][0]["text"] == "Hello there"
    response = out[-1][1]["response"]
    assert response["id"] == "resp_1" and response["status"] == "completed"
    assert response["model"] == "m"
    assert response["output"] == [item]
    assert response["usage"]["input_tokens"] == 30
    assert response["usage"]["output_tokens_details"] == {"reasoning_tokens": 2}
    assert sink.finished


def test_reasoning_then_a_function_call_are_two_items() -> None:
    block = {"type": "thinking", "thinking": "Hmm.", "signature": "sig"}
    out = write(
        stream(),
        ev.ReasoningDelta("Hmm."),
        ev.ThinkingBlock(block),
        ev.ToolCallStart(0, "call_1", "lookup"),
        ev.ToolArgumentsDelta(0, '{"q":'),
        ev.ToolArgumentsDelta(0, '"x"}'),
        ev.Finish("tool_calls"),
        ev.DONE,
    )
    added = [d["item"]["type"] for name, d in out if name == "response.output_item.added"]
    assert added == ["reasoning", "function_call"]
    arguments = [d["delta"] for n, d in out if n == "response.function_call_arguments.delta"]
    assert arguments == ['{"q":', '"x"}']
    done = [d["item"] for name, d in out if name == "response.output_item.done"]
    assert done[0]["type"] == "reasoning"
    assert done[0]["content"] == [{"type": "reasoning_text", "text": "Hmm."}]
    assert done[1]["call_id"] == "call_1" and done[1]["name"] == "lookup"
    assert done[1]["arguments"] == '{"q":"x"}'
    assert [i["type"] for i in out[-1][1]["response"]["output"]] == ["reasoning", "function_call"]


def test_a_length_finish_is_an_incomplete_response() -> None:
    out = write(stream(), ev.TextDelta("Cut"), ev.Finish("length"), ev.DONE)
    assert out[-1][0] == "response.incomplete"
    response = out[-1][1]["response"]
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}


def test_an_error_fails_the_response_with_only_the_finished_items() -> None:
    sink = stream()
    error = {"message": "Overloaded", "type": "server_error", "code": "overloaded_error"}
    out = write(
        sink,
        ev.TextDelta("Done item"),
        ev.ToolCallStart(0, "call_1", "lookup"),  # closes the message, opens the call
        ev.ToolArgumentsDelta(0, "{"),
        ev.Error(error),
        ev.TextDelta("late"),
    )
    assert out[-1][0] == "response.failed"
    response = out[-1][1]["response"]
    assert [item["type"] for item in response["output"]] == ["message"]
    assert response["error"]["message"] == "Overloaded"
    assert sink.finished
    assert write(sink, ev.DONE) == []


def test_keepalives_and_chat_only_usage_write_nothing() -> None:
    sink = stream()
    assert write(sink, ev.KEEPALIVE, ev.Usage(USAGE)) == []
    assert sink.sequence_number == 0
