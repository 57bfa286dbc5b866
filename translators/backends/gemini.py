"""OpenAI chat completions and embeddings <-> Google's Gemini ``generateContent`` API, as
the Gemini API (``/v1beta/models/{model}``) and Vertex AI
(``/v1/projects/{p}/locations/{r}/publishers/google/models/{model}``) serve it.

Requests go to ``:generateContent`` (JSON) or ``:streamGenerateContent?alt=sse`` (SSE,
one ``GenerateContentResponse`` per event; the last one carries ``finishReason`` and
the final ``usageMetadata``). Embeddings go to ``:batchEmbedContents``. Credentials
(``x-goog-api-key``, OAuth2 bearer tokens) are the processor's job, not this module's.

What cannot be expressed for Gemini is a 400 naming the field (docs/client-apis.md, "Endpoints and
backend schemas"), never silently dropped.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aigateway.translators.backends.sse_or_json import SseOrJsonAnswer
from aigateway.translators.client_apis import chat
from aigateway.translators.client_apis.field_policy import CHAT_FIELDS
from aigateway.translators.contract import (
    ResponseBodyOutput,
    ResponseHeadersDecision,
    TokenUsage,
    TranslationError,
    UpstreamRequest,
)
from aigateway.translators.wire.errors import (
    MAX_UPSTREAM_MESSAGE,
    error_type_for_status,
    openai_error_body,
    upstream_text,
)
from aigateway.translators.wire.jsoncodec import as_int, dumps, loads_or_none
from aigateway.translators.wire.sse import SseEvent

GENERATE = ":generateContent"
STREAM_GENERATE = ":streamGenerateContent?alt=sse"
BATCH_EMBED = ":batchEmbedContents"

# The image types Gemini takes inline.
_IMAGE_MEDIA_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}
)

_FINISH_REASONS: dict[str, chat.FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "BLOCKLIST": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
}

# Google's OpenAI compatibility layer maps reasoning efforts to these thinking budgets.
# minimal as low, xhigh as high: 24576 is the largest budget every Gemini 2.5 model takes.
_THINKING_BUDGETS = {
    "none": 0,
    "minimal": 1024,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 24576,
}

# Request fields read below; the chat fields Gemini cannot express are refused by name,
# the ignored and unknown ones left out (docs/client-apis.md, "Field policy").
_READ = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "logprobs",
        "reasoning_effort",
    }
)


def gemini_model_path(model: str) -> str:
    """The Gemini API resource of a model: ``/v1beta/models/{model}`` (a tuned model
    named ``tunedModels/x`` keeps its own collection)."""
    if "/" in model:
        return "/v1beta/" + quote(model, safe="/@")
    return "/v1beta/models/" + quote(model, safe="@")


def vertex_model_path(project: str, region: str, publisher: str, model: str) -> str:
    """A Vertex AI publisher model resource:
    ``/v1/projects/{p}/locations/{r}/publishers/{publisher}/models/{model}``."""
    return (
        f"/v1/projects/{quote(project, safe='')}/locations/{quote(region, safe='')}"
        f"/publishers/{quote(publisher, safe='')}/models/{quote(model, safe='@')}"
    )


# --- errors ------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class GoogleError:
    """A Google API error (``{"error": {"code", "message", "status"}}``)."""

    status: int
    message: str
    code: str | int  # the canonical status name (INVALID_ARGUMENT...), else the HTTP status


def google_error(doc: Any, default_status: int) -> GoogleError | None:
    """The error in a Google error document; Vertex wraps stream errors in a list."""
    if isinstance(doc, list) and doc:
        doc = doc[0]
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    status = as_int(error.get("code"))
    if status is None or not 400 <= status <= 599:
        status = default_status
    name = error.get("status")
    return GoogleError(
        status,
        error["message"][:MAX_UPSTREAM_MESSAGE],
        name if isinstance(name, str) and name else status,
    )


def google_error_body(status: int, body: bytes) -> bytes:
    """A Google error body (or anything else) as an OpenAI error with ``status``."""
    error = google_error(loads_or_none(body), status)
    if error is None:
        message = upstream_text(body) or f"upstream returned HTTP {status}"
        return openai_error_body(message, status=status, code=status)
    return openai_error_body(
        error.message, status=status, type=error_type_for_status(status), code=error.code
    )


# --- usage -------------------------------------------------------------------------


def usage_from_gemini(usage: Any) -> TokenUsage:
    """``usageMetadata`` -> TokenUsage. Gemini's candidates count leaves thoughts out;
    OpenAI's completion tokens include reasoning, so completion = candidates + thoughts.
    Tool-use prompt tokens (grounding, code execution) are prompt tokens."""
    if not isinstance(usage, dict):
        return TokenUsage()
    thoughts = as_int(usage.get("thoughtsTokenCount"))
    prompt = (as_int(usage.get("promptTokenCount")) or 0) + (
        as_int(usage.get("toolUsePromptTokenCount")) or 0
    )
    completion = (as_int(usage.get("candidatesTokenCount")) or 0) + (thoughts or 0)
    total = as_int(usage.get("totalTokenCount"))
    return TokenUsage(
        input_tokens=prompt,
        output_tokens=completion,
        total_tokens=total if total is not None else prompt + completion,
        cached_input_tokens=as_int(usage.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def finish_reason_from_gemini(reason: Any, *, tool_calls: bool) -> chat.FinishReason:
    mapped = _FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if mapped == "stop" and tool_calls else mapped


# --- request -----------------------------------------------------------------------


def _reject_unexpressible(payload: dict[str, Any]) -> None:
    chat.reject_unsupported(payload)
    for key, value in payload.items():
        if value is None or key in _READ or CHAT_FIELDS.skips(key):
            continue  # (clients that send every field send the unused ones as null)
        if key == "modalities" and value == ["text"]:
            continue  # what Gemini answers anyway
        raise TranslationError(f"'{key}' is not supported for Gemini models", param=key)
    if payload.get("logprobs") not in (None, False):
        raise TranslationError("'logprobs' is not supported for Gemini models", param="logprobs")


def _image_part(url: str, param: str) -> dict[str, Any]:
    if not url.startswith("data:"):
        # Gemini takes files by URI only from its own file stores; the gateway does no I/O.
        raise TranslationError(
            "only base64 data: URLs are supported for images with Gemini models", param=param
        )
    image = chat.parse_data_url(url, param)
    if image.media_type not in _IMAGE_MEDIA_TYPES:
        raise TranslationError(
            f"unsupported image type '{image.media_type}' (png, jpeg, webp, heic, heif)",
            param=param,
        )
    return {"inlineData": {"mimeType": image.media_type, "data": image.data}}


def _user_parts(content: Any, param: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in chat.content_parts(content, param):
        kind = part["type"]
        if kind == "text":
            text = chat.part_text(part, param)
            if text:  # Gemini rejects empty text parts
                parts.append({"text": text})
        elif kind == "image_url":
            parts.append(_image_part(chat.image_url_of(part, param), param))
        else:
            raise TranslationError(f"content part type '{kind}' is not supported", param=param)
    return parts


def _model_parts(
    message: dict[str, Any], param: str, call_names: dict[str, str]
) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in chat.content_parts(message.get("content"), param):
        kind = part["type"]
        if kind == "text":
            text = chat.part_text(part, param)
            if text:
                parts.append({"text": text})
        elif kind != "refusal" and kind not in chat.THINKING_PARTS:
            # a refusal carries no content worth replaying; only Claude reads its thinking
            raise TranslationError(f"content part type '{kind}' is not supported", param=param)
    for _, _, call_id, name, args in chat.tool_calls_of(message, param):
        call_names[call_id] = name
        function_call: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
        signature = thought_signature_of(call_id)
        if signature is not None:
            function_call["thoughtSignature"] = signature
        parts.append(function_call)
    return parts


# Gemini 3 refuses a function call sent back without its thoughtSignature; the tool call
# id every client echoes carries it (docs/client-apis.md, "Endpoints and backend schemas").
_SIGNATURE_MARK = "__ts_"


def call_id_with_signature(call_id: str, signature: Any) -> str:
    """The tool call id that carries Gemini's ``thoughtSignature`` back to us."""
    if not isinstance(signature, str) or not signature:
        return call_id
    encoded = base64.urlsafe_b64encode(signature.encode()).decode("ascii").rstrip("=")
    return call_id + _SIGNATURE_MARK + encoded


