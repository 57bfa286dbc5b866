"""Gemini 3 signs each function call (``thoughtSignature``) and refuses a function-call
turn sent back without it. Through Envoy with the ``openai`` SDK, a chat client that
simply echoes the assistant message it got (as every tool loop does) gets the signature
back to Gemini in the tool call id, streamed or not, on the Gemini API and Vertex AI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.e2e.stack import Stack, default_config, running
from tests.e2e.test_schemas import WEATHER_TOOL

MODELS = {"gemini-3": "mock-gemini", "vertex-gemini-3": "mock-vertex"}
QUESTION = {"role": "user", "content": "weather in Paris for two days?"}


def config(mock_port: int) -> dict[str, Any]:
    out = default_config(mock_port)
    for name, backend in MODELS.items():
        out["models"].append(
            {"name": name, "backend": backend, "backend_model": "gemini-3-pro-preview"}
        )
    return out


@pytest.fixture(scope="module")
def gstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(Stack(tmp_path_factory.mktemp("gemini3"), config_factory=config)) as s:
        yield s


@pytest.fixture
def client(gstack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gstack.base_url}/v1", api_key="k", max_retries=0)


def first_turn(client: openai.OpenAI, model: str, stream: bool) -> dict[str, Any]:
    """The assistant message with its tool call, as the client would append it."""
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [QUESTION],
        "tools": [WEATHER_TOOL],
        "extra_headers": {"x-mock-tool-call": "get_weather"},
    }
    if not stream:
        reply = client.chat.completions.create(**kwargs)
        return reply.choices[0].message.model_dump(exclude_none=True)
    call: dict[str, Any] = {"type": "function", "function": {"name": "", "arguments": ""}}
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            call["id"] = delta.id or call.get("id")
            if delta.function is not None:
                call["function"]["name"] += delta.function.name or ""
                call["function"]["arguments"] += delta.function.arguments or ""
    return {"role": "assistant", "tool_calls": [call]}


def second_turn(client: openai.OpenAI, model: str, assistant: dict[str, Any]) -> str | None:
    call_id = assistant["tool_calls"][0]["id"]
    reply = client.chat.completions.create(
        model=model,
        messages=[  # type: ignore[list-item]
            QUESTION,
            assistant,
            {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    return reply.choices[0].message.content


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", list(MODELS))
def test_a_tool_loop_on_gemini_3_round_trips_the_thought_signature(
    client: openai.OpenAI, model: str, stream: bool
) -> None:
    assistant = first_turn(client, model, stream)
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert second_turn(client, model, assistant)


def test_without_its_signature_gemini_3_refuses_the_turn(client: openai.OpenAI) -> None:
    assistant = first_turn(client, "gemini-3", stream=False)
    assistant["tool_calls"][0]["id"] = "call_from_elsewhere"
    with pytest.raises(openai.BadRequestError) as refused:
        second_turn(client, "gemini-3", assistant)
    assert "thought_signature" in str(refused.value)
