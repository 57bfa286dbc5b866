"""OpenAI Responses: the request read as a chat request, answers and events written from
chat answers through every kind of backend translator (the pivot), and the passthrough to
backends that speak it. Shapes are checked with the ``openai`` SDK's own models."""

from __future__ import annotations

import json
import re
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseInputItemParam, ResponseStreamEvent

from aigateway.translators.backends.anthropic import AnthropicMessagesTranslator
from aigateway.translators.backends.bedrock import BedrockConverseTranslator
from aigateway.translators.backends.gemini import GeminiChatTranslator
from aigateway.translators.backends.openai import OpenAIChatTranslator
from aigateway.translators.client_apis.pivot import PivotTranslator
from aigateway.translators.client_apis.responses import (
    AZURE_RESPONSES_PATH,
    ResponsesApi,
    ResponsesPassthroughTranslator,
    usage_from_responses,
)
from aigateway.translators.client_apis.responses_request import (
    decode_reasoning,
    encode_reasoning,
    read_responses_request,
)
from aigateway.translators.contract import StreamEnding, TokenUsage, TranslationError
from tests.translators.anthropic_wire import tool_use
from tests.translators.client_apis.sinks import TEXT_ITEM_EVENTS

EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
RESPONSE_INPUT_ITEM: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseInputItemParam)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": None,
}


def chat(payload: dict[str, Any]) -> dict[str, Any]:
    return read_responses_request({"model": "m", **payload}).chat


def anthropic_pivot(**payload: Any) -> PivotTranslator:
    t = PivotTranslator(AnthropicMessagesTranslator("claude-x"), ResponsesApi())
    body = {"model": "claude", "input": "Hi", **payload}
    t.request(body, json.dumps(body).encode())
    return t


def anthropic_sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def events_of(body: bytes, *, check: bool = True) -> list[dict[str, Any]]:
    """Each event's data, after checking its ``event:`` line names its type and (with
    ``check``) that the SDK parses it."""
    out = []
    for raw in body.decode().split("\n\n"):
        if not raw or raw.startswith(":"):
            continue  # a keep-alive comment
        name, data = raw.split("\n", 1)
        doc = json.loads(data.removeprefix("data: "))
        assert name == f"event: {doc['type']}"
        if check:
            EVENTS.validate_python(doc)
        out.append(doc)
    return out


ANSWER_WITH_TOOL = (
    {
        "type": "message_start",
        "message": {"id": "msg_1", "usage": {"input_tokens": 4, "output_tokens": 1}},
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "check."}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": tool_use("toolu_1", "get_weather", {}),
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"city":'},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}},
    {"type": "message_stop"},
)


# -- the request ----------------------------------------------------------------------


def test_a_string_input_and_instructions_are_a_system_and_a_user_message() -> None:
    out = chat({"input": "Hello", "instructions": "Be brief", "max_output_tokens": 50})
    assert out["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hello"},
    ]
    assert out["max_completion_tokens"] == 50
    assert "stream" not in out


def test_streams_ask_the_backend_for_usage() -> None:
    out = chat({"input": "Hello", "stream": True})
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


def test_items_become_chat_messages_with_tool_calls_and_results() -> None:
    out = chat(
        {
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Weather?"},
                        {
                            "type": "input_image",
                            "image_url": "data:image/png;base64,AAAA",
                            "detail": "low",
                        },
                        {
                            "type": "input_file",
                            "file_data": "data:application/pdf;base64,JVBE",
                            "filename": "a.pdf",
                        },
                    ],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Checking"}],
                },
                {
                    "type": "function_call",
                    "call_id": "c1",
                    "name": "get_weather",
                    "arguments": '{"city":"Paris"}',
                },
                {
                    "type": "function_call",
                    "call_id": "c2",
                    "name": "get_weather",
                    "arguments": "{}",
                },
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {
                    "type": "function_call_output",
                    "call_id": "c2",
                    "output": [{"type": "input_text", "text": "rain"}],
                },
            ],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": False,
        }
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                },
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Checking"}],
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "rain"}]},
    ]
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["parameters"],
            },
        }
    ]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert out["parallel_tool_calls"] is False


