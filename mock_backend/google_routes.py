"""Google routes: the Gemini API and Vertex AI.

Gemini API (key in ``x-goog-api-key``):

- ``POST /v1beta/models/{model}:generateContent``
- ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``
- ``POST /v1beta/models/{model}:batchEmbedContents``

Vertex AI (a bearer token from the mock's token endpoint, see :mod:`.gcp_token_endpoint`),
under ``/v1/projects/{project}/locations/{region}/publishers``:

- ``/google/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``;
  ``:predict`` for text embeddings (``instances[].content``; each prediction's
  ``embeddings`` with ``values`` and ``statistics.token_count``, its words)
- ``/anthropic/models/{model}:rawPredict`` and ``:streamRawPredict``: Anthropic's
  Messages API (see :mod:`.anthropic_routes`), with ``anthropic_version`` in the body
  and no ``model``; ``/anthropic/models/count-tokens:rawPredict`` counts tokens, the
  model named in the body.

``generateContent`` answers a ``GenerateContentResponse`` (one candidate: ``text`` or
``functionCall`` parts, ``finishReason``, ``usageMetadata``, ``modelVersion``,
``responseId``; Vertex AI adds ``createTime``, ``trafficType`` and
``candidatesTokensDetails``, and leaves out the candidate's ``index``). The SSE stream
sends one response per word, the last word's with ``finishReason`` and the final usage
(a ``functionCall`` part comes whole, finished, in one response); Gemini 3 models end
with an empty text part that carries a ``thoughtSignature``, as they do. Events end in
CRLF, as Google's do. The responses before the last carry the prompt's usage on the
Gemini API, only ``trafficType`` on Vertex AI (Google's own, ``candidatesTokenCount``
growing with each word on the Gemini API, is copied only with ``x-mock-usage-so-far``:
the accounting tests need a cut stream's tokens not to depend on timing). With
``x-mock-reasoning-tokens`` the usage reports thoughts (``thoughtsTokenCount``, left
out of ``candidatesTokenCount``), with ``x-mock-cached-tokens`` cache reads
(``cachedContentTokenCount``, part of ``promptTokenCount``, and ``cacheTokensDetails``).
``batchEmbedContents`` answers ``{"embeddings": [{"values": [...]}]}`` and, like
Google's, no token counts.

Errors are ``{"error": {"code", "message", "status"}}`` (in a list for Vertex AI's
``streamGenerateContent``); in a stream, a ``data:`` event holding one. The knobs of
:mod:`.knobs` apply; ``x-mock-error-type`` sets Google's ``error.status``. The token
endpoint's own knobs are query parameters of the key file's ``token_uri`` (see
:mod:`.gcp_token_endpoint`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from .anthropic_routes import count_tokens_reply, messages_reply
from .errors import ANTHROPIC_ERRORS, GOOGLE_ERRORS, VERTEX_STREAM_ERRORS, MockError
from .gcp_token_endpoint import token_endpoint
from .gcp_tokens import require_bearer
from .prompt_words import gemini_prompt_words
from .reasoning import signature
from .routing import MockCall, dumps, provider_route, send_json
from .state import MockState
from .streaming import EventKind, StreamFaults, send_stream
from .tools import ToolDefinition, mock_arguments, select_tool
from .vectors import embedding_vector
from .words import count_words, limit_tokens, reply_pieces, reply_text

__all__ = ["add_google_routes"]

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_GEMINI = "/v1beta/models/{model:[^/:]+}"
_VERTEX = "/v1/projects/{project}/locations/{region}/publishers"
_ANTHROPIC_VERTEX_VERSION = "vertex-2023-10-16"
_MAX_DIMENSIONS = 3072


def add_google_routes(app: web.Application) -> None:
    """Register the Gemini API, Vertex AI and token endpoint routes on ``app``."""
    route = app.router.add_post
    route(_GEMINI + ":generateContent", provider_route(GOOGLE_ERRORS, _gemini, check=_api_key))
    route(
        _GEMINI + ":streamGenerateContent",
        provider_route(GOOGLE_ERRORS, _gemini_stream, check=_api_key),
    )
    route(
        _GEMINI + ":batchEmbedContents",
        provider_route(GOOGLE_ERRORS, _batch_embed, check=_api_key),
    )
    google = _VERTEX + "/google/models/{model:[^/:]+}"
    route(google + ":generateContent", provider_route(GOOGLE_ERRORS, _vertex, check=_bearer))
    route(
        google + ":streamGenerateContent",
        provider_route(VERTEX_STREAM_ERRORS, _vertex_stream, check=_bearer),
    )
    route(google + ":predict", provider_route(GOOGLE_ERRORS, _vertex_predict, check=_bearer))
    anthropic = _VERTEX + "/anthropic/models/{model:[^/:]+}"
    route(
        anthropic + ":rawPredict",
        provider_route(ANTHROPIC_ERRORS, _raw, check=_bearer_google_shaped),
    )
    route(
        anthropic + ":streamRawPredict",
        provider_route(ANTHROPIC_ERRORS, _stream_raw, check=_bearer_google_shaped),
    )
    route("/token", token_endpoint)


def _api_key(request: web.Request, body: bytes, state: MockState) -> None:
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        raise MockError(
            403,
            "Method doesn't allow unregistered callers (callers without established identity)."
            " Please use API Key or other form of API consumer identity to call this API.",
        )
    if state.gemini_api_key is not None and key != state.gemini_api_key:
        raise MockError(400, "API key not valid. Please pass a valid API key.")


def _bearer(request: web.Request, body: bytes, state: MockState) -> None:
    require_bearer(request.headers, state.gcp_tokens)


def _bearer_google_shaped(request: web.Request, body: bytes, state: MockState) -> None:
    require_bearer(request.headers, state.gcp_tokens, GOOGLE_ERRORS)


def _require_sse(call: MockCall) -> None:
    # Without alt=sse Google streams one JSON array; the gateway always asks for SSE.
    if call.request.query.get("alt") != "sse":
        raise MockError(400, "the mock streams only with ?alt=sse")


async def _gemini(call: MockCall) -> web.StreamResponse:
    return await _generate(call, stream=False, vertex=False)


async def _gemini_stream(call: MockCall) -> web.StreamResponse:
    _require_sse(call)
    return await _generate(call, stream=True, vertex=False)


async def _vertex(call: MockCall) -> web.StreamResponse:
    return await _generate(call, stream=False, vertex=True)


async def _vertex_stream(call: MockCall) -> web.StreamResponse:
    _require_sse(call)
    return await _generate(call, stream=True, vertex=True)


async def _raw(call: MockCall) -> web.StreamResponse:
    if call.request.match_info["model"] == "count-tokens":
        return await count_tokens_reply(call)  # Vertex AI's: the model named in the body
    _anthropic_on_vertex(call.payload, stream=False)
    return await messages_reply(call, call.request.match_info["model"])


async def _stream_raw(call: MockCall) -> web.StreamResponse:
    _anthropic_on_vertex(call.payload, stream=True)
    return await messages_reply(call, call.request.match_info["model"])


def _anthropic_on_vertex(payload: dict[str, Any], *, stream: bool) -> None:
    if payload.get("anthropic_version") != _ANTHROPIC_VERTEX_VERSION:
        raise MockError(400, f"anthropic_version: must be {_ANTHROPIC_VERTEX_VERSION!r}")
    if "model" in payload:
        # Vertex AI names the model in the path; the mock refuses a second name.
        raise MockError(400, "model: Extra inputs are not permitted")
    if (payload.get("stream") is True) != stream:
        action = "streamRawPredict" if stream else "rawPredict"
        raise MockError(400, f"stream: must be {str(stream).lower()} for {action}")


class _Answer:
    """What the model "says" to one generateContent request."""

    __slots__ = ("created", "finish", "prompt", "response_id", "tokens", "tool")

    def __init__(self, call: MockCall) -> None:
        payload = call.payload
        knobs = call.knobs
        contents = payload.get("contents")
        if not isinstance(contents, list) or not contents:
            raise MockError(400, "* GenerateContentRequest.contents: contents is not specified")
        if _signs_calls(call.request.match_info["model"]):
            _check_signatures(contents)
        self.tool = select_tool(
            _tools(payload), header=knobs.tool_call, forced=_forced_tool(payload)
        )
        config = payload.get("generationConfig")
        if isinstance(config, dict):
            _schema_field(config, "responseSchema", "responseJsonSchema", "generation_config")
        if self.tool is None:
            limit = config.get("maxOutputTokens") if isinstance(config, dict) else None
            self.tokens, truncated = limit_tokens(knobs.output_tokens, limit)
            self.finish = "MAX_TOKENS" if truncated else "STOP"
        else:
            self.tokens, self.finish = knobs.output_tokens, "STOP"
        self.prompt = gemini_prompt_words(payload)
        self.response_id = f"mockResponse{call.state.next_id():012d}"
        self.created = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def _signs_calls(model: str) -> bool:
    """Gemini 3 signs its function calls and wants the signatures back."""
    return model.startswith("gemini-3")


def _call_signature(call: dict[str, Any]) -> str:
    return signature(dumps({"name": call.get("name"), "args": call.get("args")}).decode())


def _check_signatures(contents: list[Any]) -> None:
    """As Gemini 3: in the current turn (after the last user text), the first function
    call of each model step must come back with its ``thoughtSignature``."""
    start = 0
    for i, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if content.get("role") == "user" and any(
            isinstance(p, dict) and "text" in p for p in parts or []
        ):
            start = i + 1
    for content in contents[start:]:
        calls = [
            p for p in content.get("parts") or [] if isinstance(p, dict) and "functionCall" in p
        ]
        if content.get("role") != "model" or not calls:
            continue
        first = calls[0]
        if first.get("thoughtSignature") != _call_signature(first["functionCall"]):
            name = first["functionCall"].get("name")
            raise MockError(
                400,
                "Function call is missing a thought_signature in functionCall parts. This is"
                f" required for tools to work correctly. Additional data, function call `{name}`",
            )


def _usage(
    call: MockCall, answer: _Answer, *, final: bool, vertex: bool, so_far: int | None = None
) -> dict[str, Any]:
    """The usage of the last response (``final``), or of one before it: the prompt's, or
    with ``so_far`` (``x-mock-usage-so-far``) that many candidates' tokens too."""
    if vertex and not final:
        return {"trafficType": "ON_DEMAND"}  # Vertex AI counts tokens in the last response
    prompt = answer.prompt
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    if final or so_far is not None:
        candidates = answer.tokens if final or so_far is None else so_far
        thoughts = call.knobs.reasoning_tokens
        usage["candidatesTokenCount"] = candidates
        usage["totalTokenCount"] = prompt + candidates + thoughts
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
    else:
        usage["totalTokenCount"] = prompt
    cached = min(call.knobs.cached_tokens, prompt)
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if cached:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if vertex:
        usage["trafficType"] = "ON_DEMAND"
        if answer.tokens:
            usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": answer.tokens}]
    return usage


