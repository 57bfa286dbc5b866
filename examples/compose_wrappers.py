"""Example: policy and logging as wrappers composed around the stock processors.

Two ``ProcessorWrapper``s, each a ``Processor`` around an inner one, like ASGI middleware:

* ``TenantBudget``: the per-tenant completion-token cap of ``tenant_budget.py`` as a guard
  in front of chat completions (the same policy ``subclass_processor.py`` builds into a
  subclass). It needs nothing from the processor it guards, so it composes with any.
* ``AccessLog`` (``access_log.py``): one JSON line per request when its stream ends:
  method, path, status, backend and model, token counts, tenant and duration. No other
  header values, no query strings, no exception texts: those are where credentials hide.

``guarded`` composes them; the gateway puts the metrics decorator around it, so every
request gets::

    InstrumentedProcessor(AccessLog(TenantBudget(ChatCompletionProcessor(...))))

and what ``TenantBudget`` refuses is counted as an ``error`` and logged with its status.
Serve it with::

    aigateway serve --config examples/envoy/config.yaml --wrap examples/compose_wrappers.py:guarded

or from Python, ``python examples/compose_wrappers.py`` (the ``serve`` call at the bottom).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Collection
from functools import partial
from pathlib import Path

from access_log import AccessLog
from tenant_budget import TENANT_HEADER, Budgets, TenantLimit

from aigateway.extproc import Headers, Processor, ProcessorWrapper, Result, compose
from aigateway.extproc.gateway import CHAT_COMPLETIONS, parse_json_body, serve

#: The budgets of ``budgets.yaml`` beside this file, read once when the module loads.
BUDGETS = Budgets.load(Path(__file__).with_name("budgets.yaml"))


class TenantBudget(ProcessorWrapper):
    """Refuses chat requests over the caller's tenant budget; passes the rest to inner.

    Only ``paths`` are checked: the gateway wraps every processor it makes (models list,
    embeddings, the 404 for unknown paths), and those requests carry no ``max_tokens``.
    """

    __slots__ = ("_limit", "budgets", "paths")

    def __init__(
        self,
        inner: Processor,
        budgets: Budgets = BUDGETS,
        *,
        paths: Collection[str] = frozenset({CHAT_COMPLETIONS}),
    ) -> None:
        super().__init__(inner)
        self.budgets = budgets
        self.paths = paths
        self._limit: TenantLimit | None = None

    async def on_request_headers(self, headers: Headers) -> Result:
        if headers.path.partition("?")[0] not in self.paths:
            return await self.inner.on_request_headers(headers)
        # Refuse unknown tenants before the inner processor (and Envoy's body buffering)
        # does any work.
        self._limit = self.budgets.limit_for(headers.get(TENANT_HEADER))
        result = await self.inner.on_request_headers(headers)
        # The tenant is ours, not the backend's: do not send it upstream.
        return dataclasses.replace(result, remove_headers=(*result.remove_headers, TENANT_HEADER))

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        if self._limit is not None:
            # A wrapper sees bytes only, so the body is parsed here and again inside.
            # Invalid JSON gets the same 400 the inner processor would give.
            self.budgets.check(self._limit, parse_json_body(body))
        return await self.inner.on_request_body(body, end_of_stream)


#: ``AccessLog`` outside ``TenantBudget``, so refusals are logged too; what
#: ``--wrap examples/compose_wrappers.py:guarded`` loads.
guarded = compose(partial(AccessLog, log_headers=(TENANT_HEADER,)), TenantBudget)


if __name__ == "__main__":
    # The same as `aigateway serve --config CONFIG --wrap ...:guarded` on the default
    # addresses (ext_proc 127.0.0.1:1063, metrics :9190).
    serve(sys.argv[1] if len(sys.argv) > 1 else "examples/envoy/config.yaml", wrap=guarded)
