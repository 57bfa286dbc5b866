"""Realistic wire data for the micro-benchmarks: an OpenAI chat completion stream as
OpenAI sends it, and a Bedrock ConverseStream from the mock backend's frame encoder."""

from __future__ import annotations

import json
from typing import Any

from aigateway.mock_backend.eventstream import event_frame

TOKENS = 64
WORDS = [f" word{i}" for i in range(TOKENS)]
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a haiku about load balancers."},
]


def compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_0123456789",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


def openai_stream_events(include_usage: bool = True) -> list[bytes]:
    """One SSE event per network chunk, as OpenAI streams a 64-token answer (with
    ``include_usage``: ``"usage":null`` on every chunk and a usage-only chunk last)."""
    usage_null = {"usage": None} if include_usage else {}
    events = [_chunk({"role": "assistant", "content": "", "refusal": None}, **usage_null)]
    events += [_chunk({"content": w}, **usage_null) for w in WORDS]
    events.append(_chunk({}, "stop", **usage_null))
    if include_usage:
        usage = {
            "prompt_tokens": 27,
            "completion_tokens": TOKENS,
            "total_tokens": 27 + TOKENS,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        last = _chunk({}, usage=usage)
        last["choices"] = []
        events.append(last)
    return [b"data: " + compact(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def bedrock_stream_frames() -> list[bytes]:
    """A ConverseStream answer of 64 tokens, one event-stream frame per chunk."""
    pad = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"  # Bedrock's "p" padding field
    frames = [event_frame("messageStart", compact({"role": "assistant", "p": pad}))]
    frames += [
        event_frame(
            "contentBlockDelta",
            compact({"contentBlockIndex": 0, "delta": {"text": w}, "p": pad[: 1 + i % 30]}),
        )
        for i, w in enumerate(WORDS)
    ]
    frames.append(event_frame("contentBlockStop", compact({"contentBlockIndex": 0, "p": pad})))
    frames.append(event_frame("messageStop", compact({"stopReason": "end_turn", "p": pad})))
    usage = {"inputTokens": 27, "outputTokens": TOKENS, "totalTokens": 27 + TOKENS}
    frames.append(
        event_frame("metadata", compact({"usage": usage, "metrics": {"latencyMs": 412}, "p": pad}))
    )
    return frames


def chat_request(model: str = "gpt-4o-mini", **extra: Any) -> bytes:
    return compact({"model": model, "messages": MESSAGES, "temperature": 0.7, **extra})


#: What the static upstream of the end-to-end benchmark answers.
CHAT_COMPLETION = compact(
    {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A haiku.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 27,
            "completion_tokens": 19,
            "total_tokens": 46,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "system_fingerprint": "fp_bench0001",
    }
)
