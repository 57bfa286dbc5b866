"""``/v1/responses``: the OpenAI Responses API to any backend schema (docs/client-apis.md, "OpenAI
Responses API")."""

from __future__ import annotations

from typing import Any

from aigateway.extproc.gateway.chat import check_stream_flag, check_tool_list
from aigateway.extproc.gateway.errors import invalid_value
from aigateway.extproc.gateway.routed import RoutedProcessor

MAX_INPUT_ITEMS = 100_000


def validate_responses_request(payload: dict[str, Any]) -> None:
    """The structure every schema relies on, checked once so that malformed requests get
    the same 400 whatever the backend (deeper checks are the translators')."""
    value = payload.get("input")
    if isinstance(value, str):
        if not value:
            raise invalid_value("'input' must not be empty.", "input")
    elif isinstance(value, list):
        if not value:
            raise invalid_value("'input' must not be empty.", "input")
        if len(value) > MAX_INPUT_ITEMS:
            raise invalid_value(f"'input' has more than {MAX_INPUT_ITEMS} items.", "input")
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise invalid_value(f"input[{i}] must be an object.", f"input[{i}]")
    else:
        raise invalid_value("'input' must be a string or an array of input items.", "input")
    check_stream_flag(payload)
    check_tool_list(payload)


class ResponsesProcessor(RoutedProcessor):
    """One Responses API request, from client headers to the last response byte."""

    __slots__ = ()

    api = "responses"
    endpoint = "responses"

    def validate(self, payload: dict[str, Any]) -> None:
        validate_responses_request(payload)
