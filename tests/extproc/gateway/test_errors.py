"""The gateway writes the errors it answers itself in the client's API (``errors.py``,
``app.error_formatter``): the endpoints their own, the router's formatter the rest (an
unknown path, a wrapper's refusal, a processor that raised), by path."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigateway.extproc.framework.processor import (
    Headers,
    ImmediateResponse,
    ProcessorWrapper,
    Result,
)
from aigateway.extproc.framework.router import Wrap
from aigateway.extproc.framework.server import ExternalProcessorServicer
from aigateway.extproc.gateway.app import build_router
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.config import ResolvedSecrets, parse_config
from tests.extproc.framework.fake_envoy import (
    Conversation,
    immediate_json,
    request_body,
    request_headers,
)

CONFIG = parse_config(
    {
        "backends": [{"name": "b", "schema": "openai", "endpoint": "http://127.0.0.1:1"}],
        "models": [{"name": "m", "backend": "b"}],
    }
)


def servicer(wrap: Wrap | None = None) -> ExternalProcessorServicer:
    return ExternalProcessorServicer(
        build_router(RoutingTable(CONFIG, ResolvedSecrets(CONFIG, Path())), wrap=wrap)
    )


async def test_an_unknown_path_is_an_openai_404() -> None:
    conv = Conversation(servicer())
    status, doc = immediate_json(await conv.send(request_headers("/v1/nope")))
    assert status == 404
    assert doc == {
        "error": {
            "message": "Invalid URL (POST /v1/nope)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    await conv.close()


class Refuses(ProcessorWrapper):
    async def on_request_headers(self, headers: Headers) -> Result:
        raise ImmediateResponse.error(403, "no tenant", code="missing_tenant")


class Raises(ProcessorWrapper):
    async def on_request_headers(self, headers: Headers) -> Result:
        raise RuntimeError("a bug")


@pytest.mark.parametrize(
    ("wrap", "status", "openai", "anthropic"),
    [
        (
            Refuses,
            403,
            {
                "message": "no tenant",
                "type": "permission_error",
                "param": None,
                "code": "missing_tenant",
            },
            {"type": "permission_error", "message": "no tenant"},
        ),
        (
            Raises,
            500,
            {
                "message": "The gateway failed to process the request (request id req-1).",
                "type": "server_error",
                "param": None,
                "code": "internal_error",
            },
            {
                "type": "api_error",
                "message": "The gateway failed to process the request (request id req-1).",
            },
        ),
    ],
    ids=["refusal", "exception"],
)
async def test_errors_outside_the_endpoints_are_in_the_paths_client_api(
    wrap: Wrap, status: int, openai: dict[str, object], anthropic: dict[str, object]
) -> None:
    conv = Conversation(servicer(wrap))
    assert immediate_json(await conv.send(request_headers("/v1/chat/completions"))) == (
        status,
        {"error": openai},
    )
    await conv.close()
    conv = Conversation(servicer(wrap))
    assert immediate_json(await conv.send(request_headers("/v1/messages?beta=true"))) == (
        status,
        {"type": "error", "error": anthropic},
    )
    await conv.close()


async def test_an_endpoints_own_error_keeps_its_openai_name_in_the_details() -> None:
    # No code given: the details name the error as OpenAI's type does.
    conv = Conversation(servicer())
    await conv.send(request_headers("/v1/chat/completions"))
    answer = await conv.send(request_body(b"{bad"))
    status, doc = immediate_json(answer)
    assert status == 400 and doc["error"]["type"] == "invalid_request_error"
    assert answer.immediate_response.details == "aigateway_invalid_request_error"
    await conv.close()