def test_structured_answers_and_reasoning_effort_map_to_their_chat_fields() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = chat(
        {
            "input": "x",
            "text": {
                "format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
            },
            "reasoning": {"effort": "low", "summary": "auto"},
        }
    )
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }
    assert out["reasoning_effort"] == "low"
    assert "response_format" not in chat({"input": "x", "text": {"format": {"type": "text"}}})


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"store": True}, "store"),
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"include": ["file_search_call.results"]}, "include[0]"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}, "tools[0].type"),
        ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[0].type"),
        ({"tools": [{"type": "computer_use_preview"}]}, "tools[0].type"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"type": "web_search_call", "id": "ws"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
        ),
        (
            {"input": [{"type": "reasoning", "encrypted_content": "gAAAA-openai"}]},
            "input[0].encrypted_content",
        ),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"max_tool_calls": 3}, "max_tool_calls"),
        (
            {"tools": [{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}]},
            "tools[0].tools[0].type",
        ),
    ],
)
def test_what_other_backends_cannot_do_is_a_400_naming_the_field(
    payload: dict[str, Any], param: str
) -> None:
    with pytest.raises(TranslationError) as caught:
        chat({"input": "x", **payload})
    assert caught.value.param == param


# -- OpenAI's tool search (docs/client-apis.md, "OpenAI Responses API") -------------------

#: The items a turn with OpenAI's tool search leaves in the conversation, as the SDK types
#: them: the search (the model asked for weather tools) and what it loaded (a namespace).
TOOL_SEARCH_ITEMS: list[ResponseInputItemParam] = [
    {
        "type": "tool_search_call",
        "id": "tsc_1",
        "call_id": None,
        "arguments": {"query": "weather"},
        "execution": "server",
        "status": "completed",
    },
    {
        "type": "tool_search_output",
        "id": "tso_1",
        "call_id": None,
        "execution": "server",
        "status": "completed",
        "tools": [
            {
                "type": "namespace",
                "name": "forecast",
                "description": "Forecasts.",
                "tools": [
                    {
                        "type": "function",
                        "name": "get_weather",
                        "parameters": WEATHER["parameters"],
                        "defer_loading": True,
                    }
                ],
            }
        ],
    },
]


def test_a_replayed_tool_search_leaves_the_search_out_and_loads_its_tools() -> None:
    t = PivotTranslator(AnthropicMessagesTranslator("claude-x"), ResponsesApi())
    body = {
        "model": "claude",
        "tools": [{"type": "tool_search"}, {**WEATHER, "defer_loading": True}],
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            *TOOL_SEARCH_ITEMS,
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "namespace": "forecast",
                "arguments": '{"city": "Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
    }
    for item in body["input"]:
        RESPONSE_INPUT_ITEM.validate_python(item)  # the SDK's own shapes
    read = read_responses_request(body)
    assert [tool["function"]["name"] for tool in read.chat["tools"]] == [
        "get_weather",  # the request's own, deferred: sent with the others
        "forecast__get_weather",  # what the search loaded
    ]
    assert [m["role"] for m in read.chat["messages"]] == ["user", "assistant", "tool"]
    call = read.chat["messages"][1]["tool_calls"][0]["function"]
    assert call["name"] == "forecast__get_weather"
    upstream = json.loads(t.request(body, json.dumps(body).encode()).body or b"")
    assert [tool["name"] for tool in upstream["tools"]] == ["get_weather", "forecast__get_weather"]
    assert "tool_search" not in json.dumps(upstream)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"tools": [{"type": "tool_search", "execution": "client"}]}, "tools[0].execution"),
        ({"tools": [{"type": "tool_search", "execution": "elsewhere"}]}, "tools[0].execution"),
        (
            {"input": [{"type": "tool_search_output", "tools": [{"type": "web_search"}]}]},
            "input[0].tools[0].type",
        ),
        ({"input": [{"type": "tool_search_output"}]}, "input[0].tools"),
        (
            {
                "input": [
                    {
                        "type": "tool_search_output",
                        "tools": [{**WEATHER, "allowed_callers": ["programmatic"]}],
                    }
                ]
            },
            "input[0].tools[0].allowed_callers",
        ),
    ],
)
def test_a_tool_search_that_would_change_the_answer_is_a_400_naming_it(
    payload: dict[str, Any], param: str
) -> None:
    """A search the client runs would find tools the request does not hold; what a
    search loaded is read as every tool is."""
    with pytest.raises(TranslationError) as caught:
        chat({"input": [{"role": "user", "content": "x"}], **payload})
    assert caught.value.param == param


