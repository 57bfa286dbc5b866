"""The Anthropic Messages API through real Envoy, with the official ``anthropic`` client
(``messages.create``, ``messages.stream``, tools, token counting, the beta client Claude
Code uses) against every backend schema: Anthropic and Claude on Vertex AI get it passed
through, the others through their chat translator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.e2e.stack import (
    GEMINI_KEY,
    UPSTREAM_KEY,
    VERTEX_CLAUDE_MODEL,
    Stack,
)
from tests.e2e.test_metrics import after_requests, delta, snapshot, tokens_by_type
from tests.e2e.test_schemas import MODELS, VERTEX_PATH

SYSTEM = "You are terse."
MESSAGES: Any = [{"role": "user", "content": "Say something about  gateways\nplease"}]
PROMPT_WORDS = 3 + 5
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
TOOL = {"x-mock-tool-call": "get_weather"}
PASSED_THROUGH = ("claude-sonnet", "vertex-claude")

pytestmark = pytest.mark.parametrize("model", list(MODELS))


@pytest.fixture
def claude(stack: Stack) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=stack.base_url, api_key="client-own-key", max_retries=0
    ) as client:
        yield client


def test_create(claude: anthropic.Anthropic, model: str) -> None:
    message = claude.messages.create(
        model=model,
        max_tokens=100,
        system=SYSTEM,
        messages=MESSAGES,
        extra_headers={"x-mock-output-tokens": "6"},
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.stop_reason == "end_turn"
    (block,) = message.content
    assert block.type == "text" and len(block.text.split()) == 6
    assert (message.usage.input_tokens, message.usage.output_tokens) == (PROMPT_WORDS, 6)


def test_stream_equals_create(claude: anthropic.Anthropic, model: str) -> None:
    whole = claude.messages.create(model=model, max_tokens=100, system=SYSTEM, messages=MESSAGES)
    with claude.messages.stream(
        model=model, max_tokens=100, system=SYSTEM, messages=MESSAGES
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert whole.content[0].type == "text"
    assert text == whole.content[0].text
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (PROMPT_WORDS, 8)


def test_raw_stream_runs_from_message_start_to_message_stop(
    claude: anthropic.Anthropic, model: str
) -> None:
    events = list(
        claude.messages.create(model=model, max_tokens=100, messages=MESSAGES, stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_start" in kinds and "content_block_stop" in kinds


def test_tool_use(claude: anthropic.Anthropic, model: str) -> None:
    message = claude.messages.create(
        model=model, max_tokens=100, messages=MESSAGES, tools=[WEATHER], extra_headers=TOOL
    )
    assert message.stop_reason == "tool_use"
    (use,) = [b for b in message.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.id
    assert use.input == {"city": "mock", "days": 1}


def test_streamed_tool_use(claude: anthropic.Anthropic, model: str) -> None:
    with claude.messages.stream(
        model=model, max_tokens=100, messages=MESSAGES, tools=[WEATHER], extra_headers=TOOL
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (use,) = [b for b in final.content if b.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "mock", "days": 1})


def test_tool_result_round_trip(claude: anthropic.Anthropic, model: str) -> None:
    message = claude.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris", "days": 1},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny and warm"}
                ],
            },
        ],
    )
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 6  # "Weather in Paris?" and the tool's result


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (400, anthropic.BadRequestError, "invalid_request_error"),
    ],
)
def test_upstream_errors_in_anthropic_shape(
    claude: anthropic.Anthropic,
    model: str,
    status: int,
    error: type[anthropic.APIStatusError],
    kind: str,
) -> None:
    with pytest.raises(error) as err:
        claude.messages.create(
            model=model,
            max_tokens=10,
            messages=MESSAGES,
            extra_headers={"x-mock-status": str(status)},
        )
    assert err.value.status_code == status
    assert isinstance(err.value.body, dict)
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == kind


def test_an_error_event_mid_stream_raises_in_the_sdk(
    claude: anthropic.Anthropic, model: str
) -> None:
    with (
        pytest.raises(anthropic.APIStatusError),
        claude.messages.stream(
            model=model,
            max_tokens=100,
            messages=MESSAGES,
            extra_headers={"x-mock-fault": "exception"},
        ) as stream,
    ):
        stream.until_done()


def test_count_tokens_is_anthropic_s(stack: Stack, claude: anthropic.Anthropic, model: str) -> None:
    if model == "vertex-claude":  # Vertex AI's count-tokens endpoint, the model in the body
        stack.clear_mock_requests()
        counted = claude.messages.count_tokens(model=model, system=SYSTEM, messages=MESSAGES)
        assert counted.input_tokens == PROMPT_WORDS
        (upstream,) = [r for r in stack.mock_requests() if r["path"] != "/token"]
        assert upstream["path"].endswith("/publishers/anthropic/models/count-tokens:rawPredict")
        assert json.loads(upstream["body"])["model"] == VERTEX_CLAUDE_MODEL
        return
    if MODELS[model] == "mock-anthropic":
        counted = claude.messages.count_tokens(model=model, system=SYSTEM, messages=MESSAGES)
        assert counted.input_tokens == PROMPT_WORDS
        return
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.count_tokens(model=model, messages=MESSAGES)
    assert isinstance(err.value.body, dict)
    assert "cannot count tokens" in err.value.body["error"]["message"]


def test_claude_code_headers_reach_only_backends_that_take_them(
    stack: Stack, claude: anthropic.Anthropic, model: str
) -> None:
    """The beta client (as Claude Code) sends ``?beta=true``, ``anthropic-beta`` and its
    own key; the backend gets its own credential, and Anthropic's headers only where they
    mean something."""
    stack.clear_mock_requests()
    claude.beta.messages.create(
        model=model,
        max_tokens=50,
        messages=MESSAGES,
        betas=["interleaved-thinking-2025-05-14"],
        extra_headers={"authorization": "Bearer client-token"},
    )
    (seen,) = [r for r in stack.mock_requests() if r["method"] == "POST" and r["path"] != "/token"]
    dump = json.dumps(seen)
    assert "client-own-key" not in dump and "client-token" not in dump
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    backend = MODELS[model]
    if backend == "mock-anthropic":
        assert seen["path"] == "/v1/messages"
        assert headers["x-api-key"] == UPSTREAM_KEY
        # The client's own version passes on, not the config's default.
        assert headers["anthropic-version"] == claude.default_headers["anthropic-version"]
        assert headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    elif model == "vertex-claude":
        assert seen["path"] == f"{VERTEX_PATH}/anthropic/models/{VERTEX_CLAUDE_MODEL}:rawPredict"
        assert headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
        assert "anthropic-version" not in headers
        assert json.loads(seen["body"])["anthropic_version"] == "vertex-2023-10-16"
    else:
        assert not [h for h in headers if h.startswith("anthropic-")]
        if backend == "mock-gemini":
            assert headers["x-goog-api-key"] == GEMINI_KEY


def test_counted_once_per_request_with_its_tokens(
    stack: Stack, claude: anthropic.Anthropic, model: str
) -> None:
    backend = MODELS[model]
    before = snapshot(stack.metrics_text())
    claude.messages.create(
        model=model, max_tokens=100, messages=MESSAGES, extra_headers={"x-mock-output-tokens": "3"}
    )
    with claude.messages.stream(
        model=model, max_tokens=100, messages=MESSAGES, extra_headers={"x-mock-output-tokens": "5"}
    ) as stream:
        stream.until_done()
    after = after_requests(stack, before, (backend, model), 2)
    assert delta(before, after, "aigateway_requests_total", (backend, model)) == {
        (backend, model, "success"): 2
    }
    tokens = tokens_by_type(before, after, (backend, model))
    words = 5
    assert tokens == {"prompt": 2 * words, "completion": 8, "total": 2 * words + 8}
