"""The cap on request body bytes one processor holds (max_body_bytes_in_flight): a body
that would take the total past it is a 503 in the client API's shape, and bytes held are
given back whatever the request's outcome."""

from __future__ import annotations

from pathlib import Path

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
from tests.extproc.gateway.test_chat import CONFIG, chat

LIMIT = 1024 * 1024


def table() -> RoutingTable:
    cfg = parse_config({**CONFIG, "max_request_bytes": LIMIT, "max_body_bytes_in_flight": LIMIT})
    return RoutingTable(cfg, ResolvedSecrets(cfg, Path()))


async def test_body_past_the_cap_is_a_503_in_each_client_apis_shape() -> None:
    routes = table()
    servicer = ExternalProcessorServicer(build_router(routes))
    routes.body_budget.held = LIMIT  # another request's body is being processed
    conv = Conversation(servicer)
    await conv.send(request_headers())
    status, doc = immediate_json(await conv.send(request_body(chat())))
    assert status == 503
    assert doc["error"]["type"] == "server_error" and doc["error"]["code"] == "overloaded"
    await conv.close()
    conv = Conversation(servicer)
    await conv.send(request_headers("/v1/messages"))
    body = {**chat(), "max_tokens": 5}
    status, doc = immediate_json(await conv.send(request_body(body)))
    assert status == 503
    assert doc["type"] == "error" and doc["error"]["type"] == "api_error"
    await conv.close()
    assert routes.body_budget.held == LIMIT  # a refused request took nothing


async def test_bytes_are_given_back_after_a_body_accepted_or_refused() -> None:
    routes = table()
    servicer = ExternalProcessorServicer(build_router(routes))
    for body in (chat(), b"{bad json"):
        conv = Conversation(servicer)
        await conv.send(request_headers())
        await conv.send(request_body(body))
        await conv.close()
        assert routes.body_budget.held == 0