def _response(
    answer: _Answer,
    model: str,
    parts: list[dict[str, Any]],
    *,
    finish: str | None,
    usage: dict[str, Any],
    vertex: bool,
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish is not None:
        candidate["finishReason"] = finish
    if not vertex:
        candidate["index"] = 0
    doc: dict[str, Any] = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}
    if vertex:
        doc["createTime"] = answer.created
    doc["responseId"] = answer.response_id
    return doc


def _event(doc: dict[str, Any]) -> bytes:
    return b"data: " + dumps(doc) + b"\r\n\r\n"


async def _generate(call: MockCall, *, stream: bool, vertex: bool) -> web.StreamResponse:
    answer = _Answer(call)
    model = call.request.match_info["model"]
    tool = answer.tool
    call_part: dict[str, Any] | None = None
    if tool is not None:
        call_part = {"functionCall": {"name": tool.name, "args": mock_arguments(tool.schema)}}
        if _signs_calls(model):
            call_part["thoughtSignature"] = _call_signature(call_part["functionCall"])
    final = _usage(call, answer, final=True, vertex=vertex)
    if not stream:
        parts = [call_part] if call_part is not None else [{"text": reply_text(answer.tokens)}]
        doc = _response(answer, model, parts, finish=answer.finish, usage=final, vertex=vertex)
        return await send_json(call.request, call.knobs, dumps(doc))

    def events() -> Iterator[tuple[EventKind, bytes]]:
        partial = _usage(call, answer, final=False, vertex=vertex)

        def response(parts: list[dict[str, Any]], *, last: bool, words: int = 0) -> bytes:
            usage, finish = (final, answer.finish) if last else (partial, None)
            if not last and call.knobs.usage_so_far:
                usage = _usage(call, answer, final=False, vertex=vertex, so_far=words)
            return _event(
                _response(answer, model, parts, finish=finish, usage=usage, vertex=vertex)
            )

        if call_part is not None:
            yield EventKind.FINAL, response([call_part], last=True)
            return
        pieces = reply_pieces(answer.tokens)
        # Gemini 3 signs its answer in an empty last part; the others finish on the last word.
        signed = _signs_calls(model)
        words = pieces if signed else pieces[:-1]
        for i, piece in enumerate(words, 1):
            yield EventKind.TOKEN, response([{"text": piece}], last=False, words=i)
        if signed:
            last: dict[str, Any] = {"text": "", "thoughtSignature": signature(answer.response_id)}
        else:
            last = {"text": pieces[-1] if pieces else ""}
        yield EventKind.FINAL, response([last], last=True)

    faults = StreamFaults(
        bad_json=b'data: {"candidates":[{"content":\r\n\r\n', error_event=_error_event
    )
    return await send_stream(call, events(), faults, _SSE_HEADERS)


