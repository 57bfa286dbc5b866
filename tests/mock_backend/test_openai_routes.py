"""OpenAI and Azure OpenAI routes, driven with the official ``openai`` client."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest

from aigateway.mock_backend import MockBackendServer, reply_pieces, reply_text
from tests.chat_tools import weather_tool

from .helpers import parse_sse, raw_post, user_messages

WEATHER_TOOL = weather_tool(
    {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
        "detailed": {"type": "boolean"},
    },
    ["location", "unit", "days"],
)
CLOCK_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
WEATHER_ARGS = {"location": "mock", "unit": "celsius", "days": 1}


@pytest.fixture
async def client(mock_server: MockBackendServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=mock_server.url + "/v1", api_key="sk-test", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def azure(mock_server: MockBackendServer) -> AsyncIterator[openai.AsyncAzureOpenAI]:
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=mock_server.url,
        api_version="2024-10-21",
        api_key="azure-key",
        max_retries=0,
    ) as client:
        yield client


async def test_chat_completion_json(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gpt-test",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the whole world"},
        ],
    )
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-test"
    assert completion.id.startswith("chatcmpl-")
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert (
        choice.message.content == reply_text(8) == "alpha beta gamma delta epsilon zeta eta theta"
    )
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 3 + 6
    assert completion.usage.completion_tokens == 8
    assert completion.usage.total_tokens == 17


async def test_prompt_words_count_text_parts_and_every_role(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gpt-test",
        messages=[
            {"role": "developer", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "in  this\npicture"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "look", "arguments": '{"not": "counted"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2 + 2 + 3 + 2


async def test_output_tokens_knob_and_length_limit(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="m",
        messages=user_messages("hi"),
        extra_headers={"x-mock-output-tokens": "30"},
    )
    assert completion.choices[0].message.content == reply_text(30)
    assert completion.choices[0].message.content.split()[24] == "alpha"  # the vocabulary cycles
    assert completion.usage is not None and completion.usage.completion_tokens == 30

    limited = await client.chat.completions.create(
        model="m",
        messages=user_messages("hi"),
        max_completion_tokens=5,
        extra_headers={"x-mock-output-tokens": "30"},
    )
    assert limited.choices[0].message.content == reply_text(5)
    assert limited.choices[0].finish_reason == "length"
    assert limited.usage is not None and limited.usage.completion_tokens == 5

    empty = await client.chat.completions.create(
        model="m", messages=user_messages("hi"), extra_headers={"x-mock-output-tokens": "0"}
    )
    assert empty.choices[0].message.content == ""


async def test_stream_with_usage_chunks_like_openai(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-test",
        messages=user_messages("one two three"),
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-mock-output-tokens": "5"},
    )
    chunks = [chunk async for chunk in stream]
    assert len(chunks) == 1 + 5 + 1 + 1
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    first, *words, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert [chunk.choices[0].delta.content for chunk in words] == list(reply_pieces(5))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in words) == reply_text(5)
    assert all(chunk.choices[0].finish_reason is None for chunk in [first, *words])
    assert finish.choices[0].finish_reason == "stop"
    assert finish.choices[0].delta.content is None
    assert all(chunk.usage is None for chunk in [first, *words, finish])
    assert usage.choices == []
    assert usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (3, 5)
    assert usage.usage.total_tokens == 8


async def test_stream_wire_format_with_and_without_usage(mock_server: MockBackendServer) -> None:
    body = {"model": "m", "messages": user_messages("a b"), "stream": True}
    plain = await raw_post(mock_server.port, "/v1/chat/completions", body)
    assert plain.status == 200
    assert plain.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert plain.complete
    events = parse_sse(plain.body.decode())
    assert events[-1].data == "[DONE]"
    assert [event.event for event in events] == [None] * len(events)
    payloads = [event.json() for event in events[:-1]]
    assert len(payloads) == 1 + 8 + 1
    assert all("usage" not in payload for payload in payloads)
    assert payloads[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "refusal": None,
    }
    assert payloads[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    # one SSE event per HTTP chunk
    assert [chunk.decode() for chunk in plain.chunks] == [
        f"data: {event.data}\n\n" for event in events
    ]

    body["stream_options"] = {"include_usage": True}
    with_usage = await raw_post(mock_server.port, "/v1/chat/completions", body)
    payloads = [event.json() for event in parse_sse(with_usage.body.decode())[:-1]]
    assert all(payload["usage"] is None for payload in payloads[:-1])
    assert payloads[-1]["choices"] == []
    assert payloads[-1]["usage"]["prompt_tokens"] == 2


async def test_stream_options_without_stream_is_rejected(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="m", messages=user_messages("x"), stream_options={"include_usage": True}
        )
    assert caught.value.param == "stream_options"


async def test_tool_call_from_header(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="m",
        messages=user_messages("weather in Paris?"),
        tools=[CLOCK_TOOL, WEATHER_TOOL],
        extra_headers={"x-mock-tool-call": "get_weather", "x-mock-output-tokens": "12"},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS
    assert completion.usage is not None and completion.usage.completion_tokens == 12


async def test_tool_call_streamed_as_openai_deltas(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="m",
        messages=user_messages("weather?"),
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-mock-output-tokens": "6"},
    )
    chunks = [chunk async for chunk in stream]
    first, *fragments, finish, usage = chunks
    [opening] = first.choices[0].delta.tool_calls or []
    assert first.choices[0].delta.role == "assistant"
    assert (opening.index, opening.type) == (0, "function")
    assert opening.id is not None and opening.id.startswith("call_")
    assert opening.function is not None
    assert (opening.function.name, opening.function.arguments) == ("get_weather", "")
    assert len(fragments) == 6
    arguments = ""
    for chunk in fragments:
        [delta] = chunk.choices[0].delta.tool_calls or []
        assert delta.index == 0 and delta.id is None and delta.function is not None
        arguments += delta.function.arguments or ""
    assert json.loads(arguments) == WEATHER_ARGS
    assert finish.choices[0].finish_reason == "tool_calls"
    assert usage.usage is not None and usage.usage.completion_tokens == 6


async def test_tool_choice_required_calls_the_first_tool(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="m",
        messages=user_messages("x"),
        tools=[CLOCK_TOOL, WEATHER_TOOL],
        tool_choice="required",
    )
    [call] = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_time"
    assert json.loads(call.function.arguments) == {}


async def test_tool_header_without_tools_answers_text(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="m", messages=user_messages("x"), extra_headers={"x-mock-tool-call": "get_weather"}
    )
    assert completion.choices[0].message.content == reply_text(8)
    assert completion.choices[0].finish_reason == "stop"


async def test_tool_header_naming_an_unknown_tool_is_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="nope"):
        await client.chat.completions.create(
            model="m",
            messages=user_messages("x"),
            tools=[WEATHER_TOOL],
            extra_headers={"x-mock-tool-call": "nope"},
        )


async def test_cached_and_reasoning_token_knobs(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="m",
        messages=user_messages("one two three four"),
        extra_headers={"x-mock-cached-tokens": "3", "x-mock-reasoning-tokens": "5"},
    )
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 4
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 3
    assert usage.completion_tokens == 8 + 5
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 5
    assert usage.total_tokens == 4 + 13
    assert completion.choices[0].message.content == reply_text(8)


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "invalid_request_error"),
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
async def test_status_knob_answers_openai_errors(
    client: openai.AsyncOpenAI, status: int, error: type[openai.APIStatusError], kind: str
) -> None:
    with pytest.raises(error) as caught:
        await client.chat.completions.create(
            model="m", messages=user_messages("x"), extra_headers={"x-mock-status": str(status)}
        )
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == kind
    assert "x-mock-status" in caught.value.body["message"]


async def test_error_type_knob(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="m",
            messages=user_messages("x"),
            extra_headers={"x-mock-status": "429", "x-mock-error-type": "insufficient_quota"},
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "insufficient_quota"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "could not parse the JSON body"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "m", "messages": []}', "messages"),
    ],
)
async def test_bad_requests_get_openai_error_bodies(
    mock_server: MockBackendServer, body: bytes, message: str
) -> None:
    response = await raw_post(mock_server.port, "/v1/chat/completions", body)
    assert response.status == 400
    error = json.loads(response.body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert message in error["message"]


@pytest.mark.parametrize("value", ["abc", "-1", "99999999999"])
async def test_bad_knob_values_are_400(client: openai.AsyncOpenAI, value: str) -> None:
    with pytest.raises(openai.BadRequestError, match="x-mock-output-tokens"):
        await client.chat.completions.create(
            model="m", messages=user_messages("x"), extra_headers={"x-mock-output-tokens": value}
        )


async def test_unknown_fault_is_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="unknown fault"):
        await client.chat.completions.create(
            model="m", messages=user_messages("x"), extra_headers={"x-mock-fault": "explode"}
        )


async def test_embeddings_float_and_base64_agree(client: openai.AsyncOpenAI) -> None:
    # The client asks for base64 by default and decodes it; ask for floats explicitly too.
    as_base64 = await client.embeddings.create(model="emb", input=["the cat sat", "a dog"])
    as_float = await client.embeddings.create(
        model="emb", input=["the cat sat", "a dog"], encoding_format="float"
    )
    assert as_base64.object == "list"
    assert as_base64.model == "emb"
    assert [item.index for item in as_base64.data] == [0, 1]
    assert [item.embedding for item in as_base64.data] == [item.embedding for item in as_float.data]
    first, second = (item.embedding for item in as_float.data)
    assert len(first) == len(second) == 16
    assert first != second
    assert math.isclose(math.fsum(v * v for v in first), 1.0, rel_tol=1e-5)
    assert (as_float.usage.prompt_tokens, as_float.usage.total_tokens) == (5, 5)
    again = await client.embeddings.create(model="x", input="the cat sat", encoding_format="float")
    assert again.data[0].embedding == first


async def test_embeddings_token_arrays_and_dimensions(client: openai.AsyncOpenAI) -> None:
    single = await client.embeddings.create(model="e", input=[1, 2, 3], dimensions=4)
    assert single.usage.prompt_tokens == 3
    assert len(single.data) == 1 and len(single.data[0].embedding) == 4
    many = await client.embeddings.create(model="e", input=[[1, 2], [3, 4, 5]])
    assert many.usage.prompt_tokens == 5
    assert len(many.data) == 2


async def test_embeddings_reject_bad_input(mock_server: MockBackendServer) -> None:
    for body in (
        {"model": "e"},
        {"model": "e", "input": 42},
        {"model": "e", "input": "x", "dimensions": 0},
    ):
        response = await raw_post(mock_server.port, "/v1/embeddings", body)
        assert response.status == 400
        assert json.loads(response.body)["error"]["type"] == "invalid_request_error"


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    models = [model async for model in client.models.list()]
    assert [model.id for model in models] == ["mock-chat", "mock-embedding"]
    assert all(model.object == "model" for model in models)


async def test_unknown_route_is_404(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/nothing-here", json={}) as response:
        assert response.status == 404
        assert (await response.json())["error"]["message"] == "Invalid URL (POST /v1/nothing-here)"
    async with http.get("/v1/chat/completions") as response:
        assert response.status == 404


async def test_azure_chat_uses_the_deployment_as_model(
    azure: openai.AsyncAzureOpenAI, mock_server: MockBackendServer
) -> None:
    completion = await azure.chat.completions.create(
        model="my-gpt-deployment", messages=user_messages("hello azure")
    )
    assert completion.model == "my-gpt-deployment"
    assert completion.choices[0].message.content == reply_text(8)
    assert completion.usage is not None and completion.usage.prompt_tokens == 2
    [recorded] = mock_server.requests.snapshot()
    assert recorded.path == (
        "/openai/deployments/my-gpt-deployment/chat/completions?api-version=2024-10-21"
    )
    assert recorded.headers["api-key"] == "azure-key"


async def test_azure_stream_and_embeddings(azure: openai.AsyncAzureOpenAI) -> None:
    stream = await azure.chat.completions.create(
        model="dep",
        messages=user_messages("x"),
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-mock-output-tokens": "3"},
    )
    chunks = [chunk async for chunk in stream]
    assert {chunk.model for chunk in chunks} == {"dep"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply_text(3)
    embeddings = await azure.embeddings.create(model="emb-dep", input="a b c")
    assert embeddings.model == "emb-dep"
    assert embeddings.usage.prompt_tokens == 3


async def test_azure_requires_api_version(mock_server: MockBackendServer) -> None:
    body = {"messages": user_messages("x")}
    for path in ("/openai/deployments/d/chat/completions", "/openai/deployments/d/embeddings"):
        response = await raw_post(mock_server.port, path, body)
        assert response.status == 400
        error = json.loads(response.body)["error"]
        assert error["code"] == "MissingApiVersionParameter"
        assert "api-version" in error["message"]


async def test_every_chunk_is_padded_like_openai_unless_asked_not_to(
    mock_server: MockBackendServer,
) -> None:
    # As OpenAI streams since its side-channel fix: an "obfuscation" string of varying
    # length closes every chunk, the usage chunk too; include_obfuscation: false drops it.
    body = {
        "model": "m",
        "messages": user_messages("a b"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    padded = await raw_post(mock_server.port, "/v1/chat/completions", body)
    payloads = [event.json() for event in parse_sse(padded.body.decode())[:-1]]
    assert all(list(p)[-1] == "obfuscation" for p in payloads)
    assert len({len(p["obfuscation"]) for p in payloads}) > 1
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["prompt_tokens"] == 2
    body["stream_options"] = {"include_usage": True, "include_obfuscation": False}
    plain = await raw_post(mock_server.port, "/v1/chat/completions", body)
    payloads = [event.json() for event in parse_sse(plain.body.decode())[:-1]]
    assert all("obfuscation" not in p for p in payloads)


async def test_cache_writes_are_reported_in_prompt_tokens_details(
    client: openai.AsyncOpenAI,
) -> None:
    completion = await client.chat.completions.create(
        model="m",
        messages=user_messages("one two three four five"),
        extra_headers={"x-mock-cached-tokens": "2", "x-mock-cache-write-tokens": "2"},
    )
    assert completion.usage is not None
    details = completion.usage.prompt_tokens_details
    assert details is not None
    assert (details.cached_tokens, details.cache_write_tokens) == (2, 2)
    plain = await client.chat.completions.create(model="m", messages=user_messages("x"))
    assert plain.usage is not None and plain.usage.prompt_tokens_details is not None
    assert plain.usage.prompt_tokens_details.cache_write_tokens is None
