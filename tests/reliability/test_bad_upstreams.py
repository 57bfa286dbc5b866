"""Bad upstreams: truncated streams, broken JSON, event-stream CRC errors, exceptions
inside a stream, connection resets and timeouts. The client gets a clean error (an
OpenAI error status or an error event) or, where the response was already committed, a
broken stream it can detect; the request counts as an error; the server keeps serving."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.e2e.stack import Stack, wait_until
from tests.e2e.test_metrics import delta, snapshot

MESSAGES = [{"role": "user", "content": "tell me something"}]
MODELS = {
    "gpt-4o-mini": "mock-openai",
    "azure-gpt-4o": "mock-azure",
    "bedrock-claude": "mock-bedrock",
    "claude-sonnet": "mock-anthropic",
    "gemini-flash": "mock-gemini",
    "vertex-gemini": "mock-vertex",
    "vertex-claude": "mock-vertex",
}
CASES = [
    # (fault headers, streamed, what the client sees)
    ({"x-mock-fault": "truncate"}, True, "error-event"),
    ({"x-mock-fault": "truncate"}, False, "status"),
    ({"x-mock-fault": "bad-json"}, True, "error-event"),
    ({"x-mock-fault": "bad-json"}, False, "status"),
    ({"x-mock-fault": "exception"}, True, "error-event"),
    ({"x-mock-fault": "reset"}, True, "broken"),
    ({"x-mock-fault": "reset"}, False, "status"),
]


@pytest.fixture(scope="module")
def client(rstack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{rstack.base_url}/v1", api_key="k", max_retries=0)


def outcome(client: openai.OpenAI, model: str, headers: dict[str, str], stream: bool) -> str:
    """What the client saw: 'ok', 'status <n>', 'error-event' or 'broken'."""
    try:
        if not stream:
            client.chat.completions.create(model=model, messages=MESSAGES, extra_headers=headers)  # type: ignore[arg-type]
            return "ok"
        for _ in client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            stream=True,
            extra_headers=headers,  # type: ignore[arg-type]
        ):
            pass
        return "ok"
    except openai.APIStatusError as err:
        return f"status {err.status_code}"
    except openai.APIError as err:
        # The openai client raises APIError for an `error` object inside a stream.
        if isinstance(err, openai.APIConnectionError):
            return "broken"
        return "error-event"


def recorded_errors(
    rstack: Stack, before: dict[Any, float], labels: tuple[str, str]
) -> dict[Any, float]:
    """The growth of requests_total for ``labels`` (backend, model), once there is some.
    Other label sets are left out: other tests' requests may still be being recorded."""
    grown: dict[Any, float] = {}

    def seen() -> bool:
        nonlocal grown
        after = snapshot(rstack.metrics_text())
        grown = {
            k: v
            for k, v in delta(before, after, "aigateway_requests_total").items()
            if k[:2] == labels
        }
        return bool(grown)

    wait_until(f"a request for {labels} to be recorded", seen)
    return grown


def healthy(rstack: Stack, client: openai.OpenAI, model: str) -> None:
    """A normal request succeeds (and is recorded before the next test looks)."""
    before = snapshot(rstack.metrics_text())
    reply = client.chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
    assert reply.choices[0].message.content
    backend = MODELS[model]
    assert recorded_errors(rstack, before, (backend, model)) == {(backend, model, "success"): 1}


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize(("headers", "stream", "seen"), CASES)
def test_broken_upstream_is_a_clean_error_counted_once(
    rstack: Stack,
    client: openai.OpenAI,
    model: str,
    headers: dict[str, str],
    stream: bool,
    seen: str,
) -> None:
    if headers["x-mock-fault"] == "exception" and not stream:
        pytest.fail("exception faults are stream-only")  # guards the table above
    before = snapshot(rstack.metrics_text())
    got = outcome(client, model, headers, stream)
    if seen == "status":
        assert got.startswith("status 5"), got
    elif seen == "broken":
        # A reset before Envoy sent the headers on is a clean 502; once the response is
        # committed, it can only end the stream abruptly.
        assert got in ("broken", "error-event") or got.startswith("status 5"), got
    else:
        assert got == seen, got
    backend = MODELS[model]
    assert recorded_errors(rstack, before, (backend, model)) == {(backend, model, "error"): 1}
    healthy(rstack, client, model)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", ["bad-crc", "exception"])
def test_bedrock_event_stream_faults(
    rstack: Stack, client: openai.OpenAI, fault: str, stream: bool
) -> None:
    before = snapshot(rstack.metrics_text())
    got = outcome(client, "bedrock-claude", {"x-mock-fault": fault}, stream=stream)
    # Event-stream faults do not touch a JSON answer.
    assert got == ("error-event" if stream else "ok")
    status = "error" if stream else "success"
    assert recorded_errors(rstack, before, ("mock-bedrock", "bedrock-claude")) == {
        ("mock-bedrock", "bedrock-claude", status): 1
    }


@pytest.mark.parametrize("stream", [False, True])
def test_slow_upstream_past_its_timeout(rstack: Stack, client: openai.OpenAI, stream: bool) -> None:
    before = snapshot(rstack.metrics_text())
    got = outcome(client, "slow-model", {"x-mock-ttft-ms": "3000"}, stream)
    assert got == "status 504"
    assert recorded_errors(rstack, before, ("mock-slow", "slow-model")) == {
        ("mock-slow", "slow-model", "error"): 1
    }
    healthy(rstack, client, "gpt-4o-mini")


def test_stream_cut_by_the_timeout_midway(rstack: Stack, client: openai.OpenAI) -> None:
    before = snapshot(rstack.metrics_text())
    got = outcome(
        client, "slow-model", {"x-mock-itl-ms": "100", "x-mock-output-tokens": "40"}, stream=True
    )
    assert got in ("broken", "error-event") or got.startswith("status 5"), got
    assert recorded_errors(rstack, before, ("mock-slow", "slow-model")) == {
        ("mock-slow", "slow-model", "error"): 1
    }
