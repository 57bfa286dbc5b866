"""Gemini translator (the Gemini API and Vertex AI): request mapping, JSON and SSE
responses, usage, errors, embeddings; and the Anthropic translator's Vertex variant.

Wire data is handwritten from Google's generateContent / streamGenerateContent reference
(camelCase JSON, SSE events separated by CRLF as the Gemini API sends them).
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion

from aigateway.translators.backends.anthropic import AnthropicMessagesTranslator, VertexRawPredict
from aigateway.translators.backends.gemini import (
    GeminiChatTranslator,
    GeminiEmbeddingsTranslator,
    call_id_with_signature,
    gemini_model_path,
    generate_content_request,
    thought_signature_of,
    vertex_model_path,
)
from aigateway.translators.contract import TokenUsage, TranslationError
from tests.chat_tools import weather_tool
from tests.translators.backends.shared import (
    PNG_B64,
    PNG_URL,
    UPSTREAM_CONNECT_ERROR,
    chunks_of,
    feed_split,
    image_part,
    openai_error,
    requested,
    sse_data,
    tool_call,
)

MODEL_PATH = "/v1beta/models/gemini-2.5-flash"
WEATHER_TOOL = weather_tool({"city": {"type": "string"}}, ["city"])


def req(**payload: Any) -> dict[str, Any]:
    full = {"model": "gemini", "messages": [{"role": "user", "content": "x"}], **payload}
    return generate_content_request(full)


def translator(**payload: Any) -> GeminiChatTranslator:
    t = GeminiChatTranslator(MODEL_PATH, completion_id="chatcmpl-test", created=1700000000)
    return requested(t, "gemini", **payload)


def sse(*docs: dict[str, Any]) -> bytes:
    # The Gemini API ends its SSE lines with CRLF.
    return b"".join(b"data: " + json.dumps(d).encode() + b"\r\n\r\n" for d in docs)


def response(
    parts: list[dict[str, Any]],
    finish: str | None = "STOP",
    usage: dict[str, Any] | None = None,
    response_id: str = "mHyVaKO9LpGxnvgPz5XHuAU",
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    doc: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": "gemini-2.5-flash",
        "responseId": response_id,
    }
    if usage is not None:
        doc["usageMetadata"] = usage
    return doc


USAGE = {
    "promptTokenCount": 9,
    "candidatesTokenCount": 12,
    "totalTokenCount": 45,
    "thoughtsTokenCount": 24,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
}
PARTIAL_USAGE = {"promptTokenCount": 9, "totalTokenCount": 9}

TEXT_STREAM = [
    response([{"text": "The"}], None, PARTIAL_USAGE),
    response([{"text": " capital is"}], None, PARTIAL_USAGE),
    response([{"text": " Paris."}], "STOP", USAGE),
]
TOOL_STREAM = [
    response(
        [
            {"text": "Checking."},
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "CiIBVKhc7oDy",
            },
            {"functionCall": {"name": "get_weather", "args": {"city": "Lyon"}}},
        ],
        "STOP",
        {"promptTokenCount": 30, "candidatesTokenCount": 14, "totalTokenCount": 44},
    ),
]
ERROR_EVENT = {
    "error": {
        "code": 503,
        "message": "The model is overloaded. Please try again later.",
        "status": "UNAVAILABLE",
    }
}


# --- request ---------------------------------------------------------------------------


def test_basic_request() -> None:
    body = req(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Metric units."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hello"},
            {
                "role": "user",
                "content": [{"type": "text", "text": ""}, {"type": "text", "text": "?"}],
            },
        ],
        max_completion_tokens=100,
        max_tokens=5,
        temperature=0.2,
        top_p=0.9,
        stop="END",
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        user="someone",
        logit_bias=None,
        modalities=["text"],
    )
    assert body == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Metric units."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}, {"text": "there"}]},
            {"role": "model", "parts": [{"text": "Hello"}]},
            {"role": "user", "parts": [{"text": "?"}]},
        ],
        "generationConfig": {
            "maxOutputTokens": 100,
            "temperature": 0.2,
            "topP": 0.9,
            "presencePenalty": 0.5,
            "frequencyPenalty": -0.5,
            "seed": 7,
            "stopSequences": ["END"],
        },
    }


def test_images() -> None:
    body = req(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    image_part(PNG_URL),
                ],
            }
        ]
    )
    assert body["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
    ]


@pytest.mark.parametrize(
    "url", ["https://example.com/cat.png", "data:image/gif;base64,R0lGOD", "data:image/png,raw"]
)
def test_images_gemini_cannot_take(url: str) -> None:
    with pytest.raises(TranslationError) as info:
        req(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": url}]}])
    assert info.value.param == "messages[0]"


def test_tool_calls_and_results() -> None:
    body = req(
        messages=[
            {"role": "user", "content": "Weather in Paris and Lyon?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    tool_call("call_a", "get_weather", '{"city": "Paris"}'),
                    tool_call("call_b", "get_time", ""),
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "9h"}]},
            {"role": "user", "content": "thanks"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Lyon?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me check."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                {"functionResponse": {"name": "get_time", "response": {"output": "9h"}}},
                {"text": "thanks"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
                }
            ]
        }
    ]
    assert "toolConfig" not in body


def test_a_tool_result_must_answer_a_known_call() -> None:
    with pytest.raises(TranslationError) as info:
        req(
            messages=[
                {"role": "user", "content": "Weather?"},
                {"role": "tool", "tool_call_id": "call_zz", "content": "sunny"},
            ]
        )
    assert info.value.param == "messages[1].tool_call_id"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = req(tools=[WEATHER_TOOL], tool_choice=choice)
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_response_formats() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    body = req(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        }
    )
    assert body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    assert req(response_format={"type": "json_object"})["generationConfig"] == {
        "responseMimeType": "application/json"
    }
    assert "generationConfig" not in req(response_format={"type": "text"})


def test_reasoning_effort_is_a_thinking_budget() -> None:
    assert req(reasoning_effort="low")["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 1024}
    }
    assert req(reasoning_effort="none")["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 0}
    }
    # OpenAI's levels past Google's mapping: the nearest one it has.
    assert req(reasoning_effort="minimal")["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 1024}
    }
    assert req(reasoning_effort="xhigh")["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 24576}
    }


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "x"}},
            },
            "tool_choice",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"seed": 1.5}, "seed"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0]"),
    ],
)
def test_requests_gemini_cannot_express(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as info:
        req(**payload)
    assert info.value.param == param


def test_upstream_requests() -> None:
    payload = {"model": "flash", "messages": [{"role": "user", "content": "Hi"}]}
    up = GeminiChatTranslator(gemini_model_path("gemini-2.5-flash")).request(payload, b"")
    assert up.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert dict(up.headers) == {"content-type": "application/json"}
    assert up.body == b'{"contents":[{"role":"user","parts":[{"text":"Hi"}]}]}'

    vertex = vertex_model_path("my-project", "us-central1", "google", "gemini-2.0-flash-001")
    up = GeminiChatTranslator(vertex).request({**payload, "stream": True}, b"")
    assert up.path == (
        "/v1/projects/my-project/locations/us-central1/publishers/google/models/"
        "gemini-2.0-flash-001:streamGenerateContent?alt=sse"
    )
    assert gemini_model_path("tunedModels/my-tune") == "/v1beta/tunedModels/my-tune"


# --- JSON responses ----------------------------------------------------------------


def test_json_text_response_with_thoughts_and_cache() -> None:
    t = GeminiChatTranslator(MODEL_PATH, created=1)
    t.request({"model": "flash", "messages": [{"role": "user", "content": "Hi"}]}, b"")
    assert t.response_headers(200, "application/json; charset=UTF-8").streamed is False
    usage = {**USAGE, "cachedContentTokenCount": 4}
    doc = response(
        [{"text": "thinking about it", "thought": True}, {"text": "Hello! "}, {"text": "Hi."}],
        "STOP",
        usage,
    )
    body = json.dumps(doc).encode()
    assert t.response_body(body[:10], False).body == b""
    out = t.response_body(body[10:], True)
    assert out.complete and out.error is None
    assert out.usage == TokenUsage(9, 36, 45, cached_input_tokens=4, reasoning_tokens=24)
    assert out.body is not None
    completion = ChatCompletion.model_validate_json(out.body)
    assert completion.id == "chatcmpl-mHyVaKO9LpGxnvgPz5XHuAU"
    assert completion.model == "flash"
    assert completion.choices[0].message.content == "Hello! Hi."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 36
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 24


def test_json_function_call_response() -> None:
    out = translator(tools=[WEATHER_TOOL]).response_body(json.dumps(TOOL_STREAM[0]).encode(), True)
    assert out.body is not None
    choice = ChatCompletion.model_validate_json(out.body).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    calls = choice.message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        # the call's thoughtSignature rides in its id (docs/client-apis.md)
        (call_id_with_signature("call_test_0", "CiIBVKhc7oDy"), "get_weather", {"city": "Paris"}),
        ("call_test_1", "get_weather", {"city": "Lyon"}),
    ]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("OTHER", "stop"),
        ("A_REASON_ADDED_LATER", "stop"),
    ],
)
def test_finish_reasons(reason: str, finish: str) -> None:
    out = translator().response_body(
        json.dumps(response([{"text": "x"}], reason, USAGE)).encode(), True
    )
    assert out.body is not None
    assert ChatCompletion.model_validate_json(out.body).choices[0].finish_reason == finish


def test_a_blocked_prompt_is_a_content_filter_stop() -> None:
    doc = {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "blocked1",
    }
    out = translator().response_body(json.dumps(doc).encode(), True)
    assert out.body is not None
    choice = ChatCompletion.model_validate_json(out.body).choices[0]
    assert (choice.finish_reason, choice.message.content) == ("content_filter", "")
    assert out.usage == TokenUsage(8, 0, 8)


@pytest.mark.parametrize("body", [b"<html>", b'{"candidates": 3}', b"[]"])
def test_invalid_json_response_is_an_error(body: bytes) -> None:
    out = translator().response_body(body, True)
    assert out.error == "upstream_invalid_json" and out.complete
    assert out.body is not None
    assert json.loads(out.body)["error"]["code"] == "bad_upstream"


# --- SSE responses -----------------------------------------------------------------


def streamed(
    docs: list[dict[str, Any]], include_usage: bool = True, **payload: Any
) -> tuple[GeminiChatTranslator, bytes]:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    t = translator(stream=True, **options, **payload)
    assert t.response_headers(200, "text/event-stream").streamed is True
    return t, sse(*docs)


def test_text_stream() -> None:
    t, data = streamed(TEXT_STREAM)
    out = t.response_body(data, False)
    assert out.complete and out.error is None
    assert out.usage == TokenUsage(9, 36, 45, reasoning_tokens=24)
    assert out.body is not None
    chunks = chunks_of(out.body)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital is Paris."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 36
    assert {c.id for c in chunks} == {"chatcmpl-test"}
    # What the upstream sends after its terminal event does not reach the client.
    assert t.response_body(b"", True).body == b""


#: Streams as Google sends them today (recorded, the texts replaced). The Gemini API
#: (gemini-2.5-flash): every response has the usage so far, candidates and thoughts
#: growing, with serviceTier; the last word comes with the finish reason.
GEMINI_API_RECORDED = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "Hello"}],"role": "model"},'
    b'"index": 0}],"usageMetadata": {"promptTokenCount": 11,"candidatesTokenCount": 1,'
    b'"totalTokenCount": 30,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 11}],'
    b'"thoughtsTokenCount": 18,"serviceTier": "standard"},"modelVersion": "gemini-2.5-flash",'
    b'"responseId": "cWmNaqOEH9CRkdUP1bWcsQU"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": ", World!"}],"role": "model"},'
    b'"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 11,'
    b'"candidatesTokenCount": 4,"totalTokenCount": 33,"promptTokensDetails": [{"modality":'
    b' "TEXT","tokenCount": 11}],"thoughtsTokenCount": 18,"serviceTier": "standard"},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "cWmNaqOEH9CRkdUP1bWcsQU"}\r\n\r\n'
)
#: Vertex AI (gemini-3.1-flash-lite-preview): only trafficType until the last response,
#: which has an empty text part signed with a thoughtSignature; createTime, no index.
VERTEX_RECORDED = b"".join(
    b'data: {"candidates": [{"content": {"role": "model","parts": ['
    + part
    + b"]}"
    + finish
    + b'}],"usageMetadata": '
    + usage
    + b',"modelVersion": "gemini-3.1-flash-lite-preview",'
    b'"createTime": "2026-03-10T14:54:45.066123Z","responseId": "tTCwacuEBMvnitYP06qsgQY"}'
    b"\r\n\r\n"
    for part, finish, usage in (
        (b'{"text": "Hello!"}', b"", b'{"trafficType": "ON_DEMAND"}'),
        (b'{"text": " How can I help you today"}', b"", b'{"trafficType": "ON_DEMAND"}'),
        (b'{"text": "?"}', b"", b'{"trafficType": "ON_DEMAND"}'),
        (
            b'{"text": "","thoughtSignature": "AY89a18iOcFus5wr5bW5xN6zZ4aUiCyhgmg6HE2Y="}',
            b',"finishReason": "STOP"',
            b'{"promptTokenCount": 1,"candidatesTokenCount": 9,"totalTokenCount": 10,'
            b'"trafficType": "ON_DEMAND","promptTokensDetails": [{"modality": "TEXT",'
            b'"tokenCount": 1}],"candidatesTokensDetails": [{"modality": "TEXT","tokenCount": 9}]}',
        ),
    )
)


@pytest.mark.parametrize(
    ("wire", "text", "usages"),
    [
        # The usage so far is what a cut stream counts; the last is the request's.
        (
            GEMINI_API_RECORDED,
            "Hello, World!",
            [
                TokenUsage(11, 19, 30, reasoning_tokens=18),
                TokenUsage(11, 22, 33, reasoning_tokens=18),
            ],
        ),
        (
            VERTEX_RECORDED,
            "Hello! How can I help you today?",
            [TokenUsage(0, 0, 0)] * 3 + [TokenUsage(1, 9, 10)],
        ),
    ],
    ids=["gemini-api", "vertex"],
)
def test_recorded_streams(wire: bytes, text: str, usages: list[TokenUsage]) -> None:
    t, _ = streamed([])
    events = [e + b"\r\n\r\n" for e in wire.split(b"\r\n\r\n") if e]
    outs = [t.response_body(e, i == len(events) - 1) for i, e in enumerate(events)]
    assert [o.usage for o in outs] == usages
    assert [o.complete for o in outs] == [False] * (len(events) - 1) + [True]
    assert all(o.error is None for o in outs)
    chunks = chunks_of(b"".join(o.body or b"" for o in outs))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == usages[-1].total_tokens


def test_stream_id_comes_from_the_response_id() -> None:
    t = GeminiChatTranslator(MODEL_PATH)
    t.request(
        {"model": "flash", "stream": True, "messages": [{"role": "user", "content": "x"}]}, b""
    )
    t.response_headers(200, "text/event-stream")
    data = sse(*TEXT_STREAM)
    assert t.response_body(data[:5], False).body == b""
    out = t.response_body(data[5:], True)
    assert out.body is not None
    assert {c.id for c in chunks_of(out.body)} == {"chatcmpl-mHyVaKO9LpGxnvgPz5XHuAU"}


def test_stream_without_include_usage_still_reports_usage() -> None:
    t, data = streamed(TEXT_STREAM, include_usage=False)
    out = t.response_body(data, True)
    assert out.body is not None
    assert all(c.choices and c.usage is None for c in chunks_of(out.body))
    assert out.usage is not None and out.usage.output_tokens == 36


def test_finish_reason_before_the_final_usage() -> None:
    """The terminal event is the one with usage once the finish reason is known."""
    docs = [
        response([{"text": "Hi"}], None, PARTIAL_USAGE),
        response([{"text": "!"}], "MAX_TOKENS", None),
        {"usageMetadata": USAGE, "responseId": "mHyVaKO9LpGxnvgPz5XHuAU"},
    ]
    t, _ = streamed(docs)
    first = t.response_body(sse(*docs[:2]), False)
    assert not first.complete
    out = t.response_body(sse(docs[2]), False)
    assert out.complete
    assert first.body is not None and out.body is not None
    chunks = chunks_of(first.body + out.body)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_tool_stream() -> None:
    t, data = streamed(TOOL_STREAM, tools=[WEATHER_TOOL])
    out = t.response_body(data, False)
    assert out.complete
    assert out.body is not None
    chunks = chunks_of(out.body)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                assert call.function is not None
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += call.function.name or ""
                entry["arguments"] += call.function.arguments or ""
    assert calls == {
        0: {
            "id": call_id_with_signature("call_test_0", "CiIBVKhc7oDy"),
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        1: {"id": "call_test_1", "name": "get_weather", "arguments": '{"city":"Lyon"}'},
    }
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_parallel_tool_calls_false_keeps_the_first_call_of_an_answer() -> None:
    """Gemini has no switch for it: the gateway holds the answer to one call (Codex's
    default config sends it)."""
    assert "parallel_tool_calls" not in json.dumps(req(parallel_tool_calls=False))
    t = translator(tools=[WEATHER_TOOL], parallel_tool_calls=False)
    out = t.response_body(json.dumps(TOOL_STREAM[0]).encode(), True)
    assert out.body is not None
    calls = ChatCompletion.model_validate_json(out.body).choices[0].message.tool_calls
    assert [json.loads(c.function.arguments) for c in calls or []] == [{"city": "Paris"}]  # type: ignore[union-attr]
    t, data = streamed(TOOL_STREAM, tools=[WEATHER_TOOL], parallel_tool_calls=False)
    out = t.response_body(data, False)
    assert out.complete and out.body is not None
    indexes = {
        call.index
        for chunk in chunks_of(out.body)
        for choice in chunk.choices
        for call in choice.delta.tool_calls or []
    }
    assert indexes == {0}
    assert out.usage == TokenUsage(30, 14, 44)


def test_error_event_ends_the_stream() -> None:
    t, data = streamed([TEXT_STREAM[0], ERROR_EVENT, TEXT_STREAM[2]])
    out = t.response_body(data, False)
    assert out.error == "upstream_stream_error" and out.complete
    assert out.body is not None
    events = sse_data(out.body)
    assert json.loads(events[-1]) == {
        "error": {
            "message": "The model is overloaded. Please try again later.",
            "type": "server_error",
            "param": None,
            "code": "UNAVAILABLE",
        }
    }
    assert b"[DONE]" not in events
    assert out.usage == TokenUsage(9, 0, 9)


@pytest.mark.parametrize("cut", [0, 1, 2])
def test_truncated_stream_is_an_error(cut: int) -> None:
    t, data = streamed(TEXT_STREAM[:cut])
    out = t.response_body(data + b"data: {", True)
    assert out.error == "upstream_truncated" and out.complete
    assert out.body is not None
    assert json.loads(sse_data(out.body)[-1])["error"]["code"] == "upstream_truncated"


def test_a_finish_without_usage_is_truncated_at_the_end() -> None:
    t, data = streamed([response([{"text": "Hi"}], "STOP", None)])
    out = t.response_body(data, True)
    assert out.error == "upstream_truncated"


def test_undecodable_event_is_an_error() -> None:
    t, data = streamed(TEXT_STREAM[:1])
    out = t.response_body(data + b"data: {nope\r\n\r\n", False)
    assert out.error == "upstream_invalid_stream" and out.complete


def run_split(data: bytes, cuts: list[int], include_usage: bool) -> tuple[bytes, Any]:
    t = translator(stream=True, stream_options={"include_usage": include_usage})
    t.response_headers(200, "text/event-stream")
    body, out = feed_split(t, data, cuts)
    return body, (out.usage, out.error, out.complete)


STREAMS = {
    "text": sse(*TEXT_STREAM),
    "text-lf": sse(*TEXT_STREAM).replace(b"\r\n", b"\n"),
    "tools": sse(*TOOL_STREAM),
    "error": sse(TEXT_STREAM[0], ERROR_EVENT),
    "truncated": sse(*TEXT_STREAM[:2]),
    # Non-ASCII text: a split may fall inside a multi-byte character.
    "unicode": sse(response([{"text": "héllo ✓ 日本"}], None, PARTIAL_USAGE), TEXT_STREAM[2]),
}


def test_lf_stream_matches_crlf_stream() -> None:
    assert run_split(STREAMS["text-lf"], [], True) == run_split(STREAMS["text"], [], True)


# --- error bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            b'{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.",'
            b'"status":"INVALID_ARGUMENT","details":[{"@type":'
            b'"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}',
            openai_error(
                "API key not valid. Please pass a valid API key.",
                "invalid_request_error",
                "INVALID_ARGUMENT",
            ),
        ),
        (
            429,
            b'{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).",'
            b'"status":"RESOURCE_EXHAUSTED"}}',
            openai_error(
                "Resource has been exhausted (e.g. check quota).",
                "rate_limit_error",
                "RESOURCE_EXHAUSTED",
            ),
        ),
        (
            401,
            # Vertex AI wraps the errors of streamGenerateContent in a list.
            b'[{"error":{"code":401,"message":"Request had invalid authentication credentials.",'
            b'"status":"UNAUTHENTICATED"}}]',
            openai_error(
                "Request had invalid authentication credentials.",
                "authentication_error",
                "UNAUTHENTICATED",
            ),
        ),
        UPSTREAM_CONNECT_ERROR,
    ],
)
def test_error_body(status: int, body: bytes, expected: dict[str, Any]) -> None:
    out = translator().error_body(status, body, {"content-type": "application/json"})
    assert json.loads(out) == expected


# --- embeddings --------------------------------------------------------------------


def test_embeddings_request() -> None:
    t = GeminiEmbeddingsTranslator(gemini_model_path("text-embedding-004"), "text-embedding-004")
    up = t.request(
        {"model": "embed", "input": ["a b", "c"], "dimensions": 8, "encoding_format": "float"}, b""
    )
    assert up.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert up.body is not None
    assert json.loads(up.body) == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "a b"}]},
                "outputDimensionality": 8,
            },
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "c"}]},
                "outputDimensionality": 8,
            },
        ]
    }


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_response(encoding: str) -> None:
    t = GeminiEmbeddingsTranslator(gemini_model_path("text-embedding-004"), "text-embedding-004")
    t.request({"model": "embed", "input": ["a", "b"], "encoding_format": encoding}, b"")
    answer = {"embeddings": [{"values": [0.5, -0.25]}, {"values": [1.0, 0.0]}]}
    out = t.response_body(json.dumps(answer).encode(), True)
    assert out.complete and out.usage is None  # Gemini reports no tokens for embeddings
    assert out.body is not None
    doc = json.loads(out.body)
    if encoding == "base64":  # as the openai client decodes it
        for item in doc["data"]:
            item["embedding"] = list(struct.unpack("<2f", base64.b64decode(item["embedding"])))
    parsed = CreateEmbeddingResponse.model_validate(doc)
    assert parsed.model == "embed"
    assert (parsed.usage.prompt_tokens, parsed.usage.total_tokens) == (0, 0)
    assert [d.embedding for d in parsed.data] == [[0.5, -0.25], [1.0, 0.0]]


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"input": [[1, 2, 3]]}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "extra": 1}, "extra"),
    ],
)
def test_embeddings_gemini_cannot_express(payload: dict[str, Any], param: str) -> None:
    t = GeminiEmbeddingsTranslator(gemini_model_path("text-embedding-004"), "text-embedding-004")
    with pytest.raises(TranslationError) as info:
        t.request({"model": "embed", **payload}, b"")
    assert info.value.param == param


# --- Claude on Vertex AI -----------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "action"), [(False, ":rawPredict"), (True, ":streamRawPredict")]
)
def test_anthropic_on_vertex(stream: bool, action: str) -> None:
    path = vertex_model_path("p", "europe-west1", "anthropic", "claude-3-5-sonnet-v2@20241022")
    t = AnthropicMessagesTranslator(
        "claude-3-5-sonnet-v2@20241022", default_max_tokens=512, vertex=VertexRawPredict(path)
    )
    payload = {"model": "claude", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}
    up = t.request(payload, b"")
    assert up.path == (
        "/v1/projects/p/locations/europe-west1/publishers/anthropic/models/"
        "claude-3-5-sonnet-v2@20241022" + action
    )
    assert dict(up.headers) == {"content-type": "application/json"}
    assert up.body is not None
    body = json.loads(up.body)
    assert "model" not in body
    assert body["anthropic_version"] == "vertex-2023-10-16"
    assert body["max_tokens"] == 512
    assert body.get("stream", False) is stream


def test_the_answering_model_and_finish_reason_are_reported() -> None:
    t, _ = streamed(TEXT_STREAM)
    first = t.response_body(sse(TEXT_STREAM[0]), False)
    assert (first.model, first.finish_reasons) == ("gemini-2.5-flash", ())
    last = t.response_body(sse(*TEXT_STREAM[1:]), True)
    assert (last.model, last.finish_reasons) == ("gemini-2.5-flash", ("stop",))
    whole = translator().response_body(
        json.dumps(response([{"text": "x"}], "MAX_TOKENS", USAGE)).encode(), True
    )
    assert (whole.model, whole.finish_reasons) == ("gemini-2.5-flash", ("length",))


def test_a_thought_signature_rides_in_the_tool_call_id_and_comes_back() -> None:
    signed = call_id_with_signature("call_1", "Cq0+/sig==")
    assert signed.startswith("call_1") and "+" not in signed and "/" not in signed
    assert thought_signature_of(signed) == "Cq0+/sig=="
    assert call_id_with_signature("call_1", None) == "call_1"
    assert thought_signature_of("call_1") is None
    assert thought_signature_of("toolu_own__ts_%%%") is None
