"""What a streamed response publishes to Envoy, answer by answer.

See docs/architecture.md, "Request lifecycle": a usage the backend reports growing on
every chunk (the Gemini API does) costs each chunk only the counts that changed, never
the whole facts again, and Envoy's merge of what the answers carried stays equal to what
the metrics record, whether the stream completes or the client leaves mid-stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aigateway.extproc.framework.server import ExternalProcessorServicer
from aigateway.extproc.gateway.app import build_router
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.config import ResolvedSecrets, parse_config
from aigateway.instrumentation.instrumented import Instrumentation
from tests.extproc.framework.fake_envoy import (
    Conversation,
    metadata,
    request_body,
    request_headers,
    response_body,
    response_headers,
)
from tests.instrumentation.test_instrumented_processor import Metrics

CONFIG = parse_config(
    {
        "backends": [
            {
                "name": "google",
                "schema": "gcp-gemini",
                "endpoint": "http://127.0.0.1:1",
                "auth": {"api_key": {"value": "gk-test"}},
            },
            {"name": "vllm", "schema": "openai", "endpoint": "http://127.0.0.1:1"},
        ],
        "models": [
            {"name": "flash", "backend": "google", "backend_model": "gemini-2.5-flash"},
            {"name": "llama", "backend": "vllm"},
        ],
    }
)
PROMPT, THOUGHTS = 11, 18
WORDS = ["Hello", ",", " World", "!", " Bye", "."]
IDENTITY = {
    "backend": "google",
    "model": "flash",
    "operation": "chat",
    "api": "chat_completions",
    "stream": True,
}


def gemini_event(i: int) -> bytes:
    """The ``i``-th response of a stream as the Gemini API sends it (the recorded shape of
    ``tests/translators/backends/test_gemini.py``): the usage so far on every response,
    the candidates' count growing, the finish reason with the last word."""
    candidate: dict[str, Any] = {
        "content": {"parts": [{"text": WORDS[i]}], "role": "model"},
        "index": 0,
    }
    if i == len(WORDS) - 1:
        candidate["finishReason"] = "STOP"
    usage = {
        "promptTokenCount": PROMPT,
        "candidatesTokenCount": i + 1,
        "totalTokenCount": PROMPT + THOUGHTS + i + 1,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT}],
        "thoughtsTokenCount": THOUGHTS,
        "serviceTier": "standard",
    }
    doc = {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "cWmNaqOEH9CRkdUP1bWcsQU",
    }
    return b"data: " + json.dumps(doc).encode() + b"\r\n\r\n"


def tokens_after(i: int) -> dict[str, int]:
    """The token facts once the ``i``-th response is in (thoughts count as output)."""
    output = THOUGHTS + i + 1
    return {
        "input_tokens": PROMPT,
        "output_tokens": output,
        "total_tokens": PROMPT + output,
        "reasoning_tokens": THOUGHTS,
    }


def gateway(metrics: Metrics) -> ExternalProcessorServicer:
    metrics.instrumentation = Instrumentation.create(
        metrics.instruments,
        models={"flash", "sonnet"},
        backends={"google", "claude-api"},
        clock=metrics.clock,
    )
    table = RoutingTable(CONFIG, ResolvedSecrets(CONFIG, Path()))
    return ExternalProcessorServicer(build_router(table, instrument=metrics.instrumentation.wrap))


async def start_stream(conv: Conversation, model: str = "flash") -> list[dict[str, Any]]:
    """Routes a streamed chat completion to ``model``; the facts each answer carried."""
    chat = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    return [
        metadata(await conv.send(message))
        for message in (
            request_headers(),
            request_body(chat),
            response_headers(content_type="text/event-stream"),
        )
    ]


def merged(published: list[dict[str, Any]]) -> dict[str, Any]:
    """What Envoy holds at log time: every answer's facts merged, key by key."""
    facts: dict[str, Any] = {}
    for answer in published:
        facts.update(answer)
    return facts


def recorded_tokens(metrics: Metrics) -> dict[str, int]:
    names = {
        "prompt": "input_tokens",
        "completion": "output_tokens",
        "total": "total_tokens",
        "reasoning": "reasoning_tokens",
    }
    return {names[kind]: int(count) for kind, count in metrics.tokens().items()}


async def test_a_growing_usage_publishes_only_its_changed_counts_per_chunk() -> None:
    metrics = Metrics()
    conv = Conversation(gateway(metrics))
    published = await start_stream(conv)
    chunks = [
        metadata(await conv.send(response_body(gemini_event(i), end_of_stream=False)))
        for i in range(len(WORDS))
    ]
    published += chunks
    published.append(metadata(await conv.send(response_body(b"", end_of_stream=True))))
    await conv.close()

    # The whole facts: at routing, with the first usage, at the terminal event and at the
    # end of the body; in between, each chunk carries the two counts that grew.
    assert chunks[0] == IDENTITY | tokens_after(0) | {"response_model": "gemini-2.5-flash"}
    for i, facts in enumerate(chunks[1:-1], 1):
        assert facts == {
            "output_tokens": tokens_after(i)["output_tokens"],
            "total_tokens": tokens_after(i)["total_tokens"],
        }
    assert sum(1 for facts in published if "backend" in facts) == 4
    last = len(WORDS) - 1
    final = {"response_model": "gemini-2.5-flash", "finish_reasons": ["stop"]}
    assert merged(published).items() >= (IDENTITY | tokens_after(last) | final).items()
    assert "total_latency_ms" in chunks[-1]  # recorded at the terminal event
    assert metrics.requests() == {("google", "flash", "success"): 1}
    assert recorded_tokens(metrics) == tokens_after(last)


async def test_a_client_leaving_mid_stream_leaves_envoy_the_counts_the_metrics_record() -> None:
    metrics = Metrics()
    conv = Conversation(gateway(metrics))
    published = await start_stream(conv)
    for i in range(3):
        published.append(
            metadata(await conv.send(response_body(gemini_event(i), end_of_stream=False)))
        )
    await conv.cancel()  # the client left: Envoy logs what it merged so far

    logged = merged(published)
    assert logged.items() >= (IDENTITY | tokens_after(2)).items()
    assert "total_latency_ms" not in logged  # not recorded by an answer: the fallback did
    assert metrics.requests() == {("google", "flash", "error"): 1}
    assert recorded_tokens(metrics) == tokens_after(2) == {k: logged[k] for k in tokens_after(2)}


async def test_what_the_backend_says_with_a_grown_usage_is_published_with_it() -> None:
    # vLLM with stream_options.continuous_usage_stats: the usage so far on every chunk,
    # the finish reason with the last word, before the usage chunk and [DONE].
    metrics = Metrics()
    conv = Conversation(gateway(metrics))
    published = await start_stream(conv, "llama")

    def chunk(i: int, finish: str | None = None) -> bytes:
        doc = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 7, "completion_tokens": i, "total_tokens": 7 + i},
        }
        return b"data: " + json.dumps(doc).encode() + b"\n\n"

    for event in (chunk(1), chunk(2), chunk(3, "stop")):
        published.append(metadata(await conv.send(response_body(event, end_of_stream=False))))
    await conv.cancel()  # the client left before the usage chunk and [DONE]

    logged = merged(published)
    assert logged["finish_reasons"] == ["stop"]
    assert logged["response_model"] == "meta-llama/Llama-3.1-8B-Instruct"
    tokens = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    assert logged.items() >= tokens.items()
    assert recorded_tokens(metrics) == tokens