def test_store_false_background_false_and_fields_sent_as_null_are_fine() -> None:
    out = chat(
        {
            "input": "x",
            "store": False,
            "background": False,
            "previous_response_id": None,
            "include": ["reasoning.encrypted_content"],
            "metadata": {"k": "v"},
            "truncation": "disabled",
        }
    )
    assert out["messages"] == [{"role": "user", "content": "x"}]


def test_a_backend_refusal_names_the_responses_field() -> None:
    t = PivotTranslator(GeminiChatTranslator("/v1beta/models/g"), ResponsesApi())
    body = {
        "model": "g",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "x"},
                    {"type": "input_image", "image_url": "https://x/a.png"},
                ],
            }
        ],
    }
    with pytest.raises(TranslationError) as caught:
        t.request(body, b"")
    assert caught.value.param is not None and caught.value.param.startswith("input[0]")
    t = PivotTranslator(AnthropicMessagesTranslator("c"), ResponsesApi())
    with pytest.raises(TranslationError) as caught:
        t.request({"model": "c", "input": "x", "max_output_tokens": 0}, b"")
    assert caught.value.param == "max_output_tokens"
    assert "'max_output_tokens'" in caught.value.message


def test_reasoning_round_trips_through_encrypted_content() -> None:
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]
    assert decode_reasoning(encode_reasoning(blocks), "input[0]") == blocks
    out = chat(
        {
            "input": [
                {"role": "user", "content": "x"},
                {"type": "reasoning", "summary": [], "encrypted_content": encode_reasoning(blocks)},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            ]
        }
    )
    assert out["messages"][1]["thinking_blocks"] == blocks
    assert out["messages"][1]["tool_calls"][0]["id"] == "c1"


# -- answers through the pivot --------------------------------------------------------


