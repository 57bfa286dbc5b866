"""Error bodies in the client's API: OpenAI's shape (chat completions, embeddings,
Responses) and Anthropic's (Messages)."""

from __future__ import annotations

from typing import Any

from aigateway.translators.wire.jsoncodec import dumps, loads_or_none

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
    return openai_error_json(
        openai_error(message, status=status, type=type, code=code, param=param)["error"]
    )


def openai_error_json(error: dict[str, Any]) -> bytes:
    """An OpenAI ``error`` object as a JSON body (``{"error": ...}``)."""
    return dumps({"error": error})


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
    doc = loads_or_none(body)
    if is_openai_error(doc):
        return None
    if isinstance(doc, dict):
        # Common non-OpenAI shapes: {"message": ...}, {"error": "text"}, {"detail": ...}.
        for key in ("message", "error", "detail", "Message"):
            value = doc.get(key)
            if isinstance(value, str) and value:
                return wrap_upstream_error(status, value[:MAX_UPSTREAM_MESSAGE])
    return wrap_upstream_error(status, upstream_text(body))


# Anthropic's error types by status (docs/client-apis.md, "Anthropic Messages API").
_ANTHROPIC_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type_for_status(status: int) -> str:
    known = _ANTHROPIC_TYPE_BY_STATUS.get(status)
    if known is not None:
        return known
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error(message: str, *, status: int, type: str | None = None) -> dict[str, Any]:
    """The Anthropic error object: ``{"type": "error", "error": {"type", "message"}}``."""
    return {
        "type": "error",
        "error": {"type": type or anthropic_error_type_for_status(status), "message": message},
    }


def anthropic_error_body(message: str, *, status: int, type: str | None = None) -> bytes:
    return dumps(anthropic_error(message, status=status, type=type))


def is_anthropic_error(doc: Any) -> bool:
    """True for a JSON document already shaped like an Anthropic error."""
    return (
        isinstance(doc, dict)
        and doc.get("type") == "error"
        and isinstance(doc.get("error"), dict)
        and isinstance(doc["error"].get("type"), str)
        and isinstance(doc["error"].get("message"), str)
    )


def anthropic_error_from_openai(status: int, body: bytes) -> bytes:
    """An OpenAI error body (or any text) as an Anthropic error with ``status``; the
    message is kept, the type follows the status."""
    doc = loads_or_none(body)
    if is_openai_error(doc):
        message = doc["error"]["message"][:MAX_UPSTREAM_MESSAGE]
    else:
        message = upstream_text(body) or f"upstream returned HTTP {status}"
    return anthropic_error_body(message, status=status)
