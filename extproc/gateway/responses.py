"""``/v1/responses``: the OpenAI Responses API to any backend schema (docs/client-apis.md, "OpenAI
Responses API")."""

from __future__ import annotations

from typing import Any

from aigateway.extproc.framework.processor import ImmediateResponse
from aigateway.extproc.gateway.routed import RoutedProcessor

MAX_INPUT_ITEMS = 100_000


def _invalid(message: str, param: str) -> ImmediateResponse:
    return ImmediateResponse.error(400, message, param=param, code="invalid_value")


def validate_responses_request(payload: dict[str, Any]) -> None:
    """The structure every schema relies on, checked once so that malformed requests get
    the same 400 whatever the backend (deeper checks are the translators')."""
    value = payload.get("input")
    if isinstance(value, str):
        if not value:
            raise _invalid("'input' must not be empty.", "input")
    elif isinstance(value, list):
        if not value:
            raise _invalid("'input' must not be empty.", "input")
        if len(value) > MAX_INPUT_ITEMS:
            raise _invalid(f"'input' has more than {MAX_INPUT_ITEMS} items.", "input")
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise _invalid(f"input[{i}] must be an object.", f"input[{i}]")
    else:
        raise _invalid("'input' must be a string or an array of input items.", "input")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("'stream' must be a boolean.", "stream")
    tools = payload.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(tool, dict) for tool in tools)
    ):
        raise _invalid("'tools' must be an array of objects.", "tools")


class ResponsesProcessor(RoutedProcessor):
    """One Responses API request, from client headers to the last response byte."""

    __slots__ = ()

    api = "responses"
    endpoint = "responses"

    def validate(self, payload: dict[str, Any]) -> None:
        validate_responses_request(payload)
