"""OpenAI-style error bodies: the one shape every error reaching a client takes."""

from __future__ import annotations

import json
from typing import Any

# The error `type` OpenAI uses for each status class; clients branch on it.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

# Upstream error text is passed on for debugging, but bounded.
MAX_UPSTREAM_MESSAGE = 2048


def error_type_for_status(status: int) -> str:
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def openai_error(
    message: str,
    *,
    status: int,
    type: str | None = None,
    code: str | int | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """The OpenAI error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {
        "error": {
            "message": message,
            "type": type or error_type_for_status(status),
            "param": param,
            "code": code,
        }
    }


def openai_error_body(
    message: str,
    *,
    status: int,
    type: str | None = None,
    code: str | int | None = None,
    param: str | None = None,
) -> bytes:
    """:func:`openai_error` as a JSON body."""
    return json.dumps(
        openai_error(message, status=status, type=type, code=code, param=param),
        separators=(",", ":"),
    ).encode()


def is_openai_error(doc: Any) -> bool:
    """True for a JSON document already shaped like an OpenAI error."""
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("error"), dict)
        and isinstance(doc["error"].get("message"), str)
    )


def upstream_text(body: bytes) -> str:
    """Upstream bytes as bounded, printable text for an error message."""
    text = body[: MAX_UPSTREAM_MESSAGE * 4].decode("utf-8", "replace").strip()
    if len(text) > MAX_UPSTREAM_MESSAGE:
        text = text[:MAX_UPSTREAM_MESSAGE] + "..."
    return text


def wrap_upstream_error(status: int, message: str, code: str | int | None = None) -> bytes:
    """An OpenAI error body for an upstream failure we describe ourselves."""
    if not message:
        message = f"upstream returned HTTP {status}"
    return openai_error_body(message, status=status, code=code if code is not None else status)


def passthrough_error_body(status: int, body: bytes) -> bytes | None:
    """For OpenAI-compatible upstreams: ``None`` when ``body`` already is an OpenAI error
    (pass it on unchanged), else a wrapped error body describing it."""
    doc: Any = None
    try:
        doc = json.loads(body)
    except ValueError:
        pass
    if is_openai_error(doc):
        return None
    if isinstance(doc, dict):
        # Common non-OpenAI shapes: {"message": ...}, {"error": "text"}, {"detail": ...}.
        for key in ("message", "error", "detail", "Message"):
            value = doc.get(key)
            if isinstance(value, str) and value:
                return wrap_upstream_error(status, value[:MAX_UPSTREAM_MESSAGE])
    return wrap_upstream_error(status, upstream_text(body))
