"""Example: policy and logging as wrappers composed around the stock processors.

Two ``ProcessorWrapper``s, each a ``Processor`` around an inner one, like ASGI middleware:

* ``TenantBudget``: the per-tenant completion-token cap of ``tenant_budget.py`` as a guard
  in front of chat completions (the same policy ``subclass_processor.py`` builds into a
  subclass). It needs nothing from the processor it guards, so it composes with any.
* ``AccessLog`` (``access_log.py``): one JSON line per request when its stream ends:
  method, path, status, backend and model (from the routing headers the processor
  sets), token counts, tenant and duration. No other header values, no query strings,
  no exception texts: those are where credentials hide.

``serve(..., wrap=compose(AccessLog, TenantBudget))`` puts them inside the metrics
decorator, so every request gets::

    InstrumentedProcessor(AccessLog(TenantBudget(ChatCompletionProcessor(...))))

and what ``TenantBudget`` refuses is counted as an ``error`` and logged with its status.

Run it like ``aigateway serve``::

    aigateway mock-backend &
    python examples/compose_wrappers.py --config examples/envoy/config.yaml &
    envoy -c examples/envoy/envoy.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Collection
from functools import partial
from pathlib import Path

from access_log import AccessLog
from tenant_budget import TENANT_HEADER, BudgetFileError, Budgets, TenantLimit

from extproc.addresses import Address
from extproc.app import CHAT_COMPLETIONS, ServeOptions, StartupError, compose, serve
from extproc.cli import DEFAULT_EXTPROC, DEFAULT_METRICS
from extproc.config import ConfigError, GatewayConfig, load_config, load_secrets
from extproc.logs import LEVELS, setup_logging
from extproc.processor import (
    Headers,
    Processor,
    ProcessorWrapper,
    Result,
)
from extproc.routed import parse_json_body
from extproc.router import ProcessorWrap

DEFAULT_BUDGETS = Path(__file__).with_name("budgets.yaml")


class TenantBudget(ProcessorWrapper):
    """Refuses chat requests over the caller's tenant budget; passes the rest to inner.

    Only ``paths`` are checked: the gateway wraps every processor it makes (models list,
    embeddings, the 404 for unknown paths), and those requests carry no ``max_tokens``.
    """

    __slots__ = ("_limit", "budgets", "paths")

    def __init__(
        self,
        inner: Processor,
        budgets: Budgets,
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


def build_wrap(config: GatewayConfig, budgets: Budgets) -> ProcessorWrap:
    """``AccessLog`` outside ``TenantBudget``, so refusals are logged too. The gateway
    puts the metrics decorator around the result."""
    return compose(
        partial(
            AccessLog,
            model_header=config.headers.model,
            backend_header=config.headers.backend,
            log_headers=(TENANT_HEADER,),
        ),
        partial(TenantBudget, budgets=budgets),
    )


def _address(text: str) -> Address:
    try:
        return Address.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="aigateway serve with TenantBudget + AccessLog")
    parser.add_argument("--config", required=True, metavar="FILE", help="gateway config")
    parser.add_argument(
        "--budgets",
        default=str(DEFAULT_BUDGETS),
        metavar="FILE",
        help=f"per-tenant budgets (default {DEFAULT_BUDGETS.name} beside this script)",
    )
    parser.add_argument("--extproc-addr", type=_address, default=DEFAULT_EXTPROC, metavar="ADDR")
    parser.add_argument("--metrics-addr", type=_address, default=DEFAULT_METRICS, metavar="ADDR")
    parser.add_argument("--drain-timeout", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--log-level", choices=LEVELS, default="info")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        config = load_config(args.config)
        secrets = load_secrets(config, args.config)
        budgets = Budgets.load(args.budgets)
    except (ConfigError, BudgetFileError) as exc:
        print(f"example: {exc}", file=sys.stderr)
        return 2
    options = ServeOptions(
        extproc=args.extproc_addr, metrics=args.metrics_addr, drain_timeout=args.drain_timeout
    )
    try:
        # serve() is `aigateway serve`: ready line on stderr, SIGINT/SIGTERM drain, and
        # its loopback-or-TLS rule for the ext_proc address.
        asyncio.run(serve(config, secrets, options, wrap=build_wrap(config, budgets)))
    except StartupError as exc:
        print(f"example: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
