"""Azure OpenAI translator: Azure's path on top of the OpenAI translator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk

from aigateway.translators.backends.azure import AzureOpenAITranslator, azure_path


@pytest.mark.parametrize(
    ("deployment", "api_version", "path"),
    [
        (
            "gpt-4o",
            "2024-10-21",
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        ),
        (
            "my deployment/v2",
            "2025-01-01-preview",
            "/openai/deployments/my%20deployment%2Fv2/chat/completions"
            "?api-version=2025-01-01-preview",
        ),
    ],
)
def test_path(deployment: str, api_version: str, path: str) -> None:
    assert azure_path(deployment, api_version) == path
    payload = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    up = AzureOpenAITranslator(deployment, api_version).request(payload, b"")
    assert up.path == path


@pytest.mark.parametrize(("deployment", "api_version"), [("", "2024-10-21"), ("gpt-4o", "")])
def test_deployment_and_api_version_are_required(deployment: str, api_version: str) -> None:
    with pytest.raises(ValueError, match="required"):
        AzureOpenAITranslator(deployment, api_version)


def test_body_passes_unchanged_when_nothing_needs_changing() -> None:
    payload: dict[str, Any] = {
        "model": "whatever-the-client-calls-it",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    raw = json.dumps(payload).encode()
    up = AzureOpenAITranslator("gpt-4o", "2024-10-21").request(payload, raw)
    assert up.body is None  # the client's bytes go upstream as they are


def test_streams_ask_for_usage() -> None:
    payload: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
    }
    up = AzureOpenAITranslator("gpt-4o", "2024-10-21").request(payload, b"")
    assert up.body is not None
    assert json.loads(up.body)["stream_options"] == {"include_usage": True}


# An Azure stream: a prompt_filter_results chunk with no choices comes first, and
# content_filter_results ride on every choice.
_HEAD = {"created": 1727880000, "id": "chatcmpl-AEXz", "model": "gpt-4o-2024-08-06"}
AZURE_STREAM = [
    {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [
            {
                "prompt_index": 0,
                "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
            }
        ],
    },
    {
        **_HEAD,
        "object": "chat.completion.chunk",
        "system_fingerprint": "fp_67802d9a6d",
        "choices": [
            {
                "content_filter_results": {},
                "delta": {"content": "", "refusal": None, "role": "assistant"},
                "finish_reason": None,
                "index": 0,
                "logprobs": None,
            }
        ],
    },
    {
        **_HEAD,
        "object": "chat.completion.chunk",
        "choices": [
            {
                "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
                "delta": {"content": "Hello"},
                "finish_reason": None,
                "index": 0,
                "logprobs": None,
            }
        ],
    },
    {
        **_HEAD,
        "object": "chat.completion.chunk",
        "choices": [
            {
                "content_filter_results": {},
                "delta": {},
                "finish_reason": "stop",
                "index": 0,
                "logprobs": None,
            }
        ],
    },
    {
        **_HEAD,
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"completion_tokens": 1, "prompt_tokens": 9, "total_tokens": 10},
    },
]


def azure_sse() -> bytes:
    events = [b"data: " + json.dumps(doc).encode() + b"\n\n" for doc in AZURE_STREAM]
    return b"".join(events) + b"data: [DONE]\n\n"


def test_stream_keeps_prompt_filter_results_and_hides_unasked_usage() -> None:
    t = AzureOpenAITranslator("gpt-4o", "2024-10-21")
    payload = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    t.request(payload, b"")
    assert t.response_headers(200, "text/event-stream; charset=utf-8").streamed is True
    out = t.response_body(azure_sse(), True)
    assert out.error is None
    assert out.usage is not None
    assert (out.usage.input_tokens, out.usage.output_tokens) == (9, 1)
    assert out.body is not None
    events = [e[len(b"data: ") :] for e in out.body.strip().split(b"\n\n")]
    assert events[-1] == b"[DONE]"
    docs = [json.loads(e) for e in events[:-1]]
    assert "prompt_filter_results" in docs[0]
    assert all("usage" not in d for d in docs)
    for doc in docs[1:]:
        ChatCompletionChunk.model_validate(doc)


def test_azure_errors_already_are_openai_errors() -> None:
    body = (
        b'{"error":{"code":"DeploymentNotFound","message":"The API deployment for this '
        b'resource does not exist."}}'
    )
    t = AzureOpenAITranslator("gpt-4o", "2024-10-21")
    assert t.error_body(404, body, {"content-type": "application/json"}) is None  # passes unchanged