def test_a_whole_answer_is_a_response_with_a_message_a_function_call_and_usage() -> None:
    t = anthropic_pivot(tools=[WEATHER], max_output_tokens=100, instructions="Be brief")
    assert t.response_headers(200, "application/json").content_type == "application/json"
    upstream = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "text", "text": "Let me check."},
            tool_use("toolu_1", "get_weather", {"city": "Paris"}),
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 2},
    }
    out = t.response_body(json.dumps(upstream).encode(), True)
    assert out.complete and out.error is None
    assert out.usage == TokenUsage(12, 7, 19, cached_input_tokens=2)
    assert out.body is not None
    response = Response.model_validate_json(out.body)
    assert response.status == "completed"
    assert response.model == "claude"
    assert response.instructions == "Be brief"
    assert response.max_output_tokens == 100
    assert response.output_text == "Let me check."
    call = response.output[1]
    assert call.type == "function_call"
    assert (call.call_id, call.name, json.loads(call.arguments)) == (
        "toolu_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert response.usage is not None
    assert (
        response.usage.input_tokens,
        response.usage.output_tokens,
        response.usage.total_tokens,
    ) == (12, 7, 19)
    assert response.usage.input_tokens_details.cached_tokens == 2
    assert response.id.startswith("resp_")


def test_a_length_cut_answer_is_incomplete() -> None:
    t = anthropic_pivot()
    t.response_headers(200, "application/json")
    upstream = {
        "id": "m",
        "content": [{"type": "text", "text": "half"}],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    out = t.response_body(json.dumps(upstream).encode(), True)
    assert out.body is not None
    response = Response.model_validate_json(out.body)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def test_the_stream_is_the_event_sequence_the_sdk_expects() -> None:
    t = anthropic_pivot(tools=[WEATHER], stream=True)
    assert t.response_headers(200, "text/event-stream").content_type == "text/event-stream"
    out = t.response_body(anthropic_sse(*ANSWER_WITH_TOOL), False)
    assert out.complete and out.error is None
    assert out.body is not None
    events = events_of(out.body)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        *TEXT_ITEM_EVENTS,
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    ids = {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1
    assert events[6]["text"] == "Let me check."
    assert events[12]["arguments"] == '{"city":"Paris"}'
    assert events[13]["item"]["call_id"] == "toolu_1"
    final = Response.model_validate(events[-1]["response"])
    assert final.output_text == "Let me check."
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (
        4,
        7,
    )
    assert [item.type for item in final.output] == ["message", "function_call"]


def normalized(body: bytes) -> str:
    return re.sub(
        r'"(resp|msg|fc|rs)_[0-9a-f]{32}"',
        r'"\1_X"',
        re.sub(r'"created_at":\d+', "", body.decode()),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2000), max_size=12))
def test_any_split_of_the_upstream_stream_gives_the_same_events(cuts: list[int]) -> None:
    whole = anthropic_sse(*ANSWER_WITH_TOOL)
    expected = anthropic_pivot(tools=[WEATHER], stream=True)
    expected.response_headers(200, "text/event-stream")
    want = expected.response_body(whole, True).body
    assert want is not None
    t = anthropic_pivot(tools=[WEATHER], stream=True)
    t.response_headers(200, "text/event-stream")
    got = b""
    start = 0
    for cut in sorted({c % len(whole) for c in cuts} | {len(whole)}):
        out = t.response_body(whole[start:cut], cut == len(whole))
        got += out.body or b""
        start = cut
    assert normalized(got) == normalized(want)


def test_an_upstream_error_event_ends_the_stream_with_response_failed() -> None:
    t = anthropic_pivot(stream=True)
    t.response_headers(200, "text/event-stream")
    body = anthropic_sse(
        ANSWER_WITH_TOOL[0],
        ANSWER_WITH_TOOL[1],
        ANSWER_WITH_TOOL[3],
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    out = t.response_body(body, False)
    assert out.complete and out.error == "upstream_stream_error"
    assert out.body is not None
    events = events_of(out.body)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "Overloaded"}
    assert out.usage is not None and out.usage.input_tokens == 4
    assert t.response_body(b"more", True).body == b""


def test_a_truncated_stream_ends_with_response_failed() -> None:
    t = anthropic_pivot(stream=True)
    t.response_headers(200, "text/event-stream")
    out = t.response_body(anthropic_sse(*ANSWER_WITH_TOOL[:4]), True)
    assert out.complete and out.error == "upstream_truncated"
    assert out.body is not None
    assert events_of(out.body)[-1]["type"] == "response.failed"


def test_a_stream_the_gateway_must_end_gets_an_error_event_in_sequence() -> None:
    t = anthropic_pivot(stream=True)
    t.response_headers(200, "text/event-stream")
    out = t.response_body(anthropic_sse(*ANSWER_WITH_TOOL[:4]), False)
    assert isinstance(t, StreamEnding)
    assert out.body is not None
    seen = events_of(out.body)
    ending = events_of(t.end_stream("broken body", "upstream_bad_encoding"))
    assert ending[-1]["type"] == "response.failed"
    assert ending[0]["sequence_number"] == seen[-1]["sequence_number"] + 1


@pytest.mark.parametrize(
    "inner",
    [
        lambda: OpenAIChatTranslator("gpt"),
        lambda: BedrockConverseTranslator("anthropic.claude-x"),
        lambda: GeminiChatTranslator("/v1beta/models/g"),
    ],
)
def test_every_chat_translator_can_be_the_pivot(inner: Any) -> None:
    t = PivotTranslator(inner(), ResponsesApi())
    up = t.request({"model": "m", "input": "Hello there", "max_output_tokens": 20}, b"")
    assert up.body is not None  # the chat request, never the client's Responses bytes
    sent = json.loads(up.body)
    assert "input" not in sent


def test_upstream_errors_keep_openai_s_shape() -> None:
    t = anthropic_pivot()
    body = t.error_body(
        429, b'{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}', {}
    )
    assert body is not None
    assert json.loads(body)["error"]["message"] == "slow"


# -- passthrough (OpenAI, Azure OpenAI) -----------------------------------------------


def test_passthrough_swaps_only_the_model_name() -> None:
    t = ResponsesPassthroughTranslator("gpt-4o-2024")
    payload = {"model": "gpt", "input": "x", "store": True}
    up = t.request(payload, b"")
    assert (up.path, json.loads(up.body or b"")) == (
        "/v1/responses",
        {"model": "gpt-4o-2024", "input": "x", "store": True},
    )
    same = ResponsesPassthroughTranslator("gpt").request({"model": "gpt", "input": "x"}, b"raw")
    assert same.body is None  # the client's bytes go unchanged
    azure = ResponsesPassthroughTranslator("deploy", AZURE_RESPONSES_PATH).request(
        {"model": "a"}, b""
    )
    assert azure.path == "/openai/v1/responses"


def test_passthrough_reads_usage_from_the_json_answer() -> None:
    t = ResponsesPassthroughTranslator()
    t.response_headers(200, "application/json")
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 15,
    }
    out = t.response_body(
        json.dumps({"id": "resp_1", "object": "response", "usage": usage}).encode(), True
    )
    assert out.body is None and out.complete
    assert out.usage == TokenUsage(10, 5, 15, cached_input_tokens=4, reasoning_tokens=2)