def _error_event(error_type: str | None) -> bytes:
    error = {
        "code": 503,
        "message": "The model is overloaded. Please try again later.",
        "status": error_type or "UNAVAILABLE",
    }
    return _event({"error": error})


#: The fields of Google's ``Schema`` message (an OpenAPI subset), which is what
#: ``parameters`` and ``responseSchema`` take; anything else is a 400, as Google answers
#: it. ``parametersJsonSchema`` and ``responseJsonSchema`` take JSON Schema instead.
_OPENAPI_SCHEMA_FIELDS = frozenset(
    {
        *("type", "format", "title", "description", "nullable", "enum", "default", "example"),
        *("properties", "required", "minProperties", "maxProperties", "propertyOrdering"),
        *("items", "minItems", "maxItems", "minLength", "maxLength", "pattern", "anyOf"),
        *("minimum", "maximum"),
    }
)


def _check_openapi_schema(schema: Any, where: str) -> None:
    """Refuses a JSON Schema keyword in an OpenAPI ``Schema`` field, as Gemini does."""
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key not in _OPENAPI_SCHEMA_FIELDS:
            raise MockError(
                400,
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}':"
                " Cannot find field.",
            )
        if key == "properties" and isinstance(value, dict):
            for name, inner in value.items():
                _check_openapi_schema(inner, f"{where}.properties[{name}].value")
        elif key == "items":
            _check_openapi_schema(value, f"{where}.items")
        elif key == "anyOf" and isinstance(value, list):
            for i, inner in enumerate(value):
                _check_openapi_schema(inner, f"{where}.any_of[{i}]")


