"""Example: a processor of your own, by subclassing ``ChatCompletionProcessor``.

``BudgetedChatProcessor`` refuses chat requests that may generate more completion tokens
than the caller's tenant is allowed per request (see ``tenant_budget.py``), with an
OpenAI-style 4xx error, and hands everything else to the stock processor: routing by
model, translation for the backend, credentials, usage metadata.

Subclass when the rule needs the processor's own state or hooks; when it only needs to
see a request go past, a wrapper composes better (``compose_wrappers.py``).

Serve it with the stock gateway, this processor taking over ``/v1/chat/completions``::

    aigateway serve --config examples/envoy/config.yaml \\
        --routes examples/subclass_processor.py:routes

or from Python, ``python examples/subclass_processor.py`` (the ``serve`` call at the
bottom). Then, with ``aigateway mock-backend`` and ``envoy -c examples/envoy/envoy.yaml``
running::

    curl -s localhost:10000/v1/chat/completions -H 'x-tenant: free' \\
      -H 'content-type: application/json' -d '{"model": "gpt-4o-mini",
        "max_tokens": 1000, "messages": [{"role": "user", "content": "Hi"}]}'
    # -> 400 {"error": {"code": "tenant_budget_exceeded", "param": "max_tokens", ...}}
"""

from __future__ import annotations

import dataclasses
import sys
from functools import partial
from pathlib import Path
from typing import Any

from tenant_budget import TENANT_HEADER, Budgets, TenantLimit

from aigateway.extproc import Headers, ProcessorFactory, Result
from aigateway.extproc.gateway import (
    CHAT_COMPLETIONS,
    ChatCompletionProcessor,
    RouteOverrides,
    RoutingTable,
    serve,
)

BUDGETS_FILE = Path(__file__).with_name("budgets.yaml")


class BudgetedChatProcessor(ChatCompletionProcessor):
    """``ChatCompletionProcessor`` that first enforces a per-tenant token budget.

    The tenant is checked with the request headers (an unknown one is refused before
    Envoy buffers the body); the budget in :meth:`validate`, the parent's hook that runs
    on the parsed body once its model is known, before it is translated. So a refused
    request is never translated or signed and never reaches a backend, and the metrics
    decorator around this processor counts it once as an ``error`` of its model.
    """

    __slots__ = ("_limit", "budgets")

    def __init__(self, table: RoutingTable, budgets: Budgets) -> None:
        super().__init__(table)
        self.budgets = budgets
        self._limit: TenantLimit | None = None

    async def on_request_headers(self, headers: Headers) -> Result:
        # The parent's checks first (405 for GET, 415 for compressed bodies...), so this
        # processor answers everything the stock one does, the same way.
        result = await super().on_request_headers(headers)
        self._limit = self.budgets.limit_for(headers.get(TENANT_HEADER))
        # The tenant is ours, not the backend's: do not send it upstream.
        return dataclasses.replace(result, remove_headers=(*result.remove_headers, TENANT_HEADER))

    def validate(self, payload: dict[str, Any]) -> None:
        super().validate(payload)  # 'messages' must be there: the stock 400 comes first
        assert self._limit is not None  # request headers always come before the body
        self.budgets.check(self._limit, payload)


def budgeted_routes(budgets: Budgets) -> RouteOverrides:
    """The route override that puts :class:`BudgetedChatProcessor` on chat completions;
    every other path keeps the stock processor, and the metrics decorator still wraps
    every processor (outermost), so refusals are counted like any failed request."""
    return lambda table: {CHAT_COMPLETIONS: partial(BudgetedChatProcessor, table, budgets)}


def routes(table: RoutingTable) -> dict[str, ProcessorFactory]:
    """What ``--routes examples/subclass_processor.py:routes`` loads: the budgets in
    ``budgets.yaml`` beside this file, read once at start."""
    return dict(budgeted_routes(Budgets.load(BUDGETS_FILE))(table))


if __name__ == "__main__":
    # The same as `aigateway serve --config CONFIG --routes ...:routes` on the default
    # addresses (ext_proc 127.0.0.1:1063, metrics :9190).
    config = sys.argv[1] if len(sys.argv) > 1 else "examples/envoy/config.yaml"
    serve(config, routes=routes, name="BudgetedChatProcessor")
