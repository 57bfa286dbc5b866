"""OpenAI Responses routes (OpenAI and Azure's v1 API), driven with the official ``openai``
client, and Anthropic's count_tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest

from aigateway.mock_backend import MockBackendServer, reply_pieces, reply_text

from .helpers import parse_sse

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
    "strict": True,
}


@pytest.fixture
async def client(mock_server: MockBackendServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=mock_server.url + "/v1", api_key="sk-test", max_retries=0
    ) as client:
        yield client


async def test_a_response_with_text_and_usage(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="gpt-test",
        instructions="two words",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "three more words"}]}],
        extra_headers={"x-mock-output-tokens": "5", "x-mock-cached-tokens": "2"},
    )
    assert response.status == "completed"
    assert response.output_text == reply_text(5)
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 5)
    assert response.usage.input_tokens_details.cached_tokens == 2


async def test_a_function_call(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="gpt-test", input="weather?", tools=[WEATHER], tool_choice="required"
    )
    call = response.output[0]
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "mock", "days": 1})


async def test_the_stream_sends_one_delta_per_word_and_completes(
    client: openai.AsyncOpenAI,
) -> None:
    events = [
        e
        async for e in await client.responses.create(
            model="gpt-test", input="hi", stream=True, extra_headers={"x-mock-output-tokens": "3"}
        )
    ]
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == list(
        reply_pieces(3)
    )
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed" and final.response.usage is not None
    assert final.response.usage.output_tokens == 3


async def test_a_short_max_output_tokens_ends_incomplete(client: openai.AsyncOpenAI) -> None:
    events = [
        e
        async for e in await client.responses.create(
            model="gpt-test", input="hi", stream=True, max_output_tokens=2
        )
    ]
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"


async def test_azure_v1_path_and_the_exception_fault(http: aiohttp.ClientSession) -> None:
    body = {"model": "my-deployment", "input": "hi", "stream": True}
    async with http.post(
        "/openai/v1/responses", json=body, headers={"x-mock-fault": "exception"}
    ) as response:
        assert response.status == 200
        events = parse_sse(await response.text())
    assert events[-1].event == "error"
    assert events[-1].json()["type"] == "error"
    assert all(e.event != "response.completed" for e in events)


async def test_count_tokens_counts_prompt_words(http: aiohttp.ClientSession) -> None:
    body = {
        "model": "claude",
        "system": "one two",
        "messages": [{"role": "user", "content": "three"}],
    }
    async with http.post("/v1/messages/count_tokens", json=body) as response:
        assert response.status == 200
        assert await response.json() == {"input_tokens": 3}
    async with http.post("/v1/messages/count_tokens", json={"model": "c"}) as response:
        assert response.status == 400
        assert (await response.json())["type"] == "error"


async def test_the_stream_is_shaped_as_openai_sends_it(http: aiohttp.ClientSession) -> None:
    # The fields of a recorded OpenAI stream: sequence numbers from 0 right after the
    # type, an obfuscation string on every delta, the response object's defaults, and
    # cache writes in the usage.
    body = {"model": "gpt-test", "input": "hi", "stream": True, "metadata": {"k": "v"}}
    headers = {"x-mock-output-tokens": "3", "x-mock-cache-write-tokens": "1"}
    async with http.post("/v1/responses", json=body, headers=headers) as response:
        events = [e.json() for e in parse_sse(await response.text())]
    assert [list(e)[:2] for e in events] == [["type", "sequence_number"]] * len(events)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = [e for e in events if e["type"].endswith(".delta")]
    assert len(deltas) == 3 and all(isinstance(e["obfuscation"], str) for e in deltas)
    assert all("obfuscation" not in e for e in events if e not in deltas)
    created, completed = events[0]["response"], events[-1]["response"]
    assert (created["service_tier"], completed["service_tier"]) == ("auto", "default")
    assert completed["metadata"] == {"k": "v"}
    assert completed["text"] == {"format": {"type": "text"}, "verbosity": "medium"}
    assert completed["usage"]["input_tokens_details"] == {
        "cached_tokens": 0,
        "cache_write_tokens": 1,
    }
    body["stream_options"] = {"include_obfuscation": False}
    async with http.post("/v1/responses", json=body, headers=headers) as response:
        events = [e.json() for e in parse_sse(await response.text())]
    assert all("obfuscation" not in e for e in events)
