"""OpenAI routes: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models``.

Chat completions answer a ``chat.completion`` object, or with ``"stream": true`` an SSE
stream of ``chat.completion.chunk`` objects as OpenAI sends them: a first chunk with
``delta: {"role": "assistant", "content": ""}``, one chunk per word, a chunk with an
empty delta and the ``finish_reason``, then (only with ``stream_options.include_usage``)
a usage chunk with ``"choices": []``, and ``data: [DONE]``. While ``include_usage`` is
on every other chunk carries ``"usage": null``. Every chunk ends with an
``obfuscation`` string of varying length (OpenAI pads chunk sizes against side
channels), unless ``stream_options.include_obfuscation`` is ``false``. Usage reports
cache writes (``prompt_tokens_details.cache_write_tokens``) when
``x-mock-cache-write-tokens`` asks for them.

:func:`chat_completion` and :func:`embeddings` are shared with the Azure OpenAI routes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aiohttp import web

from .errors import OPENAI_ERRORS, MockError, openai_error_type
from .knobs import Knobs
from .prompt_words import embedding_input_tokens, openai_prompt_words
from .routing import MockCall, dumps, provider_route, send_json
from .streaming import EventKind, StreamFaults, send_stream, sse_event
from .tools import ToolDefinition, argument_fragments, arguments_json, select_tool
from .vectors import embedding_base64, embedding_vector
from .words import limit_tokens, reply_pieces, reply_text

__all__ = ["add_openai_routes", "chat_completion", "embeddings", "obfuscation"]

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_FINGERPRINT = "fp_mock"
_MAX_DIMENSIONS = 8192
_MODEL_CREATED = 1_700_000_000
_PADDING = "aB3dE6gH9jK2mN5"


def add_openai_routes(app: web.Application) -> None:
    """Register the OpenAI routes on ``app``."""
    app.router.add_post("/v1/chat/completions", provider_route(OPENAI_ERRORS, _chat))
    app.router.add_post("/v1/embeddings", provider_route(OPENAI_ERRORS, _embeddings))
    app.router.add_get("/v1/models", provider_route(OPENAI_ERRORS, _models, json_body=False))


async def _chat(call: MockCall) -> web.StreamResponse:
    model = call.payload.get("model")
    if not isinstance(model, str) or not model:
        raise MockError(400, "you must provide a model parameter", param="model")
    return await chat_completion(call, model)


async def _embeddings(call: MockCall) -> web.StreamResponse:
    model = call.payload.get("model")
    if not isinstance(model, str) or not model:
        raise MockError(400, "you must provide a model parameter", param="model")
    return await embeddings(call, model)


async def _models(call: MockCall) -> web.StreamResponse:
    data = [
        {"id": model, "object": "model", "created": _MODEL_CREATED, "owned_by": "mock-backend"}
        for model in call.state.models
    ]
    return await send_json(call.request, call.knobs, dumps({"object": "list", "data": data}))


async def chat_completion(call: MockCall, model: str) -> web.StreamResponse:
    """Answer an OpenAI chat-completions body; ``model`` is echoed in the response."""
    payload = call.payload
    knobs = call.knobs
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MockError(400, "'messages' must be a non-empty array", param="messages")
    stream = payload.get("stream") is True
    options = payload.get("stream_options")
    if options is not None and not stream:
        raise MockError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    obfuscated = not (isinstance(options, dict) and options.get("include_obfuscation") is False)
    tool = select_tool(_tools(payload), header=knobs.tool_call, forced=_forced_tool(payload))
    if tool is None:
        limit = payload.get("max_completion_tokens")
        if limit is None:
            limit = payload.get("max_tokens")
        tokens, truncated = limit_tokens(knobs.output_tokens, limit)
        finish = "length" if truncated else "stop"
    else:
        tokens, finish = knobs.output_tokens, "tool_calls"
    seq = call.state.next_id()
    reply = _Reply(
        id=f"chatcmpl-mock{seq:020d}",
        created=int(time.time()),
        model=model,
        tokens=tokens,
        finish=finish,
        tool=tool,
        tool_call_id=f"call_mock{seq:015d}",
        usage=_usage(openai_prompt_words(messages), tokens, knobs),
    )
    headers = {"x-request-id": f"req_mock{seq:020d}"}
    if not stream:
        return await send_json(call.request, knobs, dumps(reply.completion()), headers=headers)
    faults = StreamFaults(
        bad_json=reply.bad_json_event(), error_event=_error_event, keepalive=b": keep-alive\n\n"
    )
    chunks = reply.chunks(include_usage, obfuscated)
    return await send_stream(call, chunks, faults, {**_SSE_HEADERS, **headers})


@dataclass(frozen=True, slots=True)
class _Reply:
    """One chat completion, rendered whole or as chunks."""

    id: str
    created: int
    model: str
    tokens: int
    finish: str
    tool: ToolDefinition | None
    tool_call_id: str
    usage: dict[str, Any]

    def completion(self) -> dict[str, Any]:
        if self.tool is None:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": reply_text(self.tokens),
                "refusal": None,
                "annotations": [],
            }
        else:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": self.tool_call_id,
                        "type": "function",
                        "function": {
                            "name": self.tool.name,
                            "arguments": arguments_json(self.tool.schema),
                        },
                    }
                ],
                "refusal": None,
                "annotations": [],
            }
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish}
            ],
            "usage": self.usage,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }

    def chunks(self, include_usage: bool, obfuscated: bool) -> Iterator[tuple[EventKind, bytes]]:
        # Chunks differ only in their delta: build the JSON around it once.
        head = (
            f'{{"id":{_json(self.id)},"object":"chat.completion.chunk",'
            f'"created":{self.created},"model":{_json(self.model)},'
            f'"service_tier":"default","system_fingerprint":"{_FINGERPRINT}","choices":'
        )
        count = 0

        def end() -> str:
            nonlocal count
            count += 1
            return f',"obfuscation":"{obfuscation(count)}"}}' if obfuscated else "}"

        usage_null = ',"usage":null' if include_usage else ""

        def chunk(delta: str, finish: str = "null") -> bytes:
            choice = f'[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]'
            return sse_event((head + choice + usage_null + end()).encode())

        if self.tool is None:
            yield EventKind.OPEN, chunk('{"role":"assistant","content":"","refusal":null}')
            for piece in reply_pieces(self.tokens):
                yield EventKind.TOKEN, chunk(f'{{"content":{_json(piece)}}}')
        else:
            yield (
                EventKind.OPEN,
                chunk(
                    '{"role":"assistant","content":null,"tool_calls":[{"index":0,'
                    f'"id":{_json(self.tool_call_id)},"type":"function",'
                    f'"function":{{"name":{_json(self.tool.name)},"arguments":""}}}}],'
                    '"refusal":null}'
                ),
            )
            arguments = arguments_json(self.tool.schema)
            for fragment in argument_fragments(arguments, self.tokens):
                yield (
                    EventKind.TOKEN,
                    chunk(
                        f'{{"tool_calls":[{{"index":0,"function":{{"arguments":{_json(fragment)}}}}}]}}'
                    ),
                )
        yield EventKind.CLOSE, chunk("{}", f'"{self.finish}"')
        if include_usage:
            usage = f'{head}[],"usage":{_json(self.usage)}{end()}'
            yield EventKind.CLOSE, sse_event(usage.encode())
        yield EventKind.FINAL, b"data: [DONE]\n\n"

    def bad_json_event(self) -> bytes:
        return sse_event(
            f'{{"id":{_json(self.id)},"object":"chat.completion.chunk","choices":['.encode()
        )


def _error_event(error_type: str | None) -> bytes:
    error = {
        "message": "mock stream error (x-mock-fault: exception)",
        "type": error_type or openai_error_type(500),
        "param": None,
        "code": None,
    }
    return sse_event(dumps({"error": error}))


def obfuscation(count: int) -> str:
    """The ``obfuscation`` padding of the ``count``-th streamed event (1 to 15
    characters, varying as OpenAI's does; shared with the Responses routes)."""
    return _PADDING[: 1 + count * 7 % 15]


def _usage(prompt: int, completion: int, knobs: Knobs) -> dict[str, Any]:
    completion += knobs.reasoning_tokens
    cached = min(knobs.cached_tokens, prompt)
    details: dict[str, int] = {"cached_tokens": cached, "audio_tokens": 0}
    written = min(knobs.cache_write_tokens, prompt - cached)
    if written:
        details["cache_write_tokens"] = written
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
        "completion_tokens_details": {
            "reasoning_tokens": knobs.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tools(payload: dict[str, Any]) -> list[ToolDefinition]:
    tools = payload.get("tools")
    if not isinstance(tools, list):
        return []
    found: list[ToolDefinition] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            found.append(ToolDefinition(function["name"], function.get("parameters")))
    return found


def _forced_tool(payload: dict[str, Any]) -> str | None:
    choice = payload.get("tool_choice")
    if choice == "required":
        tools = _tools(payload)
        return tools[0].name if tools else None
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None


async def embeddings(call: MockCall, model: str) -> web.StreamResponse:
    """Answer an OpenAI embeddings body; ``model`` is echoed in the response.

    Vectors have the request's ``dimensions`` (else the app's default) and honour
    ``encoding_format`` ``"float"`` and ``"base64"``.
    """
    payload = call.payload
    if "input" not in payload:
        raise MockError(400, "'input' is a required property", param="input")
    inputs = payload["input"]
    counts = embedding_input_tokens(inputs)
    keys = _input_keys(inputs)
    dimensions = payload.get("dimensions", call.state.embedding_dimensions)
    if (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= _MAX_DIMENSIONS
    ):
        raise MockError(400, f"'dimensions' must be an integer in [1, {_MAX_DIMENSIONS}]")
    encoding = payload.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise MockError(
            400, "'encoding_format' must be 'float' or 'base64'", param="encoding_format"
        )
    data: list[dict[str, Any]] = []
    for index, key in enumerate(keys):
        vector = embedding_vector(key, dimensions)
        embedding: Any = embedding_base64(vector) if encoding == "base64" else list(vector)
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    total = sum(counts)
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }
    return await send_json(call.request, call.knobs, dumps(body))


def _input_keys(inputs: Any) -> list[str]:
    """One hashing key per input (already validated by ``embedding_input_tokens``)."""
    if isinstance(inputs, str):
        return [inputs]
    if all(isinstance(item, str) for item in inputs):
        return list(inputs)
    if all(isinstance(item, int) for item in inputs):
        return [",".join(map(str, inputs))]
    return [",".join(map(str, item)) for item in inputs]


@lru_cache(maxsize=512)
def _json_cached(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _json(value: object) -> str:
    if isinstance(value, str):
        return _json_cached(value) if len(value) < 64 else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
