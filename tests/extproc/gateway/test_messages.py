"""MessagesProcessor and CountTokensProcessor driven through the servicer like Envoy would:
routing, headers each backend takes, the gateway's own errors in Anthropic's shape, and
what is published for the access log and the metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aigateway.extproc.framework.server import ExternalProcessorServicer
from aigateway.extproc.gateway.app import build_router
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.config import ResolvedSecrets, parse_config
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

CONFIG = {
    "backends": [
        {
            "name": "anthropic",
            "schema": "anthropic",
            "endpoint": "https://api.anthropic.com",
            "auth": {"api_key": {"value": "sk-ant-upstream"}},
            "anthropic_version": "2023-06-01",
        },
        {
            "name": "openai",
            "schema": "openai",
            "endpoint": "https://api.openai.com",
            "auth": {"api_key": {"value": "sk-upstream"}},
        },
    ],
    "models": [
        {"name": "claude", "backend": "anthropic", "backend_model": "claude-sonnet-4-5"},
        {"name": "claude-sonnet-4-5", "backend": "anthropic"},
        {"name": "gpt", "backend": "openai", "backend_model": "gpt-4o"},
    ],
}
CLIENT = [
    ("x-api-key", "client-key"),
    ("authorization", "Bearer client-token"),
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "interleaved-thinking-2025-05-14"),
]


def servicer() -> ExternalProcessorServicer:
    cfg = parse_config(CONFIG)
    return ExternalProcessorServicer(build_router(RoutingTable(cfg, ResolvedSecrets(cfg, Path()))))


def message(model: str = "claude", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


async def routed(
    conv: Conversation, body: Any, path: str = "/v1/messages?beta=true", client: Any = CLIENT
) -> Any:
    await conv.send(request_headers(path, extra=client))
    return await conv.send(request_body(body))


async def test_anthropic_gets_the_client_s_version_and_betas_and_its_own_key() -> None:
    conv = Conversation(servicer())
    answer = (await routed(conv, message("claude-sonnet-4-5"))).request_body.response
    sent = headers_set(answer)
    assert sent["x-api-key"] == "sk-ant-upstream"
    assert sent[":path"] == "/v1/messages"
    assert "anthropic-version" not in sent  # the client's passes on unchanged
    removed = set(answer.header_mutation.remove_headers)
    assert "authorization" in removed and "anthropic-beta" not in removed
    assert "anthropic-version" not in removed
    assert not answer.HasField("body_mutation")  # byte for byte
    await conv.close()


async def test_anthropic_gets_a_version_when_the_client_sends_none() -> None:
    conv = Conversation(servicer())
    answer = (await routed(conv, message(), client=[("x-api-key", "k")])).request_body.response
    assert headers_set(answer)["anthropic-version"] == "2023-06-01"
    assert json.loads(answer.body_mutation.body)["model"] == "claude-sonnet-4-5"
    await conv.close()


async def test_other_backends_never_see_anthropic_headers_or_the_client_s_key() -> None:
    conv = Conversation(servicer())
    answer = (await routed(conv, message("gpt", stream=True))).request_body.response
    sent = headers_set(answer)
    assert sent["authorization"] == "Bearer sk-upstream"
    assert sent[":path"] == "/v1/chat/completions"
    removed = set(answer.header_mutation.remove_headers)
    assert {"x-api-key", "anthropic-version", "anthropic-beta"} <= removed
    body = json.loads(answer.body_mutation.body)
    assert body["model"] == "gpt-4o" and body["max_completion_tokens"] == 64
    assert body["stream_options"] == {"include_usage": True}
    await conv.close()


async def test_a_streamed_answer_from_openai_is_anthropic_events_ending_the_response() -> None:
    conv = Conversation(servicer())
    await routed(conv, message("gpt", stream=True))
    await conv.send(response_headers(content_type="text/event-stream"))
    chunk = {"choices": [{"index": 0, "delta": {"content": "Hello"}}]}
    usage = {
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    body = b"".join(b"data: " + json.dumps(d).encode() + b"\n\n" for d in (chunk, finish, usage))
    last = await conv.send(response_body(body + b"data: [DONE]\n\n", end_of_stream=False))
    out = last.response_body.response.body_mutation.body
    assert b"event: message_stop" in out and b"event: content_block_delta" in out
    assert metadata(last)["api"] == "messages"
    assert metadata(last)["input_tokens"] == 3
    await conv.close()


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"{not json", 400, "invalid_request_error"),
        (b"", 400, "invalid_request_error"),
        (json.dumps(message("nope")).encode(), 404, "not_found_error"),
        (json.dumps({"max_tokens": 1, "messages": []}).encode(), 400, "invalid_request_error"),
        (json.dumps(message(max_tokens=None)).encode(), 400, "invalid_request_error"),
        (
            json.dumps(message(messages=[{"role": "tool", "content": "x"}])).encode(),
            400,
            "invalid_request_error",
        ),
        (json.dumps(message("gpt", top_k=3)).encode(), 400, "invalid_request_error"),
    ],
)
async def test_the_gateway_s_own_refusals_come_in_anthropic_s_shape(
    body: bytes, status: int, kind: str
) -> None:
    conv = Conversation(servicer())
    await conv.send(request_headers("/v1/messages", extra=CLIENT))
    reply = await conv.send(request_body(body))
    got, doc = immediate_json(reply)
    assert got == status
    assert doc["type"] == "error" and doc["error"]["type"] == kind
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    assert metadata(reply)["api"] == "messages"
    await conv.close()


async def test_a_refusal_after_routing_carries_the_routing_facts() -> None:
    conv = Conversation(servicer())
    await conv.send(request_headers("/v1/messages", extra=CLIENT))
    reply = await conv.send(request_body(message("gpt", top_k=3)))
    assert immediate_json(reply)[1]["error"]["message"].startswith("'top_k'")
    assert {k: metadata(reply)[k] for k in ("backend", "model", "api")} == {
        "backend": "openai",
        "model": "gpt",
        "api": "messages",
    }
    await conv.close()


async def test_wrong_method_is_a_405_in_anthropic_s_shape() -> None:
    conv = Conversation(servicer())
    status, doc = immediate_json(
        await conv.send(request_headers("/v1/messages", method="GET", end_of_stream=True))
    )
    assert (status, doc["type"], doc["error"]["type"]) == (405, "error", "invalid_request_error")
    await conv.close()


async def test_upstream_errors_reach_the_client_in_anthropic_s_shape() -> None:
    conv = Conversation(servicer())
    await routed(conv, message("gpt"))
    await conv.send(response_headers(status=429))
    answer = await conv.send(
        response_body({"error": {"message": "slow down sk-upstream", "type": "rate_limit_error"}})
    )
    doc = json.loads(answer.response_body.response.body_mutation.body)
    assert doc == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down [redacted]"},
    }
    await conv.close()


async def test_count_tokens_passes_through_to_anthropic() -> None:
    conv = Conversation(servicer())
    answer = (
        await routed(
            conv,
            {"model": "claude", "messages": [{"role": "user", "content": "hi"}]},
            path="/v1/messages/count_tokens?beta=true",
        )
    ).request_body.response
    assert headers_set(answer)[":path"] == "/v1/messages/count_tokens"
    await conv.send(response_headers())
    done = await conv.send(response_body({"input_tokens": 9}))
    assert not done.response_body.response.HasField("body_mutation")
    published = metadata(done)
    assert published["operation"] == "count_tokens" and "input_tokens" not in published
    await conv.close()


async def test_count_tokens_elsewhere_is_a_clear_400() -> None:
    conv = Conversation(servicer())
    reply = await routed(
        conv,
        {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        path="/v1/messages/count_tokens",
    )
    status, doc = immediate_json(reply)
    assert status == 400 and doc["type"] == "error"
    assert "cannot count tokens" in doc["error"]["message"]
    await conv.close()


async def test_a_stream_the_gateway_must_end_gets_an_anthropic_error_event() -> None:
    conv = Conversation(servicer())
    await routed(conv, message("gpt", stream=True))
    await conv.send(
        response_headers(content_type="text/event-stream", extra=[("content-encoding", "gzip")])
    )
    answer = await conv.send(response_body(b"this is not gzip", end_of_stream=False))
    body = answer.response_body.response.body_mutation.body
    assert body.startswith(b"event: error\ndata: ")
    assert json.loads(body.split(b"data: ", 1)[1])["error"]["type"] == "api_error"
    assert metadata(answer)["error"] == "upstream_bad_encoding"
    await conv.close()


async def test_an_undecodable_answer_is_a_502_in_anthropic_s_shape() -> None:
    conv = Conversation(servicer())
    await routed(conv, message("gpt"))
    await conv.send(response_headers(extra=[("content-encoding", "br-unknown")]))
    answer = await conv.send(response_body(b"x"))
    doc = json.loads(answer.response_body.response.body_mutation.body)
    assert doc["type"] == "error" and doc["error"]["type"] == "api_error"
    await conv.close()