def openai_events(*docs: dict[str, Any]) -> bytes:
    return b"".join(
        f"event: {d['type']}\ndata: {json.dumps({**d, 'sequence_number': i})}\n\n".encode()
        for i, d in enumerate(docs)
    )


COMPLETED = {
    "type": "response.completed",
    "response": {
        "id": "resp_1",
        "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
    },
}


def test_passthrough_streams_pass_byte_for_byte_and_complete_at_response_completed() -> None:
    t = ResponsesPassthroughTranslator()
    assert t.response_headers(200, "text/event-stream").streamed
    head = openai_events(
        {"type": "response.created", "response": {"id": "resp_1"}},
        {"type": "response.output_text.delta", "delta": "hi"},
    )
    out = t.response_body(head, False)
    assert out.body is None and not out.complete and out.usage is None
    tail = openai_events(COMPLETED)
    out = t.response_body(tail, False)
    assert out.body is None and out.complete and out.error is None
    assert out.usage == TokenUsage(3, 2, 5)
    assert t.response_body(b"event: late\ndata: {}\n\n", True).body == b""


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("response.failed", "upstream_stream_error"),
        ("error", "upstream_stream_error"),
        ("response.incomplete", None),
    ],
)
def test_passthrough_terminal_events(kind: str, error: str | None) -> None:
    t = ResponsesPassthroughTranslator()
    t.response_headers(200, "text/event-stream")
    out = t.response_body(
        openai_events({"type": kind, "response": {"usage": {"input_tokens": 1}}}), False
    )
    assert out.complete and out.error == error


def test_passthrough_truncated_and_broken_streams_end_with_an_error_event() -> None:
    t = ResponsesPassthroughTranslator()
    t.response_headers(200, "text/event-stream")
    out = t.response_body(openai_events({"type": "response.created", "response": {}}), True)
    assert out.complete and out.error == "upstream_truncated"
    assert out.body is not None
    last = events_of(out.body, check=False)[-1]
    EVENTS.validate_python(last)
    assert (last["type"], last["code"], last["sequence_number"]) == (
        "error",
        "upstream_truncated",
        1,
    )
    t = ResponsesPassthroughTranslator()
    t.response_headers(200, "text/event-stream")
    out = t.response_body(b"event: x\ndata: {not json\n\n", False)
    assert out.complete and out.error == "upstream_invalid_json"
    assert out.body is not None
    assert EVENTS.validate_python(events_of(out.body, check=False)[-1]).type == "error"


def test_usage_reads_cache_writes_and_ignores_non_objects() -> None:
    assert usage_from_responses("x") is None
    usage = usage_from_responses(
        {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 3}}
    )
    assert usage == TokenUsage(5, 0, 5, cached_input_tokens=0, cache_write_input_tokens=3)


def test_response_created_goes_out_with_the_upstream_s_first_event() -> None:
    t = anthropic_pivot(stream=True)
    t.response_headers(200, "text/event-stream")
    out = t.response_body(anthropic_sse(ANSWER_WITH_TOOL[0]), False)
    assert out.body is not None
    assert [e["type"] for e in events_of(out.body)] == ["response.created", "response.in_progress"]


def test_anthropic_pings_reach_the_client_as_keep_alives_in_place() -> None:
    t = anthropic_pivot(stream=True)
    t.response_headers(200, "text/event-stream")
    start = {
        "type": "message_start",
        "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 3}},
    }
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    first = t.response_body(anthropic_sse(start, block, {"type": "ping"}), False).body
    assert first is not None and first.endswith(b": ping\n\n")
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
    later = t.response_body(
        anthropic_sse({**delta, "delta": {**delta["delta"], "text": "Hi"}}), False
    )
    assert later.body is not None and b"ping" not in later.body
