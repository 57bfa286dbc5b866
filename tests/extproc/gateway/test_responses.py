"""ResponsesProcessor driven through the servicer like Envoy would: passthrough to OpenAI
and Azure's v1 API, the pivot elsewhere, and refusals naming the Responses field."""

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

KEY = {"api_key": {"value": "sk-upstream"}}
CONFIG = {
    "backends": [
        {"name": "openai", "schema": "openai", "endpoint": "https://api.openai.com", "auth": KEY},
        {
            "name": "azure",
            "schema": "azure-openai",
            "endpoint": "https://r.openai.azure.com",
            "api_version": "2024-10-21",
            "auth": KEY,
        },
        {
            "name": "anthropic",
            "schema": "anthropic",
            "endpoint": "https://api.anthropic.com",
            "auth": KEY,
        },
    ],
    "models": [
        {"name": "gpt", "backend": "openai"},
        {"name": "gpt-azure", "backend": "azure", "backend_model": "my-deployment"},
        {"name": "claude", "backend": "anthropic", "backend_model": "claude-sonnet-4-5"},
    ],
}


def request(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "input": "hello there", **extra}


async def routed(conv: Conversation, body: Any) -> Any:
    await conv.send(request_headers("/v1/responses", extra=[("authorization", "Bearer mine")]))
    return await conv.send(request_body(body))


async def test_openai_gets_the_request_unchanged() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    answer = (await routed(conv, request("gpt", store=True))).request_body.response
    assert not answer.HasField("body_mutation")
    sent = headers_set(answer)
    assert sent["authorization"] == "Bearer sk-upstream"
    assert ":path" not in sent  # already /v1/responses
    await conv.send(response_headers())
    usage = {"input_tokens": 2, "output_tokens": 3, "total_tokens": 5}
    done = await conv.send(response_body({"id": "resp_1", "object": "response", "usage": usage}))
    assert not done.response_body.response.HasField("body_mutation")
    assert {k: metadata(done)[k] for k in ("api", "input_tokens", "output_tokens")} == {
        "api": "responses",
        "input_tokens": 2,
        "output_tokens": 3,
    }
    await conv.close()


async def test_azure_gets_its_v1_path_with_the_deployment_as_model() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    answer = (await routed(conv, request("gpt-azure"))).request_body.response
    sent = headers_set(answer)
    assert sent[":path"] == "/openai/v1/responses"
    assert sent["api-key"] == "sk-upstream"
    assert json.loads(answer.body_mutation.body)["model"] == "my-deployment"
    await conv.close()


async def test_other_schemas_get_their_own_api_through_the_pivot() -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    answer = (await routed(conv, request("claude", instructions="Be brief"))).request_body.response
    sent = headers_set(answer)
    assert sent[":path"] == "/v1/messages" and sent["x-api-key"] == "sk-upstream"
    body = json.loads(answer.body_mutation.body)
    assert body["model"] == "claude-sonnet-4-5"
    assert body["system"] == [{"type": "text", "text": "Be brief"}]
    await conv.send(response_headers())
    reply = {
        "id": "msg_1",
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    done = await conv.send(response_body(reply))
    doc = json.loads(done.response_body.response.body_mutation.body)
    assert doc["object"] == "response" and doc["output"][0]["content"][0]["text"] == "Hi"
    await conv.close()


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"background": True}, "background"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ],
)
async def test_what_the_backend_cannot_do_is_a_400_naming_the_field(
    extra: dict[str, Any], param: str
) -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    reply = await routed(conv, request("claude", **extra))
    status, doc = immediate_json(reply)
    assert (status, doc["error"]["param"]) == (400, param)
    assert metadata(reply)["backend"] == "anthropic"
    await conv.close()


@pytest.mark.parametrize("value", [None, "", [], 5, ["text"]])
async def test_malformed_input_is_a_400(value: Any) -> None:
    conv = Conversation(gateway_servicer(CONFIG))
    status, doc = immediate_json(await routed(conv, {"model": "gpt", "input": value}))
    assert (status, doc["error"]["param"]) == (
        400,
        "input" if not isinstance(value, list) or not value else "input[0]",
    )
    await conv.close()
