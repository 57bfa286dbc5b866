"""The gateway's own error replies, in its clients' APIs: OpenAI's error shape on every
endpoint but the Messages API's, which gets Anthropic's (``docs/architecture.md``,
"Request lifecycle"). The framework hands errors over unwritten
(:class:`~aigateway.extproc.framework.processor.LocalError`): an endpoint writes its own
in its client API, the router's formatter (``app.py``) the rest."""

from __future__ import annotations

from aigateway.extproc.framework.processor import (
    ImmediateResponse,
    LocalError,
    local_reply_details,
)
from aigateway.translators.wire.errors import (
    anthropic_error_body,
    error_type_for_status,
    openai_error_body,
)

JSON = "application/json"


def error_name(error: LocalError) -> str:
    """The error's name as the access log (``details``, the ``error`` fact) and the
    metrics' ``error.type`` show it: its code, else its OpenAI type."""
    if error.code is not None:
        return str(error.code)
    return error.type or error_type_for_status(error.status)


def openai_error_reply(error: LocalError) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return openai_error_body(
        error.message, status=error.status, type=error.type, code=error.code, param=error.param
    )


def anthropic_error_reply(error: LocalError) -> bytes:
    """``{"type": "error", "error": {"type", "message"}}``, the type from the status."""
    return anthropic_error_body(error.message, status=error.status)


def written(reply: ImmediateResponse, body: bytes) -> ImmediateResponse:
    """``reply`` (an :meth:`~ImmediateResponse.error`) with ``body``, named as the
    gateway names its errors (:func:`error_name`)."""
    assert reply.local_error is not None
    reply.write(JSON, body)
    reply.details = local_reply_details(error_name(reply.local_error))
    return reply


def invalid_value(message: str, param: str) -> ImmediateResponse:
    """A 400 for a request body of the wrong structure, naming the field (``param``)."""
    return ImmediateResponse.error(400, message, param=param, code="invalid_value")
