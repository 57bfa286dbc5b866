"""What every backend translator's tests share: request fixtures, a translator that has
seen its request, and readers of the chat stream it writes."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from openai.types.chat import ChatCompletionChunk

from aigateway.translators.contract import ResponseBodyOutput, Translator

T = TypeVar("T", bound=Translator)

PNG_B64 = "iVBORw0KGgo="
PDF_B64 = "JVBERi0xLjQK"
EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
PNG_URL = f"data:image/png;base64,{PNG_B64}"
PDF_URL = f"data:application/pdf;base64,{PDF_B64}"
#: A system block marked for caching and a developer message marked for an hour.
MARKED_SYSTEM: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": [{"type": "text", "text": "Long rules.", "cache_control": EPHEMERAL}],
    },
    {"role": "developer", "content": "More rules.", "cache_control": HOUR},
]


def requested(translator: T, model: str, **payload: Any) -> T:
    """``translator`` once it has translated a one-message chat request (plus ``payload``)."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], **payload}
    translator.request(body, json.dumps(body).encode())
    return translator


def sse_data(body: bytes) -> list[bytes]:
    """The data of each event; keep-alive comments (``: ping``) are left out."""
    assert body.endswith(b"\n\n")
    events = [e for e in body[:-2].split(b"\n\n") if e != b": ping"]
    assert all(e.startswith(b"data: ") for e in events), events
    return [e[len(b"data: ") :] for e in events]


def chunks_of(body: bytes) -> list[ChatCompletionChunk]:
    """The chat chunks of a whole stream (which must end in ``[DONE]``)."""
    data = sse_data(body)
    assert data[-1] == b"[DONE]"
    return [ChatCompletionChunk.model_validate_json(d) for d in data[:-1]]


def feed_split(
    translator: Translator, data: bytes, cuts: list[int]
) -> tuple[bytes, ResponseBodyOutput]:
    """``data`` fed to ``translator`` cut at ``cuts``: all it wrote, and its last output."""
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    bodies = []
    out = None
    for i, piece in enumerate(pieces):
        out = translator.response_body(piece, i == len(pieces) - 1)
        assert out.body is not None
        bodies.append(out.body)
    assert out is not None
    return b"".join(bodies), out


def openai_error(message: str, type: str, code: str | int | None) -> dict[str, Any]:
    """The OpenAI error document a translator's ``error_body`` writes."""
    return {"error": {"message": message, "type": type, "param": None, "code": code}}


#: A body that is not JSON (Envoy's own text on a failed connect), for error-body tables.
UPSTREAM_CONNECT_ERROR = (
    502,
    b"upstream connect error",
    openai_error("upstream connect error", "server_error", 502),
)


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """An assistant message's tool call in the chat completions request."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def image_part(url: str, **extra: Any) -> dict[str, Any]:
    """A user message's ``image_url`` content part (``extra``: e.g. ``cache_control``)."""
    return {"type": "image_url", "image_url": {"url": url}, **extra}
