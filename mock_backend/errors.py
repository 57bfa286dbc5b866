"""Provider error bodies: the exception routes raise and the three wire shapes it becomes.

- OpenAI and Azure OpenAI: ``{"error": {"message", "type", "param", "code"}}``.
- AWS Bedrock: ``{"message": ...}`` plus the ``x-amzn-errortype`` header
  (``ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/``).
- Anthropic: ``{"type": "error", "error": {"type", "message"}}``.
- Google (Gemini API, Vertex AI): ``{"error": {"code", "message", "status"}}``; Vertex AI
  wraps the errors of ``streamGenerateContent`` in a list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ANTHROPIC_ERRORS",
    "BEDROCK_ERRORS",
    "GOOGLE_ERRORS",
    "OPENAI_ERRORS",
    "VERTEX_STREAM_ERRORS",
    "ErrorDialect",
    "MockError",
    "RenderedError",
    "anthropic_error_type",
    "bedrock_exception_name",
    "google_status_name",
    "openai_error_type",
]

_JSON = "application/json"
_BEDROCK_FAULT_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"


class MockError(Exception):
    """A request the mock refuses; the route renders it in its provider's error shape.

    ``error_type`` overrides the provider-specific error type chosen from ``status``
    (OpenAI ``error.type``, Bedrock exception name, Anthropic ``error.type``, Google
    ``error.status``). ``dialect`` overrides the route's error shape (Vertex AI answers
    a bad token in Google's shape whatever the model's API).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        dialect: ErrorDialect | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.dialect = dialect


@dataclass(frozen=True, slots=True)
class RenderedError:
    """An error ready to send: status, JSON body and extra response headers."""

    status: int
    body: bytes
    headers: dict[str, str]


class ErrorDialect(Protocol):
    """Turns a :class:`MockError` into one provider's error response."""

    def render(self, error: MockError) -> RenderedError: ...


def _by_status(table: dict[int, str], status: int, *, server: str, client: str) -> str:
    """``table``'s name for ``status``, else the provider's catch-all for its class."""
    name = table.get(status)
    if name is not None:
        return name
    return server if status >= 500 else client


def openai_error_type(status: int) -> str:
    """OpenAI's ``error.type`` for an HTTP status."""
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


_OPENAI_CODES = {401: "invalid_api_key", 404: "not_found", 429: "rate_limit_exceeded"}


class _OpenAIErrors:
    def render(self, error: MockError) -> RenderedError:
        body = {
            "error": {
                "message": error.message,
                "type": error.error_type or openai_error_type(error.status),
                "param": error.param,
                "code": error.code or _OPENAI_CODES.get(error.status),
            }
        }
        return RenderedError(error.status, _dumps(body), {"Content-Type": _JSON})


_BEDROCK_EXCEPTIONS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    409: "ConflictException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def bedrock_exception_name(status: int) -> str:
    """The Bedrock exception name (``x-amzn-errortype`` prefix) for an HTTP status."""
    return _by_status(
        _BEDROCK_EXCEPTIONS, status, server="InternalServerException", client="ValidationException"
    )


class _BedrockErrors:
    def render(self, error: MockError) -> RenderedError:
        name = error.error_type or bedrock_exception_name(error.status)
        headers = {
            "Content-Type": _JSON,
            "x-amzn-ErrorType": f"{name}:{_BEDROCK_FAULT_NAMESPACE}",
        }
        return RenderedError(error.status, _dumps({"message": error.message}), headers)


# The providers' tables, written out here again on purpose: the mock is the upstream the
# gateway's own tables (translators/wire/errors.py) are tested against, so it shares none.
_ANTHROPIC_TYPES = {
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


def anthropic_error_type(status: int) -> str:
    """Anthropic's ``error.type`` for an HTTP status."""
    kind = _ANTHROPIC_TYPES.get(status)
    if kind is not None:
        return kind
    return "api_error" if status >= 500 else "invalid_request_error"


class _AnthropicErrors:
    def render(self, error: MockError) -> RenderedError:
        body = {
            "type": "error",
            "error": {
                "type": error.error_type or anthropic_error_type(error.status),
                "message": error.message,
            },
        }
        return RenderedError(error.status, _dumps(body), {"Content-Type": _JSON})


_GOOGLE_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_status_name(status: int) -> str:
    """The canonical Google error status (``google.rpc.Code`` name) for an HTTP status."""
    return _by_status(_GOOGLE_STATUS_NAMES, status, server="INTERNAL", client="FAILED_PRECONDITION")


def _google_error(error: MockError) -> dict[str, object]:
    return {
        "error": {
            "code": error.status,
            "message": error.message,
            "status": error.error_type or google_status_name(error.status),
        }
    }


class _GoogleErrors:
    def render(self, error: MockError) -> RenderedError:
        body = _dumps(_google_error(error))
        return RenderedError(error.status, body, {"Content-Type": _JSON})


class _VertexStreamErrors:
    def render(self, error: MockError) -> RenderedError:
        body = _dumps([_google_error(error)])
        return RenderedError(error.status, body, {"Content-Type": _JSON})


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


OPENAI_ERRORS: ErrorDialect = _OpenAIErrors()
BEDROCK_ERRORS: ErrorDialect = _BedrockErrors()
ANTHROPIC_ERRORS: ErrorDialect = _AnthropicErrors()
GOOGLE_ERRORS: ErrorDialect = _GoogleErrors()
VERTEX_STREAM_ERRORS: ErrorDialect = _VertexStreamErrors()
