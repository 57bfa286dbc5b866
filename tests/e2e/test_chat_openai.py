"""Chat completions through the real Envoy and ``aigateway serve`` to the mock backend,
with the official ``openai`` client."""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest

from tests.e2e.stack import UPSTREAM_KEY, Stack

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say something about  gateways\nplease"},
]
PROMPT_WORDS = 3 + 5  # the mock counts whitespace-separated words in all messages


def healthy(client: openai.OpenAI) -> None:
    """The gateway still serves a normal request."""
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content


def post(
    stack: Stack, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        f"{stack.base_url}{path}",
        data=body,
        method="POST",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_non_streaming(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-mock-output-tokens": "5"}
    )
    content = reply.choices[0].message.content
    assert content is not None and len(content.split()) == 5
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        PROMPT_WORDS,
        5,
        PROMPT_WORDS + 5,
    )


def test_streaming_without_include_usage_hides_the_usage_chunk(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)  # no usage-only chunk with "choices": []
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_streaming_with_include_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-mock-output-tokens": "12"},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_WORDS, 12)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 12


def test_backend_model_and_api_key_reach_the_upstream_but_not_client_auth(
    stack: Stack, client: openai.OpenAI
) -> None:
    stack.clear_mock_requests()
    client.chat.completions.create(
        model="phi4", messages=MESSAGES, extra_headers={"x-api-key": "client-other-key"}
    )
    (seen,) = [r for r in stack.mock_requests() if r["path"].endswith("/chat/completions")]
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert json.loads(seen["body"])["model"] == "phi4:latest"
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "client-own-key" not in json.dumps(seen)
    assert "client-other-key" not in json.dumps(seen)
    assert headers["x-ai-gateway-backend"] == "mock-openai"


def test_bad_json_is_400(stack: Stack, client: openai.OpenAI) -> None:
    status, headers, body = post(stack, "/v1/chat/completions", b"{nope")
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    healthy(client)


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert err.value.code == "model_not_found"
    healthy(client)


def test_unknown_path_is_404(stack: Stack, client: openai.OpenAI) -> None:
    status, _, body = post(stack, "/v1/nothing-here?x=1", b"{}")
    assert status == 404
    assert json.loads(body)["error"]["message"] == "Invalid URL (POST /v1/nothing-here)"
    healthy(client)


@pytest.mark.parametrize(
    ("status", "error"), [(429, openai.RateLimitError), (500, openai.InternalServerError)]
)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_are_passed_on(
    client: openai.OpenAI, status: int, error: type[openai.APIStatusError], stream: bool
) -> None:
    with pytest.raises(error) as err:
        result = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=stream,
            extra_headers={"x-mock-status": str(status)},
        )
        if stream:
            list(result)  # type: ignore[arg-type]
    assert err.value.status_code == status
    body = err.value.body
    assert isinstance(body, dict) and isinstance(body.get("message"), str)
    healthy(client)


def test_streaming_request_through_async_client(stack: Stack) -> None:
    import asyncio

    async def run() -> str:
        aclient = openai.AsyncOpenAI(base_url=f"{stack.base_url}/v1", api_key="k", max_retries=0)
        stream = await aclient.chat.completions.create(
            model="phi4", messages=MESSAGES, stream=True, extra_headers={"x-mock-itl-ms": "5"}
        )
        text = ""
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        await aclient.close()
        return text

    assert len(asyncio.run(run()).split()) == 8


@pytest.mark.parametrize("status", [500, 503])
def test_upstream_error_without_a_body_still_gets_an_openai_error(
    client: openai.OpenAI, status: int
) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"x-mock-status": str(status), "x-mock-fault": "empty"},
        )
    assert err.value.status_code == status
    assert isinstance(err.value.body, dict)
    assert "upstream returned HTTP" in err.value.body["message"]
    healthy(client)