def thought_signature_of(call_id: str) -> str | None:
    """The signature :func:`call_id_with_signature` put in a tool call id, if any."""
    _, mark, encoded = call_id.rpartition(_SIGNATURE_MARK)
    if not mark or not encoded:
        return None
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode() or None
    except ValueError:  # binascii.Error and UnicodeDecodeError: an id of the client's own
        return None


def _function_response_part(
    message: dict[str, Any], param: str, call_names: dict[str, str]
) -> dict[str, Any]:
    call_id = chat.tool_result_id(message, param)
    name = call_names.get(call_id)
    if name is None:
        # Gemini answers function calls by name, and only the history knows it.
        raise TranslationError(
            f"'tool_call_id' {call_id[:100]!r} matches no earlier assistant tool call",
            param=f"{param}.tool_call_id",
        )
    output = "".join(chat.text_parts(message.get("content"), param))
    # "output" is the key Google documents for a function's result.
    return {"functionResponse": {"name": name, "response": {"output": output}}}


def _generation_config(payload: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = chat.max_output_tokens(payload)
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    for key, name in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        value = chat.number_param(payload, key)
        if value is not None:
            config[name] = value
    seed = payload.get("seed")
    if seed is not None:
        if as_int(seed) is None:
            raise TranslationError("'seed' must be an integer", param="seed")
        config["seed"] = seed
    stops = chat.stop_sequences(payload)
    if stops:
        config["stopSequences"] = stops
    config.update(_response_format(payload))
    effort = payload.get("reasoning_effort")
    if effort is not None:
        if effort not in _THINKING_BUDGETS:
            raise TranslationError(
                "'reasoning_effort' must be one of none, minimal, low, medium, high, xhigh"
                " for Gemini models",
                param="reasoning_effort",
            )
        config["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGETS[effort]}
    return config


def _response_format(payload: dict[str, Any]) -> dict[str, Any]:
    """``response_format``: JSON answers, shaped by ``json_schema.schema`` if given."""
    value = payload.get("response_format")
    if value is None:
        return {}
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind != "json_schema":
        raise TranslationError(
            "'response_format.type' must be text, json_object or json_schema",
            param="response_format",
        )
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise TranslationError(
            "'response_format.json_schema.schema' must be a JSON schema object",
            param="response_format.json_schema.schema",
        )
    # responseJsonSchema takes JSON Schema as clients write it (additionalProperties,
    # $defs, anyOf); responseSchema is an OpenAPI subset that refuses those keys.
    return {"responseMimeType": "application/json", "responseJsonSchema": schema}


def _add_tools(body: dict[str, Any], payload: dict[str, Any]) -> None:
    tools = chat.function_tools(payload)
    choice = chat.tool_choice(payload)
    if not tools:
        if choice is not None and choice.mode in ("required", "named"):
            raise TranslationError("'tool_choice' needs 'tools'", param="tool_choice")
        return
    declarations: list[dict[str, Any]] = []
    for tool in tools:
        # parametersJsonSchema, not parameters (an OpenAPI subset that refuses the
        # additionalProperties and $schema every SDK's schemas carry).
        declaration: dict[str, Any] = {"name": tool.name, "parametersJsonSchema": tool.parameters}
        if tool.description:
            declaration["description"] = tool.description
        declarations.append(declaration)
    body["tools"] = [{"functionDeclarations": declarations}]
    if choice is None:
        return  # Gemini's default is AUTO
    calling: dict[str, Any]
    if choice.mode == "named":
        chat.check_named_tool(choice, tools)
        calling = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    else:
        calling = {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice.mode]}
    body["toolConfig"] = {"functionCallingConfig": calling}


def generate_content_request(payload: dict[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` request body for an OpenAI chat completion request."""
    _reject_unexpressible(payload)
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool call id -> function name, from the history
    for i, message in enumerate(chat.messages_of(payload)):
        role = message["role"]
        param = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend({"text": t} for t in chat.text_parts(message.get("content"), param) if t)
        elif role == "user":
            chat.append_merged(
                contents, "user", _user_parts(message.get("content"), param), "parts"
            )
        elif role == "assistant":
            parts = _model_parts(message, param, call_names)
            chat.append_merged(contents, "model", parts, "parts")
        elif role == "tool":
            part = _function_response_part(message, param, call_names)
            chat.append_merged(contents, "user", [part], "parts")
        else:
            raise TranslationError(f"unsupported message role '{role}'", param=param)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    config = _generation_config(payload)
    if config:
        body["generationConfig"] = config
    _add_tools(body, payload)
    return body


# --- the chat translator -----------------------------------------------------------


def _first_candidate(doc: dict[str, Any]) -> dict[str, Any]:
    candidates = doc.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return {}


def _parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return []
    return [p for p in parts if isinstance(p, dict)]


def _model_version(doc: dict[str, Any]) -> str | None:
    """The model that answered, as Gemini reports it."""
    version = doc.get("modelVersion")
    return version if isinstance(version, str) and version else None


def _blocked(doc: dict[str, Any]) -> bool:
    """The prompt itself was blocked: no candidates, ``promptFeedback.blockReason``."""
    feedback = doc.get("promptFeedback")
    return isinstance(feedback, dict) and feedback.get("blockReason") is not None


class GeminiChatTranslator(SseOrJsonAnswer):
    """One request's translation to ``generateContent`` and back (see
    ``Translator``).

    ``model_path`` is the model's resource path (:func:`gemini_model_path` or
    :func:`vertex_model_path`); the client sees the ``model`` it sent.
    ``completion_id`` and ``created`` can be fixed (tests); otherwise the id is
    ``chatcmpl-`` plus Gemini's ``responseId``. Tool calls get ids made from it, since
    Gemini calls functions by name.
    """

    __slots__ = (
        "_calls",
        "_client_model",
        "_completion_id",
        "_created",
        "_finish",
        "_include_usage",
        "_model_path",
        "_one_call",
    )

    def __init__(
        self, model_path: str, *, completion_id: str | None = None, created: int | None = None
    ) -> None:
        super().__init__()
        self._model_path = model_path
        self._completion_id = completion_id
        self._created = created if created is not None else chat.now()
        self._client_model = model_path.rpartition("/")[2]
        self._include_usage = False
        self._calls = 0  # function calls seen in the stream
        self._one_call = False  # parallel_tool_calls: false
        self._finish: chat.FinishReason | None = None  # the stream's finishReason, once seen

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        model = payload.get("model")
        if isinstance(model, str) and model:
            self._client_model = model
        body = dumps(generate_content_request(payload))
        # Gemini has no switch for it: the answer keeps its first function call only.
        self._one_call = chat.parallel_tool_calls(payload) is False
        self._streamed = chat.is_streaming(payload)
        self._include_usage = self._streamed and chat.include_usage(payload)
        action = STREAM_GENERATE if self._streamed else GENERATE
        return UpstreamRequest(
            body=body,
            path=self._model_path + action,
            headers=(("content-type", "application/json"),),
        )

    def error_body(self, status: int, body: bytes, headers: Mapping[str, str]) -> bytes:
        return google_error_body(status, body)

    def _id(self, response_id: Any) -> str:
        if self._completion_id is None:
            self._completion_id = (
                "chatcmpl-" + response_id
                if isinstance(response_id, str) and response_id
                else chat.new_completion_id()
            )
        return self._completion_id

    def _call_id(self, part: dict[str, Any], index: int) -> str:
        given = part["functionCall"].get("id")
        if not isinstance(given, str) or not given:
            given = f"call_{self._id(None).removeprefix('chatcmpl-')}_{index}"
        return call_id_with_signature(given, part.get("thoughtSignature"))

    # --- JSON ---

    def _json_body(self, body: bytes) -> ResponseBodyOutput:
        doc = loads_or_none(body)
        if not isinstance(doc, dict) or not (
            isinstance(doc.get("candidates"), list) or _blocked(doc)
        ):
            return chat.invalid_answer("not a generateContent response")
        self._id(doc.get("responseId"))
        candidate = _first_candidate(doc)
        answer = chat.AnswerParts()
        calls = answer.calls
        for part in _parts(candidate):
            if part.get("thought") is True:
                continue  # thought summaries have no OpenAI message field
            if isinstance(part.get("text"), str):
                answer.texts.append(part["text"])
            elif isinstance(part.get("functionCall"), dict):
                if self._one_call and calls:
                    continue
                call = part["functionCall"]
                calls.append(
                    chat.ToolCall(
                        self._call_id(part, len(calls)),
                        str(call.get("name", "")),
                        dumps(call.get("args") or {}).decode(),
                    )
                )
        finish = (
            "content_filter"
            if _blocked(doc)
            else finish_reason_from_gemini(candidate.get("finishReason"), tool_calls=bool(calls))
        )
        usage = usage_from_gemini(doc.get("usageMetadata"))
        out = self._answer_body(
            answer,
            completion_id=self._id(None),
            created=self._created,
            model=self._client_model,
            finish_reason=finish,
            usage=usage,
        )
        return ResponseBodyOutput(
            body=out,
            usage=usage,
            complete=True,
            model=_model_version(doc),
            finish_reasons=(finish,),
        )

    # --- SSE ---

    def _chunk_stream(self, response_id: Any) -> chat.ChunkStream:
        if self._stream is None:
            self._stream = self._new_chunk_stream(
                self._id(response_id),
                self._created,
                self._client_model,
                include_usage=self._include_usage,
            )
            self._stream.role()
        return self._stream

    def _on_event(self, event: SseEvent) -> chat.ChunkStream:
        data = event.data
        doc = loads_or_none(data)
        if not isinstance(doc, dict):
            stream = self._chunk_stream(None)
            stream.fail(
                "The upstream sent an undecodable event.",
                status=502,
                code="bad_upstream",
                error=chat.UPSTREAM_INVALID_STREAM,
            )
            return stream
        stream = self._chunk_stream(doc.get("responseId"))
        if stream.model is None:
            stream.model = _model_version(doc)
        error = google_error(doc, 500)
        if error is not None:
            stream.fail(
                error.message,
                status=error.status,
                type=error_type_for_status(error.status),
                code=error.code,
            )
            return stream
        candidate = _first_candidate(doc)
        for part in _parts(candidate):
            if part.get("thought") is True:
                continue
            if isinstance(part.get("text"), str):
                stream.text(part["text"])
            elif isinstance(part.get("functionCall"), dict):
                if self._one_call and self._calls:
                    continue
                call = part["functionCall"]
                index = self._calls
                self._calls += 1
                stream.tool_call_start(index, self._call_id(part, index), str(call.get("name", "")))
                stream.tool_call_arguments(index, dumps(call.get("args") or {}).decode())
        if _blocked(doc):
            self._finish = "content_filter"
        elif candidate.get("finishReason") is not None:
            self._finish = finish_reason_from_gemini(
                candidate["finishReason"], tool_calls=self._calls > 0
            )
        usage = doc.get("usageMetadata")
        if usage is not None:
            stream.usage = usage_from_gemini(usage)
        # The terminal event: the finish reason and the final usage
        # (docs/client-apis.md, "Endpoints and backend schemas", `gcp-gemini`).
        if self._finish is not None and usage is not None:
            stream.finish(self._finish)
            stream.complete()
        return stream


# --- embeddings --------------------------------------------------------------------


def _vertex_embeddings(doc: Any) -> tuple[Any, TokenUsage | None]:
    """A ``:predict`` answer as ``batchEmbedContents``' shape, and its token counts."""
    predictions = doc.get("predictions") if isinstance(doc, dict) else None
    if not isinstance(predictions, list):
        return None, None
    embeddings: list[Any] = []
    tokens = 0
    for prediction in predictions:
        embedding = prediction.get("embeddings") if isinstance(prediction, dict) else None
        embeddings.append(embedding)
        stats = embedding.get("statistics") if isinstance(embedding, dict) else None
        count = as_int(stats.get("token_count")) if isinstance(stats, dict) else None
        tokens += count if count is not None and count > 0 else 0
    return {"embeddings": embeddings}, TokenUsage(input_tokens=tokens, total_tokens=tokens)


def _embedding_texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    raise TranslationError(
        "Gemini embeddings take a string or an array of strings (not token arrays)",
        param="input",
    )


class GeminiEmbeddingsTranslator:
    """``/v1/embeddings`` as ``batchEmbedContents`` on the Gemini API (one request per
    input), or with ``vertex`` as Vertex AI's ``:predict`` (one instance per input): the
    vectors back as OpenAI's list (floats, or base64 float32 as the ``openai`` client
    asks by default). The Gemini API reports no token counts for embeddings (the
    client's ``usage`` then says 0 and no tokens are counted); Vertex AI reports each
    input's ``statistics.token_count``, whose sum is the prompt."""

    __slots__ = ("_base64", "_client_model", "_json_parts", "_model", "_model_path", "_vertex")

    def __init__(self, model_path: str, model: str, *, vertex: bool = False) -> None:
        self._model_path = model_path
        self._model = model if "/" in model else "models/" + model
        self._client_model = model
        self._base64 = False
        self._json_parts: list[bytes] = []
        self._vertex = vertex

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        for key in payload:
            if key not in ("model", "input", "dimensions", "encoding_format", "user"):
                raise TranslationError(f"'{key}' is not supported for Gemini models", param=key)
        model = payload.get("model")
        if isinstance(model, str) and model:
            self._client_model = model
        texts = _embedding_texts(payload.get("input"))
        encoding = payload.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise TranslationError(
                "'encoding_format' must be 'float' or 'base64'", param="encoding_format"
            )
        self._base64 = encoding == "base64"
        dimensions = payload.get("dimensions")
        if dimensions is not None and (as_int(dimensions) is None or dimensions < 1):
            raise TranslationError("'dimensions' must be a positive integer", param="dimensions")
        if self._vertex:
            body: dict[str, Any] = {"instances": [{"content": text} for text in texts]}
            if dimensions is not None:
                body["parameters"] = {"outputDimensionality": dimensions}
            return UpstreamRequest(
                body=dumps(body),
                path=self._model_path + ":predict",
                headers=(("content-type", "application/json"),),
            )
        requests: list[dict[str, Any]] = []
        for text in texts:
            item: dict[str, Any] = {"model": self._model, "content": {"parts": [{"text": text}]}}
            if dimensions is not None:
                item["outputDimensionality"] = dimensions
            requests.append(item)
        return UpstreamRequest(
            body=dumps({"requests": requests}),
            path=self._model_path + BATCH_EMBED,
            headers=(("content-type", "application/json"),),
        )

    def response_headers(self, status: int, content_type: str) -> ResponseHeadersDecision:
        return ResponseHeadersDecision(streamed=False)

    def response_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        self._json_parts.append(chunk)
        if not end_of_stream:
            return ResponseBodyOutput(body=b"")
        doc = loads_or_none(b"".join(self._json_parts))
        if self._vertex:
            doc, usage = _vertex_embeddings(doc)
        embeddings = doc.get("embeddings") if isinstance(doc, dict) else None
        if not isinstance(embeddings, list):
            return chat.invalid_answer("not an embeddings response")
        data: list[dict[str, Any]] = []
        for index, embedding in enumerate(embeddings):
            values = embedding.get("values") if isinstance(embedding, dict) else None
            if not isinstance(values, list):
                values = []
            vector: Any = values
            if self._base64:
                try:
                    packed = struct.pack(f"<{len(values)}f", *values)
                except struct.error:
                    return chat.invalid_answer("an embedding holds a value that is not a number")
                vector = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": vector})
        if not self._vertex:
            reported = doc.get("usageMetadata")
            usage = usage_from_gemini(reported) if isinstance(reported, dict) else None
        prompt = usage.input_tokens if usage is not None else 0
        body = {
            "object": "list",
            "data": data,
            "model": self._client_model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
        return ResponseBodyOutput(body=dumps(body), usage=usage, complete=True)

    def error_body(self, status: int, body: bytes, headers: Mapping[str, str]) -> bytes:
        return google_error_body(status, body)
