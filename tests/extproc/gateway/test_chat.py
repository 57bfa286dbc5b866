"""ChatCompletionProcessor (openai schema) driven through the servicer like Envoy would."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.extproc.framework.fake_envoy import (
    Conversation,
    headers_set,
    immediate_json,
    metadata,
    request_body,
    request_headers,
    response_body,
    response_headers,
)
from tests.extproc.gateway.shared import gateway_servicer

CONFIG = {
    "backends": [
        {
            "name": "local",
            "schema": "openai",
            "endpoint": "http://127.0.0.1:8000",
            "auth": {"api_key": {"value": "sk-upstream"}},
        },
        {"name": "prefixed", "schema": "openai", "endpoint": "https://example.com/api/"},
    ],
    "models": [
        {"name": "phi4", "backend": "local", "backend_model": "phi4:latest"},
        {"name": "gpt", "backend": "prefixed"},
    ],
}


def chat(model: str = "phi4", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi there"}], **extra}


async def routed(conv: Conversation, body: dict[str, Any] | bytes, **kw: Any) -> Any:
    await conv.send(request_headers(extra=[("authorization", "Bearer client-key")], **kw))
    return (await conv.send(request_body(body))).request_body.response


async def test_routes_rewrites_model_and_injects_the_api_key() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    answer = await routed(conv, chat())
    assert headers_set(answer) == {
        "x-ai-gateway-model": "phi4",
        "x-ai-gateway-backend": "local",
        "authorization": "Bearer sk-upstream",
        "accept-encoding": "identity",
        "content-length": str(len(answer.body_mutation.body)),
    }
    assert answer.clear_route_cache
    assert json.loads(answer.body_mutation.body)["model"] == "phi4:latest"
    # The client sent only what the backend may have (and Envoy's request id).
    assert not answer.header_mutation.remove_headers
    await conv.close()


async def test_unchanged_body_is_not_reserialised_and_client_auth_is_removed() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    answer = await routed(conv, chat("gpt"))
    assert not answer.HasField("body_mutation")
    assert "authorization" in answer.header_mutation.remove_headers
    assert headers_set(answer)[":path"] == "/api/v1/chat/completions"
    await conv.close()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b"[1, 2]", 400, None),
        (b"\xff\xfe", 400, None),
        (
            json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(),
            400,
            "missing_model",
        ),
        (json.dumps({"model": "phi4"}).encode(), 400, "invalid_messages"),
        (json.dumps({"model": "phi4", "messages": []}).encode(), 400, "invalid_messages"),
        (json.dumps(chat("nope")).encode(), 404, "model_not_found"),
        (b"[" * 100_000 + b"]" * 100_000, 400, None),
    ],
)
async def test_bad_requests_get_openai_errors(body: bytes, status: int, code: str | None) -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await conv.send(request_headers())
    got_status, doc = immediate_json(await conv.send(request_body(body)))
    assert got_status == status
    assert doc["error"]["code"] == code
    assert doc["error"]["type"] == "invalid_request_error"
    await conv.close()


async def test_request_without_body_and_wrong_method() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    status, _ = immediate_json(await conv.send(request_headers(end_of_stream=True)))
    assert status == 400
    await conv.close()
    conv = Conversation(gateway_servicer(CONFIG))
    status, doc = immediate_json(await conv.send(request_headers(method="GET", end_of_stream=True)))
    assert status == 405 and doc["error"]["code"] == "method_not_allowed"
    await conv.close()


async def test_non_streamed_response_passes_unchanged_and_publishes_usage() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await routed(conv, chat())
    answer = await conv.send(response_headers())
    assert not answer.HasField("mode_override")
    reply = {
        "id": "x",
        "object": "chat.completion",
        "model": "phi4-2025-01",
        "choices": [{"index": 0, "message": {}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 3,
            "completion_tokens": 5,
            "total_tokens": 8,
            "prompt_tokens_details": {"cached_tokens": 1},
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }
    answer = await conv.send(response_body(reply))
    assert not answer.response_body.response.HasField("body_mutation")
    assert metadata(answer) == {
        "backend": "local",
        "model": "phi4",
        "operation": "chat",
        "api": "chat_completions",
        "input_tokens": 3,
        "output_tokens": 5,
        "total_tokens": 8,
        "cached_input_tokens": 1,
        "reasoning_tokens": 2,
        "response_model": "phi4-2025-01",
        "finish_reasons": ["stop"],
    }
    await conv.close()


def sse(*docs: Any) -> bytes:
    out = b""
    for doc in docs:
        out += b"data: " + (doc if isinstance(doc, bytes) else json.dumps(doc).encode()) + b"\n\n"
    return out


CHUNK = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "a"}}]}
USAGE = {
    "object": "chat.completion.chunk",
    "choices": [],
    "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
}


async def test_streaming_adds_include_usage_and_hides_the_usage_chunk() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    answer = await routed(conv, chat(stream=True))
    assert json.loads(answer.body_mutation.body)["stream_options"] == {"include_usage": True}
    answer = await conv.send(response_headers(content_type="text/event-stream"))
    assert answer.HasField("mode_override")
    first = (await conv.send(response_body(sse(CHUNK), end_of_stream=False))).response_body
    assert not first.response.HasField("body_mutation")  # whole events pass byte for byte
    last = await conv.send(response_body(sse(USAGE, b"[DONE]"), end_of_stream=True))
    assert last.response_body.response.body_mutation.body == b"data: [DONE]\n\n"
    assert metadata(last)["output_tokens"] == 1
    await conv.close()


async def test_streaming_client_that_asked_for_usage_gets_it_untouched() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    answer = await routed(conv, chat("gpt", stream=True, stream_options={"include_usage": True}))
    assert not answer.HasField("body_mutation")
    await conv.send(response_headers(content_type="text/event-stream"))
    last = await conv.send(response_body(sse(CHUNK, USAGE, b"[DONE]"), end_of_stream=True))
    assert not last.response_body.response.HasField("body_mutation")
    assert metadata(last)["total_tokens"] == 3
    await conv.close()


async def test_usage_chunk_split_across_body_chunks_is_still_hidden() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await routed(conv, chat(stream=True))
    await conv.send(response_headers(content_type="text/event-stream"))
    wire = sse(CHUNK, USAGE, b"[DONE]")
    cut = wire.index(b'"usage"')
    out = b""
    for i, piece in enumerate((wire[:cut], wire[cut:])):
        resp = (await conv.send(response_body(piece, end_of_stream=i == 1))).response_body.response
        out += resp.body_mutation.body if resp.HasField("body_mutation") else piece
    assert out == sse(CHUNK, b"[DONE]")
    await conv.close()


async def test_truncated_stream_ends_with_an_error_event() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await routed(conv, chat(stream=True, stream_options={"include_usage": True}))
    await conv.send(response_headers(content_type="text/event-stream"))
    last = await conv.send(response_body(sse(CHUNK), end_of_stream=True))
    body = last.response_body.response.body_mutation.body
    assert body.startswith(sse(CHUNK))
    assert b'"upstream_truncated"' in body
    assert metadata(last)["error"] == "upstream_truncated"
    await conv.close()


@pytest.mark.parametrize(
    ("upstream", "content_type", "expect_unchanged"),
    [
        (
            b'{"error":{"message":"rate limited","type":"rate_limit_error","code":null}}',
            "application/json",
            True,
        ),
        (b"<html>bad gateway</html>", "text/html", False),
        (b'{"detail":"model overloaded"}', "application/json", False),
    ],
)
async def test_upstream_errors_become_openai_errors_with_the_same_status(
    upstream: bytes, content_type: str, expect_unchanged: bool
) -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await routed(conv, chat(stream=True))
    answer = await conv.send(response_headers(429, content_type))
    assert not answer.HasField("mode_override")  # errors are buffered whole
    last = await conv.send(response_body(upstream))
    common = last.response_body.response
    if expect_unchanged:
        assert not common.HasField("body_mutation")
    else:
        doc = json.loads(common.body_mutation.body)
        assert doc["error"]["code"] == 429
        assert doc["error"]["type"] == "rate_limit_error"
        assert headers_set(common)["content-type"] == "application/json"
    assert metadata(last) == {
        "backend": "local",
        "model": "phi4",
        "operation": "chat",
        "api": "chat_completions",
        "stream": True,  # what the client asked, though its answer is not a stream
        "error": "upstream_http_429",
    }
    await conv.close()


async def test_non_json_success_body_becomes_a_502() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await routed(conv, chat())
    await conv.send(response_headers(200, "application/json"))
    common = (await conv.send(response_body(b"<html>"))).response_body.response
    assert headers_set(common)[":status"] == "502"
    assert json.loads(common.body_mutation.body)["error"]["code"] == "bad_upstream"
    await conv.close()


async def test_bodiless_upstream_error_gets_an_openai_error_body() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await routed(conv, chat())
    answer = (
        await conv.send(response_headers(503, "text/plain", end_of_stream=True))
    ).response_headers
    doc = json.loads(answer.response.body_mutation.body)
    assert doc["error"]["code"] == 503
    await conv.close()


async def test_undecodable_content_encoding_is_a_502() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await routed(conv, chat())
    answer = await conv.send(response_headers(200, extra=[("content-encoding", "br")]))
    common = answer.response_headers.response
    assert headers_set(common)[":status"] == "502"
    assert "content-encoding" in common.header_mutation.remove_headers
    last = await conv.send(response_body(b"\x8b\x01garbage"))
    doc = json.loads(last.response_body.response.body_mutation.body)
    assert doc["error"]["code"] == "upstream_unsupported_encoding"
    assert metadata(last)["error"] == "upstream_unsupported_encoding"
    await conv.close()


async def test_request_body_not_buffered_is_a_clear_misconfiguration_error() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await conv.send(request_headers())
    status, doc = immediate_json(await conv.send(request_body(b'{"model":', end_of_stream=False)))
    assert status == 500
    assert doc["error"]["code"] == "gateway_misconfigured"
    await conv.close()


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "", "content": "x"}], "messages[0].role"),
        ([{"role": "u", "content": "x"}], "messages[0].role"),
        ([{"role": ["user"], "content": "x"}], "messages[0].role"),
        ([{"content": "x"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        ([{"role": "user", "content": ["text"]}], "messages[0].content"),
        (["hello"], "messages[0]"),
    ],
)
async def test_malformed_messages_are_400_for_every_schema(messages: list[Any], param: str) -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await conv.send(request_headers())
    status, doc = immediate_json(
        await conv.send(request_body({"model": "phi4", "messages": messages}))
    )
    assert status == 400
    assert doc["error"]["param"] == param
    await conv.close()


async def test_assistant_may_leave_content_out_for_tool_calls() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "1", "content": ""},
    ]
    answer = await routed(conv, chat(messages=messages))
    assert headers_set(answer)["x-ai-gateway-backend"] == "local"
    await conv.close()


@pytest.mark.parametrize(
    "body",
    [
        rb'{"model":"phi4","messages":[{"role":"user","content":"\ud800"}]}',
        rb'{"model":"phi4","messages":[{"role":"user","content":"ok \udfff then"}]}',
        rb'{"model":"gpt","messages":[{"role":"user","content":[{"type":"text","text":"\ud83d"}]}]}',
        rb'{"model":"phi4","messages":[{"role":"user","content":"hi"}],"user":"\udc00"}',
    ],
)
async def test_a_lone_surrogate_is_a_400_not_a_5xx(body: bytes) -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await conv.send(request_headers())
    status, error = immediate_json(await conv.send(request_body(body)))
    assert status == 400
    assert "lone UTF-16 surrogate" in error["error"]["message"]
    await conv.close()


async def test_paired_surrogate_escapes_are_one_character_and_pass() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    await conv.send(request_headers())
    body = rb'{"model":"phi4","messages":[{"role":"user","content":"smile \ud83d\ude00"}]}'
    answer = (await conv.send(request_body(body))).request_body.response
    sent = json.loads(answer.body_mutation.body)  # re-serialised for backend_model
    assert sent["messages"][0]["content"] == "smile \U0001f600"
    assert sent["model"] == "phi4:latest"
    await conv.close()
