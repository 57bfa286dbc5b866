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
