"""Bedrock Converse / ConverseStream routes, SigV4 and the event-stream wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EventStreamError

from aigateway.mock_backend import (
    AwsCredentials,
    MockBackendServer,
    create_app,
    reply_pieces,
    reply_text,
    run_mock_backend,
)
from aigateway.mock_backend.reasoning import signature

from .helpers import decode_frames, frame_events, raw_post

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
ESCAPED_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1%3A0"
CREDENTIALS = AwsCredentials(
    access_key_id="AKIDMOCKEXAMPLE",
    secret_access_key="mock/secret/KEY",
    region="eu-west-3",
)
WEATHER_TOOL = {
    "toolSpec": {
        "name": "get_weather",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            }
        },
    }
}

CONVERSATION: dict[str, Any] = {
    "system": [{"text": "You are a helpful bot."}],
    "messages": [
        {"role": "user", "content": [{"text": "What is the weather"}, {"text": "in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "x"}}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny and warm"}]}}
            ],
        },
    ],
}
CONVERSATION_WORDS = 5 + 4 + 2 + 3


@pytest.fixture
async def signed_server() -> AsyncIterator[MockBackendServer]:
    async with run_mock_backend(app=create_app(aws_credentials=CREDENTIALS)) as server:
        yield server


def bedrock_client(url: str, credentials: AwsCredentials = CREDENTIALS) -> Any:
    return botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name=credentials.region,
        endpoint_url=url,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        config=Config(retries={"max_attempts": 1}),
    )


def signed_headers(
    url: str,
    body: bytes,
    credentials: AwsCredentials = CREDENTIALS,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/json", **(extra or {})},
    )
    signer_credentials = Credentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    SigV4Auth(signer_credentials, "bedrock", credentials.region).add_auth(request)
    return dict(request.headers.items())


async def test_converse_json(mock_server: MockBackendServer) -> None:
    path = f"/model/{ESCAPED_MODEL_ID}/converse"
    response = await raw_post(mock_server.port, path, CONVERSATION)
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-amzn-requestid"]
    body = json.loads(response.body)
    assert body["output"] == {
        "message": {"role": "assistant", "content": [{"text": reply_text(8)}]}
    }
    assert body["stopReason"] == "end_turn"
    assert body["usage"] == {
        "inputTokens": CONVERSATION_WORDS,
        "outputTokens": 8,
        "totalTokens": CONVERSATION_WORDS + 8,
    }
    assert isinstance(body["metrics"]["latencyMs"], int)


async def test_converse_stream_frames(mock_server: MockBackendServer) -> None:
    path = f"/model/{ESCAPED_MODEL_ID}/converse-stream"
    response = await raw_post(mock_server.port, path, CONVERSATION, {"x-mock-output-tokens": "4"})
    assert response.status == 200
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert response.complete
    messages = decode_frames(response.chunks)
    assert len(messages) == len(response.chunks)  # one frame per HTTP chunk
    events = frame_events(messages)
    assert [name for name, _ in events] == [
        "messageStart",
        *["contentBlockDelta"] * 4,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert events[0][1] == {"role": "assistant"}
    deltas = [payload for name, payload in events if name == "contentBlockDelta"]
    assert [d["delta"]["text"] for d in deltas] == list(reply_pieces(4))
    assert all(d["contentBlockIndex"] == 0 for d in deltas)
    assert events[5][1] == {"contentBlockIndex": 0}
    assert events[6][1] == {"stopReason": "end_turn"}
    metadata = events[7][1]
    assert metadata["usage"] == {
        "inputTokens": CONVERSATION_WORDS,
        "outputTokens": 4,
        "totalTokens": CONVERSATION_WORDS + 4,
    }
    assert isinstance(metadata["metrics"]["latencyMs"], int)


async def test_converse_stream_decodes_split_at_every_byte(
    mock_server: MockBackendServer,
) -> None:
    path = f"/model/{ESCAPED_MODEL_ID}/converse-stream"
    response = await raw_post(mock_server.port, path, CONVERSATION, {"x-mock-output-tokens": "2"})
    wire = response.body
    whole = [(m.headers, m.payload) for m in decode_frames([wire])]
    for offset in range(len(wire) + 1):
        split = decode_frames([wire[:offset], wire[offset:]])
        assert [(m.headers, m.payload) for m in split] == whole


async def test_botocore_client_signs_and_parses(signed_server: MockBackendServer) -> None:
    client = bedrock_client(signed_server.url)
    answer = await asyncio.to_thread(
        client.converse,
        modelId=MODEL_ID,
        inferenceConfig={"maxTokens": 3},
        **CONVERSATION,
    )
    assert answer["output"]["message"]["content"] == [{"text": reply_text(3)}]
    assert answer["stopReason"] == "max_tokens"
    assert answer["usage"]["inputTokens"] == CONVERSATION_WORDS

    def stream() -> list[dict[str, Any]]:
        response = client.converse_stream(modelId=MODEL_ID, **CONVERSATION)
        return list(response["stream"])

    events = await asyncio.to_thread(stream)
    assert [next(iter(event)) for event in events] == [
        "messageStart",
        *["contentBlockDelta"] * 8,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:9])
    assert text == reply_text(8)
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 8

    [first, second] = signed_server.requests.snapshot()
    assert first.path == f"/model/{ESCAPED_MODEL_ID}/converse"
    assert second.path == f"/model/{ESCAPED_MODEL_ID}/converse-stream"
    assert first.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDMOCKEXAMPLE/")


async def test_botocore_client_with_session_token() -> None:
    credentials = AwsCredentials("AKIDTEMP", "temp-secret", "us-east-1", session_token="tok/en==")
    async with run_mock_backend(app=create_app(aws_credentials=credentials)) as server:
        client = bedrock_client(server.url, credentials)
        answer = await asyncio.to_thread(client.converse, modelId=MODEL_ID, **CONVERSATION)
        assert answer["output"]["message"]["content"][0]["text"] == reply_text(8)
        [recorded] = server.requests.snapshot()
        assert recorded.headers["x-amz-security-token"] == "tok/en=="


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        (
            AwsCredentials("AKIDMOCKEXAMPLE", "wrong-secret", "eu-west-3"),
            "InvalidSignatureException",
        ),
        (
            AwsCredentials("AKIDMOCKEXAMPLE", "mock/secret/KEY", "us-east-1"),
            "InvalidSignatureException",
        ),
        (
            AwsCredentials("AKIDSOMEONEELSE", "mock/secret/KEY", "eu-west-3"),
            "UnrecognizedClientException",
        ),
    ],
)
async def test_botocore_client_rejected(
    signed_server: MockBackendServer, credentials: AwsCredentials, code: str
) -> None:
    client = bedrock_client(signed_server.url, credentials)
    with pytest.raises(ClientError) as caught:
        await asyncio.to_thread(client.converse, modelId=MODEL_ID, **CONVERSATION)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


async def test_sigv4_accepts_a_hand_signed_request(signed_server: MockBackendServer) -> None:
    path = f"/model/{ESCAPED_MODEL_ID}/converse"
    body = json.dumps(CONVERSATION).encode()
    headers = signed_headers(f"http://127.0.0.1:{signed_server.port}{path}", body)
    response = await raw_post(signed_server.port, path, body, headers)
    assert response.status == 200, response.body


async def test_sigv4_rejects_a_changed_body(signed_server: MockBackendServer) -> None:
    path = f"/model/{ESCAPED_MODEL_ID}/converse"
    body = json.dumps(CONVERSATION).encode()
    headers = signed_headers(f"http://127.0.0.1:{signed_server.port}{path}", body)
    response = await raw_post(signed_server.port, path, body.replace(b"Paris", b"Lyon!"), headers)
    assert response.status == 403
    assert response.headers["x-amzn-errortype"].startswith("InvalidSignatureException:")
    assert json.loads(response.body)["message"].startswith(
        "The request signature we calculated does not match"
    )


async def test_sigv4_rejects_an_unescaped_path(signed_server: MockBackendServer) -> None:
    # Signed for the escaped model id, sent with a different (unescaped) path.
    body = json.dumps(CONVERSATION).encode()
    signed_for = f"http://127.0.0.1:{signed_server.port}/model/{ESCAPED_MODEL_ID}/converse"
    headers = signed_headers(signed_for, body)
    response = await raw_post(signed_server.port, f"/model/{MODEL_ID}/converse", body, headers)
    assert response.status == 403


async def test_sigv4_ignores_headers_added_after_signing(signed_server: MockBackendServer) -> None:
    path = f"/model/{ESCAPED_MODEL_ID}/converse-stream"
    body = json.dumps(CONVERSATION).encode()
    headers = signed_headers(f"http://127.0.0.1:{signed_server.port}{path}", body)
    headers.update({"x-request-id": "added-by-envoy", "x-mock-output-tokens": "2"})
    response = await raw_post(signed_server.port, path, body, headers)
    assert response.status == 200
    assert len(decode_frames(response.chunks)) == 1 + 2 + 3


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 403, "MissingAuthenticationTokenException"),
        ({"Authorization": "Bearer abc"}, 400, "IncompleteSignatureException"),
    ],
)
async def test_sigv4_rejects_missing_or_malformed_auth(
    signed_server: MockBackendServer, headers: dict[str, str], status: int, code: str
) -> None:
    path = f"/model/{ESCAPED_MODEL_ID}/converse"
    response = await raw_post(signed_server.port, path, CONVERSATION, headers)
    assert response.status == status
    assert response.headers["x-amzn-errortype"].split(":")[0] == code


async def test_tool_use_json_and_stream(mock_server: MockBackendServer) -> None:
    body = {**CONVERSATION, "toolConfig": {"tools": [WEATHER_TOOL]}}
    knobs = {"x-mock-tool-call": "get_weather", "x-mock-output-tokens": "5"}
    converse = await raw_post(mock_server.port, f"/model/{ESCAPED_MODEL_ID}/converse", body, knobs)
    answer = json.loads(converse.body)
    [block] = answer["output"]["message"]["content"]
    assert block["toolUse"]["name"] == "get_weather"
    assert block["toolUse"]["toolUseId"].startswith("tooluse_")
    assert block["toolUse"]["input"] == {"city": "mock", "days": 1}
    assert answer["stopReason"] == "tool_use"
    assert answer["usage"]["outputTokens"] == 5

    path = f"/model/{ESCAPED_MODEL_ID}/converse-stream"
    streamed = await raw_post(mock_server.port, path, body, knobs)
    events = frame_events(decode_frames(streamed.chunks))
    names = [name for name, _ in events]
    assert names == [
        "messageStart",
        "contentBlockStart",
        *["contentBlockDelta"] * 5,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    start = events[1][1]
    assert start["contentBlockIndex"] == 0
    assert start["start"]["toolUse"]["name"] == "get_weather"
    fragments = [payload["delta"]["toolUse"]["input"] for name, payload in events[2:7]]
    assert json.loads("".join(fragments)) == {"city": "mock", "days": 1}
    assert events[8][1] == {"stopReason": "tool_use"}


async def test_tool_choice_forces_a_tool(mock_server: MockBackendServer) -> None:
    body = {
        **CONVERSATION,
        "toolConfig": {"tools": [WEATHER_TOOL], "toolChoice": {"tool": {"name": "get_weather"}}},
    }
    response = await raw_post(mock_server.port, f"/model/{ESCAPED_MODEL_ID}/converse", body)
    assert json.loads(response.body)["stopReason"] == "tool_use"
    body["toolConfig"]["toolChoice"] = {"any": {}}
    response = await raw_post(mock_server.port, f"/model/{ESCAPED_MODEL_ID}/converse", body)
    assert json.loads(response.body)["stopReason"] == "tool_use"
    body["toolConfig"]["toolChoice"] = {"auto": {}}
    response = await raw_post(mock_server.port, f"/model/{ESCAPED_MODEL_ID}/converse", body)
    assert json.loads(response.body)["stopReason"] == "end_turn"


async def test_cached_tokens_knob(mock_server: MockBackendServer) -> None:
    response = await raw_post(
        mock_server.port,
        f"/model/{ESCAPED_MODEL_ID}/converse",
        CONVERSATION,
        {"x-mock-cached-tokens": "4"},
    )
    assert json.loads(response.body)["usage"] == {
        "inputTokens": CONVERSATION_WORDS - 4,
        "outputTokens": 8,
        "totalTokens": CONVERSATION_WORDS + 8,
        "cacheReadInputTokens": 4,
        "cacheWriteInputTokens": 0,
    }


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"x-mock-status": "429"}, 429, "ThrottlingException"),
        ({"x-mock-status": "400"}, 400, "ValidationException"),
        ({"x-mock-status": "500"}, 500, "InternalServerException"),
        ({"x-mock-status": "503"}, 503, "ServiceUnavailableException"),
        (
            {"x-mock-status": "429", "x-mock-error-type": "ModelNotReadyException"},
            429,
            "ModelNotReadyException",
        ),
    ],
)
@pytest.mark.parametrize("operation", ["converse", "converse-stream"])
async def test_status_knob_answers_bedrock_errors(
    mock_server: MockBackendServer,
    headers: dict[str, str],
    status: int,
    code: str,
    operation: str,
) -> None:
    path = f"/model/{ESCAPED_MODEL_ID}/{operation}"
    response = await raw_post(mock_server.port, path, CONVERSATION, headers)
    assert response.status == status
    assert response.headers["x-amzn-errortype"] == (
        f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )
    assert set(json.loads(response.body)) == {"message"}


async def test_botocore_client_sees_modeled_errors(mock_server: MockBackendServer) -> None:
    client = bedrock_client(mock_server.url)
    client.meta.events.register(
        "before-sign.bedrock-runtime.Converse",
        lambda request, **_: request.headers.__setitem__("x-mock-status", "429"),
    )
    with pytest.raises(client.exceptions.ThrottlingException):
        await asyncio.to_thread(client.converse, modelId=MODEL_ID, **CONVERSATION)


async def test_botocore_client_raises_stream_exception(mock_server: MockBackendServer) -> None:
    client = bedrock_client(mock_server.url)
    client.meta.events.register(
        "before-sign.bedrock-runtime.ConverseStream",
        lambda request, **_: request.headers.__setitem__("x-mock-fault", "exception"),
    )

    def stream() -> list[dict[str, Any]]:
        events = []
        response = client.converse_stream(modelId=MODEL_ID, **CONVERSATION)
        for event in response["stream"]:
            events.append(event)
        return events

    with pytest.raises(EventStreamError) as caught:
        await asyncio.to_thread(stream)
    assert caught.value.response["Error"]["Code"] == "modelStreamErrorException"


@pytest.mark.parametrize("body", [b"{not json", b'"a string"', b'{"messages": {"role": "user"}}'])
async def test_bad_requests_are_validation_exceptions(
    mock_server: MockBackendServer, body: bytes
) -> None:
    response = await raw_post(mock_server.port, f"/model/{ESCAPED_MODEL_ID}/converse", body)
    assert response.status == 400
    assert response.headers["x-amzn-errortype"].startswith("ValidationException:")
    assert "message" in json.loads(response.body)


THINKING = {"thinking": {"type": "enabled", "budget_tokens": 1024}}


async def test_thinking_answers_signed_reasoning_first(mock_server: MockBackendServer) -> None:
    body = {
        "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        "inferenceConfig": {"maxTokens": 2048},
        "additionalModelRequestFields": THINKING,
        "serviceTier": {"type": "flex"},
    }
    knobs = {"x-mock-output-tokens": "2", "x-mock-reasoning-tokens": "3"}
    path = f"/model/{ESCAPED_MODEL_ID}/converse"
    answer = json.loads((await raw_post(mock_server.port, path, body, knobs)).body)
    reasoning, text = answer["output"]["message"]["content"]
    assert reasoning == {
        "reasoningContent": {
            "reasoningText": {"text": reply_text(3), "signature": signature(reply_text(3))}
        }
    }
    assert text == {"text": reply_text(2)}
    assert answer["usage"]["outputTokens"] == 5
    assert answer["serviceTier"] == {"type": "flex"}
    stream = await raw_post(mock_server.port, path + "-stream", body, knobs)
    events = frame_events(decode_frames(stream.chunks))
    deltas = [p["delta"] for name, p in events if name == "contentBlockDelta"]
    assert deltas[:4] == [{"reasoningContent": {"text": piece}} for piece in reply_pieces(3)] + [
        {"reasoningContent": {"signature": signature(reply_text(3))}}
    ]
    assert events[-1][1]["serviceTier"] == {"type": "flex"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inferenceConfig": {"maxTokens": 1024}}, "greater than"),
        ({"serviceTier": {"type": "scale"}}, "serviceTier"),
        ({"system": [{"text": "x"}, {"cachePoint": {"type": "ephemeral"}}]}, "cachePoint"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "document": {
                                    "format": "pdf",
                                    "name": "a_b",
                                    "source": {"bytes": "AA=="},
                                }
                            }
                        ],
                    }
                ]
            },
            "document.name",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"text": "x"}]},
                    {
                        "role": "assistant",
                        "content": [
                            {
                                "reasoningContent": {
                                    "reasoningText": {"text": "a", "signature": "forged"}
                                }
                            }
                        ],
                    },
                ]
            },
            "signature",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"text": "x"}]},
                    {
                        "role": "assistant",
                        "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}],
                    },
                ]
            },
            "thinking block",
        ),
    ],
)
async def test_what_bedrock_refuses(
    mock_server: MockBackendServer, change: dict[str, Any], message: str
) -> None:
    body = {
        **CONVERSATION,
        "inferenceConfig": {"maxTokens": 2048},
        "additionalModelRequestFields": THINKING,
        **change,
    }
    response = await raw_post(mock_server.port, f"/model/{ESCAPED_MODEL_ID}/converse", body)
    assert response.status == 400
    assert message in json.loads(response.body)["message"]


async def test_cache_write_tokens_knob(mock_server: MockBackendServer) -> None:
    path = f"/model/{ESCAPED_MODEL_ID}/converse"
    knobs = {"x-mock-cached-tokens": "2", "x-mock-cache-write-tokens": "3"}
    usage = json.loads((await raw_post(mock_server.port, path, CONVERSATION, knobs)).body)["usage"]
    assert usage["inputTokens"] == CONVERSATION_WORDS - 5
    assert (usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"]) == (2, 3)
    # Bedrock breaks writes down by TTL (cacheDetails), the longest a cache point asked.
    assert usage["cacheDetails"] == [{"ttl": "5m", "inputTokens": 3}]
    hour = {
        **CONVERSATION,
        "system": [{"text": "be brief"}, {"cachePoint": {"type": "default", "ttl": "1h"}}],
    }
    usage = json.loads((await raw_post(mock_server.port, path, hour, knobs)).body)["usage"]
    assert usage["cacheDetails"] == [{"ttl": "1h", "inputTokens": 3}]
    knobs = {"x-mock-cached-tokens": "2"}
    usage = json.loads((await raw_post(mock_server.port, path, CONVERSATION, knobs)).body)["usage"]
    assert "cacheDetails" not in usage
