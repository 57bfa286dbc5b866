"""Gemini API and Vertex AI routes, and the Google OAuth2 token endpoint: JSON and SSE
answers, usage, tools, embeddings, the API-key and bearer-token checks, and service-
account JWT grants signed by google-auth itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.auth import exceptions as google_exceptions
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from aigateway.mock_backend import (
    GcpServiceAccount,
    MockBackendServer,
    create_app,
    new_service_account_key,
    reply_pieces,
    reply_text,
    run_mock_backend,
)

from .helpers import RawResponse, raw_post

API_KEY = "gk-mock-test"
GEMINI = "/v1beta/models/gemini-2.0-flash"
VERTEX = "/v1/projects/proj/locations/us-central1/publishers"
REQUEST: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "Be kind."}]},
    "contents": [
        {"role": "user", "parts": [{"text": "Is it sunny in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"output": "sunny, 25 C"},
                    }
                },
                {"text": "thanks"},
            ],
        },
    ],
}
REQUEST_WORDS = 2 + 5 + 3 + 1
WEATHER_TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                    "required": ["city", "days"],
                },
            }
        ]
    }
]


@pytest.fixture(scope="module")
def key_file() -> tuple[str, GcpServiceAccount]:
    return new_service_account_key("http://unused/token")


@pytest.fixture
async def google(key_file: tuple[str, GcpServiceAccount]) -> AsyncIterator[MockBackendServer]:
    app = create_app(gemini_api_key=API_KEY, gcp_service_accounts=[key_file[1]])
    async with run_mock_backend("127.0.0.1", 0, app=app) as server:
        yield server


async def gemini(server: MockBackendServer, action: str, body: Any, **headers: str) -> RawResponse:
    return await raw_post(
        server.port, GEMINI + action, body, {"x-goog-api-key": API_KEY, **headers}
    )


def sse_docs(response: RawResponse) -> list[Any]:
    text = response.body.decode()
    assert text.endswith("\r\n\r\n")
    events = text[:-4].split("\r\n\r\n")
    assert all(e.startswith("data: ") for e in events), events
    return [json.loads(e[len("data: ") :]) for e in events]


def fetch_token(info: str, token_uri: str, **query: str) -> str:
    """What the gateway does: google-auth signs a grant and posts it to token_uri."""
    data = json.loads(info)
    data["token_uri"] = token_uri + (
        "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    )
    credentials = service_account.Credentials.from_service_account_info(
        data, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    credentials.refresh(Request())
    assert isinstance(credentials.token, str)
    return credentials.token


# --- Gemini API --------------------------------------------------------------------


async def test_generate_content(google: MockBackendServer) -> None:
    response = await gemini(google, ":generateContent", REQUEST, **{"x-mock-output-tokens": "5"})
    assert response.status == 200
    doc = json.loads(response.body)
    assert doc["candidates"] == [
        {
            "content": {"parts": [{"text": reply_text(5)}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
    ]
    assert doc["usageMetadata"] == {
        "promptTokenCount": REQUEST_WORDS,
        "candidatesTokenCount": 5,
        "totalTokenCount": REQUEST_WORDS + 5,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": REQUEST_WORDS}],
    }
    assert doc["modelVersion"] == "gemini-2.0-flash"
    assert doc["responseId"]


async def test_thoughts_and_cache_reads_in_usage(google: MockBackendServer) -> None:
    response = await gemini(
        google,
        ":generateContent",
        REQUEST,
        **{
            "x-mock-output-tokens": "4",
            "x-mock-reasoning-tokens": "7",
            "x-mock-cached-tokens": "3",
        },
    )
    usage = json.loads(response.body)["usageMetadata"]
    assert usage["candidatesTokenCount"] == 4
    assert usage["thoughtsTokenCount"] == 7
    assert usage["cachedContentTokenCount"] == 3
    assert usage["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": 3}]
    assert usage["totalTokenCount"] == REQUEST_WORDS + 4 + 7


async def test_max_output_tokens(google: MockBackendServer) -> None:
    body = {**REQUEST, "generationConfig": {"maxOutputTokens": 3}}
    doc = json.loads((await gemini(google, ":generateContent", body)).body)
    assert doc["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert doc["candidates"][0]["content"]["parts"] == [{"text": reply_text(3)}]


async def test_stream_is_one_word_per_event_the_last_with_finish_and_usage(
    google: MockBackendServer,
) -> None:
    # As Gemini streams (a recorded gemini-2.5-flash stream): the finish reason and the
    # final usage come with the last word, not in an extra empty response.
    response = await gemini(
        google, ":streamGenerateContent?alt=sse", REQUEST, **{"x-mock-output-tokens": "4"}
    )
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    docs = sse_docs(response)
    assert len(response.chunks) == len(docs) == 4  # one write per event
    pieces = [d["candidates"][0]["content"]["parts"][0]["text"] for d in docs]
    assert pieces == list(reply_pieces(4))
    assert all("finishReason" not in d["candidates"][0] for d in docs[:-1])
    assert all(d["usageMetadata"]["totalTokenCount"] == REQUEST_WORDS for d in docs[:-1])
    assert docs[-1]["candidates"][0]["finishReason"] == "STOP"
    assert docs[-1]["usageMetadata"]["candidatesTokenCount"] == 4
    assert len({d["responseId"] for d in docs}) == 1
    assert {d["candidates"][0]["index"] for d in docs} == {0}
    empty = sse_docs(
        await gemini(
            google, ":streamGenerateContent?alt=sse", REQUEST, **{"x-mock-output-tokens": "0"}
        )
    )
    assert [d["candidates"][0]["content"]["parts"] for d in empty] == [[{"text": ""}]]


async def test_usage_so_far_grows_by_a_word_as_google_s_does(google: MockBackendServer) -> None:
    knobs = {
        "x-mock-output-tokens": "4",
        "x-mock-reasoning-tokens": "7",
        "x-mock-usage-so-far": "1",
    }
    docs = sse_docs(await gemini(google, ":streamGenerateContent?alt=sse", REQUEST, **knobs))
    usages = [d["usageMetadata"] for d in docs]
    assert [u["candidatesTokenCount"] for u in usages] == [1, 2, 3, 4]
    assert [u["totalTokenCount"] for u in usages] == [REQUEST_WORDS + 7 + n for n in (1, 2, 3, 4)]
    assert {u["thoughtsTokenCount"] for u in usages} == {7}
    assert {u["promptTokenCount"] for u in usages} == {REQUEST_WORDS}


async def test_vertex_streams_count_tokens_in_the_last_response_only(
    google: MockBackendServer, key_file: tuple[str, GcpServiceAccount]
) -> None:
    # As Vertex AI streams (a recorded gemini-3.1 stream): the responses before the last
    # carry only trafficType, each has createTime and no candidate index, and Gemini 3
    # ends with an empty text part carrying a thoughtSignature.
    token = await asyncio.to_thread(fetch_token, key_file[0], google.url + "/token")
    auth = {"authorization": f"Bearer {token}", "x-mock-output-tokens": "3"}
    for model, tail in (("gemini-2.0-flash-001", 0), ("gemini-3-pro-preview", 1)):
        path = f"{VERTEX}/google/models/{model}:streamGenerateContent?alt=sse"
        docs = sse_docs(await raw_post(google.port, path, REQUEST, auth))
        assert len(docs) == 3 + tail
        assert [d["usageMetadata"] for d in docs[:-1]] == [{"trafficType": "ON_DEMAND"}] * (
            2 + tail
        )
        assert docs[-1]["usageMetadata"] == {
            "promptTokenCount": REQUEST_WORDS,
            "candidatesTokenCount": 3,
            "totalTokenCount": REQUEST_WORDS + 3,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": REQUEST_WORDS}],
            "trafficType": "ON_DEMAND",
            "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 3}],
        }
        assert all("index" not in d["candidates"][0] and d["createTime"] for d in docs)
        last = docs[-1]["candidates"][0]
        assert last["finishReason"] == "STOP"
        if tail:
            (part,) = last["content"]["parts"]
            assert part["text"] == "" and part["thoughtSignature"]


async def test_stream_needs_alt_sse(google: MockBackendServer) -> None:
    response = await gemini(google, ":streamGenerateContent", REQUEST)
    assert response.status == 400


@pytest.mark.parametrize(
    ("headers", "tool_config"),
    [
        ({"x-mock-tool-call": "get_weather"}, None),
        ({}, {"functionCallingConfig": {"mode": "ANY"}}),
        ({}, {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}),
    ],
)
async def test_function_calls(
    google: MockBackendServer, headers: dict[str, str], tool_config: Any
) -> None:
    body: dict[str, Any] = {**REQUEST, "tools": WEATHER_TOOLS}
    if tool_config is not None:
        body["toolConfig"] = tool_config
    doc = json.loads((await gemini(google, ":generateContent", body, **headers)).body)
    assert doc["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "mock", "days": 1}}}
    ]
    streamed = sse_docs(await gemini(google, ":streamGenerateContent?alt=sse", body, **headers))
    assert (
        streamed[0]["candidates"][0]["content"]["parts"] == doc["candidates"][0]["content"]["parts"]
    )
    assert streamed[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_no_function_call_without_tools_or_a_forcing_choice(
    google: MockBackendServer,
) -> None:
    doc = json.loads(
        (await gemini(google, ":generateContent", {**REQUEST, "tools": WEATHER_TOOLS})).body
    )
    assert "text" in doc["candidates"][0]["content"]["parts"][0]


STRICT_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            {"tools": [{"functionDeclarations": [{"name": "w", "parameters": STRICT_SCHEMA}]}]},
            "tools[0].function_declarations[0].parameters",
        ),
        (
            {
                "generationConfig": {
                    "responseMimeType": "application/json",
                    "responseSchema": {
                        "type": "object",
                        "properties": {"a": {"type": "object", "additionalProperties": False}},
                    },
                }
            },
            "generation_config.responseSchema.properties[a].value",
        ),
    ],
)
async def test_json_schema_keywords_in_an_openapi_schema_are_refused(
    google: MockBackendServer, body: dict[str, Any], where: str
) -> None:
    response = await gemini(google, ":generateContent", {**REQUEST, **body})
    assert response.status == 400
    message = json.loads(response.body)["error"]["message"]
    assert message.startswith("Invalid JSON payload received. Unknown name") and where in message


async def test_json_schema_fields_take_json_schema(google: MockBackendServer) -> None:
    body = {
        **REQUEST,
        "tools": [{"functionDeclarations": [{"name": "w", "parametersJsonSchema": STRICT_SCHEMA}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": STRICT_SCHEMA,
        },
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
    }
    doc = json.loads((await gemini(google, ":generateContent", body)).body)
    assert doc["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "w", "args": {"city": "mock", "days": 1}}}
    ]


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"x-goog-api-key": ""}, 403, "Method doesn't allow unregistered callers"),
        ({"x-goog-api-key": "wrong"}, 400, "API key not valid."),
    ],
)
async def test_api_key_is_checked(
    google: MockBackendServer, headers: dict[str, str], status: int, message: str
) -> None:
    response = await raw_post(google.port, GEMINI + ":generateContent", REQUEST, headers)
    assert response.status == status
    error = json.loads(response.body)["error"]
    assert error["code"] == status and error["message"].startswith(message)


async def test_errors_in_google_shape(google: MockBackendServer) -> None:
    response = await gemini(google, ":generateContent", REQUEST, **{"x-mock-status": "429"})
    assert response.status == 429
    assert json.loads(response.body) == {
        "error": {
            "code": 429,
            "message": "mock error: HTTP 429 requested by x-mock-status",
            "status": "RESOURCE_EXHAUSTED",
        }
    }
    assert (await gemini(google, ":generateContent", {"contents": []})).status == 400


async def test_stream_faults(google: MockBackendServer) -> None:
    path = ":streamGenerateContent?alt=sse"
    truncated = sse_docs(
        await gemini(
            google, path, REQUEST, **{"x-mock-fault": "truncate", "x-mock-output-tokens": "3"}
        )
    )
    assert [d["candidates"][0].get("finishReason") for d in truncated] == [None, None]
    failed = sse_docs(await gemini(google, path, REQUEST, **{"x-mock-fault": "exception"}))
    assert failed[-1] == {
        "error": {
            "code": 503,
            "message": "The model is overloaded. Please try again later.",
            "status": "UNAVAILABLE",
        }
    }


async def test_batch_embed_contents(google: MockBackendServer) -> None:
    model = "models/gemini-2.0-flash"
    body = {
        "requests": [
            {
                "model": model,
                "content": {"parts": [{"text": "hello world"}]},
                "outputDimensionality": 4,
            },
            {
                "model": model,
                "content": {"parts": [{"text": "hello world"}]},
                "outputDimensionality": 4,
            },
            {"model": model, "content": {"parts": [{"text": "other"}]}, "outputDimensionality": 4},
        ]
    }
    response = await gemini(google, ":batchEmbedContents", body)
    assert response.status == 200
    doc = json.loads(response.body)
    assert list(doc) == ["embeddings"]  # Google reports no token counts here
    values = [e["values"] for e in doc["embeddings"]]
    assert [len(v) for v in values] == [4, 4, 4]
    assert values[0] == values[1] != values[2]
    wrong = {"requests": [{**body["requests"][0], "model": "models/other"}]}  # type: ignore[index]
    assert (await gemini(google, ":batchEmbedContents", wrong)).status == 400


async def test_path_prefix(key_file: tuple[str, GcpServiceAccount]) -> None:
    async with run_mock_backend("127.0.0.1", 0, app=create_app(path_prefix="/api")) as server:
        ok = await raw_post(
            server.port, "/api" + GEMINI + ":generateContent", REQUEST, {"x-goog-api-key": "k"}
        )
        assert ok.status == 200
        assert (await raw_post(server.port, GEMINI + ":generateContent", REQUEST)).status == 404
        assert server.requests.snapshot()[0].path == "/api" + GEMINI + ":generateContent"


# --- the token endpoint and Vertex AI ----------------------------------------------


async def test_service_account_grant_gives_a_token_vertex_accepts(
    google: MockBackendServer, key_file: tuple[str, GcpServiceAccount]
) -> None:
    token = await asyncio.to_thread(fetch_token, key_file[0], google.url + "/token")
    assert token.startswith("ya29.mock-")
    auth = {"authorization": f"Bearer {token}"}
    path = VERTEX + "/google/models/gemini-2.0-flash-001:generateContent"
    response = await raw_post(google.port, path, REQUEST, auth)
    assert response.status == 200
    assert json.loads(response.body)["usageMetadata"]["trafficType"] == "ON_DEMAND"
    stream = await raw_post(
        google.port, path.replace(":generate", ":streamGenerate") + "?alt=sse", REQUEST, auth
    )
    assert sse_docs(stream)[-1]["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize("authorization", [None, "Bearer ya29.forged", "Basic abc"])
async def test_vertex_refuses_tokens_it_did_not_issue(
    google: MockBackendServer, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    path = VERTEX + "/google/models/gemini-2.0-flash-001:streamGenerateContent?alt=sse"
    response = await raw_post(google.port, path, REQUEST, headers)
    assert response.status == 401
    (error,) = json.loads(response.body)  # Vertex wraps stream errors in a list
    assert error["error"]["status"] == "UNAUTHENTICATED"
    claude = await raw_post(
        google.port, VERTEX + "/anthropic/models/claude-x:rawPredict", {}, headers
    )
    assert claude.status == 401
    assert json.loads(claude.body)["error"]["status"] == "UNAUTHENTICATED"


async def test_expired_tokens_are_refused(
    google: MockBackendServer, key_file: tuple[str, GcpServiceAccount]
) -> None:
    token = await asyncio.to_thread(fetch_token, key_file[0], google.url + "/token", lifetime="0")
    path = VERTEX + "/google/models/gemini-2.0-flash-001:generateContent"
    response = await raw_post(google.port, path, REQUEST, {"authorization": f"Bearer {token}"})
    assert response.status == 401


async def test_grants_signed_with_an_unknown_key_are_refused(google: MockBackendServer) -> None:
    other, _ = new_service_account_key("http://unused/token")
    with pytest.raises(google_exceptions.RefreshError) as err:
        await asyncio.to_thread(fetch_token, other, google.url + "/token")
    assert err.value.args[1]["error"] == "invalid_grant"


async def test_a_grant_with_another_accounts_signature_is_refused(
    google: MockBackendServer, key_file: tuple[str, GcpServiceAccount]
) -> None:
    impostor = json.loads(new_service_account_key("http://unused/token")[0])
    impostor["client_email"] = key_file[1].client_email  # known name, wrong key
    with pytest.raises(google_exceptions.RefreshError) as err:
        await asyncio.to_thread(fetch_token, json.dumps(impostor), google.url + "/token")
    assert err.value.args[1] == {
        "error": "invalid_grant",
        "error_description": "Invalid JWT Signature.",
    }


async def test_token_endpoint_knobs(
    google: MockBackendServer, key_file: tuple[str, GcpServiceAccount]
) -> None:
    with pytest.raises(google_exceptions.RefreshError) as refused:
        await asyncio.to_thread(fetch_token, key_file[0], google.url + "/token", status="401")
    assert refused.value.args[1]["error"] == "invalid_grant"
    with pytest.raises(google_exceptions.TransportError):
        await asyncio.to_thread(fetch_token, key_file[0], google.url + "/token", fault="reset")


async def test_claude_on_vertex(
    google: MockBackendServer, key_file: tuple[str, GcpServiceAccount]
) -> None:
    token = await asyncio.to_thread(fetch_token, key_file[0], google.url + "/token")
    auth = {"authorization": f"Bearer {token}"}
    model = "claude-3-5-sonnet-v2@20241022"
    body = {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "count these four words"}],
    }
    path = f"{VERTEX}/anthropic/models/{model}"
    response = await raw_post(google.port, path + ":rawPredict", body, auth)
    assert response.status == 200
    message = json.loads(response.body)
    assert (message["model"], message["usage"]["input_tokens"]) == (model, 4)
    stream = await raw_post(google.port, path + ":streamRawPredict", {**body, "stream": True}, auth)
    assert stream.status == 200 and b"event: message_stop" in stream.body
    for wrong in ({**body, "model": model}, {**body, "anthropic_version": "2023-06-01"}):
        refused = await raw_post(google.port, path + ":rawPredict", wrong, auth)
        assert refused.status == 400
        assert json.loads(refused.body)["error"]["type"] == "invalid_request_error"
