"""The OpenAI Responses API through real Envoy, with the official ``openai`` client
(``client.responses.create``, streamed and not, with tools, and ``responses.stream``),
against every backend schema: OpenAI and Azure get it passed through, the others through
their chat translator."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.e2e.stack import UPSTREAM_KEY, VERTEX_CLAUDE_MODEL, Stack
from tests.e2e.test_metrics import after_requests, delta, snapshot, tokens_by_type
from tests.e2e.test_schemas import MODELS, VERTEX_PATH

INSTRUCTIONS = "You are terse."
INPUT = "Say something about  gateways\nplease"
PROMPT_WORDS = 3 + 5
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
    "strict": False,
}
TOOL = {"x-mock-tool-call": "get_weather"}

pytestmark = pytest.mark.parametrize("model", list(MODELS))


def test_non_streamed(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(
        model=model,
        instructions=INSTRUCTIONS,
        input=INPUT,
        extra_headers={"x-mock-output-tokens": "6"},
    )
    assert response.status == "completed"
    assert len(response.output_text.split()) == 6
    if MODELS[model] not in ("mock-openai", "mock-azure"):  # passed through: the upstream's
        assert response.model == model
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (PROMPT_WORDS, 6)
    assert response.usage.total_tokens == PROMPT_WORDS + 6


def test_streamed_equals_non_streamed(client: openai.OpenAI, model: str) -> None:
    whole = client.responses.create(model=model, instructions=INSTRUCTIONS, input=INPUT)
    events = list(
        client.responses.create(model=model, instructions=INSTRUCTIONS, input=INPUT, stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == text
    assert final.response.usage is not None
    assert (final.response.usage.input_tokens, final.response.usage.output_tokens) == (
        PROMPT_WORDS,
        8,
    )


def test_the_stream_helper_gets_the_final_response(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(model=model, input=INPUT, tools=[WEATHER]) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text
    assert final.status == "completed"


def test_function_call(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(
        model=model, input="Weather in Paris for two days?", tools=[WEATHER], extra_headers=TOOL
    )
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert call.call_id
    assert json.loads(call.arguments) == {"city": "mock", "days": 1}


def test_streamed_function_call(client: openai.OpenAI, model: str) -> None:
    events = list(
        client.responses.create(
            model=model, input="Weather?", tools=[WEATHER], stream=True, extra_headers=TOOL
        )
    )
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert json.loads(arguments) == {"city": "mock", "days": 1}
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done.arguments == arguments
    final = events[-1]
    assert final.type == "response.completed"
    (call,) = [item for item in final.response.output if item.type == "function_call"]
    assert (call.name, call.arguments) == ("get_weather", arguments)


def test_function_call_output_round_trip(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(
        model=model,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris", "days": 1}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny and warm"},
        ],
        tools=[WEATHER],
    )
    assert response.status == "completed"
    assert response.usage is not None
    # "Weather in Paris?" and "sunny and warm": the tool result is part of the prompt.
    assert response.usage.input_tokens == 6


@pytest.mark.parametrize(
    ("status", "error"), [(429, openai.RateLimitError), (400, openai.BadRequestError)]
)
def test_upstream_errors_in_openai_shape(
    client: openai.OpenAI, model: str, status: int, error: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error) as err:
        client.responses.create(
            model=model, input=INPUT, extra_headers={"x-mock-status": str(status)}
        )
    assert err.value.status_code == status
    assert isinstance(err.value.body, dict) and isinstance(err.value.body.get("message"), str)


def test_stateful_requests_are_refused_by_name_where_the_backend_cannot_keep_state(
    client: openai.OpenAI, model: str
) -> None:
    if MODELS[model] in ("mock-openai", "mock-azure"):
        # Passed through: the backend keeps (or refuses) what OpenAI keeps.
        response = client.responses.create(model=model, input=INPUT, store=True)
        assert response.status == "completed"
        return
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=model, input=INPUT, previous_response_id="resp_1")
    assert err.value.status_code == 400
    assert isinstance(err.value.body, dict) and err.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=model, input=INPUT, tools=[{"type": "web_search"}])
    assert isinstance(err.value.body, dict) and err.value.body["param"] == "tools[0].type"


def test_the_upstream_gets_its_own_api_and_credentials(
    stack: Stack, client: openai.OpenAI, model: str
) -> None:
    stack.clear_mock_requests()
    client.responses.create(model=model, input=INPUT, extra_headers={"x-api-key": "mine"})
    (seen,) = [r for r in stack.mock_requests() if r["method"] == "POST" and r["path"] != "/token"]
    dump = json.dumps(seen)
    assert "client-own-key" not in dump and '"mine"' not in dump
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    body = json.loads(seen["body"])
    backend = MODELS[model]
    if backend == "mock-openai":
        assert seen["path"] == "/v1/responses"
        assert body == {"model": model, "input": INPUT}
        assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    elif backend == "mock-azure":
        assert seen["path"] == "/openai/v1/responses"
        assert body["model"] == "gpt-4o-deployment"
        assert headers["api-key"] == UPSTREAM_KEY
    elif model == "vertex-claude":
        assert seen["path"] == f"{VERTEX_PATH}/anthropic/models/{VERTEX_CLAUDE_MODEL}:rawPredict"
        assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": INPUT}]}]
    else:
        assert "input" not in body  # the backend's own API


def test_counted_once_per_request_with_its_tokens(
    stack: Stack, client: openai.OpenAI, model: str
) -> None:
    backend = MODELS[model]
    before = snapshot(stack.metrics_text())
    client.responses.create(model=model, input=INPUT, extra_headers={"x-mock-output-tokens": "3"})
    list(
        client.responses.create(
            model=model, input=INPUT, stream=True, extra_headers={"x-mock-output-tokens": "5"}
        )
    )
    after = after_requests(stack, before, (backend, model), 2)
    assert delta(before, after, "aigateway_requests_total", (backend, model)) == {
        (backend, model, "success"): 2
    }
    tokens = tokens_by_type(before, after, (backend, model))
    words = 5
    assert tokens == {"prompt": 2 * words, "completion": 8, "total": 2 * words + 8}


def test_a_replayed_tool_search_works_on_every_backend(client: openai.OpenAI, model: str) -> None:
    """A conversation where OpenAI's tool search loaded a tool (as Codex and the Agents
    SDK replay it): OpenAI runs it as is; elsewhere the search is left out, the tool it
    loaded joins the tools, and the call and its output are answered."""
    response = client.responses.create(
        model=model,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "tool_search_call",
                "id": "tsc_1",
                "arguments": {"query": "weather"},
                "execution": "server",
                "status": "completed",
            },
            {
                "type": "tool_search_output",
                "id": "tso_1",
                "execution": "server",
                "status": "completed",
                "tools": [WEATHER],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris", "days": 1}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny and warm"},
        ],
        tools=[{"type": "tool_search"}, {**WEATHER, "defer_loading": True}],
    )
    assert response.status == "completed"
    assert response.output_text