def _schema_field(doc: dict[str, Any], openapi: str, json_schema: str, where: str) -> Any:
    """The schema under ``openapi`` (checked) or ``json_schema``; both at once is a 400."""
    if openapi in doc and json_schema in doc:
        raise MockError(400, f"{where}: {openapi} and {json_schema} are mutually exclusive")
    if openapi in doc:
        _check_openapi_schema(doc[openapi], f"{where}.{openapi}")
        return doc[openapi]
    return doc.get(json_schema)


def _tools(payload: dict[str, Any]) -> list[ToolDefinition]:
    tools = payload.get("tools")
    if not isinstance(tools, list):
        return []
    found: list[ToolDefinition] = []
    for i, tool in enumerate(tools):
        declarations = tool.get("functionDeclarations") if isinstance(tool, dict) else None
        if not isinstance(declarations, list):
            continue
        for j, declaration in enumerate(declarations):
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                where = f"tools[{i}].function_declarations[{j}]"
                schema = _schema_field(declaration, "parameters", "parametersJsonSchema", where)
                found.append(ToolDefinition(declaration["name"], schema))
    return found


def _forced_tool(payload: dict[str, Any]) -> str | None:
    config = payload.get("toolConfig")
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    if not isinstance(calling, dict) or calling.get("mode") != "ANY":
        return None
    allowed = calling.get("allowedFunctionNames")
    if isinstance(allowed, list) and allowed and isinstance(allowed[0], str):
        return allowed[0]
    tools = _tools(payload)
    return tools[0].name if tools else None


async def _vertex_predict(call: MockCall) -> web.StreamResponse:
    """Vertex AI's text embeddings: one prediction per instance, with its token count."""
    instances = call.payload.get("instances")
    if not isinstance(instances, list) or not instances:
        raise MockError(400, "instances: must be a non-empty list")
    parameters = call.payload.get("parameters") or {}
    dimensions = parameters.get("outputDimensionality", call.state.embedding_dimensions)
    if not isinstance(dimensions, int) or not 1 <= dimensions <= _MAX_DIMENSIONS:
        raise MockError(400, "parameters.outputDimensionality: out of range")
    predictions: list[dict[str, Any]] = []
    for i, instance in enumerate(instances):
        text = instance.get("content") if isinstance(instance, dict) else None
        if not isinstance(text, str):
            raise MockError(400, f"instances[{i}].content: must be a string")
        statistics = {"token_count": count_words(text), "truncated": False}
        values = list(embedding_vector(text, dimensions))
        predictions.append({"embeddings": {"values": values, "statistics": statistics}})
    body = {"predictions": predictions, "metadata": {"billableCharacterCount": 0}}
    return await send_json(call.request, call.knobs, dumps(body))


async def _batch_embed(call: MockCall) -> web.StreamResponse:
    model = "models/" + call.request.match_info["model"]
    requests = call.payload.get("requests")
    if not isinstance(requests, list) or not requests:
        raise MockError(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
    embeddings: list[dict[str, Any]] = []
    for i, item in enumerate(requests):
        if not isinstance(item, dict) or item.get("model") != model:
            raise MockError(
                400, f"requests[{i}].model: must be {model!r}, the model of the request's path"
            )
        content = item.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            raise MockError(400, f"requests[{i}].content: content is not specified")
        text = " ".join(
            p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
        dimensions = item.get("outputDimensionality", call.state.embedding_dimensions)
        if not isinstance(dimensions, int) or not 1 <= dimensions <= _MAX_DIMENSIONS:
            raise MockError(400, f"requests[{i}].outputDimensionality: out of range")
        embeddings.append({"values": list(embedding_vector(text, dimensions))})
    return await send_json(call.request, call.knobs, dumps({"embeddings": embeddings}))
